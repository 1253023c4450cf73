"""`tsunagu-reporting serve|migrate`."""

from __future__ import annotations

from tsunagu_platform.cli import service_main

from tsunagu_reporting.app import create_app
from tsunagu_reporting.settings import ReportingSettings


def main() -> int:
    return service_main(ReportingSettings, create_app)  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(main())
