"""Settings of the reporting service; see ServiceSettings for the shared ones."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from tsunagu_platform.settings import ServiceSettings


class ReportingSettings(ServiceSettings):
    service: str = "reporting"
    port: int = Field(default=8004, validation_alias=AliasChoices("PORT", "port"))
