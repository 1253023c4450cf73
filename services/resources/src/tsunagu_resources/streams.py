"""Loading aggregates from the event store inside the caller's transaction.

Commands and consumers read a stream on the same connection they append with:
on SQLite a second writer connection would wait for the lock this one holds.
"""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events import EventRegistry
from tsunagu_events.aggregate import Aggregate
from tsunagu_events.registry import EventPayload
from tsunagu_platform.store import read_stream

A = TypeVar("A", bound=Aggregate)


async def read_payloads(conn: AsyncConnection, reg: EventRegistry, stream_id: str) -> list[EventPayload]:
    return [reg.decode(envelope) for envelope in await read_stream(conn, stream_id)]


async def load(conn: AsyncConnection, reg: EventRegistry, cls: type[A], stream_id: str) -> A:
    return cls.replay(await read_payloads(conn, reg, stream_id))
