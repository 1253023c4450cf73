"""The AsyncAPI document of the inbound topic is AsyncAPI 3, its references resolve, and its examples
are valid messages: each decodes as the service's consumer would decode it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from tsunagu_events import EventEnvelope, registry
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
            assert registry.decode(envelope).event_type == message["name"]
