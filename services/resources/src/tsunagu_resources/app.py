"""Builds the resources service. Nothing connects until the app's lifespan starts."""

from __future__ import annotations

from fastapi import FastAPI
from tsunagu_platform.http import service_app
from tsunagu_platform.runtime import ServiceRuntime

from tsunagu_resources.settings import ResourcesSettings

TITLE = "Tsunagu 地域資源 (Resources)"


def create_app(settings: ResourcesSettings | None = None) -> FastAPI:
    settings = settings or ResourcesSettings()
    runtime = ServiceRuntime(settings)
    return service_app(
        runtime,
        title=TITLE,
        description="Local resource development, participation support and community building.",
    )
