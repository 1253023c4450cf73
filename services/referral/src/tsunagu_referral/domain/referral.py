"""The closed-loop referral (つなぎ): from one agency to another until the loop is closed.

requested → accepted | declined | withdrawn; accepted → completed | withdrawn.
A referral still waiting for an answer after its due date becomes overdue once;
the flag never changes the state, so a late answer is still accepted.
The referral is the unit of consistency: every decision here is taken on the
referral's own events, and the store's expected version serialises writers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from tsunagu_events.contracts.common import ConsultationCategory, LegalBasis, Sealed
from tsunagu_events.contracts.referral import (
    ReferralAccepted,
    ReferralCompleted,
    ReferralDeclined,
    ReferralOutcome,
    ReferralOverdue,
    ReferralRequested,
    ReferralWithdrawn,
)
from tsunagu_events.registry import EventPayload

from tsunagu_referral.domain.errors import ConsentRequired, InvalidCommand, InvalidTransition


class ReferralState(StrEnum):
    NEW = "new"
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"
    COMPLETED = "completed"


STATE_LABELS_JA: dict[ReferralState, str] = {
    ReferralState.NEW: "未作成",
    ReferralState.REQUESTED: "依頼中",
    ReferralState.ACCEPTED: "受諾",
    ReferralState.DECLINED: "辞退",
    ReferralState.WITHDRAWN: "取下げ",
    ReferralState.COMPLETED: "完了",
}

OUTCOME_LABELS_JA: dict[ReferralOutcome, str] = {
    ReferralOutcome.GOT_HELP: "支援につながった",
    ReferralOutcome.COULD_NOT_CONTACT: "連絡がとれなかった",
    ReferralOutcome.NOT_ELIGIBLE: "対象外",
    ReferralOutcome.NO_CAPACITY: "受入れ余力なし",
    ReferralOutcome.NO_LONGER_INTERESTED: "本人の希望なし",
    ReferralOutcome.REFERRED_ELSEWHERE: "他機関へつないだ",
}

DECLINE_REASONS_JA = {
    "not_eligible": "対象外",
    "no_capacity": "受入れ余力なし",
    "wrong_agency": "担当機関違い",
    "other": "その他",
}

OPEN_STATES = frozenset({ReferralState.REQUESTED, ReferralState.ACCEPTED})


@dataclass(frozen=True)
class RequestReferral:
    referral_id: str
    person_id: str
    from_agency_id: str
    to_agency_id: str
    categories: Sequence[ConsultationCategory]
    due_on: date
    legal_basis: LegalBasis
    requested_at: datetime
    case_id: str | None = None
    reason: Sealed | None = None
    meeting_id: str | None = None
    handover_lead: bool = False
    consent_id: str | None = None
    """The consent relied on; the application finds it in the consent view (None: the person has none)."""
    statutory_meeting_known: bool = False
    """The meeting named is a support meeting (支援会議) this service holds."""


@dataclass(frozen=True)
class AcceptReferral:
    accepted_at: datetime


@dataclass(frozen=True)
class DeclineReferral:
    reason_code: str
    declined_at: datetime


@dataclass(frozen=True)
class WithdrawReferral:
    withdrawn_at: datetime


@dataclass(frozen=True)
class CompleteReferral:
    outcome: ReferralOutcome
    completed_at: datetime
    feedback: Sealed | None = None


@dataclass(frozen=True)
class MarkOverdue:
    today: date
    """Today in Japan time: a referral is overdue once today is after its due date."""
    detected_at: datetime


@dataclass
class Referral:
    referral_id: str
    state: ReferralState = ReferralState.NEW
    version: int = 0
    person_id: str = ""
    case_id: str | None = None
    from_agency_id: str = ""
    to_agency_id: str = ""
    due_on: date | None = None
    handover_lead: bool = False
    overdue: bool = False
    legal_basis: LegalBasis | None = None
    meeting_id: str | None = None
    outcome: ReferralOutcome | None = None
    decline_reason: str | None = None
    categories: list[ConsultationCategory] = field(default_factory=list)

    @classmethod
    def from_events(cls, referral_id: str, events: Iterable[EventPayload]) -> Referral:
        referral = cls(referral_id)
        for event in events:
            referral.apply(event)
        return referral

    # -- deciding -----------------------------------------------------------------

    def request(self, command: RequestReferral) -> list[EventPayload]:
        if self.state is not ReferralState.NEW:
            raise self._refuse("request")
        if command.from_agency_id == command.to_agency_id:
            raise InvalidCommand(
                "to_agency_id", "依頼元と同じ機関にはつなげません", "cannot refer to the referring agency itself"
            )
        if command.due_on < command.requested_at.date():
            raise InvalidCommand("due_on", "回答期限が依頼日より前です", "due date is before the request date")
        consent_id: str | None = None
        meeting_id: str | None = None
        if command.legal_basis is LegalBasis.SUPPORT_MEETING_STATUTORY:
            if not command.meeting_id:
                raise InvalidCommand(
                    "meeting_id",
                    "支援会議に基づくつなぎには会議IDが必要です",
                    "a referral under the support-meeting statutory basis names its support meeting",
                )
            if not command.statutory_meeting_known:
                raise InvalidCommand(
                    "meeting_id",
                    "指定された会議は支援会議ではありません",
                    "the meeting named is not a support meeting held by this service",
                    meeting_id=command.meeting_id,
                )
            meeting_id = command.meeting_id
        else:
            if command.consent_id is None:
                raise ConsentRequired(
                    "本人の同意がないため、つなぐことができません（同意の記録後に再度お試しください）",
                    "the person has not consented to this referral; record their consent first",
                    person_id=command.person_id,
                    to_agency_id=command.to_agency_id,
                )
            consent_id = command.consent_id
        return [
            ReferralRequested(
                referral_id=command.referral_id,
                person_id=command.person_id,
                case_id=command.case_id,
                from_agency_id=command.from_agency_id,
                to_agency_id=command.to_agency_id,
                categories=list(command.categories),
                reason=command.reason,
                due_on=command.due_on,
                legal_basis=command.legal_basis,
                consent_id=consent_id,
                meeting_id=meeting_id,
                handover_lead=command.handover_lead,
                requested_at=command.requested_at,
            )
        ]

    def accept(self, command: AcceptReferral) -> list[EventPayload]:
        if self.state is not ReferralState.REQUESTED:
            raise self._refuse("accept")
        return [
            ReferralAccepted(
                referral_id=self.referral_id,
                person_id=self.person_id,
                case_id=self.case_id,
                from_agency_id=self.from_agency_id,
                to_agency_id=self.to_agency_id,
                handover_lead=self.handover_lead and self.case_id is not None,
                accepted_at=command.accepted_at,
            )
        ]

    def decline(self, command: DeclineReferral) -> list[EventPayload]:
        if self.state is not ReferralState.REQUESTED:
            raise self._refuse("decline")
        if command.reason_code not in DECLINE_REASONS_JA:
            raise InvalidCommand("reason_code", "辞退理由が不明です", "unknown decline reason")
        return [
            ReferralDeclined(
                referral_id=self.referral_id,
                person_id=self.person_id,
                reason_code=command.reason_code,
                declined_at=command.declined_at,
            )
        ]

    def withdraw(self, command: WithdrawReferral) -> list[EventPayload]:
        if self.state not in OPEN_STATES:
            raise self._refuse("withdraw")
        return [
            ReferralWithdrawn(referral_id=self.referral_id, person_id=self.person_id, withdrawn_at=command.withdrawn_at)
        ]

    def complete(self, command: CompleteReferral) -> list[EventPayload]:
        if self.state is not ReferralState.ACCEPTED:
            raise self._refuse("complete")
        return [
            ReferralCompleted(
                referral_id=self.referral_id,
                person_id=self.person_id,
                outcome=command.outcome,
                feedback=command.feedback,
                completed_at=command.completed_at,
            )
        ]

    def mark_overdue(self, command: MarkOverdue) -> list[EventPayload]:
        """Nothing (not an error) when not due: the clock asks every referral it suspects."""
        if self.overdue or self.state is not ReferralState.REQUESTED or self.due_on is None:
            return []
        if command.today <= self.due_on:
            return []
        return [
            ReferralOverdue(
                referral_id=self.referral_id,
                from_agency_id=self.from_agency_id,
                to_agency_id=self.to_agency_id,
                due_on=self.due_on,
                detected_at=command.detected_at,
            )
        ]

    def _refuse(self, action: str) -> InvalidTransition:
        state = self.state
        return InvalidTransition(
            f"このつなぎは「{STATE_LABELS_JA[state]}」のため、{ACTION_LABELS_JA[action]}できません",
            f"cannot {action} a referral that is {state.value}",
            current_state=state.value,
            version=self.version,
        )

    # -- applying -----------------------------------------------------------------

    def apply(self, event: EventPayload) -> None:
        self.version += 1
        if isinstance(event, ReferralRequested):
            self.state = ReferralState.REQUESTED
            self.person_id = event.person_id
            self.case_id = event.case_id
            self.from_agency_id = event.from_agency_id
            self.to_agency_id = event.to_agency_id
            self.due_on = event.due_on
            self.handover_lead = event.handover_lead
            self.legal_basis = event.legal_basis
            self.meeting_id = event.meeting_id
            self.categories = list(event.categories)
        elif isinstance(event, ReferralAccepted):
            self.state = ReferralState.ACCEPTED
        elif isinstance(event, ReferralDeclined):
            self.state = ReferralState.DECLINED
            self.decline_reason = event.reason_code
        elif isinstance(event, ReferralWithdrawn):
            self.state = ReferralState.WITHDRAWN
        elif isinstance(event, ReferralCompleted):
            self.state = ReferralState.COMPLETED
            self.outcome = event.outcome
        elif isinstance(event, ReferralOverdue):
            self.overdue = True


ACTION_LABELS_JA = {
    "request": "依頼",
    "accept": "受諾",
    "decline": "辞退",
    "withdraw": "取下げ",
    "complete": "完了報告",
}
