"""Kafka binding (binary and structured mode) and the per-stream hash chain."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from tsunagu_events import (
    GENESIS_HASH,
    EventDecodeError,
    EventEnvelope,
    chain_hash,
    from_kafka,
    to_kafka,
)
from tsunagu_events.binding import MAX_MESSAGE_BYTES
from tsunagu_events.chain import verify_chain


def envelope(version: int = 1, prev: str = GENESIS_HASH, count: int = 1, stream: str = "s-1") -> EventEnvelope:
    draft = EventEnvelope(
        id=f"id-{stream}-{version}",
        source="/tsunagu/131121/example",
        type="tsunagu.example.TallyRecorded",
        time=datetime(2021, 4, 1, 9, 0, tzinfo=timezone(timedelta(hours=9))),
        tenant="131121",
        streamid=stream,
        streamversion=version,
        correlationid="corr-1",
        actoragency="ikejiri.community_center",
        actorstaff="staff-7f3a",
        dataversion=2,
        prevhash=prev,
        data={"window": "w", "count": count, "category": "general"},
    )
    return draft.model_copy(update={"chainhash": chain_hash(prev, draft)})


def chain(n: int) -> list[EventEnvelope]:
    out, prev = [], GENESIS_HASH
    for v in range(1, n + 1):
        e = envelope(v, prev, count=v)
        out.append(e)
        prev = e.chainhash or ""
    return out


def test_binary_mode_round_trip_keeps_every_attribute() -> None:
    original = envelope()
    key, headers, value = to_kafka(original)
    assert key == b"s-1"
    names = {k for k, _ in headers}
    assert {
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_specversion",
        "ce_time",
        "ce_tenant",
        "ce_streamid",
        "ce_streamversion",
        "ce_correlationid",
        "ce_dataversion",
        "content-type",
    } <= names
    decoded = from_kafka(headers, value)
    assert decoded.mode == "binary"
    assert decoded.envelope == original


def test_time_is_normalised_to_utc() -> None:
    assert envelope().time == datetime(2021, 4, 1, 0, 0, tzinfo=UTC)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValidationError):
        EventEnvelope.model_validate({**envelope().to_structured(), "time": "2021-04-01T09:00:00"})


def test_structured_mode_is_accepted() -> None:
    original = envelope()
    body = json.dumps(original.to_structured()).encode()
    decoded = from_kafka([("content-type", b"application/cloudevents+json; charset=utf-8")], body)
    assert decoded.mode == "structured"
    assert decoded.envelope == original


@pytest.mark.parametrize(
    ("headers", "value", "reason"),
    [
        ([], b"\x00\xffgarbage", "undecodable"),
        ([("content-type", b"application/cloudevents+json")], b"[1,2]", "undecodable"),
        ([("content-type", b"application/cloudevents+json")], b"{not json", "undecodable"),
        ([("ce_specversion", b"1.0"), ("ce_id", b"x")], b"{}", "undecodable"),
        ([("ce_specversion", b"1.0"), ("ce_streamversion", b"one")], b"{}", "undecodable"),
        ([("ce_specversion", b"\xff")], b"{}", "undecodable"),
        ([], b"x" * (MAX_MESSAGE_BYTES + 1), "oversized"),
    ],
)
def test_malformed_messages_raise_with_a_dlq_reason(
    headers: list[tuple[str, bytes]], value: bytes, reason: str
) -> None:
    with pytest.raises(EventDecodeError) as caught:
        from_kafka(headers, value)
    assert caught.value.reason == reason


def test_intact_chain_verifies() -> None:
    assert verify_chain(chain(5)) is None


def test_altered_event_is_the_first_break() -> None:
    events = chain(5)
    events[2] = events[2].model_copy(update={"data": {"window": "w", "count": 999, "category": "general"}})
    broken = verify_chain(events)
    assert broken is not None
    assert (broken.version, broken.reason) == (3, "content does not match its chainhash")


def test_missing_event_is_a_break() -> None:
    events = chain(4)
    del events[1]
    broken = verify_chain(events)
    assert broken is not None
    assert broken.version == 3
    assert "missing" in broken.reason


def test_forged_event_with_recomputed_hash_breaks_the_next_link() -> None:
    events = chain(4)
    forged = envelope(2, events[0].chainhash or "", count=500)
    events[1] = forged
    broken = verify_chain(events)
    assert broken is not None
    assert broken.version == 3
    assert broken.reason == "prevhash does not match the previous event"


def test_binary_mode_from_the_stored_form_equals_binary_mode_from_the_model() -> None:
    from tsunagu_events.binding import structured_to_kafka

    original = envelope()
    stored = json.loads(json.dumps(original.to_structured(), sort_keys=True))
    key, headers, value = structured_to_kafka(stored)
    expected_key, expected_headers, expected_value = to_kafka(original)
    assert key == expected_key
    assert json.loads(value) == json.loads(expected_value)
    assert dict(headers) == dict(expected_headers)
    assert len(headers) == len(expected_headers)
