"""Component fixtures: the reporting app on faststream's TestKafkaBroker, in one event loop."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from tsunagu_reporting.app import create_app
from tsunagu_reporting.settings import ReportingSettings

sys.path.insert(0, str(Path(__file__).parent))

from reporting_support import KEY, Running


def settings_for(tmp_path: Path, **extra: object) -> ReportingSettings:
    return ReportingSettings(broker_mode="memory", var_dir=tmp_path, token_signing_key=KEY, **extra)  # type: ignore[arg-type]


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    app = create_app(settings_for(tmp_path))
    runtime = app.state.runtime
    async with TestKafkaBroker(runtime.broker):
        await runtime.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://reporting") as client:
                yield Running(app, app.state.reporting, client)
        finally:
            await runtime.stop()
