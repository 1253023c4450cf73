"""Settings of the referral service; see ServiceSettings for the shared ones."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from tsunagu_platform.settings import ServiceSettings


class ReferralSettings(ServiceSettings):
    service: str = "referral"
    port: int = Field(default=8002, validation_alias=AliasChoices("PORT", "port"))
