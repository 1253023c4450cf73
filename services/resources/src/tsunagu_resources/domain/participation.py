"""Participation support (参加支援): linking a person to a local resource or place.

Only the pseudonymous person id from intake appears here, and only when the
person's consent allows the requesting agency to do it: a `participation`
consent (for any agency, or the ones it names), a `four_windows` consent when the
requester is a window of that district, or a `named_agencies` consent naming it.
Consents are learnt from intake's events; a withdrawn or expired consent, or an
erased person, allows nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from tsunagu_events.aggregate import Aggregate
from tsunagu_events.contracts.common import fiscal_year_of
from tsunagu_events.contracts.intake import ConsentScope
from tsunagu_events.contracts.resources import AttendanceRecorded, ParticipationEnded, ParticipationStarted
from tsunagu_events.registry import EventPayload

from tsunagu_resources.domain.errors import ConsentRequired, InvalidCommand, InvalidTransition

END_REASONS = ("settled", "moved_on", "health", "declined", "consent_withdrawn", "resource_closed", "other")
END_REASON_LABELS_JA = {
    "settled": "定着",
    "moved_on": "次の活動へ移行",
    "health": "体調",
    "declined": "本人の辞退",
    "consent_withdrawn": "同意の撤回",
    "resource_closed": "資源の休止・廃止",
    "other": "その他",
}


@dataclass(frozen=True)
class Consent:
    """What this service knows of one consent recorded by intake."""

    consent_id: str
    person_id: str
    scope: ConsentScope
    district_id: str | None = None
    agency_ids: tuple[str, ...] = ()
    expires_on: date | None = None
    withdrawn: bool = False


@dataclass(frozen=True)
class Requester:
    """The agency asking; its district when it is one of a district's windows."""

    agency_id: str
    window_district_id: str | None = None


def covers(consent: Consent, requester: Requester, on: date) -> bool:
    if consent.withdrawn or (consent.expires_on is not None and consent.expires_on < on):
        return False
    if consent.scope == ConsentScope.PARTICIPATION:
        return not consent.agency_ids or requester.agency_id in consent.agency_ids
    if consent.scope == ConsentScope.FOUR_WINDOWS:
        return consent.district_id is not None and consent.district_id == requester.window_district_id
    if consent.scope == ConsentScope.NAMED_AGENCIES:
        return requester.agency_id in consent.agency_ids
    return False


def consent_allowing(consents: Iterable[Consent], requester: Requester, on: date) -> Consent | None:
    """The consent participation support may rely on, preferring one given for participation itself."""
    usable = [c for c in consents if covers(c, requester, on)]
    usable.sort(key=lambda c: (c.scope != ConsentScope.PARTICIPATION, c.consent_id))
    return usable[0] if usable else None


@dataclass(frozen=True)
class StartParticipation:
    participation_id: str
    person_id: str
    resource_id: str
    district_id: str
    started_on: date
    place_id: str | None = None


@dataclass(frozen=True)
class RecordAttendance:
    attended_on: date


@dataclass(frozen=True)
class EndParticipation:
    ended_on: date
    reason: str


@dataclass
class Participation(Aggregate):
    participation_id: str = ""
    person_id: str = ""
    resource_id: str = ""
    place_id: str | None = None
    district_id: str = ""
    consent_id: str = ""
    started_on: date = date.min
    attended: list[date] = field(default_factory=list)
    ended_on: date | None = None
    end_reason: str | None = None

    def __post_init__(self) -> None:
        Aggregate.__init__(self)

    @property
    def state(self) -> str:
        if not self.exists:
            return "none"
        return "ended" if self.ended_on is not None else "active"

    def start(
        self, command: StartParticipation, consents: Iterable[Consent], requester: Requester, *, erased: bool = False
    ) -> None:
        if self.exists:
            raise InvalidTransition("この参加支援は既に始まっています。", "The participation already started.")
        if erased:
            raise ConsentRequired(
                "この方の情報は消去されています。参加支援はできません。",
                "The person was erased; participation support is not possible.",
                reason="person_erased",
            )
        mine = [c for c in consents if c.person_id == command.person_id]
        consent = consent_allowing(mine, requester, command.started_on)
        if consent is None:
            raise ConsentRequired(
                "本人の同意（参加支援、四者での共有、または貴機関を指定した同意）が確認できないため、参加支援を開始できません。",
                "No consent of the person covers participation support by your agency "
                "(participation, four_windows of your district, or named_agencies naming you).",
                reason="no_consent",
            )
        self._trigger(
            ParticipationStarted(
                participation_id=command.participation_id,
                person_id=command.person_id,
                district_id=command.district_id,
                resource_id=command.resource_id,
                place_id=command.place_id,
                consent_id=consent.consent_id,
                started_on=command.started_on,
                fiscal_year=fiscal_year_of(command.started_on),
            )
        )

    def record_attendance(self, command: RecordAttendance) -> None:
        self._must_be_active()
        if command.attended_on < self.started_on:
            raise InvalidCommand("出席日が参加開始日より前です。", "attended_on is before the participation started.")
        if command.attended_on in self.attended:
            raise InvalidTransition("この日の出席は記録済みです。", "Attendance on that day is already recorded.")
        self._trigger(
            AttendanceRecorded(
                participation_id=self.participation_id, person_id=self.person_id, attended_on=command.attended_on
            )
        )

    def end(self, command: EndParticipation) -> None:
        self._must_be_active()
        if command.reason not in END_REASONS:
            raise InvalidCommand("終了理由が不正です。", f"reason must be one of {', '.join(END_REASONS)}.")
        if command.ended_on < self.started_on:
            raise InvalidCommand("終了日が参加開始日より前です。", "ended_on is before the participation started.")
        self._trigger(
            ParticipationEnded(
                participation_id=self.participation_id,
                person_id=self.person_id,
                ended_on=command.ended_on,
                reason=command.reason,
            )
        )

    def _must_be_active(self) -> None:
        if self.state != "active":
            raise InvalidTransition(
                "参加支援は実施中ではありません。", "The participation is not active.", state=self.state
            )

    def apply(self, event: EventPayload) -> None:
        if isinstance(event, ParticipationStarted):
            self.participation_id = event.participation_id
            self.person_id = event.person_id
            self.resource_id = event.resource_id
            self.place_id = event.place_id
            self.district_id = event.district_id
            self.consent_id = event.consent_id
            self.started_on = event.started_on
        elif isinstance(event, AttendanceRecorded):
            self.attended.append(event.attended_on)
        elif isinstance(event, ParticipationEnded):
            self.ended_on = event.ended_on
            self.end_reason = event.reason
