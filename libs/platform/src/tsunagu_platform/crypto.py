"""Per-person encryption of personal data, so that erasing a person is destroying a key.

Events are immutable and copied everywhere (topics, consumers, backups); personal
fields in them are sealed with AES-256-GCM under a key of that person. Each
service keeps its own person keys in its own key store, apart from its events
(a separate database), wrapped with a master key from settings. Erasure deletes
the person's keys and leaves a tombstone: every sealed value about that person,
wherever it was copied, becomes unreadable while events keep their shape.

The person id is bound in as associated data, so a value sealed for one person
cannot be passed off as another's.

Destroying a key must leave no copy of it in the key store's own files: an erasure
overwrites the wrapped key with random bytes before setting it to NULL, SQLite
connections delete securely (freed bytes are zeroed) and a truncating checkpoint
empties the write-ahead log, which otherwise keeps the pages that held the key;
on PostgreSQL the key table is vacuumed so that the dead tuples go
(docs/operations.md, "Personal-data keys: erasure, backup, rotation").
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tsunagu_events.contracts.common import Sealed

from tsunagu_platform.group_commit import command_transactions
from tsunagu_platform.master_key import MasterKey, MasterKeyError, decode_master_key, load_master_key
from tsunagu_platform.sql import DriverQuery, insert_returning_new

__all__ = [
    "KeyStore",
    "MasterKey",
    "MasterKeyError",
    "PersonErasedError",
    "decode_master_key",
    "keystore_metadata",
    "load_master_key",
    "person_keys",
]

log = structlog.get_logger("tsunagu.keystore")

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


class PersonErasedError(Exception):
    """The person was erased: nothing may be sealed for them any more."""

    public_detail = "person erased"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_SELECT_KEYS = select(person_keys.c.person_id, person_keys.c.wrapped_key, person_keys.c.erased_at).where(
    person_keys.c.person_id.in_(bindparam("person_ids", expanding=True))
)
# One owner's key, read on the driver inside the key database's (grouped) transaction: SQLAlchemy's
# execution of the statement cost more than the rest of opening a value.
_SELECT_KEY = DriverQuery(
    select(person_keys.c.wrapped_key, person_keys.c.erased_at).where(person_keys.c.person_id == bindparam("person_id"))
)
# Well under SQLite's and PostgreSQL's limits on bound parameters in one statement.
_CHUNK = 500

# What a waiting `seal` learns when an erasure overlapped the load of its key: look again.
_AGAIN = b""

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


async def _secure_delete(conn: AsyncConnection) -> None:
    """Also on the erasing connection itself, should it predate the KeyStore (pool opened earlier)."""
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("PRAGMA secure_delete=ON")


class KeyStore:
    """Person keys of one service (`keyring`), in their own database.

    Opened keys are cached in a bounded LRU (`cache_size` entries). A key is cached only
    after the transaction that loaded or created it committed, so a value is never
    sealed under a key that is not durable yet.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        master_key: bytes | Callable[[], bytes],
        keyring: str,
        *,
        cache_size: int = 50_000,
    ) -> None:
        self.engine = engine
        self.keyring = keyring
        self.cache_size = cache_size
        self._master_source = master_key
        self._master_aead: AESGCM | None = None
        self._cache: OrderedDict[str, AESGCM] = OrderedDict()
        # Bumped by every erasure: a load that overlapped one must not cache what it read.
        self._erasures = 0
        # Reads of one key at a time (opening a value) share the key database's transaction with
        # those arriving together on SQLite (group_commit.py).
        self._transaction = command_transactions(engine, service=f"{keyring}-keys")
        # Window staff create a key per new person or consultation: the owners of every `seal`
        # waiting at the same moment are loaded or created together, one transaction and one
        # statement for all of them (`_flush`). Owner -> what its waiters learn: the key, None
        # when the owner is erased, _AGAIN when an erasure overlapped.
        self._requests: dict[str, asyncio.Future[bytes | None]] = {}
        self._in_flight: dict[str, asyncio.Future[bytes | None]] = {}
        self._flusher: asyncio.Task[None] | None = None
        if engine.dialect.name == "sqlite" and not event.contains(
            engine.sync_engine, "connect", _on_connect_secure_delete
        ):
            # Every connection of the pool zeroes what it frees, not just the erasing one.
            event.listen(engine.sync_engine, "connect", _on_connect_secure_delete)

    @property
    def _master(self) -> AESGCM:
        # Loaded on first use, so building a service never touches the file system.
        if self._master_aead is None:
            source = self._master_source
            self._master_aead = AESGCM(source() if callable(source) else source)
        return self._master_aead

    async def migrate(self) -> None:
        """Create the key table, finish what an interrupted erasure left, and refuse a wrong master key."""
        async with self.engine.begin() as conn:
            await conn.run_sync(keystore_metadata.create_all)
            if conn.dialect.name == "postgresql":
                # Autovacuum takes the key table after any single erasure, should the erasure's own
                # VACUUM have failed: dead tuples holding erased keys do not wait for 20 % of the table.
                await conn.exec_driver_sql(
                    f"ALTER TABLE {person_keys.name} SET "
                    "(autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1)"
                )
        await self._scrub_once()
        await self._settle()
        await self.check_master_key()

    async def check_master_key(self) -> None:
        """Unwrap one stored key: a store whose keys the master key cannot open must not start.

        Otherwise the service would run, mint keys under the wrong master key for new persons and
        answer 500 (InvalidTag) for every existing one. Nothing is loaded while the store holds no
        key, so services that never seal never need a master key.
        """
        source = self._master_source
        if isinstance(source, MasterKey) and source.value:
            decode_master_key(source.value)  # a placeholder stops the start, not the first seal
        async with self.engine.connect() as conn:
            count = await conn.scalar(
                select(func.count()).select_from(person_keys).where(person_keys.c.wrapped_key.is_not(None))
            )
            row = (
                await conn.execute(
                    select(person_keys.c.person_id, person_keys.c.wrapped_key)
                    .where(person_keys.c.wrapped_key.is_not(None))
                    .limit(1)
                )
            ).first()
        if row is None:
            return
        if isinstance(source, MasterKey) and not source.configured():
            raise MasterKeyError(
                f"鍵ストア({self.keyring})に{count}件の鍵がありますが、マスター鍵が設定されていません。"
                f"新しいマスター鍵は作りません (the {self.keyring} key store holds {count} keys but no master key "
                f"is configured: TSUNAGU_KEYSTORE_MASTER_KEY is unset and {source.fallback_file} does not exist; "
                "refusing to mint a new master key over existing keys — restore the master key from its backup, "
                "docs/operations.md)"
            )
        try:
            self._unwrap(row.person_id, bytes(row.wrapped_key))
        except InvalidTag:
            origin = source.describe() if isinstance(source, MasterKey) else "the configured master key"
            raise MasterKeyError(
                f"マスター鍵が鍵ストア({self.keyring})の鍵と一致しません (the master key from {origin} does not "
                f"unwrap the {count} keys of the {self.keyring} key store: it is not the key they were wrapped "
                "with — configure the right TSUNAGU_KEYSTORE_MASTER_KEY, or rotate with `tsunagu-ops keys "
                "rotate`; docs/operations.md)"
            ) from None

    def _wrap(self, person_id: str, key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._master.encrypt(nonce, key, person_id.encode())

    def _unwrap(self, person_id: str, wrapped: bytes) -> bytes:
        return self._master.decrypt(wrapped[:12], wrapped[12:], person_id.encode())

    def _cached(self, person_id: str) -> AESGCM | None:
        aead = self._cache.get(person_id)
        if aead is not None:
            self._cache.move_to_end(person_id)
        return aead

    def _remember(self, keys: dict[str, bytes]) -> None:
        cache = self._cache
        for person_id, key in keys.items():
            cache[person_id] = AESGCM(key)
            cache.move_to_end(person_id)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)

    def _new_row(self, person_id: str, key: bytes, at: datetime) -> dict[str, object]:
        return {
            "person_id": person_id,
            "key_number": 1,
            "wrapped_key": self._wrap(person_id, key),
            "created_at": at,
            "erased_at": None,
        }

    async def prepare(self, person_ids: Iterable[str]) -> set[str]:
        """Load or create the keys of many owners in ONE key-database transaction; returns the erased ones.

        Call it before the transaction that will store values sealed with these keys: the
        keys are committed when it returns (a key left unused by a crash is harmless) and
        `seal` then finds them in the cache. Erased owners get no key (sealing for them
        still raises PersonErasedError); owners beyond the cache's size are simply loaded
        again when sealed.
        """
        wanted = [p for p in dict.fromkeys(person_ids) if self._cached(p) is None]
        if not wanted:
            return set()
        loaded, erased, undisturbed = await self._load_or_create(wanted)
        if undisturbed:
            self._remember(loaded)
        return erased

    async def _load_or_create(self, owners: list[str]) -> tuple[dict[str, bytes], set[str], bool]:
        """The keys of `owners` (created where missing) and the erased ones, in one transaction, and
        whether no erasure overlapped it (else nothing read may be cached).

        Creating comes first: most owners sealed for are new (a consultation, a person being
        registered), so one INSERT … ON CONFLICT DO NOTHING settles them, and only the owners it
        found existing (or erased) are read.
        """
        erasures = self._erasures
        loaded: dict[str, bytes] = {}
        erased: set[str] = set()
        async with self.engine.begin() as conn:
            for start in range(0, len(owners), _CHUNK):
                chunk = owners[start : start + _CHUNK]
                at = datetime.now(UTC)
                created = {p: AESGCM.generate_key(bit_length=256) for p in chunk}
                inserted = set(
                    await insert_returning_new(
                        conn,
                        person_keys,
                        [self._new_row(p, key, at) for p, key in created.items()],
                        returning=person_keys.c.person_id,
                    )
                )
                loaded.update((p, key) for p, key in created.items() if p in inserted)
                if len(inserted) < len(chunk):
                    await self._select(conn, [p for p in chunk if p not in inserted], loaded, erased)
        return loaded, erased, erasures == self._erasures

    async def _for_sealing(self, person_id: str) -> AESGCM:
        """The owner's key, created if it has none, together with those of the other `seal`s waiting now."""
        while True:
            cached = self._cached(person_id)
            if cached is not None:
                return cached
            request = self._requests.get(person_id) or self._in_flight.get(person_id)
            if request is None:
                loop = asyncio.get_running_loop()
                request = self._requests[person_id] = loop.create_future()
                if self._flusher is None or self._flusher.get_loop() is not loop:
                    self._flusher = loop.create_task(self._flush())
            # Shielded: a caller that gives up must not cancel the others' wait.
            key = await asyncio.shield(request)
            if key is None:
                raise PersonErasedError(person_id)
            if key:  # else _AGAIN
                return self._cache.get(person_id) or AESGCM(key)

    async def _flush(self, turns: int = 4) -> None:
        """Load or create the requested keys, a batch at a time, until no `seal` is waiting."""
        try:
            # A few turns of the event loop: the commands being handled right now reach `seal`.
            for _ in range(turns):
                await asyncio.sleep(0)
            while self._requests:
                batch, self._requests = self._requests, {}
                self._in_flight = batch
                try:
                    loaded, _erased, undisturbed = await self._load_or_create(list(batch))
                except Exception as error:
                    for request in batch.values():
                        if not request.done():
                            request.set_exception(error)
                    self._in_flight = {}
                    continue
                self._in_flight = {}
                if undisturbed:
                    self._remember(loaded)
                for owner, request in batch.items():
                    if not request.done():
                        request.set_result(_AGAIN if not undisturbed else loaded.get(owner))
        except BaseException:
            for request in [*self._requests.values(), *self._in_flight.values()]:
                request.cancel()
            self._requests, self._in_flight = {}, {}
            raise
        finally:
            self._flusher = None

    async def _select(
        self, conn: AsyncConnection, person_ids: list[str], loaded: dict[str, bytes], erased: set[str]
    ) -> set[str]:
        found = set()
        for person_id, wrapped, erased_at in await conn.execute(_SELECT_KEYS, {"person_ids": person_ids}):
            found.add(person_id)
            if erased_at is not None or wrapped is None:
                erased.add(person_id)
            else:
                loaded[person_id] = self._unwrap(person_id, wrapped)
        return found

    async def _existing(self, person_id: str) -> AESGCM | None:
        """The owner's key, or None when it has none or was erased (nothing is created)."""
        while True:
            cached = self._cached(person_id)
            if cached is not None:
                return cached
            erasures = self._erasures
            async with self._transaction() as conn:
                found = await _SELECT_KEY.rows(conn, {"person_id": person_id})
            if not found or found[0][1] is not None:
                return None
            key = self._unwrap(person_id, found[0][0])
            if erasures == self._erasures:  # else an erasure overlapped: look again
                self._remember({person_id: key})
                return self._cache.get(person_id) or AESGCM(key)

    def _kid(self, person_id: str) -> str:
        return f"{self.keyring}/{person_id}/1"

    async def seal(self, person_id: str, plaintext: str) -> Sealed:
        aead = self._cached(person_id) or await self._for_sealing(person_id)
        nonce = os.urandom(12)
        ciphertext = aead.encrypt(nonce, plaintext.encode("utf-8"), person_id.encode())
        return Sealed(kid=self._kid(person_id), nonce=_b64(nonce), ct=_b64(ciphertext))

    async def open(self, person_id: str, sealed: Sealed | None) -> str | None:
        """The plaintext, or None when there is nothing, the person was erased or the value is not ours."""
        if sealed is None or sealed.kid != self._kid(person_id):
            return None
        aead = await self._existing(person_id)
        if aead is None:
            return None
        try:
            plain = aead.decrypt(base64.b64decode(sealed.nonce), base64.b64decode(sealed.ct), person_id.encode())
        except Exception:
            return None
        return plain.decode("utf-8")

    async def erase(self, person_id: str) -> bool:
        """Destroy the person's keys, leaving no copy in the key store's files; True if there were any.

        Idempotent. The wrapped key is first overwritten with random bytes of its length (the
        same cell is rewritten in place, so its old bytes are gone from the page), then set to
        NULL; after the commit `_settle` empties SQLite's WAL (or vacuums on PostgreSQL).
        """
        self._erasures += 1
        self._cache.pop(person_id, None)
        now = datetime.now(UTC)
        this_key = person_keys.c.person_id == person_id
        async with self.engine.connect() as conn, conn.begin():
            await _secure_delete(conn)
            row = (
                await conn.execute(select(person_keys.c.wrapped_key, person_keys.c.erased_at).where(this_key))
            ).first()
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
        await self._settle()
        return row is not None and row.erased_at is None

    async def _settle(self) -> None:
        """Leave no earlier version of a page or row behind once an erasure committed.

        SQLite: a truncating checkpoint copies the latest pages into the database file and
        empties the WAL, which held every earlier version of the pages written since the last
        one. It waits for readers (busy timeout); if one still holds an old snapshot the WAL
        cannot be emptied yet: logged, and done again by the next erasure or start.
        PostgreSQL: VACUUM of the key table removes the dead tuples holding the old bytes (the
        server's WAL and backups keep them for their retention: docs/operations.md).
        """
        try:
            if self.engine.dialect.name == "sqlite":
                async with self.engine.connect() as conn:
                    busy = await conn.run_sync(_truncate_wal)
                if busy:
                    log.error("keystore.wal_not_emptied", keyring=self.keyring)
            elif self.engine.dialect.name == "postgresql":
                async with self.engine.connect() as conn:
                    autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    await autocommit.exec_driver_sql(f"VACUUM {person_keys.name}")
        except Exception as error:  # the erasure itself is committed; autovacuum / the next start follow
            log.error("keystore.settle_failed", keyring=self.keyring, error=type(error).__name__)

    async def _scrub_once(self) -> None:
        """Rewrite an SQLite key store once (VACUUM), for erasures done before secure deletion.

        An earlier version set keys to NULL without zeroing the freed bytes; a VACUUM rebuilds
        the file from live rows only. `user_version` records that it was done.
        """
        if self.engine.dialect.name != "sqlite":
            return
        async with self.engine.connect() as conn:
            version = await conn.run_sync(lambda sync: _pragma(sync, "PRAGMA user_version"))
            if version is not None and version[0] >= _SCRUBBED:
                return
            await conn.run_sync(lambda sync: _pragma(sync, "VACUUM"))
            await conn.run_sync(lambda sync: _pragma(sync, f"PRAGMA user_version={_SCRUBBED}"))

    async def rewrap(self, new_master: bytes, *, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-wrap every stored key under `new_master` in ONE transaction; returns how many (rotation).

        The current master key (this store's) unwraps, the new one wraps; a key the current one
        cannot unwrap aborts everything (MasterKeyError), so the store is never left half rotated.
        Writers are locked out for the transaction; stop the service first all the same, or the
        keys it creates after the commit are wrapped under the old key (`verify` finds them).
        Afterwards the old wrapped copies are removed from the files as after an erasure.
        """
        new = AESGCM(decode_master_key(_b64(new_master)))
        done = 0
        async with self.engine.connect() as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                await conn.exec_driver_sql(f"LOCK TABLE {person_keys.name} IN SHARE ROW EXCLUSIVE MODE")
            stored = (
                await conn.execute(
                    select(person_keys.c.person_id, person_keys.c.wrapped_key)
                    .where(person_keys.c.wrapped_key.is_not(None))
                    .order_by(person_keys.c.person_id)
                )
            ).all()
            statement = (
                update(person_keys)
                .where(person_keys.c.person_id == bindparam("owner"))
                .values(wrapped_key=bindparam("rewrapped"))
            )
            for start in range(0, len(stored), _CHUNK):
                rows = []
                for person_id, wrapped in stored[start : start + _CHUNK]:
                    try:
                        key = self._unwrap(person_id, bytes(wrapped))
                    except InvalidTag:
                        raise MasterKeyError(
                            f"the current master key does not unwrap every key of the {self.keyring} key "
                            "store: nothing was changed"
                        ) from None
                    nonce = os.urandom(12)
                    rows.append({"owner": person_id, "rewrapped": nonce + new.encrypt(nonce, key, person_id.encode())})
                await conn.execute(statement, rows)
                done += len(rows)
                if progress is not None:
                    progress(done, len(stored))
        self._master_source = new_master
        self._master_aead = new
        self._cache.clear()
        await self._settle()
        return done

    async def verify(self) -> tuple[int, int]:
        """(keys the master key unwraps, keys it does not): the whole store, not just one key."""
        good = bad = 0
        after = ""
        stored = person_keys.c.wrapped_key.is_not(None)
        while True:
            async with self.engine.connect() as conn:
                page = (
                    await conn.execute(
                        select(person_keys.c.person_id, person_keys.c.wrapped_key)
                        .where(stored, person_keys.c.person_id > after)
                        .order_by(person_keys.c.person_id)
                        .limit(5000)
                    )
                ).all()
            if not page:
                break
            for person_id, wrapped in page:
                try:
                    self._unwrap(person_id, bytes(wrapped))
                    good += 1
                except InvalidTag:
                    bad += 1
            after = page[-1][0]
        return good, bad

    async def is_erased(self, person_id: str) -> bool:
        async with self.engine.connect() as conn:
            value = await conn.scalar(select(person_keys.c.erased_at).where(person_keys.c.person_id == person_id))
        return value is not None
