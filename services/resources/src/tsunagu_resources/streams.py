"""Loading aggregates from the event store inside the caller's transaction.

Commands and consumers read a stream on the same connection they append with:
on SQLite a second writer connection would wait for the lock this one holds.
"""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events import EventRegistry
from tsunagu_events.aggregate import Aggregate
from tsunagu_events.registry import EventPayload
from tsunagu_platform.store import deserialise
from tsunagu_platform.tables import events

A = TypeVar("A", bound=Aggregate)


async def read_payloads(conn: AsyncConnection, reg: EventRegistry, stream_id: str) -> list[EventPayload]:
    rows = (
        await conn.execute(
            select(events.c.envelope).where(events.c.stream_id == stream_id).order_by(events.c.stream_version)
        )
    ).scalars()
    return [reg.decode(deserialise(text)) for text in rows]


async def load(conn: AsyncConnection, reg: EventRegistry, cls: type[A], stream_id: str) -> A:
    return cls.replay(await read_payloads(conn, reg, stream_id))
