"""Versioned payloads: old events read in the latest shape; bad ones are named, not echoed."""

from __future__ import annotations

from typing import Any

import pytest
from tsunagu_events import EventRegistry, SchemaViolation, UnknownEventType
from tsunagu_events.contracts.example import TALLY_RECORDED, TallyRecorded
from tsunagu_events.registry import EventPayload, registry


def test_v1_tally_reads_as_v2_with_the_default_category() -> None:
    payload = registry.decode_data(TALLY_RECORDED, 1, {"window": "w1", "count": 2})
    assert payload == TallyRecorded(window="w1", count=2, category="general")


def test_unknown_type_and_unknown_version_are_refused() -> None:
    with pytest.raises(UnknownEventType):
        registry.decode_data("tsunagu.nope.Happened", 1, {})
    with pytest.raises(UnknownEventType):
        registry.decode_data(TALLY_RECORDED, 9, {})


def test_schema_violation_names_fields_without_echoing_values() -> None:
    with pytest.raises(SchemaViolation) as caught:
        registry.decode_data(TALLY_RECORDED, 2, {"window": "w1", "count": "山田太郎", "category": "x"})
    assert "count" in str(caught.value)
    assert "山田太郎" not in str(caught.value)


def test_extra_fields_are_a_schema_violation() -> None:
    with pytest.raises(SchemaViolation):
        registry.decode_data(TALLY_RECORDED, 2, {"window": "w", "count": 1, "category": "c", "name": "x"})


def test_upcasters_chain_across_several_versions() -> None:
    reg = EventRegistry()

    @reg.event("t.Thing", 1)
    class V1(EventPayload):
        a: int

    @reg.event("t.Thing", 2)
    class V2(EventPayload):
        a: int
        b: int

    @reg.event("t.Thing", 3)
    class V3(EventPayload):
        total: int

    @reg.upcaster("t.Thing", 1)
    def one(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "b": 10}

    @reg.upcaster("t.Thing", 2)
    def two(data: dict[str, Any]) -> dict[str, Any]:
        return {"total": data["a"] + data["b"]}

    assert reg.decode_data("t.Thing", 1, {"a": 1}) == V3(total=11)
    assert reg.latest_version("t.Thing") == 3


def test_registering_two_models_for_one_version_is_an_error() -> None:
    reg = EventRegistry()

    @reg.event("t.X", 1)
    class A(EventPayload):
        a: int

    with pytest.raises(ValueError, match="registered twice"):

        @reg.event("t.X", 1)
        class B(EventPayload):
            b: int
