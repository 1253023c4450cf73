"""Builds the reporting service. Nothing connects until the app's lifespan starts."""

from __future__ import annotations

from fastapi import FastAPI
from tsunagu_platform.http import service_app
from tsunagu_platform.runtime import ServiceRuntime

from tsunagu_reporting.settings import ReportingSettings

TITLE = "Tsunagu 報告・監査 (Reporting)"


def create_app(settings: ReportingSettings | None = None) -> FastAPI:
    settings = settings or ReportingSettings()
    runtime = ServiceRuntime(settings)
    return service_app(
        runtime,
        title=TITLE,
        description="The ward's annual tables, companion-support timelines and audit replay, from events alone.",
    )
