"""The smallest event-sourced aggregate: state changes only by applying events.

A command method checks invariants against the current state and records new
events with `_emit`, which applies them at once; the application layer appends
`pending` to the store at `version` (optimistic concurrency).
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
    def rehydrate(cls, history: Iterable[EventPayload]) -> Self:
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

    def _emit(self, event: EventPayload) -> None:
        self.apply(event)
        self.pending.append(event)
