"""Topic names are part of the public contract: agencies and operators rely on them."""

from __future__ import annotations

SERVICES = ("intake", "referral", "resources", "reporting")


def events_topic(service: str) -> str:
    """The topic a service publishes its domain events to (key = stream id)."""
    return f"tsunagu.{service}.events"


def dlq_topic(topic: str) -> str:
    """Where a consumer parks messages of `topic` it cannot process."""
    return f"{topic}.dlq"


INTAKE_INBOUND = "tsunagu.intake.inbound"
"""Agency systems publish consultations and contacts here as CloudEvents."""

EXAMPLE_TOPIC = "tsunagu.example.events"
"""Topic of the tiny example the backbone's own tests exercise."""


DAY_MS = 24 * 3600 * 1000
INBOUND_RETENTION_MS = 7 * DAY_MS
"""Agency systems send personal data in plain text; intake seals it on arrival, so the inbound topic
keeps it only for a week (long enough to recover from an outage), where erasure cannot reach it."""
DLQ_RETENTION_MS = 90 * DAY_MS
"""Dead letters may hold an agency's plain-text personal data too: replay or resolve them within 90 days."""


def retention_ms(topic: str) -> int:
    """Event topics are the replayable history and keep everything (-1); inbound and DLQs do not."""
    if topic.endswith(".dlq"):
        return DLQ_RETENTION_MS
    if topic == INTAKE_INBOUND:
        return INBOUND_RETENTION_MS
    return -1
