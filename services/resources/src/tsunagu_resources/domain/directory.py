"""The local resource directory (地域資源), modelled on Open Referral HSDS 3.

A resource is an organisation offering a service at a location in one district.
Its status carries the date from which it holds, so "what was active on D" can be
answered from the history; a verification records who checked the entry and when,
because an edit is no proof that anyone looked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from tsunagu_events.aggregate import Aggregate
from tsunagu_events.contracts.common import fiscal_year_of
from tsunagu_events.contracts.resources import (
    ResourceDetailsChanged,
    ResourceIdentified,
    ResourceKind,
    ResourceRegistered,
    ResourceStatus,
    ResourceStatusChanged,
    ResourceVerified,
    Schedule,
)
from tsunagu_events.registry import EventPayload

from tsunagu_resources.domain.errors import InvalidCommand, InvalidTransition

KIND_LABELS_JA = {
    ResourceKind.SALON: "サロン",
    ResourceKind.MINI_DAY: "ミニデイ",
    ResourceKind.SCHOOL: "学校",
    ResourceKind.FACILITY: "施設",
    ResourceKind.NURSERY: "保育園",
    ResourceKind.BUSINESS: "事業者",
    ResourceKind.NPO: "NPO",
    ResourceKind.NEIGHBOURHOOD_ASSOCIATION: "町会・自治会",
    ResourceKind.OTHER: "その他",
}

STATUS_LABELS_JA = {
    ResourceStatus.ACTIVE: "活動中",
    ResourceStatus.INACTIVE: "休止",
    ResourceStatus.TEMPORARILY_CLOSED: "一時休止",
    ResourceStatus.DEFUNCT: "廃止",
}


@dataclass(frozen=True)
class RegisterResource:
    resource_id: str
    district_id: str
    kind: ResourceKind
    organization_name: str
    service_name: str
    effective_on: date
    description: str | None = None
    address: str | None = None
    schedule: Schedule | None = None
    eligibility: str | None = None
    capacity: int | None = None
    status: ResourceStatus = ResourceStatus.ACTIVE


@dataclass(frozen=True)
class ChangeResourceDetails:
    service_name: str | None = None
    description: str | None = None
    schedule: Schedule | None = None
    eligibility: str | None = None
    capacity: int | None = None


@dataclass(frozen=True)
class ChangeResourceStatus:
    status: ResourceStatus
    effective_on: date


@dataclass(frozen=True)
class VerifyResource:
    verified_on: date
    verified_by_agency_id: str


@dataclass(frozen=True)
class IdentifyResource:
    """資源把握: its capacity and needs were recorded on that day."""

    identified_on: date


@dataclass
class Resource(Aggregate):
    resource_id: str = ""
    district_id: str = ""
    kind: ResourceKind = ResourceKind.OTHER
    organization_name: str = ""
    service_name: str = ""
    description: str | None = None
    address: str | None = None
    schedule: Schedule | None = None
    eligibility: str | None = None
    capacity: int | None = None
    status: ResourceStatus = ResourceStatus.ACTIVE
    status_since: date = date.min
    last_verified_on: date | None = None
    last_verified_by: str | None = None
    identified_on: date | None = None
    history: list[tuple[date, ResourceStatus]] = field(default_factory=list)

    def __post_init__(self) -> None:
        Aggregate.__init__(self)

    def register(self, command: RegisterResource) -> None:
        if self.exists:
            raise InvalidTransition("この資源は既に登録されています。", "The resource is already registered.")
        self._trigger(
            ResourceRegistered(
                resource_id=command.resource_id,
                district_id=command.district_id,
                kind=command.kind,
                organization_name=command.organization_name,
                service_name=command.service_name,
                description=command.description,
                address=command.address,
                schedule=command.schedule,
                eligibility=command.eligibility,
                capacity=command.capacity,
                status=command.status,
                effective_on=command.effective_on,
            )
        )

    def change_details(self, command: ChangeResourceDetails) -> None:
        self._must_be_listed()
        if all(getattr(command, name) is None for name in command.__dataclass_fields__):
            raise InvalidCommand("変更する項目がありません。", "Nothing to change.")
        self._trigger(
            ResourceDetailsChanged(
                resource_id=self.resource_id,
                service_name=command.service_name,
                description=command.description,
                schedule=command.schedule,
                eligibility=command.eligibility,
                capacity=command.capacity,
            )
        )

    def change_status(self, command: ChangeResourceStatus) -> None:
        self._must_be_listed()
        if command.status == self.status:
            raise InvalidTransition(
                "既にその状態です。", f"The resource is already {self.status.value}.", status=self.status.value
            )
        if command.effective_on < self.status_since:
            raise InvalidCommand(
                "効力発生日が現在の状態の開始日より前です。",
                f"effective_on is before the current status took effect ({self.status_since.isoformat()}).",
            )
        self._trigger(
            ResourceStatusChanged(
                resource_id=self.resource_id,
                district_id=self.district_id,
                status=command.status,
                effective_on=command.effective_on,
            )
        )

    def verify(self, command: VerifyResource) -> None:
        self._must_exist()
        self._trigger(
            ResourceVerified(
                resource_id=self.resource_id,
                verified_on=command.verified_on,
                verified_by_agency_id=command.verified_by_agency_id,
            )
        )

    def identify(self, command: IdentifyResource) -> None:
        self._must_exist()
        self._trigger(
            ResourceIdentified(
                resource_id=self.resource_id,
                district_id=self.district_id,
                identified_on=command.identified_on,
                fiscal_year=fiscal_year_of(command.identified_on),
            )
        )

    def is_active_on(self, day: date) -> bool:
        return status_on(self.history, day) == ResourceStatus.ACTIVE

    def _must_exist(self) -> None:
        if not self.exists:
            raise InvalidTransition("資源が登録されていません。", "The resource is not registered.")

    def _must_be_listed(self) -> None:
        self._must_exist()
        if self.status == ResourceStatus.DEFUNCT:
            raise InvalidTransition(
                "廃止された資源は変更できません。", "A defunct resource cannot change.", status=self.status.value
            )

    def apply(self, event: EventPayload) -> None:
        if isinstance(event, ResourceRegistered):
            self.resource_id = event.resource_id
            self.district_id = event.district_id
            self.kind = event.kind
            self.organization_name = event.organization_name
            self.service_name = event.service_name
            self.description = event.description
            self.address = event.address
            self.schedule = event.schedule
            self.eligibility = event.eligibility
            self.capacity = event.capacity
            self.status = event.status
            self.status_since = event.effective_on
            self.history.append((event.effective_on, event.status))
        elif isinstance(event, ResourceDetailsChanged):
            self.service_name = event.service_name or self.service_name
            self.description = event.description if event.description is not None else self.description
            self.schedule = event.schedule or self.schedule
            self.eligibility = event.eligibility if event.eligibility is not None else self.eligibility
            self.capacity = event.capacity if event.capacity is not None else self.capacity
        elif isinstance(event, ResourceStatusChanged):
            self.status = event.status
            self.status_since = event.effective_on
            self.history.append((event.effective_on, event.status))
        elif isinstance(event, ResourceVerified):
            self.last_verified_on = event.verified_on
            self.last_verified_by = event.verified_by_agency_id
        elif isinstance(event, ResourceIdentified):
            self.identified_on = event.identified_on


def status_on(history: list[tuple[date, ResourceStatus]], day: date) -> ResourceStatus | None:
    """The status holding on `day`: the last change (in recorded order) effective on or before it.

    None before the resource existed. Recorded order breaks ties between changes
    effective on the same day, so a correction recorded later wins.
    """
    current: ResourceStatus | None = None
    best: date | None = None
    for effective_on, status in history:
        if effective_on <= day and (best is None or effective_on >= best):
            current, best = status, effective_on
    return current


def active_on(histories: dict[str, list[tuple[date, ResourceStatus]]], day: date) -> list[str]:
    """Time travel: the resources whose status on `day` was active."""
    return sorted(rid for rid, history in histories.items() if status_on(history, day) == ResourceStatus.ACTIVE)
