"""`tsunagu-resources serve|migrate`."""

from __future__ import annotations

from tsunagu_platform.cli import service_main

from tsunagu_resources.app import create_app
from tsunagu_resources.settings import ResourcesSettings


def main() -> int:
    return service_main(ResourcesSettings, create_app)  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(main())
