"""Group commit on SQLite: concurrent commands share a transaction, yet each is all-or-nothing
and durable when its block returns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from tsunagu_platform.db import create_engine
from tsunagu_platform.group_commit import GroupCommit
from tsunagu_platform.store import ConcurrencyConflict, EventStore
from tsunagu_platform.tables import events, metadata, outbox

from .helpers import CONTEXT, tallies


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path}/group.db")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def count(engine: AsyncEngine, table: object = events) -> int:
    reader = create_engine(str(engine.url), for_writes=False)
    try:
        async with reader.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]
    finally:
        await reader.dispose()


def groups(service: str) -> tuple[float, float]:
    labels = {"service": service}
    return (
        REGISTRY.get_sample_value("tsunagu_group_commit_commands_count", labels) or 0.0,
        REGISTRY.get_sample_value("tsunagu_group_commit_commands_sum", labels) or 0.0,
    )


async def test_concurrent_commands_commit_together_and_each_is_durable_when_its_block_returns(
    engine: AsyncEngine,
) -> None:
    group = GroupCommit(engine, service="test-together")
    store = EventStore(engine, topic="t")
    seen_after_return: list[int] = []

    async def command(i: int) -> None:
        async with group.transaction() as conn:
            await store.append(f"s-{i}", 0, tallies(1), CONTEXT, conn=conn)
        seen_after_return.append(await count(engine))

    await asyncio.gather(*(command(i) for i in range(20)))

    assert await count(engine) == 20
    assert await count(engine, outbox) == 20
    # Each caller resumed only after a commit that included its own event.
    assert all(seen >= 1 for seen in seen_after_return)
    committed, commands = groups("test-together")
    assert commands == 20
    assert committed < 20, "concurrent commands should have shared transactions"


async def test_a_failing_command_leaves_nothing_while_the_rest_of_its_group_commits(engine: AsyncEngine) -> None:
    group = GroupCommit(engine, service="test-failing")
    store = EventStore(engine, topic="t")

    async def good(i: int) -> None:
        async with group.transaction() as conn:
            await store.append(f"good-{i}", 0, tallies(2), CONTEXT, conn=conn)

    async def bad() -> None:
        async with group.transaction() as conn:
            await store.append("bad", 0, tallies(1), CONTEXT, conn=conn)  # written, then undone
            raise ValueError("the command changed its mind")

    results = await asyncio.gather(good(1), bad(), good(2), return_exceptions=True)

    assert isinstance(results[1], ValueError)
    assert results[0] is None
    assert results[2] is None
    assert await count(engine) == 4
    assert await store.read("bad") == []


async def test_two_commands_on_one_stream_in_one_group_see_each_other(engine: AsyncEngine) -> None:
    group = GroupCommit(engine, service="test-same-stream")
    store = EventStore(engine, topic="t")

    async def append_at(expected: int) -> None:
        async with group.transaction() as conn:
            await store.append("shared", expected, tallies(1), CONTEXT, conn=conn)

    results = await asyncio.gather(append_at(0), append_at(0), return_exceptions=True)

    assert sorted(type(r).__name__ for r in results) == ["ConcurrencyConflict", "NoneType"]
    assert any(isinstance(r, ConcurrencyConflict) for r in results)
    assert len(await store.read("shared")) == 1


async def test_a_command_cancelled_while_waiting_does_not_leave_the_group_open(engine: AsyncEngine) -> None:
    group = GroupCommit(engine, service="test-cancel")
    store = EventStore(engine, topic="t")
    release = asyncio.Event()

    async def slow() -> None:
        async with group.transaction() as conn:
            await store.append("slow", 0, tallies(1), CONTEXT, conn=conn)
            await release.wait()

    async def waiting() -> None:
        async with group.transaction() as conn:
            await store.append("never", 0, tallies(1), CONTEXT, conn=conn)

    first = asyncio.create_task(slow())
    await asyncio.sleep(0.01)
    second = asyncio.create_task(waiting())
    await asyncio.sleep(0.01)
    second.cancel()
    release.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    await asyncio.sleep(0.01)

    assert [e.streamid for e in await store.read("slow")] == ["slow"]
    assert await store.read("never") == []
    # The writer connection is back in the pool: a plain transaction gets it at once.
    async with asyncio.timeout(5):
        async with engine.begin() as conn:
            assert await conn.scalar(select(func.count()).select_from(events)) == 1


async def test_a_transaction_opened_inside_another_of_the_same_task_is_refused_not_hung(engine: AsyncEngine) -> None:
    group = GroupCommit(engine, service="test-nested")
    store = EventStore(engine, topic="t")

    async def nested() -> None:
        async with group.transaction() as conn:
            await store.append("outer", 0, tallies(1), CONTEXT, conn=conn)
            async with group.transaction():
                pass

    async with asyncio.timeout(5):
        with pytest.raises(RuntimeError, match="inside another"):
            await nested()
    assert await store.read("outer") == []
    async with group.transaction() as conn:  # the group is usable afterwards
        await store.append("after", 0, tallies(1), CONTEXT, conn=conn)
    assert len(await store.read("after")) == 1
