"""Time travel: which resources were active in a district on a past date.

Answered from the event history itself (registrations and status changes with
their effective dates), not from the current read model, so a resource closed
last month still counts as active on a day before it closed. `known_at` answers
as the directory stood at a past moment (by recording time), for audits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from tsunagu_events.contracts.resources import (
    ResourceDetailsChanged,
    ResourceKind,
    ResourceRegistered,
    ResourceStatus,
    ResourceStatusChanged,
)
from tsunagu_events.registry import EventRegistry
from tsunagu_platform.store import deserialise
from tsunagu_platform.tables import events

from tsunagu_resources.domain.directory import status_on

TYPES = [ResourceRegistered.event_type, ResourceStatusChanged.event_type, ResourceDetailsChanged.event_type]


@dataclass
class ResourceAsOf:
    resource_id: str
    district_id: str
    kind: ResourceKind
    organization_name: str
    service_name: str
    history: list[tuple[date, ResourceStatus]]

    def status_on(self, day: date) -> ResourceStatus | None:
        return status_on(self.history, day)


async def resources_in_district(
    reader: AsyncEngine, reg: EventRegistry, district_id: str, *, known_at: datetime | None = None
) -> list[ResourceAsOf]:
    query = select(events.c.envelope).where(events.c.event_type.in_(TYPES), events.c.stream_id.like("resource-%"))
    if known_at is not None:
        # Recording times are stored in UTC; SQLite compares them as text, so compare like with like.
        query = query.where(events.c.recorded_at <= known_at.astimezone(UTC))
    found: dict[str, ResourceAsOf] = {}
    async with reader.connect() as conn:
        rows = (await conn.execute(query.order_by(events.c.position))).scalars().all()
    for text in rows:
        payload = reg.decode(deserialise(text))
        if isinstance(payload, ResourceRegistered):
            if payload.district_id == district_id:
                found[payload.resource_id] = ResourceAsOf(
                    payload.resource_id,
                    payload.district_id,
                    payload.kind,
                    payload.organization_name,
                    payload.service_name,
                    [(payload.effective_on, payload.status)],
                )
        elif isinstance(payload, ResourceStatusChanged | ResourceDetailsChanged):
            current = found.get(payload.resource_id)
            if current is None:
                continue
            if isinstance(payload, ResourceStatusChanged):
                current.history.append((payload.effective_on, payload.status))
            elif payload.service_name:
                current.service_name = payload.service_name
    return list(found.values())


async def active_on(
    reader: AsyncEngine, reg: EventRegistry, district_id: str, day: date, *, known_at: datetime | None = None
) -> list[ResourceAsOf]:
    candidates = await resources_in_district(reader, reg, district_id, known_at=known_at)
    return sorted((r for r in candidates if r.status_on(day) == ResourceStatus.ACTIVE), key=lambda r: r.resource_id)
