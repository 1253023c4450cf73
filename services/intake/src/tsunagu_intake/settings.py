"""Settings of the intake service; see ServiceSettings for the shared ones."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from tsunagu_platform.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    service: str = "intake"
    port: int = Field(default=8001, validation_alias=AliasChoices("PORT", "port"))
