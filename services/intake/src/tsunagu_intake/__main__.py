"""`tsunagu-intake serve|migrate|erase --person ID`.

`erase` is for operators handling an erasure request outside the HTTP API: it
appends PersonErased and destroys the person's keys in this service's key store at
once; the running service's relay publishes the event so the other services
destroy their own keys too.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from tsunagu_platform.cli import service_main
from tsunagu_platform.logging import configure_logging

from tsunagu_intake.app import build_intake, create_app
from tsunagu_intake.domain.errors import DomainError
from tsunagu_intake.settings import IntakeSettings


async def erase(settings: IntakeSettings, person_id: str) -> int:
    intake = build_intake(settings)
    runtime = intake.runtime
    try:
        await runtime.migrate()
        done = await intake.erase_person(person_id, None)
    except DomainError as error:
        print(f"{person_id}: {error}", file=sys.stderr)
        return 2
    finally:
        await runtime.engine.dispose()
        await runtime.reader.dispose()
        await runtime.keys_engine.dispose()
    print(f"{person_id}: erased (stream version {done.version}); PersonErased is in the outbox")
    return 0


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="tsunagu-intake")
    parser.add_argument("command", choices=["serve", "migrate", "erase"], nargs="?", default="serve")
    parser.add_argument("--person", help="erase: the person id (person-<uuid>)")
    args = parser.parse_args(args_in)
    if args.command != "erase":
        return service_main(IntakeSettings, create_app, [args.command])  # type: ignore[arg-type]
    if not args.person:
        parser.error("erase needs --person ID")
    settings = IntakeSettings()
    configure_logging(settings.service, settings.log_level)
    return asyncio.run(erase(settings, args.person))


if __name__ == "__main__":
    raise SystemExit(main())
