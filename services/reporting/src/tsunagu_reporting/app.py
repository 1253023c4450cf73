"""Builds the reporting service. Nothing connects until the app's lifespan starts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from tsunagu_platform.http import service_app
from tsunagu_platform.runtime import ServiceRuntime

from tsunagu_reporting.api import router
from tsunagu_reporting.service import Reporting, reporting_metadata
from tsunagu_reporting.settings import ReportingSettings

TITLE = "Tsunagu 報告・監査 (Reporting)"


def create_app(settings: ReportingSettings | None = None) -> FastAPI:
    settings = settings or ReportingSettings()
    runtime = ServiceRuntime(settings, reporting_metadata)
    reporting = Reporting(runtime)
    app = service_app(
        runtime,
        title=TITLE,
        description="The ward's annual tables, companion-support timelines and audit replay, from events alone.",
        routers=[router(reporting)],
    )
    app.state.reporting = reporting
    started_by_platform = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(inner: FastAPI) -> AsyncIterator[None]:
        # A rebuild still running is cancelled before the runtime closes its engines under it.
        async with started_by_platform(inner):
            try:
                yield
            finally:
                await reporting.stop()

    app.router.lifespan_context = lifespan
    return app
