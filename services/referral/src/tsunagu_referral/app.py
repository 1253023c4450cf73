"""Builds the referral service. Nothing connects until the app's lifespan starts."""

from __future__ import annotations

from fastapi import FastAPI
from tsunagu_platform.http import service_app
from tsunagu_platform.runtime import ServiceRuntime

from tsunagu_referral.settings import ReferralSettings

TITLE = "Tsunagu つなぎ・会議 (Referral)"


def create_app(settings: ReferralSettings | None = None) -> FastAPI:
    settings = settings or ReferralSettings()
    runtime = ServiceRuntime(settings)
    return service_app(
        runtime,
        title=TITLE,
        description="Closed-loop referrals between agencies and the coordination meetings.",
    )
