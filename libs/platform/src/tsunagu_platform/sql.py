"""Small SQL helpers that must read the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

_UPSERTS: dict[tuple[str, Table, tuple[str, ...], tuple[str, ...]], Any] = {}
_IGNORING: dict[tuple[str, Table], Any] = {}
_RETURNING: dict[tuple[str, Table, Any], Any] = {}


def _insert(conn: AsyncConnection, table: Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


async def upsert(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    keys: Sequence[str],
    update: Sequence[str],
) -> None:
    """Insert rows, replacing the `update` columns where the key exists."""
    if not rows:
        return
    cache_key = (conn.dialect.name, table, tuple(keys), tuple(update))
    statement = _UPSERTS.get(cache_key)
    if statement is None:
        # Built once per shape: `excluded` copies every column of the table, which cost more
        # than the upsert itself when it was rebuilt for each call.
        statement = _insert(conn, table)
        statement = statement.on_conflict_do_update(
            index_elements=list(keys), set_={name: statement.excluded[name] for name in update}
        )
        _UPSERTS[cache_key] = statement
    await conn.execute(statement, list(rows))


async def insert_ignoring_duplicates(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    key = (conn.dialect.name, table)
    statement = _IGNORING.get(key)
    if statement is None:
        statement = _IGNORING[key] = _insert(conn, table).on_conflict_do_nothing()
    await conn.execute(statement, list(rows))


async def insert_returning_new(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], *, returning: Any
) -> list[Any]:
    """Insert rows, skipping those whose key exists; returns `returning` of the rows actually inserted."""
    if not rows:
        return []
    # executemany with RETURNING: SQLAlchemy batches it as "insertmanyvalues" from one cached compiled
    # statement (a .values([...]) statement would be compiled anew for every batch).
    key = (conn.dialect.name, table, returning)
    statement = _RETURNING.get(key)
    if statement is None:
        statement = _RETURNING[key] = _insert(conn, table).on_conflict_do_nothing().returning(returning)
    result = await conn.execute(statement, list(rows))
    return [row[0] for row in result]
