"""Builds the intake service. Nothing connects until the app's lifespan starts."""

from __future__ import annotations

from fastapi import FastAPI
from tsunagu_platform.http import service_app
from tsunagu_platform.runtime import ServiceRuntime

from tsunagu_intake.settings import IntakeSettings

TITLE = "Tsunagu 受付・相談 (Intake)"


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    runtime = ServiceRuntime(settings)
    return service_app(
        runtime,
        title=TITLE,
        description="Consultations at every window (断らない相談), persons, consent and companion-support cases.",
    )
