"""The outbox relay: carries committed events from a service's database to Kafka.

Progress is the `published_at` mark on each outbox row, never a position in a
global sequence: rows commit out of sequence order under concurrency, and a relay
that remembers "last position sent" silently skips the late ones. Rows are
published in id order (so one stream's events, keyed by stream id, stay in order)
and marked only after the broker acknowledged them; a crash in between republishes,
which consumers absorb with their inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Row, bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tsunagu_events.binding import structured_to_kafka
from tsunagu_events.envelope import now

from tsunagu_platform.db import is_sqlite
from tsunagu_platform.kafka import OutgoingMessage, Publisher
from tsunagu_platform.metrics import RELAY_PUBLISHED
from tsunagu_platform.tables import events, outbox

log = structlog.get_logger("tsunagu.relay")

_PENDING = (
    select(outbox.c.id, outbox.c.topic, events.c.envelope)
    .join(events, events.c.event_id == outbox.c.event_id)
    .where(outbox.c.published_at.is_(None))
    .order_by(outbox.c.id)
    .limit(bindparam("limit"))
)
_MARK = (
    update(outbox)
    .where(outbox.c.id.in_(bindparam("ids", expanding=True)))
    .values(published_at=bindparam("published_at"), attempts=outbox.c.attempts + 1)
)

CRASH_HOOK = "TSUNAGU_FAULT_RELAY_CRASH_AFTER_PUBLISH"
"""Test hook: when set, the relay kills its own process right after publishing, before marking."""

_RELAY_LOCK_ID = 0x7453_7547  # PostgreSQL advisory lock: one relay per service database.


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        publisher: Publisher,
        *,
        service: str,
        batch_size: int = 500,
        idle_interval: float = 0.05,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.service = service
        self.batch_size = batch_size
        self.idle_interval = idle_interval
        self.clock = clock
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def notify(self) -> None:
        """Tell the relay new rows are committed, so it need not wait for the next poll."""
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished rows; returns how many were published."""
        if is_sqlite(self.engine):
            # One relay per SQLite file by construction. The connection goes back to the pool
            # while the broker is awaited: commands (and, under the in-memory test broker,
            # the consumers it calls inline) need the service's single writer connection.
            async with self.engine.connect() as conn:
                rows = await self._pending(conn)
            if rows:
                await self._publish(rows)
                async with self.engine.begin() as conn:
                    await self._mark(conn, rows)
        else:
            async with self.engine.connect() as conn:
                # Replicas of a service share the database; only one may relay at a time,
                # or two relays could interleave one stream's events.
                locked = await conn.scalar(text(f"SELECT pg_try_advisory_lock({_RELAY_LOCK_ID})"))
                if not locked:
                    return 0
                try:
                    rows = await self._pending(conn)
                    await conn.rollback()
                    if rows:
                        await self._publish(rows)
                        await self._mark(conn, rows)
                        await conn.commit()
                finally:
                    await conn.rollback()
                    await conn.execute(text(f"SELECT pg_advisory_unlock({_RELAY_LOCK_ID})"))
                    await conn.commit()
        if not rows:
            return 0
        RELAY_PUBLISHED.labels(self.service).inc(len(rows))
        log.debug("relay.published", count=len(rows), first_row=rows[0][0], last_row=rows[-1][0])
        return len(rows)

    async def _pending(self, conn: AsyncConnection) -> list[Row[Any, Any, Any]]:
        return list((await conn.execute(_PENDING, {"limit": self.batch_size})).all())

    async def _publish(self, rows: list[Row[Any, Any, Any]]) -> None:
        messages = []
        for _id, topic, envelope_text in rows:
            # The stored text was validated when it was appended (and the hash chain guards it).
            key, headers, value = structured_to_kafka(json.loads(envelope_text))
            messages.append(OutgoingMessage(topic, key, value, headers))
        await self.publisher.publish(messages)
        if os.environ.get(CRASH_HOOK):
            log.warning("relay.fault_injected", rows=len(rows))
            os.kill(os.getpid(), signal.SIGKILL)

    async def _mark(self, conn: AsyncConnection, rows: list[Row[Any, Any, Any]]) -> None:
        await conn.execute(_MARK, {"ids": [row[0] for row in rows], "published_at": self.clock()})

    async def run(self) -> None:
        """Relay until stopped; a broker or database failure is logged and retried with backoff."""
        backoff = 0.2
        while not self._stopping.is_set():
            try:
                published = await self.publish_pending()
                backoff = 0.2
            except Exception as error:  # the relay must outlive broker and database outages
                log.warning("relay.failed", error_type=type(error).__name__, retry_in=backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if published < self.batch_size:
                await self._sleep(self.idle_interval)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
