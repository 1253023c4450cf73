"""The key store's one table: a row per person, holding that person's key wrapped by the master key.

Sealing (crypto.py), erasure (key_erasure.py), rotation (key_rotation.py) and the start-up check
(master_key.py) all read or write it; it lives apart so that none of them has to import another
to reach it. Erasure keeps the row as a tombstone (`wrapped_key` NULL, `erased_at` set), so that
nothing is ever sealed for an erased person again.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, LargeBinary, MetaData, String, Table

__all__ = ["KEYS_PER_STATEMENT", "keystore_metadata", "person_keys"]

keystore_metadata = MetaData()
person_keys = Table(
    "person_keys",
    keystore_metadata,
    Column("person_id", String(128), primary_key=True),
    Column("key_number", Integer, nullable=False),
    Column("wrapped_key", LargeBinary, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("erased_at", DateTime(timezone=True), nullable=True),
)

# Keys read or written by one statement: well under SQLite's and PostgreSQL's limits on bound
# parameters in one statement.
KEYS_PER_STATEMENT = 500
