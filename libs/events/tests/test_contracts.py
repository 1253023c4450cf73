"""Committed schemas and stored samples keep the promise made to agencies and auditors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tsunagu_events.contracts  # noqa: F401
from tsunagu_events import EventEnvelope, registry
from tsunagu_events.schemas import DEFAULT_FOLDER, differences, export

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def test_committed_schemas_match_the_models() -> None:
    assert differences() == [], "payload models changed: run `make schemas` and commit libs/events/schemas"


def test_schema_check_fails_when_a_committed_schema_is_stale(tmp_path: Path) -> None:
    export(tmp_path)
    victim = tmp_path / "tsunagu.example.TallyRecorded" / "v2.schema.json"
    victim.write_text(victim.read_text().replace('"category"', '"kategorie"'))
    assert differences(tmp_path) == ["stale: tsunagu.example.TallyRecorded/v2.schema.json"]


def test_schema_check_names_missing_and_orphan_files(tmp_path: Path) -> None:
    export(tmp_path)
    (tmp_path / "tsunagu.example.TallyRecorded" / "v1.schema.json").unlink()
    (tmp_path / "gone.Event").mkdir()
    (tmp_path / "gone.Event" / "v1.schema.json").write_text("{}")
    assert differences(tmp_path) == [
        "missing: tsunagu.example.TallyRecorded/v1.schema.json",
        "orphan: gone.Event/v1.schema.json",
    ]


def test_every_registered_version_has_a_stored_sample() -> None:
    missing = [
        f"{r.event_type}/v{r.version}"
        for r in registry.registrations()
        if not (SAMPLES / r.event_type / f"v{r.version}.json").exists()
    ]
    assert missing == [], "store a sample event for each version in libs/events/samples"


@pytest.mark.parametrize("sample", sorted(SAMPLES.rglob("v*.json")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_stored_samples_of_every_version_still_read_as_the_latest(sample: Path) -> None:
    envelope = EventEnvelope.model_validate(json.loads(sample.read_text(encoding="utf-8")))
    registry.validate_stored(envelope.type, envelope.dataversion, envelope.data)
    payload = registry.decode(envelope)
    assert payload.version == registry.latest_version(envelope.type)


def test_committed_folder_is_the_package_schemas_folder() -> None:
    assert (DEFAULT_FOLDER / "cloudevent-envelope.schema.json").exists()
