"""Settings of the reporting service; see ServiceSettings for the shared ones."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from tsunagu_platform.settings import ServiceSettings


class ReportingSettings(ServiceSettings):
    service: str = "reporting"
    port: int = Field(default=8004, validation_alias=AliasChoices("PORT", "port"))
    source_topic_suffix: str = Field(
        default="",
        max_length=64,
        pattern=r"^[a-zA-Z0-9._-]*$",
        validation_alias=AliasChoices("TSUNAGU_REPORTING_TOPIC_SUFFIX", "source_topic_suffix"),
        description="Appended to the three source topics; tests and benchmarks use it to read topics of their own.",
    )
