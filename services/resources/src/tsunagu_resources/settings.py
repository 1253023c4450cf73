"""Settings of the resources service; see ServiceSettings for the shared ones."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from tsunagu_platform.settings import ServiceSettings


class ResourcesSettings(ServiceSettings):
    service: str = "resources"
    port: int = Field(default=8003, validation_alias=AliasChoices("PORT", "port"))
