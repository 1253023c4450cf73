"""The backbone's tables, present in every service's own database.

Each service owns its database; these tables are the same shape everywhere so that
operators and auditors find events, outbox, inbox and projection state in one
place whichever service they look at.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
)

from tsunagu_platform.db import BigId

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("position", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(128), nullable=False, unique=True),
    Column("stream_id", String(128), nullable=False),
    Column("stream_version", Integer, nullable=False),
    Column("event_type", String(128), nullable=False),
    Column("data_version", Integer, nullable=False),
    Column("tenant", String(6), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("chain_hash", String(64), nullable=False),
    Column("envelope", Text, nullable=False),
    UniqueConstraint("stream_id", "stream_version", name="uq_events_stream_version"),
)
Index("ix_events_recorded_at", events.c.recorded_at)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(128), nullable=False),
    Column("topic", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
)
Index("ix_outbox_pending", outbox.c.published_at, outbox.c.id)

inbox = Table(
    "inbox",
    metadata,
    Column("consumer", String(128), primary_key=True),
    Column("event_key", String(400), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False),
)

stream_positions = Table(
    "stream_positions",
    metadata,
    Column("consumer", String(128), primary_key=True),
    Column("stream_id", String(128), primary_key=True),
    Column("version", Integer, nullable=False),
    # The chain hash of the event at `version` (chain.py): the next one must link to it. NULL where the
    # position was written by a projection or before the column existed (the next event is then trusted).
    Column("chainhash", String(64), nullable=True),
    # Read and written only by its key: on SQLite one b-tree instead of a table plus its index.
    sqlite_with_rowid=False,
)

held_events = Table(
    "held_events",
    metadata,
    Column("consumer", String(128), primary_key=True),
    Column("stream_id", String(128), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("topic", String(200), nullable=False),
    Column("headers", Text, nullable=False),
    Column("value", LargeBinary, nullable=True),
    Column("held_at", DateTime(timezone=True), nullable=False),
)

dead_letter_backlog = Table(
    "dead_letter_backlog",
    metadata,
    # Dead letters the broker would not take (dlq.DeadLetters): kept here, sent again later, never lost.
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("consumer", String(128), nullable=False),
    Column("topic", String(200), nullable=False),
    Column("key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=True),
    Column("headers", Text, nullable=False),
    Column("kept_at", DateTime(timezone=True), nullable=False),
)
Index("ix_dead_letter_backlog_consumer", dead_letter_backlog.c.consumer, dead_letter_backlog.c.id)

projection_state = Table(
    "projection_state",
    metadata,
    Column("projection", String(128), primary_key=True),
    Column("active_generation", Integer, nullable=False),
    Column("building_generation", Integer, nullable=True),
    Column("switched_at", DateTime(timezone=True), nullable=True),
)

projection_checkpoints = Table(
    "projection_checkpoints",
    metadata,
    Column("projection", String(128), primary_key=True),
    Column("generation", Integer, primary_key=True),
    Column("topic", String(200), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigId, nullable=False),
)

projection_topics = Table(
    "projection_topics",
    metadata,
    Column("projection", String(128), primary_key=True),
    Column("generation", Integer, primary_key=True),
    Column("topic", String(200), primary_key=True),
    # The broker's id of the topic the generation's checkpoints were taken from (topic_identity.py).
    Column("topic_id", String(36), nullable=False),
)


ADDED_COLUMNS = ((stream_positions, "chainhash"),)
"""Columns added to a backbone table after it was first created: `create_all` does not add them."""


def add_missing_columns(conn: Connection) -> None:
    """Add the ADDED_COLUMNS an existing database lacks (run after `metadata.create_all`); safe to run again."""
    inspector = inspect(conn)
    for table, name in ADDED_COLUMNS:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        if name not in present:
            column = table.c[name]
            kind = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}")
