"""The `make bench` entry: the backbone first, then every other `bench/<name>.py` with a `main()`.

    python -m bench.run                  # everything
    python -m bench.run --only backbone  # one module
    python -m bench.run --json out.json  # also write the figures as JSON

A module that fails is reported and the others still run; the exit status is 1
when any failed, so CI notices a broken benchmark without anything being timed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

FIRST = "backbone"
NOT_BENCHMARKS = {"run", "common"}


def discover() -> list[str]:
    """Module names under bench/, backbone first, the rest alphabetically."""
    here = Path(__file__).parent
    names = sorted(
        info.name
        for info in pkgutil.iter_modules([str(here)])
        if not info.name.startswith("_") and info.name not in NOT_BENCHMARKS
    )
    return ([FIRST] if FIRST in names else []) + [n for n in names if n != FIRST]


def run_one(name: str) -> dict[str, Any]:
    module = importlib.import_module(f"bench.{name}")
    entry = getattr(module, "main", None)
    if not callable(entry):
        return {"skipped": "no main()"}
    started = time.perf_counter()
    result = entry()
    elapsed = time.perf_counter() - started
    print(f"== bench.{name} done in {elapsed:.1f} s", flush=True)
    return {"result": result, "seconds": round(elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this module (repeatable)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every module's figures here")
    args = parser.parse_args(argv)
    available = discover()
    names = available
    if args.only:
        unknown = [n for n in args.only if n not in available]
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}")
        names = [n for n in available if n in args.only]
    results: dict[str, Any] = {}
    failed = []
    for name in names:
        print(f"== bench.{name}", flush=True)
        try:
            results[name] = run_one(name)
        except Exception as error:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            results[name] = {"error": f"{type(error).__name__}: {error}"}
            failed.append(name)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
    if failed:
        print(f"== failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
