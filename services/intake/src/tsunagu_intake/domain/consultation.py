"""Consultation (相談): received at any window on any topic; corrections are events, never edits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tsunagu_events.aggregate import Aggregate
from tsunagu_events.contracts.common import ConsultationCategory, Sealed, fiscal_year_of
from tsunagu_events.contracts.intake import (
    Channel,
    ConsultationOutcomeChanged,
    ConsultationReceived,
    ConsultationReclassified,
    ConsultedBy,
    GapNeedMarked,
    Outcome,
    Via,
)
from tsunagu_events.registry import EventPayload

from tsunagu_intake.domain.categories import is_compound, is_expanded
from tsunagu_intake.domain.errors import DomainError


@dataclass(frozen=True)
class Window:
    """A window as the reference data describes it (validated before the command is built)."""

    window_id: str
    window_type: str
    district_id: str
    area_id: str


@dataclass(frozen=True)
class ReceiveConsultation:
    consultation_id: str
    window: Window
    received_at: datetime
    channel: Channel
    consulted_by: ConsultedBy
    categories: list[ConsultationCategory]
    outcome: Outcome
    person_id: str | None = None
    summary: Sealed | None = None
    gap_need: bool = False
    via: Via = Via.HTTP
    agency_event: str | None = None


@dataclass(frozen=True)
class ReclassifyConsultation:
    categories: list[ConsultationCategory]


@dataclass(frozen=True)
class ChangeOutcome:
    outcome: Outcome


@dataclass(frozen=True)
class MarkGapNeed:
    marked: bool = True


def _unique(categories: list[ConsultationCategory]) -> list[ConsultationCategory]:
    return list(dict.fromkeys(categories))


class Consultation(Aggregate):
    def __init__(self) -> None:
        super().__init__()
        self.consultation_id = ""
        self.window_type = ""
        self.district_id = ""
        self.categories: list[ConsultationCategory] = []
        self.outcome: Outcome | None = None
        self.gap_need = False
        self.expanded = False
        self.compound_need = False
        self.person_id: str | None = None

    def apply(self, event: EventPayload) -> None:
        if isinstance(event, ConsultationReceived):
            self.consultation_id = event.consultation_id
            self.window_type = event.window_type
            self.district_id = event.district_id
            self.categories = list(event.categories)
            self.outcome = event.outcome
            self.gap_need = event.gap_need
            self.expanded = event.expanded
            self.compound_need = event.compound_need
            self.person_id = event.person_id
        elif isinstance(event, ConsultationReclassified):
            self.categories = list(event.categories)
            self.expanded = event.expanded
            self.compound_need = event.compound_need
        elif isinstance(event, ConsultationOutcomeChanged):
            self.outcome = event.outcome
        elif isinstance(event, GapNeedMarked):
            self.gap_need = event.marked

    def _require(self) -> None:
        if not self.exists:
            raise DomainError("consultation not received")

    def receive(self, command: ReceiveConsultation) -> None:
        if self.exists:
            raise DomainError("consultation already received")
        categories = _unique(command.categories)
        if not categories:
            raise DomainError("at least one category is required", field="categories")
        window = command.window
        self._trigger(
            ConsultationReceived(
                consultation_id=command.consultation_id,
                window_id=window.window_id,
                window_type=window.window_type,
                district_id=window.district_id,
                area_id=window.area_id,
                received_at=command.received_at,
                fiscal_year=fiscal_year_of(command.received_at),
                channel=command.channel,
                consulted_by=command.consulted_by,
                categories=categories,
                expanded=is_expanded(window.window_type, categories),
                compound_need=is_compound(categories),
                gap_need=command.gap_need,
                person_id=command.person_id,
                summary=command.summary,
                outcome=command.outcome,
                via=command.via,
                agency_event=command.agency_event,
            )
        )

    def reclassify(self, command: ReclassifyConsultation) -> None:
        self._require()
        categories = _unique(command.categories)
        if not categories:
            raise DomainError("at least one category is required", field="categories")
        if set(categories) == set(self.categories):
            return
        self._trigger(
            ConsultationReclassified(
                consultation_id=self.consultation_id,
                categories=categories,
                expanded=is_expanded(self.window_type, categories),
                compound_need=is_compound(categories),
            )
        )

    def change_outcome(self, command: ChangeOutcome) -> None:
        self._require()
        if command.outcome != self.outcome:
            self._trigger(ConsultationOutcomeChanged(consultation_id=self.consultation_id, outcome=command.outcome))

    def mark_gap_need(self, command: MarkGapNeed) -> None:
        self._require()
        if command.marked != self.gap_need:
            self._trigger(
                GapNeedMarked(
                    consultation_id=self.consultation_id,
                    district_id=self.district_id,
                    categories=self.categories,
                    marked=command.marked,
                )
            )
