"""Erasing a person's key so that no copy of it is left in the key store's own files.

Setting the wrapped key to NULL is not enough: SQLite leaves the freed bytes in the page and every
earlier version of the page in its write-ahead log; PostgreSQL leaves the old row as a dead tuple in
the table's file. So an erasure overwrites the wrapped key with random bytes before setting it to
NULL, SQLite connections delete securely (freed bytes are zeroed), and after the commit a truncating
checkpoint empties the WAL (SQLite) or VACUUM removes the dead tuples (PostgreSQL)
(docs/operations.md, "Personal-data keys: erasure, backup, rotation").
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import event, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tsunagu_platform.key_table import person_keys

__all__ = ["destroy_key", "scrub_once", "secure_delete_on_every_connection", "settle", "vacuum_after_every_erasure"]

log = structlog.get_logger("tsunagu.keystore")

# SQLite `user_version` of a key store rewritten once since erasures delete securely.
_SCRUBBED = 1


def _pragma(sync_conn: Any, statement: str) -> Any:
    """Run outside any transaction, on the driver (checkpoints and VACUUM refuse to run inside one)."""
    cursor = sync_conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(statement)
        return cursor.fetchone()
    finally:
        cursor.close()


def _truncate_wal(sync_conn: Any) -> bool:
    """Checkpoint and truncate the WAL; True when a reader kept it from completing."""
    row = _pragma(sync_conn, "PRAGMA wal_checkpoint(TRUNCATE)")
    return bool(row and row[0])


def _on_connect_secure_delete(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA secure_delete=ON")
    finally:
        cursor.close()


def secure_delete_on_every_connection(engine: AsyncEngine) -> None:
    """Every connection of an SQLite pool zeroes what it frees, not just the erasing one (once per engine)."""
    if engine.dialect.name == "sqlite" and not event.contains(engine.sync_engine, "connect", _on_connect_secure_delete):
        event.listen(engine.sync_engine, "connect", _on_connect_secure_delete)


async def _secure_delete(conn: AsyncConnection) -> None:
    """Also on the erasing connection itself, should it predate the KeyStore (pool opened earlier)."""
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("PRAGMA secure_delete=ON")


async def vacuum_after_every_erasure(conn: AsyncConnection) -> None:
    """PostgreSQL: autovacuum takes the key table after any single erasure, should the erasure's own
    VACUUM have failed: dead tuples holding erased keys do not wait for 20 % of the table."""
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql(
            f"ALTER TABLE {person_keys.name} SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1)"
        )


async def destroy_key(engine: AsyncEngine, person_id: str) -> bool:
    """Overwrite the person's wrapped key with noise, then NULL it and mark the row erased; True if it held one.

    Idempotent; a person without a row gets a tombstone. The noise has the key's length, so the same
    cell is rewritten in place and its old bytes are gone from the page. Call `settle` after it.
    """
    now = datetime.now(UTC)
    this_key = person_keys.c.person_id == person_id
    async with engine.connect() as conn, conn.begin():
        await _secure_delete(conn)
        row = (await conn.execute(select(person_keys.c.wrapped_key, person_keys.c.erased_at).where(this_key))).first()
        if row is None:
            await conn.execute(
                insert(person_keys).values(
                    person_id=person_id, key_number=1, wrapped_key=None, created_at=now, erased_at=now
                )
            )
        else:
            if row.wrapped_key is not None:
                noise = secrets.token_bytes(len(row.wrapped_key))
                await conn.execute(update(person_keys).where(this_key).values(wrapped_key=noise))
            await conn.execute(update(person_keys).where(this_key).values(wrapped_key=None, erased_at=now))
    return row is not None and row.erased_at is None


async def settle(engine: AsyncEngine, keyring: str) -> None:
    """Leave no earlier version of a page or row behind once an erasure committed.

    SQLite: a truncating checkpoint copies the latest pages into the database file and
    empties the WAL, which held every earlier version of the pages written since the last
    one. It waits for readers (busy timeout); if one still holds an old snapshot the WAL
    cannot be emptied yet: logged, and done again by the next erasure or start.
    PostgreSQL: VACUUM of the key table removes the dead tuples holding the old bytes (the
    server's WAL and backups keep them for their retention: docs/operations.md).
    """
    try:
        if engine.dialect.name == "sqlite":
            async with engine.connect() as conn:
                busy = await conn.run_sync(_truncate_wal)
            if busy:
                log.error("keystore.wal_not_emptied", keyring=keyring)
        elif engine.dialect.name == "postgresql":
            async with engine.connect() as conn:
                autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.exec_driver_sql(f"VACUUM {person_keys.name}")
    except Exception as error:  # the erasure itself is committed; autovacuum / the next start follow
        log.error("keystore.settle_failed", keyring=keyring, error=type(error).__name__)


async def scrub_once(engine: AsyncEngine) -> None:
    """Rewrite an SQLite key store once (VACUUM), for erasures done before secure deletion.

    An earlier version set keys to NULL without zeroing the freed bytes; a VACUUM rebuilds
    the file from live rows only. `user_version` records that it was done.
    """
    if engine.dialect.name != "sqlite":
        return
    async with engine.connect() as conn:
        version = await conn.run_sync(lambda sync: _pragma(sync, "PRAGMA user_version"))
        if version is not None and version[0] >= _SCRUBBED:
            return
        await conn.run_sync(lambda sync: _pragma(sync, "VACUUM"))
        await conn.run_sync(lambda sync: _pragma(sync, f"PRAGMA user_version={_SCRUBBED}"))
