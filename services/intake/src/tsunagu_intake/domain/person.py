"""Person (本人) with a pseudonymous id, their sealed details and their consents, in one stream.

Consent lives on the person's stream because it is the person's decision: giving,
withdrawing, and the statutory support-meeting basis that shares without consent
(支援会議, 社会福祉法106条の6) all change what other agencies may see of them.
Once erased, the person's stream accepts nothing more: their keys are gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from tsunagu_events.aggregate import Aggregate
from tsunagu_events.contracts.common import LegalBasis, Sealed
from tsunagu_events.contracts.intake import (
    ConsentGiven,
    ConsentScope,
    ConsentWithdrawn,
    PersonDetailsCorrected,
    PersonErased,
    PersonRegistered,
    SharingBasisRecorded,
)
from tsunagu_events.registry import EventPayload

from tsunagu_intake.domain.errors import DomainError

PERSONAL_FIELDS = ("name", "kana", "birth_date", "address", "phone")


@dataclass(frozen=True)
class SealedDetails:
    name: Sealed | None = None
    kana: Sealed | None = None
    birth_date: Sealed | None = None
    address: Sealed | None = None
    phone: Sealed | None = None


@dataclass(frozen=True)
class RegisterPerson:
    person_id: str
    details: SealedDetails
    district_id: str | None = None


@dataclass(frozen=True)
class CorrectPersonDetails:
    details: SealedDetails
    district_id: str | None = None


@dataclass(frozen=True)
class ErasePerson:
    at: datetime


@dataclass(frozen=True)
class GiveConsent:
    consent_id: str
    scope: ConsentScope
    given_at: datetime
    recorded_by_agency: str
    district_id: str | None = None
    agency_ids: list[str] = field(default_factory=list)
    referral_id: str | None = None
    expires_on: date | None = None


@dataclass(frozen=True)
class WithdrawConsent:
    consent_id: str
    at: datetime
    recorded_by_agency: str


@dataclass(frozen=True)
class RecordStatutorySharing:
    at: datetime
    meeting_id: str | None = None
    agency_ids: list[str] = field(default_factory=list)


@dataclass
class Consent:
    consent_id: str
    scope: ConsentScope
    district_id: str | None
    agency_ids: list[str]
    expires_on: date | None
    withdrawn: bool = False

    def holds_on(self, day: date) -> bool:
        return not self.withdrawn and (self.expires_on is None or day <= self.expires_on)


class Person(Aggregate):
    def __init__(self) -> None:
        super().__init__()
        self.person_id = ""
        self.district_id: str | None = None
        self.details: dict[str, Sealed | None] = dict.fromkeys(PERSONAL_FIELDS)
        self.erased = False
        self.consents: dict[str, Consent] = {}

    def apply(self, event: EventPayload) -> None:
        if isinstance(event, PersonRegistered | PersonDetailsCorrected):
            self.person_id = event.person_id
            if event.district_id is not None:
                self.district_id = event.district_id
            for name in PERSONAL_FIELDS:
                value = getattr(event, name)
                if value is not None:
                    self.details[name] = value
        elif isinstance(event, PersonErased):
            self.erased = True
        elif isinstance(event, ConsentGiven):
            self.consents[event.consent_id] = Consent(
                event.consent_id, event.scope, event.district_id, list(event.agency_ids), event.expires_on
            )
        elif isinstance(event, ConsentWithdrawn):
            self.consents[event.consent_id].withdrawn = True

    def _require_living_record(self) -> None:
        if not self.exists:
            raise DomainError("person not registered")
        if self.erased:
            raise DomainError("person was erased")

    def register(self, command: RegisterPerson) -> None:
        if self.exists:
            raise DomainError("person already registered")
        if command.details.name is None:
            raise DomainError("a name is required", field="name")
        d = command.details
        self._trigger(
            PersonRegistered(
                person_id=command.person_id,
                district_id=command.district_id,
                name=d.name,
                kana=d.kana,
                birth_date=d.birth_date,
                address=d.address,
                phone=d.phone,
            )
        )

    def correct(self, command: CorrectPersonDetails) -> None:
        self._require_living_record()
        d = command.details
        if command.district_id is None and all(getattr(d, n) is None for n in PERSONAL_FIELDS):
            return
        self._trigger(
            PersonDetailsCorrected(
                person_id=self.person_id,
                district_id=command.district_id,
                name=d.name,
                kana=d.kana,
                birth_date=d.birth_date,
                address=d.address,
                phone=d.phone,
            )
        )

    def erase(self, command: ErasePerson) -> None:
        if not self.exists:
            raise DomainError("person not registered")
        if self.erased:
            raise DomainError("person was already erased")
        self._trigger(PersonErased(person_id=self.person_id, erased_at=command.at))

    def give_consent(self, command: GiveConsent) -> None:
        self._require_living_record()
        if command.consent_id in self.consents:
            raise DomainError("consent id already used")
        if command.scope == ConsentScope.FOUR_WINDOWS and command.district_id is None:
            raise DomainError("four_windows consent names the district", field="district_id")
        if command.scope in (ConsentScope.NAMED_AGENCIES, ConsentScope.REFERRAL) and not command.agency_ids:
            raise DomainError(f"{command.scope.value} consent names the agencies", field="agency_ids")
        self._trigger(
            ConsentGiven(
                consent_id=command.consent_id,
                person_id=self.person_id,
                scope=command.scope,
                district_id=command.district_id,
                agency_ids=list(dict.fromkeys(command.agency_ids)),
                referral_id=command.referral_id,
                given_at=command.given_at,
                recorded_by_agency=command.recorded_by_agency,
                expires_on=command.expires_on,
            )
        )

    def withdraw_consent(self, command: WithdrawConsent) -> None:
        self._require_living_record()
        consent = self.consents.get(command.consent_id)
        if consent is None:
            raise DomainError("no such consent", field="consent_id")
        if consent.withdrawn:
            raise DomainError("consent already withdrawn")
        self._trigger(
            ConsentWithdrawn(
                consent_id=command.consent_id,
                person_id=self.person_id,
                withdrawn_at=command.at,
                recorded_by_agency=command.recorded_by_agency,
            )
        )

    def record_statutory_sharing(self, command: RecordStatutorySharing) -> None:
        self._require_living_record()
        self._trigger(
            SharingBasisRecorded(
                person_id=self.person_id,
                basis=LegalBasis.SUPPORT_MEETING_STATUTORY,
                meeting_id=command.meeting_id,
                agency_ids=list(dict.fromkeys(command.agency_ids)),
                recorded_at=command.at,
            )
        )

    def consents_agency(self, agency_id: str, agency_district: str | None, day: date) -> bool:
        """Whether a holding consent lets this agency see the person's details."""
        for consent in self.consents.values():
            if not consent.holds_on(day):
                continue
            in_district = agency_district is not None and consent.district_id == agency_district
            if consent.scope == ConsentScope.FOUR_WINDOWS and in_district:
                return True
            if agency_id in consent.agency_ids:
                return True
        return False
