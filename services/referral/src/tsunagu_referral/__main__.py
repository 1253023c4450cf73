"""`tsunagu-referral serve|migrate|overdue` (overdue: run the overdue clock once and exit)."""

from __future__ import annotations

import asyncio
import sys

from tsunagu_platform.cli import service_main
from tsunagu_platform.logging import configure_logging

from tsunagu_referral.app import create_app
from tsunagu_referral.overdue import run_once
from tsunagu_referral.referrals import ReferralService
from tsunagu_referral.settings import ReferralSettings


async def overdue_once(settings: ReferralSettings) -> int:
    app = create_app(settings)
    runtime = app.state.runtime
    service: ReferralService = app.state.referrals
    await runtime.migrate()
    try:
        return await run_once(service)
    finally:
        await runtime.engine.dispose()
        await runtime.reader.dispose()
        await runtime.keys_engine.dispose()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["overdue"]:
        settings = ReferralSettings()
        configure_logging(settings.service, settings.log_level)
        emitted = asyncio.run(overdue_once(settings))
        print(f"referral: {emitted} referral(s) became overdue")
        return 0
    return service_main(ReferralSettings, create_app, args)  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(main())
