"""Export and check the committed JSON Schemas of every public event type and version.

Agency systems validate what they publish against these files, so a model change
that is not reflected in the committed folder is a broken promise; `check` makes the
build fail on it. Run `tsunagu-schemas export` after changing a payload model.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tsunagu_events.contracts  # noqa: F401  (registers every public type)
from tsunagu_events.envelope import EventEnvelope
from tsunagu_events.registry import EventRegistry, registry, schema_id

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "schemas"
ENVELOPE_FILE = "cloudevent-envelope.schema.json"


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def expected_files(reg: EventRegistry = registry) -> dict[str, str]:
    files = {ENVELOPE_FILE: render(EventEnvelope.model_json_schema())}
    for item in reg.registrations():
        schema = item.model.model_json_schema()
        schema["$id"] = schema_id(item.event_type, item.version)
        schema["title"] = f"{item.event_type} v{item.version}"
        files[f"{item.event_type}/v{item.version}.schema.json"] = render(schema)
    return files


def export(folder: Path = DEFAULT_FOLDER) -> list[str]:
    written = []
    for name, text in expected_files().items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(name)
    return written


def differences(folder: Path = DEFAULT_FOLDER) -> list[str]:
    """Names of schema files that are missing, stale or no longer produced by any model."""
    expected = expected_files()
    problems = []
    for name, text in expected.items():
        path = folder / name
        if not path.exists():
            problems.append(f"missing: {name}")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"stale: {name}")
    for path in folder.rglob("*.schema.json"):
        name = path.relative_to(folder).as_posix()
        if name not in expected:
            problems.append(f"orphan: {name}")
    return sorted(problems)


SAMPLES_FOLDER = DEFAULT_FOLDER.parent / "samples"


def _example_value(schema: dict[str, Any], defs: dict[str, Any], name: str) -> Any:
    if "$ref" in schema:
        return _example_value(defs[schema["$ref"].rsplit("/", 1)[1]], defs, name)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        return _example_value(options[0], defs, name)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _example_value(v, defs, k) for k, v in props.items() if k in schema.get("required", props)}
    if kind == "array":
        return [_example_value(schema["items"], defs, f"{name}{i}") for i in range(schema.get("minItems", 0))]
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), 2021 if "year" in name else 1)
    if kind == "boolean":
        return False
    if kind == "number":
        return 1.0
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2021-04-01T09:00:00+09:00"
    if fmt == "date":
        return "2021-04-01"
    pattern = schema.get("pattern", "")
    if pattern.startswith("^(") and pattern.endswith(")$"):
        return pattern[2:-2].split("|")[0]
    if name == "nonce":
        return "AAAAAAAAAAAAAAAA"
    return f"sample-{name}"


def write_missing_samples(folder: Path = SAMPLES_FOLDER) -> list[str]:
    """Store a sample event for each registered version that has none yet.

    Run once when a version is published; the file is then frozen and the
    compatibility test keeps reading it for as long as the type exists.
    """
    written = []
    for item in registry.registrations():
        path = folder / item.event_type / f"v{item.version}.json"
        if path.exists():
            continue
        schema = item.model.model_json_schema()
        data = _example_value(schema, schema.get("$defs", {}), "data")
        item.model.model_validate(data)
        envelope = EventEnvelope(
            id=f"sample-{item.event_type}-v{item.version}",
            source="/tsunagu/131121/sample",
            type=item.event_type,
            time=datetime(2021, 4, 1, tzinfo=UTC),
            tenant="131121",
            streamid="sample-stream",
            streamversion=1,
            correlationid="sample-correlation",
            dataversion=item.version,
            data=data,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(envelope.to_structured()), encoding="utf-8")
        written.append(path.relative_to(folder).as_posix())
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tsunagu-schemas", description=__doc__)
    parser.add_argument("command", choices=["export", "check", "samples"])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    args = parser.parse_args(argv)
    if args.command == "samples":
        for name in write_missing_samples():
            print(f"wrote sample {name}")
        return 0
    if args.command == "export":
        for name in export(args.folder):
            print(f"wrote {name}")
        return 0
    problems = differences(args.folder)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("run `make schemas` (tsunagu-schemas export) and commit the result", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
