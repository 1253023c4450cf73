"""Builds the intake service. Nothing connects until the app's lifespan starts."""

from __future__ import annotations

from fastapi import FastAPI
from tsunagu_events.reference import ward_for
from tsunagu_platform.http import service_app
from tsunagu_platform.runtime import ServiceRuntime

from tsunagu_intake.api import install_auth, install_domain_errors, routers
from tsunagu_intake.consumers import register_consumers
from tsunagu_intake.settings import IntakeSettings
from tsunagu_intake.tables import metadata
from tsunagu_intake.use_cases import Intake

TITLE = "Tsunagu 受付・相談 (Intake)"


def build_intake(settings: IntakeSettings) -> Intake:
    runtime = ServiceRuntime(settings, metadata)
    return Intake(runtime, ward_for(settings.tenant))


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    intake = build_intake(settings)
    register_consumers(intake.runtime, intake)
    app = service_app(
        intake.runtime,
        title=TITLE,
        description="Consultations at every window (断らない相談), persons, consent and companion-support cases.",
        routers=routers(intake),
    )
    app.state.intake = intake
    install_domain_errors(app)
    install_auth(app, settings)
    return app
