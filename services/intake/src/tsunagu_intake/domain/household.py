"""Household (世帯): people whose needs belong together, as in 8050 and double-care situations."""

from __future__ import annotations

from dataclasses import dataclass

from tsunagu_events.aggregate import Aggregate
from tsunagu_events.contracts.intake import HouseholdLinked, HouseholdSituation
from tsunagu_events.registry import EventPayload

from tsunagu_intake.domain.errors import DomainError


@dataclass(frozen=True)
class LinkHousehold:
    household_id: str
    person_ids: list[str]
    situation: HouseholdSituation


class Household(Aggregate):
    def __init__(self) -> None:
        super().__init__()
        self.person_ids: list[str] = []

    def apply(self, event: EventPayload) -> None:
        if isinstance(event, HouseholdLinked):
            self.person_ids = list(event.person_ids)

    def link(self, command: LinkHousehold) -> None:
        if self.exists:
            raise DomainError("household already linked")
        members = list(dict.fromkeys(command.person_ids))
        if len(members) < 2:
            raise DomainError("a household links two or more different persons", field="person_ids")
        self._trigger(
            HouseholdLinked(household_id=command.household_id, person_ids=members, situation=command.situation)
        )
