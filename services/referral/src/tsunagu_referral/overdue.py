"""The overdue clock: a scheduled job emitting ReferralOverdue once per late referral.

Safe to run twice, concurrently or after a restart: the referral itself knows it is
already overdue, and the append's expected version makes a second concurrent run
lose with a ConcurrencyConflict that is simply skipped.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from sqlalchemy import select
from tsunagu_platform.store import ConcurrencyConflict

from tsunagu_referral.clock import today_in_japan
from tsunagu_referral.referrals import ReferralService
from tsunagu_referral.tables import referrals

log = structlog.get_logger("tsunagu.referral.overdue")


async def run_once(service: ReferralService) -> int:
    """Check every referral still waiting after its due date; returns how many became overdue."""
    today = today_in_japan(service.clock())
    async with service.runtime.reader.connect() as conn:
        rows = await conn.execute(
            select(referrals.c.referral_id).where(
                referrals.c.state == "requested", referrals.c.overdue.is_(False), referrals.c.due_on < today
            )
        )
        candidates = [row[0] for row in rows]
    emitted = 0
    for referral_id in candidates:
        try:
            if await service.mark_overdue(referral_id):
                emitted += 1
        except ConcurrencyConflict:
            log.info("overdue.concurrent_writer_skipped", referral_id=referral_id)
    if emitted:
        log.info("overdue.emitted", count=emitted)
    return emitted


async def run_every(service: ReferralService, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await run_once(service)
        except Exception as error:  # keep the clock ticking; the next run retries
            log.error("overdue.run_failed", error_type=type(error).__name__)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
