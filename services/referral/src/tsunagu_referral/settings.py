"""Settings of the referral service; see ServiceSettings for the shared ones."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from tsunagu_platform.settings import ServiceSettings


class ReferralSettings(ServiceSettings):
    service: str = "referral"
    port: int = Field(default=8002, validation_alias=AliasChoices("PORT", "port"))
    overdue_interval_seconds: float = Field(
        default=300.0,
        ge=0,
        validation_alias=AliasChoices("TSUNAGU_REFERRAL_OVERDUE_INTERVAL", "overdue_interval_seconds"),
        description="How often the overdue clock looks for referrals past their due date; 0 turns the job off.",
    )
    clock_offset_days: float = Field(
        default=0.0,
        validation_alias=AliasChoices("TSUNAGU_REFERRAL_CLOCK_OFFSET_DAYS", "clock_offset_days"),
        description="Moves the service's clock (drills and tests of the overdue clock only; 0 in production).",
    )
