"""Small SQL helpers that must read the same on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Literal

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from tsunagu_platform import sqlite_inline

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
    if conn.dialect.name in ("sqlite", "postgresql"):
        return await _driver_insert_returning_new(conn, table, rows, returning)
    # executemany with RETURNING: SQLAlchemy batches it as "insertmanyvalues" from one cached compiled
    # statement (a .values([...]) statement would be compiled anew for every batch).
    key = (conn.dialect.name, table, returning)
    statement = _RETURNING.get(key)
    if statement is None:
        statement = _RETURNING[key] = _insert(conn, table).on_conflict_do_nothing().returning(returning)
    result = await conn.execute(statement, list(rows))
    return [row[0] for row in result]


class _Remembering:
    """A bind processor that converts a value it has just seen only once: batches repeat their
    timestamps (a batch's `processed_at`, an append's `recorded_at`) row after row."""

    __slots__ = ("last", "processor", "result")

    def __init__(self, processor: Callable[[Any], Any]) -> None:
        self.processor = processor
        self.last: Any = _UNSEEN
        self.result: Any = None

    def __call__(self, value: Any) -> Any:
        if value is not self.last:
            self.last, self.result = value, self.processor(value)
        return self.result


_UNSEEN = object()


def _converted(processor: Callable[[Any], Any], values: Sequence[Any]) -> list[Any]:
    """`processor` applied to each value, once for a run of the same value (see _Remembering)."""
    out = []
    last: Any = _UNSEEN
    result: Any = None
    for value in values:
        if value is not last:
            last, result = value, processor(value)
        out.append(result)
    return out


class BulkInsert:
    """One INSERT for many rows: compiled once per dialect, run as the driver's executemany.

    SQLAlchemy's own executemany builds and type-processes a parameter dict per row, which
    costs more than SQLite's insert itself; here rows are plain tuples in `columns` order and
    only the columns whose type needs it on this dialect (datetimes on SQLite) go through the
    column type's own bind processor, so what is stored is what SQLAlchemy would store.
    `on_conflict`: "fail" (a plain insert), "ignore"
    (ON CONFLICT DO NOTHING) or "update" (ON CONFLICT (keys) DO UPDATE the `update` columns).
    """

    def __init__(
        self,
        table: Table,
        columns: Sequence[str],
        *,
        on_conflict: Literal["fail", "ignore", "update"] = "fail",
        keys: Sequence[str] = (),
        update: Sequence[str] = (),
    ) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.on_conflict = on_conflict
        self.keys = tuple(keys)
        self.update = tuple(update)
        self._sql: dict[str, str] = {}
        self._arrays_sql: dict[str, str] = {}
        self._processors: dict[str, list[tuple[int, Callable[[Any], Any]]]] = {}

    def sql(self, dialect: Dialect) -> str:
        key = f"{dialect.name}:{dialect.paramstyle}"
        found = self._sql.get(key)
        if found is not None:
            return found
        statement: Any = (postgresql.insert if dialect.name == "postgresql" else sqlite.insert)(self.table)
        if self.on_conflict == "ignore":
            statement = statement.on_conflict_do_nothing()
        elif self.on_conflict == "update":
            statement = statement.on_conflict_do_update(
                index_elements=list(self.keys), set_={name: statement.excluded[name] for name in self.update}
            )
        compiled = statement.compile(dialect=dialect, column_keys=list(self.columns))
        if list(compiled.positiontup or ()) != list(self.columns):
            # A column default SQLAlchemy would fill in, or columns out of table order.
            raise ValueError(f"{self.table.name}: give exactly these columns in table order: {compiled.positiontup}")
        self._sql[key] = found = str(compiled)
        processors: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(self.columns):
            processor = self.table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors.append((index, processor))
        self._processors[key] = processors
        if dialect.name == "postgresql":
            self._arrays_sql[key] = self._as_arrays(dialect, found)
        return found

    def _as_arrays(self, dialect: Dialect, sql: str) -> str:
        """The same INSERT taking one array per column: `INSERT … SELECT … FROM unnest($1::T[], …)`.

        PostgreSQL runs an executemany as one statement execution per row, which cost the server
        more than the rest of a projection's work (docs/benchmarks/reporting.md); one execution with
        arrays costs it a fraction. The rows go in in the order given (`WITH ORDINALITY`), so
        serial keys are handed out as before."""
        quote = dialect.identifier_preparer.quote
        names = [f"c{index}" for index in range(len(self.columns))]
        arrays = ", ".join(
            f"${index + 1}::{self.table.c[name].type.compile(dialect=dialect)}[]"
            for index, name in enumerate(self.columns)
        )
        conflict = sql[sql.index(" ON CONFLICT") :] if self.on_conflict != "fail" else ""
        return (
            f"INSERT INTO {dialect.identifier_preparer.format_table(self.table)} "
            f"({', '.join(quote(c) for c in self.columns)}) "
            f"SELECT {', '.join(names)} FROM unnest({arrays}) WITH ORDINALITY AS given({', '.join(names)}, n) "
            f"ORDER BY n{conflict}"
        )

    async def run(self, conn: AsyncConnection, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        sql = self.sql(conn.dialect)
        key = f"{conn.dialect.name}:{conn.dialect.paramstyle}"
        processors = self._processors[key]
        if len(rows) == 1:
            if processors:
                values = list(rows[0])
                for index, processor in processors:
                    values[index] = processor(values[index])
                rows = [tuple(values)]
            await self._run_rows(conn, sql, rows)
            return
        arrays = self._arrays_sql.get(key)
        if arrays is None and not processors:
            await self._run_rows(conn, sql, rows)
            return
        # Column by column: each converted column is one loop, not a call per value.
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
        for index, processor in processors:
            columns[index] = _converted(processor, columns[index])
        if arrays is not None and not self._repeats_a_key(columns):
            await conn.exec_driver_sql(arrays, tuple(list(column) for column in columns))
        else:
            await self._run_rows(conn, sql, list(zip(*columns, strict=True)) if processors else rows)

    @staticmethod
    async def _run_rows(conn: AsyncConnection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        driver = _in_loop_driver(conn)
        if driver is None:
            await conn.exec_driver_sql(sql, list(rows))
        elif len(rows) == 1:
            _on_driver(driver, sql, rows[0])
        else:
            _on_driver(driver, sql, list(rows), many=True)

    def _repeats_a_key(self, columns: Sequence[Sequence[Any]]) -> bool:
        """Whether an upsert's rows name one key twice: one statement may not update a row twice,
        so those rows go one execution each, the later updating the earlier as they always did."""
        if self.on_conflict != "update":
            return False
        keys = [columns[self.columns.index(name)] for name in self.keys]
        found = set(keys[0]) if len(keys) == 1 else set(zip(*keys, strict=True))
        return len(found) < len(keys[0])


def _in_loop_driver(conn: AsyncConnection) -> Any | None:
    """The stdlib driver's connection under the in-loop SQLite dialect, inside the caller's open
    transaction; None elsewhere (the statement then goes through SQLAlchemy).

    SQLAlchemy's execution of a ready statement string (context, events, result) cost more than
    SQLite's own work for these statements. No await is needed to reach the driver: inside a
    transaction the connection is checked out, and one that was invalidated raises here instead
    of reconnecting.
    """
    if conn.dialect.driver != sqlite_inline.DRIVER:
        return None
    sync = conn.sync_connection
    if sync is None or not sync.in_transaction():
        return None
    return sync.connection.driver_connection


def _on_driver(driver: Any, sql: str, params: Sequence[Any], *, many: bool = False) -> list[Any]:
    """Run on the driver; its errors are wrapped as SQLAlchemy would wrap them (IntegrityError …)."""
    cursor = driver.cursor()
    try:
        if many:
            cursor.executemany(sql, params)
            return []
        return cursor.execute(sql, params).fetchall()  # type: ignore[no-any-return]
    except sqlite3.Error as error:
        raise DBAPIError.instance(sql, params, error, sqlite3.Error) from error
    finally:
        cursor.close()


_DRIVER_RETURNING: dict[tuple[str, Table, tuple[str, ...], int, str], str] = {}


async def _driver_insert_returning_new(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], returning: Any
) -> list[Any]:
    """One multi-row INSERT … ON CONFLICT DO NOTHING RETURNING per 500 rows, handed to the driver
    (qmark placeholders for SQLite, $n for asyncpg).

    SQLAlchemy's "insertmanyvalues" builds and processes a parameter dict per row, which cost more
    than SQLite's work for an inbox claim; values go through the column types' bind processors here
    too, so what is stored is what SQLAlchemy would store.
    """
    columns = tuple(rows[0])
    dialect = conn.dialect
    processors = [
        _Remembering(found) if (found := table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) else None
        for name in columns
    ]
    out: list[Any] = []
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        key = (dialect.name, table, columns, len(chunk), returning.name)
        sql = _DRIVER_RETURNING.get(key)
        if sql is None:
            quote = dialect.identifier_preparer.quote
            width = len(columns)
            if dialect.name == "sqlite":
                groups = ["(" + ", ".join("?" * width) + ")"] * len(chunk)
            else:
                groups = [
                    "(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")" for r in range(len(chunk))
                ]
            sql = _DRIVER_RETURNING[key] = (
                f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
                f"({', '.join(quote(c) for c in columns)}) VALUES {', '.join(groups)} "
                f"ON CONFLICT DO NOTHING RETURNING {quote(returning.name)}"
            )
        params: list[Any] = []
        for row in chunk:
            for name, processor in zip(columns, processors, strict=True):
                value = row[name]
                params.append(processor(value) if processor is not None else value)
        driver = _in_loop_driver(conn)
        if driver is None:
            inserted: Any = await conn.exec_driver_sql(sql, tuple(params))
        else:
            inserted = _on_driver(driver, sql, params)
        out += [key for (key,) in inserted]
    return out


_Compiled = tuple[str, tuple[str, ...], dict[str, Any], list[tuple[int, Callable[[Any], Any]]]]


class DriverQuery:
    """A prebuilt SELECT that, inside a transaction of the in-loop SQLite dialect, goes straight to the
    stdlib driver (the statement compiled once, parameters put in order, each result column through
    its type's own result processor, as SQLAlchemy would convert it); elsewhere it runs through
    SQLAlchemy as usual. Rows come back as tuples either way."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: _Compiled | None = None

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        names = tuple(compiled.positiontup or ())
        defaults = {name: compiled.binds[name].value for name in names if not compiled.binds[name].required}
        processors = []
        for index, column in enumerate(self.statement.selected_columns):
            processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if processor is not None:
                processors.append((index, processor))
        self._compiled = (str(compiled), names, defaults, processors)
        return self._compiled

    async def rows(self, conn: AsyncConnection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        driver = _in_loop_driver(conn)
        if driver is None:
            return [tuple(row) for row in await conn.execute(self.statement, params)]
        sql, names, defaults, processors = self._compiled or self._compile(conn.dialect)
        found = _on_driver(driver, sql, tuple(params[name] if name in params else defaults[name] for name in names))
        if not processors or not found:
            return found
        converted = []
        for row in found:
            values = list(row)
            for index, processor in processors:
                values[index] = processor(values[index])
            converted.append(tuple(values))
        return converted
