"""`tsunagu-referral serve|migrate`."""

from __future__ import annotations

from tsunagu_platform.cli import service_main

from tsunagu_referral.app import create_app
from tsunagu_referral.settings import ReferralSettings


def main() -> int:
    return service_main(ReferralSettings, create_app)  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(main())
