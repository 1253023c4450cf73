"""Companion-support case (伴走型支援): a lead agency walking alongside a person over time.

A case opens from a consultation and changes only by events: lead handover,
approach, plan versions, contacts, reviews, close and reopen. Nothing closes a
case by itself; a staying-connected case (つながり続ける支援) is not closed because
its goals were "met" (staying connected has no finish line), only for a reason
outside the support (moved away, declined, deceased, transferred, other).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from tsunagu_events.aggregate import Aggregate
from tsunagu_events.contracts.common import Sealed
from tsunagu_events.contracts.intake import (
    Approach,
    ApproachChanged,
    CaseClosed,
    CaseOpened,
    CaseReopened,
    CaseReviewed,
    ContactKind,
    ContactRecorded,
    LeadAgencyHandedOver,
    PlanGoal,
    SupportPlanAdopted,
    Via,
)
from tsunagu_events.registry import EventPayload

from tsunagu_intake.domain.errors import DomainError

CLOSE_REASONS = ("goals_met", "moved_away", "declined_support", "deceased", "transferred", "other")


@dataclass(frozen=True)
class OpenCase:
    case_id: str
    person_id: str
    lead_agency_id: str
    district_id: str
    approach: Approach
    at: datetime
    consultation_id: str | None = None


@dataclass(frozen=True)
class HandOverLead:
    to_agency_id: str
    at: datetime
    referral_id: str | None = None


@dataclass(frozen=True)
class ChangeApproach:
    approach: Approach


@dataclass(frozen=True)
class AdoptPlan:
    goals: list[PlanGoal]
    review_due: date
    at: datetime
    meeting_id: str | None = None


@dataclass(frozen=True)
class RecordContact:
    contact_id: str
    kind: ContactKind
    at: datetime
    agency_id: str
    note: Sealed | None = None
    via: Via = Via.HTTP


@dataclass(frozen=True)
class ReviewCase:
    at: datetime
    next_review_due: date
    note: Sealed | None = None


@dataclass(frozen=True)
class CloseCase:
    reason: str
    at: datetime


@dataclass(frozen=True)
class ReopenCase:
    at: datetime


@dataclass
class CaseState:
    open: bool = False
    lead_agency_id: str = ""
    approach: Approach = Approach.PROBLEM_SOLVING
    plan_version: int = 0
    review_due: date | None = None
    contacts: list[str] = field(default_factory=list)
    meetings_planned: set[str] = field(default_factory=set)


class Case(Aggregate):
    def __init__(self) -> None:
        super().__init__()
        self.case_id = ""
        self.person_id = ""
        self.district_id = ""
        self.state = CaseState()

    def apply(self, event: EventPayload) -> None:
        s = self.state
        if isinstance(event, CaseOpened):
            self.case_id, self.person_id, self.district_id = event.case_id, event.person_id, event.district_id
            s.open, s.lead_agency_id, s.approach = True, event.lead_agency_id, event.approach
        elif isinstance(event, LeadAgencyHandedOver):
            s.lead_agency_id = event.to_agency_id
        elif isinstance(event, ApproachChanged):
            s.approach = event.approach
        elif isinstance(event, SupportPlanAdopted):
            s.plan_version, s.review_due = event.plan_version, event.review_due
            if event.meeting_id:
                s.meetings_planned.add(event.meeting_id)
        elif isinstance(event, ContactRecorded):
            s.contacts.append(event.contact_id)
        elif isinstance(event, CaseReviewed):
            s.review_due = event.next_review_due
        elif isinstance(event, CaseClosed):
            s.open = False
        elif isinstance(event, CaseReopened):
            s.open = True

    @property
    def is_open(self) -> bool:
        return self.state.open

    def review_overdue(self, today: date) -> bool:
        """An open case whose review date has passed; visible, never acted on automatically."""
        return self.state.open and self.state.review_due is not None and self.state.review_due < today

    def _require_open(self) -> None:
        if not self.exists:
            raise DomainError("case not opened")
        if not self.state.open:
            raise DomainError("case is closed")

    def open(self, command: OpenCase) -> None:
        if self.exists:
            raise DomainError("case already opened")
        self._trigger(
            CaseOpened(
                case_id=command.case_id,
                person_id=command.person_id,
                consultation_id=command.consultation_id,
                lead_agency_id=command.lead_agency_id,
                district_id=command.district_id,
                approach=command.approach,
                opened_at=command.at,
            )
        )

    def hand_over_lead(self, command: HandOverLead) -> None:
        self._require_open()
        if command.to_agency_id == self.state.lead_agency_id:
            raise DomainError("agency already leads the case", field="to_agency_id")
        self._trigger(
            LeadAgencyHandedOver(
                case_id=self.case_id,
                from_agency_id=self.state.lead_agency_id,
                to_agency_id=command.to_agency_id,
                referral_id=command.referral_id,
                handed_over_at=command.at,
            )
        )

    def change_approach(self, command: ChangeApproach) -> None:
        self._require_open()
        if command.approach != self.state.approach:
            self._trigger(ApproachChanged(case_id=self.case_id, approach=command.approach))

    def adopt_plan(self, command: AdoptPlan) -> None:
        self._require_open()
        if command.review_due < command.at.date():
            raise DomainError("review date lies before adoption", field="review_due")
        self._trigger(
            SupportPlanAdopted(
                case_id=self.case_id,
                plan_version=self.state.plan_version + 1,
                goals=command.goals,
                review_due=command.review_due,
                adopted_at=command.at,
                meeting_id=command.meeting_id,
            )
        )

    def record_contact(self, command: RecordContact) -> None:
        self._require_open()
        if command.contact_id in self.state.contacts:
            return
        self._trigger(
            ContactRecorded(
                case_id=self.case_id,
                contact_id=command.contact_id,
                kind=command.kind,
                at=command.at,
                agency_id=command.agency_id,
                note=command.note,
                via=command.via,
            )
        )

    def review(self, command: ReviewCase) -> None:
        self._require_open()
        if command.next_review_due < command.at.date():
            raise DomainError("next review date lies before the review", field="next_review_due")
        self._trigger(
            CaseReviewed(
                case_id=self.case_id, reviewed_at=command.at, next_review_due=command.next_review_due, note=command.note
            )
        )

    def close(self, command: CloseCase) -> None:
        self._require_open()
        if command.reason not in CLOSE_REASONS:
            raise DomainError("unknown close reason", field="reason")
        if command.reason == "goals_met" and self.state.approach != Approach.PROBLEM_SOLVING:
            raise DomainError("a staying-connected case does not close because goals were met", field="reason")
        self._trigger(CaseClosed(case_id=self.case_id, reason=command.reason, closed_at=command.at))

    def reopen(self, command: ReopenCase) -> None:
        if not self.exists:
            raise DomainError("case not opened")
        if self.state.open:
            raise DomainError("case is open")
        self._trigger(CaseReopened(case_id=self.case_id, reopened_at=command.at))
