"""What every event-sourced aggregate shares: state changes only by applying past-tense events.

A command method checks the rules against the current state and calls `_trigger`,
which applies the event and queues it in `pending`; the application appends the
queue at the version the aggregate was loaded at (`version`), so a concurrent writer
makes the append fail instead of overwriting. Pure: services' domain modules build
on it without importing any infrastructure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Self

from tsunagu_events.registry import EventPayload


class Aggregate:
    def __init__(self) -> None:
        self.version = 0
        self.pending: list[EventPayload] = []

    @classmethod
    def replay(cls, history: Iterable[EventPayload]) -> Self:
        """Rebuild the state from the stream's events, oldest first."""
        aggregate = cls()
        for event in history:
            aggregate.apply(event)
            aggregate.version += 1
        return aggregate

    @property
    def exists(self) -> bool:
        return self.version > 0 or bool(self.pending)

    def apply(self, event: EventPayload) -> None:
        raise NotImplementedError

    def _trigger(self, event: EventPayload) -> None:
        self.apply(event)
        self.pending.append(event)

    def collect(self) -> list[EventPayload]:
        """The new events, handed over once to be appended."""
        events, self.pending = self.pending, []
        return events
