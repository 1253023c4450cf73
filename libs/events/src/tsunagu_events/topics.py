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
