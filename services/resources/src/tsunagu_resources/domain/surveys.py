"""Visit surveys (訪問調査), usable places (活用できる場) and their use (場の活用実績).

The welfare council counts these per fiscal year in the seed's table, so every
event carries the fiscal year of its date (judged in Japan's 1 April calendar).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from tsunagu_events.aggregate import Aggregate
from tsunagu_events.contracts.common import fiscal_year_of
from tsunagu_events.contracts.resources import (
    VISIT_CATEGORY_LABELS_JA,
    PlaceKind,
    PlaceUsed,
    ResourceKind,
    ResourceVisited,
    UsablePlaceOffered,
    VisitCategory,
)
from tsunagu_events.registry import EventPayload

from tsunagu_resources.domain.errors import InvalidCommand, InvalidTransition

__all__ = ["VISIT_CATEGORY_LABELS_JA"]

PLACE_KIND_LABELS_JA = {
    PlaceKind.ROOM: "部屋",
    PlaceKind.HALL: "ホール",
    PlaceKind.GARDEN: "庭",
    PlaceKind.FARM: "農園",
    PlaceKind.KITCHEN: "調理室",
    PlaceKind.OTHER: "その他",
}

FINDING_LABELS_JA = {
    "shortage_of_activity_staff": "活動の担い手不足",
    "needs_venue": "活動場所が必要",
    "wants_volunteers": "ボランティアを希望",
    "wants_participants": "参加者を増やしたい",
    "can_offer_place": "場を提供できる",
    "other": "その他",
}
"""Finding codes staff pick from; other codes are accepted as they are (the list grows in practice)."""

CATEGORY_OF_KIND = {
    ResourceKind.SALON: VisitCategory.SALON_MINI_DAY,
    ResourceKind.MINI_DAY: VisitCategory.SALON_MINI_DAY,
    ResourceKind.SCHOOL: VisitCategory.SCHOOL_FACILITY_NURSERY,
    ResourceKind.FACILITY: VisitCategory.SCHOOL_FACILITY_NURSERY,
    ResourceKind.NURSERY: VisitCategory.SCHOOL_FACILITY_NURSERY,
    ResourceKind.BUSINESS: VisitCategory.BUSINESS_NPO,
    ResourceKind.NPO: VisitCategory.BUSINESS_NPO,
}
"""The seed's visit column a resource kind falls in (neighbourhood associations and others: the caller says)."""


@dataclass(frozen=True)
class RecordVisit:
    visit_id: str
    district_id: str
    category: VisitCategory
    visited_on: date
    resource_id: str | None = None
    findings: tuple[str, ...] = ()
    follow_up: str | None = None


@dataclass
class Visit(Aggregate):
    visit_id: str = ""
    district_id: str = ""
    category: VisitCategory = VisitCategory.SALON_MINI_DAY
    resource_id: str | None = None
    visited_on: date = date.min
    findings: list[str] = field(default_factory=list)
    follow_up: str | None = None

    def __post_init__(self) -> None:
        Aggregate.__init__(self)

    def record(self, command: RecordVisit) -> None:
        if self.exists:
            raise InvalidTransition("この訪問は既に記録されています。", "The visit is already recorded.")
        findings = list(dict.fromkeys(command.findings))
        self._trigger(
            ResourceVisited(
                visit_id=command.visit_id,
                district_id=command.district_id,
                category=command.category,
                resource_id=command.resource_id,
                visited_on=command.visited_on,
                fiscal_year=fiscal_year_of(command.visited_on),
                findings=findings,
                follow_up=command.follow_up,
            )
        )

    def apply(self, event: EventPayload) -> None:
        if isinstance(event, ResourceVisited):
            self.visit_id = event.visit_id
            self.district_id = event.district_id
            self.category = event.category
            self.resource_id = event.resource_id
            self.visited_on = event.visited_on
            self.findings = list(event.findings)
            self.follow_up = event.follow_up


def check_visit_category(kind: ResourceKind, category: VisitCategory) -> None:
    """A visit to a known resource counts in the column of its kind."""
    expected = CATEGORY_OF_KIND.get(kind)
    if expected is not None and expected != category:
        raise InvalidCommand(
            f"この資源の訪問区分は「{VISIT_CATEGORY_LABELS_JA[expected]}」です。",
            f"A {kind.value} is visited under category {expected.value}.",
            expected=expected.value,
        )


@dataclass(frozen=True)
class OfferPlace:
    place_id: str
    resource_id: str
    district_id: str
    kind: PlaceKind
    offered_on: date
    conditions: str | None = None


@dataclass(frozen=True)
class UsePlace:
    use_id: str
    activity: str
    used_on: date
    participants: int | None = None


@dataclass
class Place(Aggregate):
    place_id: str = ""
    resource_id: str = ""
    district_id: str = ""
    kind: PlaceKind = PlaceKind.OTHER
    conditions: str | None = None
    offered_on: date = date.min
    uses: list[PlaceUsed] = field(default_factory=list)

    def __post_init__(self) -> None:
        Aggregate.__init__(self)

    def offer(self, command: OfferPlace) -> None:
        if self.exists:
            raise InvalidTransition("この場は既に登録されています。", "The place is already offered.")
        self._trigger(
            UsablePlaceOffered(
                place_id=command.place_id,
                resource_id=command.resource_id,
                district_id=command.district_id,
                kind=command.kind,
                conditions=command.conditions,
                offered_on=command.offered_on,
                fiscal_year=fiscal_year_of(command.offered_on),
            )
        )

    def use(self, command: UsePlace) -> None:
        if not self.exists:
            raise InvalidTransition("活用できる場が登録されていません。", "The place was never offered.")
        if command.used_on < self.offered_on:
            raise InvalidCommand(
                "活用日が場の提供日より前です。",
                f"used_on is before the place was offered ({self.offered_on.isoformat()}).",
            )
        if any(u.use_id == command.use_id for u in self.uses):
            raise InvalidTransition("この活用実績は既に記録されています。", "This use is already recorded.")
        self._trigger(
            PlaceUsed(
                place_id=self.place_id,
                use_id=command.use_id,
                district_id=self.district_id,
                activity=command.activity,
                used_on=command.used_on,
                fiscal_year=fiscal_year_of(command.used_on),
                participants=command.participants,
            )
        )

    def apply(self, event: EventPayload) -> None:
        if isinstance(event, UsablePlaceOffered):
            self.place_id = event.place_id
            self.resource_id = event.resource_id
            self.district_id = event.district_id
            self.kind = event.kind
            self.conditions = event.conditions
            self.offered_on = event.offered_on
        elif isinstance(event, PlaceUsed):
            self.uses.append(event)
