"""The AsyncAPI document of the inbound topic is AsyncAPI 3, its references resolve, and its examples
are valid messages: each decodes as the service's consumer would decode it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from tsunagu_events import EventEnvelope, registry
from tsunagu_events.reference import ward_for
from tsunagu_events.topics import INTAKE_INBOUND

DOCUMENT = Path(__file__).parents[3] / "libs" / "events" / "asyncapi" / "intake-inbound.yaml"


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


def test_asyncapi_document_is_complete_and_its_examples_decode() -> None:
    doc = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    assert doc["asyncapi"] == "3.0.0"
    assert doc["channels"]["inbound"]["address"] == INTAKE_INBOUND
    for ref in refs(doc):
        if ref.startswith("#/"):
            node: Any = doc
            for part in ref[2:].split("/"):
                node = node[part]
        else:
            assert (DOCUMENT.parent / ref).is_file(), ref
    for message in doc["components"]["messages"].values():
        for example in message.get("examples", []):
            schema = json.loads((DOCUMENT.parent / message["payload"]["$ref"]).read_text())
            jsonschema.validate(example["payload"], schema)
            headers = example["headers"]
            envelope = EventEnvelope(
                id=headers["ce_id"],
                source=headers["ce_source"],
                type=headers["ce_type"],
                time=headers["ce_time"],
                tenant=headers["ce_tenant"],
                data=example["payload"],
            )
            payload = registry.decode(envelope)
            assert payload.event_type == message["name"]
            claimed = example["payload"].get("window_id") or example["payload"].get("agency_id")
            assert ward_for("131121").agency_of_source(envelope.source) == claimed  # the source is bound to it


def test_the_size_limits_and_retentions_stated_are_those_the_clients_and_topics_use() -> None:
    from tsunagu_events.binding import MAX_MESSAGE_BYTES
    from tsunagu_events.topics import dlq_topic, retention_ms
    from tsunagu_platform.kafka import MAX_PARTITION_FETCH_BYTES, MAX_REQUEST_BYTES

    doc = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    description = doc["info"]["description"]
    assert f"{MAX_REQUEST_BYTES:,} bytes per" in description
    assert f"{MAX_MESSAGE_BYTES:,} bytes" in description
    assert f"fetch {MAX_PARTITION_FETCH_BYTES // 1_048_576} MiB per partition" in description
    for channel in ("inbound", "inboundDeadLetters"):
        config = doc["channels"][channel]["bindings"]["kafka"]["topicConfiguration"]
        topic = doc["channels"][channel]["address"]
        assert config["retention.ms"] == retention_ms(topic)
        assert config["max.message.bytes"] >= MAX_REQUEST_BYTES
    assert dlq_topic(INTAKE_INBOUND) == doc["channels"]["inboundDeadLetters"]["address"]
