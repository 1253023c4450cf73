"""Prometheus metrics of the backbone. Labels carry service, consumer and reason names only:
never an id or anything about a person."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RELAY_PUBLISHED = Counter("tsunagu_relay_published_total", "Outbox rows published to Kafka", ["service"])
EVENTS_APPENDED = Counter("tsunagu_events_appended_total", "Events appended to the store", ["service"])
CONSUMED = Counter("tsunagu_consumer_events_total", "Events seen by a consumer, by outcome", ["consumer", "outcome"])
DEAD_LETTERED = Counter(
    "tsunagu_consumer_dead_lettered_total", "Messages sent to a DLQ, by reason", ["consumer", "reason"]
)
DEAD_LETTER_PUBLISH_FAILURES = Counter(
    "tsunagu_consumer_dead_letter_publish_failures_total",
    "Attempts to publish dead letters that the broker did not take",
    ["consumer"],
)
DEAD_LETTER_BACKLOG = Gauge(
    "tsunagu_consumer_dead_letter_backlog",
    "Dead letters kept in the consumer's database until the broker takes them (since this process started)",
    ["consumer"],
)
STALLED = Gauge(
    "tsunagu_consumer_stalled",
    "1 while a consumer has not advanced for longer than its stall limit (readiness is then 503)",
    ["consumer"],
)
HELD = Gauge("tsunagu_consumer_held_events", "Events held back behind a stream version gap", ["consumer"])
BATCH_SECONDS = Histogram("tsunagu_consumer_batch_seconds", "Time to process one batch", ["consumer"])
PROJECTION_EVENTS = Counter(
    "tsunagu_projection_events_total", "Events applied to a projection generation", ["projection"]
)
PROJECTION_LAG = Gauge("tsunagu_projection_lag", "Records behind the end of the topics", ["projection"])
GROUP_COMMIT_SIZE = Histogram(
    "tsunagu_group_commit_commands",
    "Commands committed together in one SQLite transaction",
    ["service"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
PROJECTION_TOPIC_RESETS = Counter(
    "tsunagu_projection_topic_resets_total",
    "Topics a projection re-read from the start: the log its checkpoints referred to was replaced",
    ["projection", "reason"],
)
PROJECTION_CHAIN_BREAKS = Counter(
    "tsunagu_projection_chain_breaks_total",
    "Events a projection left out: they do not link to the last event it applied of their stream",
    ["projection"],
)
