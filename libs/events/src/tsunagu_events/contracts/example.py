"""A tiny example stream the backbone's own tests and benchmarks exercise.

It is not part of the ward's domain. It has two versions so that upcasting,
schema export and the compatibility check are exercised on something real.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from tsunagu_events.registry import EventPayload, registry

TALLY_RECORDED = "tsunagu.example.TallyRecorded"


@registry.event(TALLY_RECORDED, version=1)
class TallyRecordedV1(EventPayload):
    """v1: a count recorded at a window."""

    window: str = Field(min_length=1, max_length=64, description="Window id that recorded the tally.")
    count: int = Field(ge=0, le=1_000_000, description="How many were counted.")


@registry.event(TALLY_RECORDED, version=2)
class TallyRecorded(EventPayload):
    """v2 adds a category; v1 events read as category 'general'."""

    window: str = Field(min_length=1, max_length=64, description="Window id that recorded the tally.")
    count: int = Field(ge=0, le=1_000_000, description="How many were counted.")
    category: str = Field(min_length=1, max_length=32, description="What was counted.")


@registry.upcaster(TALLY_RECORDED, from_version=1)
def _tally_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "category": "general"}
