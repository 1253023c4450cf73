"""Loading aggregates from the store and appending their decisions in one transaction."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events import Actor, EventPayload
from tsunagu_platform.auth import Principal
from tsunagu_platform.runtime import ServiceRuntime
from tsunagu_platform.store import EventContext, NewEvent


async def load(runtime: ServiceRuntime, stream_id: str) -> list[EventPayload]:
    envelopes = await runtime.store.read(stream_id)
    return [runtime.reg.decode(e) for e in envelopes]


async def load_in(runtime: ServiceRuntime, conn: AsyncConnection, stream_id: str) -> list[EventPayload]:
    """The stream read on the caller's connection, so load, decide and append share one transaction."""
    return [runtime.reg.decode(e) for e in await runtime.store.read(stream_id, conn=conn)]


def context_of(runtime: ServiceRuntime, principal: Principal | None) -> EventContext:
    actor = (
        Actor(agency=principal.agency[:64] or "unknown", staff=principal.staff[:64] or "unknown") if principal else None
    )
    return EventContext(tenant=runtime.settings.tenant, source=runtime.settings.source, actor=actor)


async def append(
    runtime: ServiceRuntime,
    conn: AsyncConnection,
    stream_id: str,
    expected_version: int,
    payloads: Sequence[EventPayload],
    principal: Principal | None,
) -> None:
    await runtime.append(
        stream_id, expected_version, [NewEvent(p) for p in payloads], context_of(runtime, principal), conn=conn
    )
