"""Builds the resources service. Nothing connects until the app's lifespan starts."""

from __future__ import annotations

from fastapi import FastAPI
from tsunagu_events.reference import ward_for
from tsunagu_platform.http import service_app
from tsunagu_platform.runtime import ServiceRuntime

from tsunagu_resources.api import build_router, install_error_handlers
from tsunagu_resources.consumers import register_consumers
from tsunagu_resources.service import ResourcesService
from tsunagu_resources.settings import ResourcesSettings
from tsunagu_resources.tables import metadata

TITLE = "Tsunagu 地域資源 (Resources)"


def create_app(settings: ResourcesSettings | None = None) -> FastAPI:
    settings = settings or ResourcesSettings()
    runtime = ServiceRuntime(settings, metadata)
    service = ResourcesService(runtime, ward_for(settings.tenant))
    register_consumers(service)
    app = service_app(
        runtime,
        title=TITLE,
        description=(
            "Local resource development (地域資源開発), participation support (参加支援) and community building "
            "(地域づくり): the resource directory (HSDS 3), visit surveys, usable places, district issues and "
            "initiatives, publicity and training."
        ),
        routers=[build_router(service)],
    )
    install_error_handlers(app)
    app.state.service = service
    return app
