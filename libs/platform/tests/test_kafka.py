"""Kafka client wiring shared by every service."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tsunagu_platform.kafka import faststream_broker


async def test_a_brokers_consumer_groups_join_together_not_one_after_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """A group subscriber's start waits for its partition assignment (seconds per group): a service's
    consumers must not wait for each other's. Each fake start below returns only once all three
    have begun, so starting them one after another would never finish."""
    broker = faststream_broker("127.0.0.1:1")

    async def handler(body: Any) -> None:
        return None

    for topic in ("a", "b", "c"):
        broker.subscriber(topic, group_id=f"test.{topic}")(handler)
    joining = 0
    all_joining = asyncio.Event()
    started: list[str] = []

    def fake_start(name: str) -> Any:
        async def start() -> None:
            nonlocal joining
            joining += 1
            if joining == 3:
                all_joining.set()
            await asyncio.wait_for(all_joining.wait(), timeout=30)
            started.append(name)

        return start

    for index, subscriber in enumerate(broker.subscribers):
        monkeypatch.setattr(subscriber, "start", fake_start(str(index)))

    async def connected() -> None:
        return None

    monkeypatch.setattr(broker, "connect", connected)
    await broker.start()
    assert sorted(started) == ["0", "1", "2"]
    assert broker.running
