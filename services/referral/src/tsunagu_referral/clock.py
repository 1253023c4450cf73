"""The service's notion of now, injectable so tests can move time past a due date."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta

from tsunagu_events.contracts.common import JST
from tsunagu_events.envelope import now

Clock = Callable[[], datetime]


def offset_clock(days: float) -> Clock:
    delta = timedelta(days=days)
    if not delta:
        return now
    return lambda: now() + delta


def today_in_japan(moment: datetime) -> date:
    """Due dates are calendar days in Japan, whatever the server's zone."""
    return moment.astimezone(JST).date()
