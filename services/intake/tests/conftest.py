"""Component fixtures: the intake app on faststream's TestKafkaBroker, in one event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from tsunagu_intake.app import create_app
from tsunagu_platform.runtime import ServiceRuntime

from .helpers import Running, capture, settings_for


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    app = create_app(settings_for(tmp_path))
    runtime: ServiceRuntime = app.state.runtime
    captured = capture(runtime)
    async with TestKafkaBroker(runtime.broker) as broker:
        await runtime.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
                yield Running(app, runtime, app.state.intake, client, broker, captured)
        finally:
            await runtime.stop()


@pytest.fixture
async def running_on(tmp_path: Path, database_url: str) -> AsyncIterator[Running]:
    """The same, on each database (SQLite file, then a fresh PostgreSQL database)."""
    app = create_app(settings_for(tmp_path, database_url))
    runtime: ServiceRuntime = app.state.runtime
    captured = capture(runtime)
    async with TestKafkaBroker(runtime.broker) as broker:
        await runtime.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
                yield Running(app, runtime, app.state.intake, client, broker, captured)
        finally:
            await runtime.stop()
