"""Group commit: commands that arrive together share one SQLite transaction.

SQLite has one writer at a time, so a service's commands queue for it anyway; what
each of them paid on its own was the transaction around it (BEGIN IMMEDIATE, the
commit's write to the WAL, a pool checkout), more than the command's own work. Here
the commands waiting at the same moment run one after another inside one
transaction, each in its own savepoint, and the transaction commits when nobody is
left waiting (or the group is full). A command's caller resumes only after that
commit: a response still means the command is durable.

A command that fails rolls back to its savepoint and raises in its own caller; the
others are unaffected. If the commit itself fails, every command of the group gets
the error, as each would have had alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tsunagu_platform.db import is_sqlite
from tsunagu_platform.metrics import GROUP_COMMIT_SIZE


def command_transactions(
    engine: AsyncEngine, *, service: str
) -> Callable[[], AbstractAsyncContextManager[AsyncConnection]]:
    """How commands on `engine` get their write transaction: grouped on SQLite, one each on PostgreSQL
    (where concurrent transactions do not queue for one lock)."""
    if is_sqlite(engine):
        return GroupCommit(engine, service=service).transaction
    return engine.begin


class GroupCommit:
    def __init__(self, engine: AsyncEngine, *, service: str, max_group: int = 256, turns: int = 8) -> None:
        self.engine = engine
        self.turns = turns
        self.service = service
        self.max_group = max_group
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._conn: AsyncConnection | None = None
        self._members: list[asyncio.Future[None]] = []
        self._holder: asyncio.Task[object] | None = None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside the current group's transaction; returns once the group committed."""
        if self._holder is not None and self._holder is asyncio.current_task():
            # It would wait for itself forever: one command, one transaction.
            raise RuntimeError("a transaction was opened inside another one of the same task")
        self._waiting += 1
        try:
            await self._lock.acquire()
        except BaseException:
            # Cancelled while waiting: the holder may have left the group open for us.
            if self._waiting == 1 and self._conn is not None:
                asyncio.get_running_loop().create_task(self._flush_abandoned())
            raise
        finally:
            self._waiting -= 1
        member: asyncio.Future[None] | None = None
        self._holder = asyncio.current_task()
        try:
            if self._conn is None:
                self._conn = await self.engine.connect()
                await self._conn.begin()
            conn = self._conn
            # The savepoint statements go straight to the driver: SQLAlchemy's nested transactions
            # compile each SAVEPOINT anew, which cost more than the command they protect.
            # Inside the open transaction the DBAPI connection is checked out: no await to reach it.
            sync = conn.sync_connection
            assert sync is not None
            driver = sync.connection.driver_connection
            assert driver is not None
            driver.execute("SAVEPOINT tsunagu_command")
            try:
                yield conn
            except BaseException:
                driver.execute("ROLLBACK TO SAVEPOINT tsunagu_command")
                driver.execute("RELEASE SAVEPOINT tsunagu_command")
                raise
            driver.execute("RELEASE SAVEPOINT tsunagu_command")
            member = asyncio.get_running_loop().create_future()
            self._members.append(member)
        finally:
            self._holder = None
            try:
                await self._settle()
            finally:
                self._lock.release()
        if member is not None:
            await member

    async def _settle(self) -> None:
        """Let commands that are about to start join the group; commit when none are waiting."""
        if self._conn is None:
            return
        if len(self._members) < self.max_group:
            try:
                # A few turns of the event loop: requests being parsed right now reach the lock.
                for _ in range(self.turns):
                    await asyncio.sleep(0)
                    if self._waiting:
                        return
            except asyncio.CancelledError:
                await self._commit()
                raise
        await self._commit()

    async def _flush_abandoned(self) -> None:
        async with self._lock:
            if self._conn is not None and not self._waiting:
                await self._commit()

    async def _commit(self) -> None:
        conn, members = self._conn, self._members
        if conn is None:
            return
        self._conn, self._members = None, []
        try:
            await conn.commit()
        except BaseException as error:
            for member in members:
                if not member.done():
                    member.set_exception(error)
            raise
        else:
            for member in members:
                if not member.done():
                    member.set_result(None)
        finally:
            await conn.close()
            if members:
                GROUP_COMMIT_SIZE.labels(self.service).observe(len(members))
