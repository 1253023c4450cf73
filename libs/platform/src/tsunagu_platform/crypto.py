"""Per-person encryption of personal data, so that erasing a person is destroying a key.

Events are immutable and copied everywhere (topics, consumers, backups); personal
fields in them are sealed with AES-256-GCM under a key of that person. Each
service keeps its own person keys in its own key store, apart from its events
(a separate database), wrapped with a master key from settings. Erasure deletes
the person's keys and leaves a tombstone: every sealed value about that person,
wherever it was copied, becomes unreadable while events keep their shape.

The person id is bound in as associated data, so a value sealed for one person
cannot be passed off as another's.

This module is the KeyStore itself: sealing and opening, creating and caching keys.
What it delegates has a module of its own: the key table (key_table.py), destroying a
key so that no copy is left in the store's files (key_erasure.py), the start-up check
and the source of the master key (master_key.py), and re-wrapping for a rotation
(key_rotation.py). The names other code imports are re-exported here.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tsunagu_events.contracts.common import Sealed

from tsunagu_platform.group_commit import command_transactions
from tsunagu_platform.key_erasure import (
    destroy_key,
    scrub_once,
    secure_delete_on_every_connection,
    settle,
    vacuum_after_every_erasure,
)
from tsunagu_platform.key_rotation import rewrap_keys, verify_keys
from tsunagu_platform.key_table import KEYS_PER_STATEMENT, keystore_metadata, person_keys
from tsunagu_platform.master_key import (
    MasterKey,
    MasterKeyError,
    check_against_store,
    decode_master_key,
    load_master_key,
)
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

# What a waiting `seal` learns when an erasure overlapped the load of its key: look again.
_AGAIN = b""


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
        # SQLite: every connection of the pool zeroes what it frees, not just the erasing one.
        secure_delete_on_every_connection(engine)

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
            await vacuum_after_every_erasure(conn)
        await scrub_once(self.engine)
        await self._settle()
        await self.check_master_key()

    async def check_master_key(self) -> None:
        """Unwrap one stored key: a store whose keys the master key cannot open must not start (master_key.py)."""
        await check_against_store(self.engine, self.keyring, self._master_source, self._unwrap)

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
            for start in range(0, len(owners), KEYS_PER_STATEMENT):
                chunk = owners[start : start + KEYS_PER_STATEMENT]
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
        had_key = await destroy_key(self.engine, person_id)
        await self._settle()
        return had_key

    async def _settle(self) -> None:
        """Leave no earlier version of a page or row behind once an erasure committed (key_erasure.py)."""
        await settle(self.engine, self.keyring)

    async def rewrap(self, new_master: bytes, *, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-wrap every stored key under `new_master` in ONE transaction; returns how many (rotation).

        The current master key (this store's) unwraps, the new one wraps; a key the current one
        cannot unwrap aborts everything (MasterKeyError), so the store is never left half rotated.
        Writers are locked out for the transaction; stop the service first all the same, or the
        keys it creates after the commit are wrapped under the old key (`verify` finds them).
        Afterwards the old wrapped copies are removed from the files as after an erasure.
        """
        new = AESGCM(decode_master_key(_b64(new_master)))
        done = await rewrap_keys(self.engine, self.keyring, self._unwrap, new, progress=progress)
        self._master_source = new_master
        self._master_aead = new
        self._cache.clear()
        await self._settle()
        return done

    async def verify(self) -> tuple[int, int]:
        """(keys the master key unwraps, keys it does not): the whole store, not just one key."""
        return await verify_keys(self.engine, self._unwrap)

    async def is_erased(self, person_id: str) -> bool:
        async with self.engine.connect() as conn:
            value = await conn.scalar(select(person_keys.c.erased_at).where(person_keys.c.person_id == person_id))
        return value is not None
