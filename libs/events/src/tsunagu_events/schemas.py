"""Export and check the committed JSON Schemas of every public event type and version.

Agency systems validate what they publish against these files, so a model change
that is not reflected in the committed folder is a broken promise; `check` makes the
build fail on it. Run `tsunagu-schemas export` after changing a payload model.
"""

from __future__ import annotations

import argparse
import json
import sys
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tsunagu-schemas", description=__doc__)
    parser.add_argument("command", choices=["export", "check"])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    args = parser.parse_args(argv)
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
