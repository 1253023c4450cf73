"""Per-stream hash chain.

Auditors must be able to tell that nobody altered or inserted an event after the
fact, from the events as published and without access to a service's database.
Each event's hash covers the previous hash and the event's canonical form, so a
change anywhere breaks every later link and the first broken link names the
altered event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tsunagu_events.envelope import EventEnvelope

GENESIS_HASH = "0" * 64
_UNHASHED = {"prevhash", "chainhash"}


def canonical_form(event: EventEnvelope) -> str:
    """Sorted-key compact JSON of everything but the hashes: the same text on every platform."""
    return canonical_text(event.to_structured())


def canonical_text(structured: Mapping[str, Any]) -> str:
    body = {k: v for k, v in structured.items() if k not in _UNHASHED}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(previous_hash: str, event: EventEnvelope) -> str:
    return chain_hash_of(previous_hash, event.to_structured())


def chain_hash_of(previous_hash: str, structured: Mapping[str, Any]) -> str:
    """The hash from the structured form, for writers that already built it."""
    return chain_link(previous_hash, structured)[0]


def chain_link(previous_hash: str, structured: Mapping[str, Any]) -> tuple[str, str]:
    """The hash and the canonical text it covers, for writers that store the text too."""
    text = canonical_text(structured)
    digest = hashlib.sha256()
    digest.update(previous_hash.encode("ascii"))
    digest.update(b"\n")
    digest.update(text.encode("utf-8"))
    return digest.hexdigest(), text


@dataclass(frozen=True)
class ChainBreak:
    """The first link of a stream that does not hold, and why."""

    stream_id: str
    version: int
    event_id: str
    reason: str


def verify_chain(events: Iterable[EventEnvelope]) -> ChainBreak | None:
    """Walk one stream's events in order; return the first broken link, or None when intact.

    Checks the hash itself, the link to the previous hash and that versions run
    1, 2, 3… without gaps (a deleted event is a break too).
    """
    previous = GENESIS_HASH
    expected_version = 1
    for event in events:
        if event.streamversion != expected_version:
            return ChainBreak(
                event.streamid,
                event.streamversion,
                event.id,
                f"version {event.streamversion} where {expected_version} was expected (event missing or inserted)",
            )
        if event.prevhash != previous:
            return ChainBreak(
                event.streamid, event.streamversion, event.id, "prevhash does not match the previous event"
            )
        if event.chainhash != chain_hash(previous, event):
            return ChainBreak(event.streamid, event.streamversion, event.id, "content does not match its chainhash")
        previous = event.chainhash
        expected_version += 1
    return None
