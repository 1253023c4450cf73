"""Tsunagu's public event contracts.

Every service depends on this package and on nothing of another service: the
contracts are the only thing the four services share. It imports no broker,
database or logging library so that agency systems can use it too.
"""

from tsunagu_events.binding import (
    CONTENT_TYPE_CLOUDEVENTS_JSON,
    DecodedMessage,
    EventDecodeError,
    from_kafka,
    to_kafka,
)
from tsunagu_events.chain import GENESIS_HASH, canonical_form, chain_hash
from tsunagu_events.envelope import Actor, EventEnvelope, new_event_id, new_stream_id
from tsunagu_events.registry import (
    EventPayload,
    EventRegistry,
    SchemaViolation,
    UnknownEventType,
    registry,
)

__all__ = [
    "CONTENT_TYPE_CLOUDEVENTS_JSON",
    "GENESIS_HASH",
    "Actor",
    "DecodedMessage",
    "EventDecodeError",
    "EventEnvelope",
    "EventPayload",
    "EventRegistry",
    "SchemaViolation",
    "UnknownEventType",
    "canonical_form",
    "chain_hash",
    "from_kafka",
    "new_event_id",
    "new_stream_id",
    "registry",
    "to_kafka",
]
