"""Checks a published event against the committed JSON Schema other services rely on."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from tsunagu_events import EventEnvelope

SCHEMAS = Path(__file__).resolve().parents[3] / "libs" / "events" / "schemas"


def assert_matches_contract(envelope: EventEnvelope) -> None:
    path = SCHEMAS / envelope.type / f"v{envelope.dataversion}.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.validate(envelope.data, schema)
    envelope_schema = json.loads((SCHEMAS / "cloudevent-envelope.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(envelope.to_structured(), envelope_schema)
