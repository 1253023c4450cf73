"""`tsunagu-intake serve|migrate`."""

from __future__ import annotations

from tsunagu_platform.cli import service_main

from tsunagu_intake.app import create_app
from tsunagu_intake.settings import IntakeSettings


def main() -> int:
    return service_main(IntakeSettings, create_app)  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(main())
