"""Per-person encryption of personal data, so that erasing a person is destroying a key.

Events are immutable and copied everywhere (topics, consumers, backups); personal
fields in them are sealed with AES-256-GCM under a key of that person. Each
service keeps its own person keys in its own key store, apart from its events
(a separate database), wrapped with a master key from settings. Erasure deletes
the person's keys and leaves a tombstone: every sealed value about that person,
wherever it was copied, becomes unreadable while events keep their shape.

The person id is bound in as associated data, so a value sealed for one person
cannot be passed off as another's.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Column, DateTime, Integer, LargeBinary, MetaData, String, Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from tsunagu_events.contracts.common import Sealed

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


def load_master_key(value: str | None, fallback_file: Path) -> bytes:
    """The key-wrapping key: base64 from settings, else a file created once for local runs."""
    if value:
        key = base64.b64decode(value)
    elif fallback_file.exists():
        key = base64.b64decode(fallback_file.read_text().strip())
    else:
        fallback_file.parent.mkdir(parents=True, exist_ok=True)
        key = AESGCM.generate_key(bit_length=256)
        fallback_file.write_text(_b64(key))
        fallback_file.chmod(0o600)
    if len(key) != 32:
        raise ValueError("the key-store master key must be 32 bytes (base64)")
    return key


class KeyStore:
    """Person keys of one service (`keyring`), in their own database."""

    def __init__(self, engine: AsyncEngine, master_key: bytes | Callable[[], bytes], keyring: str) -> None:
        self.engine = engine
        self.keyring = keyring
        self._master_source = master_key
        self._master_aead: AESGCM | None = None
        self._cache: dict[str, bytes] = {}

    @property
    def _master(self) -> AESGCM:
        # Loaded on first use, so building a service never touches the file system.
        if self._master_aead is None:
            source = self._master_source
            self._master_aead = AESGCM(source() if callable(source) else source)
        return self._master_aead

    async def migrate(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(keystore_metadata.create_all)

    def _wrap(self, person_id: str, key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._master.encrypt(nonce, key, person_id.encode())

    def _unwrap(self, person_id: str, wrapped: bytes) -> bytes:
        return self._master.decrypt(wrapped[:12], wrapped[12:], person_id.encode())

    async def _key(self, person_id: str, *, create: bool) -> bytes | None:
        if person_id in self._cache:
            return self._cache[person_id]
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(person_keys).where(person_keys.c.person_id == person_id))).first()
            if row is None:
                if not create:
                    return None
                key = AESGCM.generate_key(bit_length=256)
                await conn.execute(
                    insert(person_keys).values(
                        person_id=person_id,
                        key_number=1,
                        wrapped_key=self._wrap(person_id, key),
                        created_at=datetime.now(UTC),
                    )
                )
            elif row.erased_at is not None:
                if create:
                    raise PersonErasedError(person_id)
                return None
            else:
                key = self._unwrap(person_id, row.wrapped_key)
        self._cache[person_id] = key
        return key

    def _kid(self, person_id: str) -> str:
        return f"{self.keyring}/{person_id}/1"

    async def seal(self, person_id: str, plaintext: str) -> Sealed:
        key = await self._key(person_id, create=True)
        assert key is not None
        nonce = os.urandom(12)
        ciphertext = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), person_id.encode())
        return Sealed(kid=self._kid(person_id), nonce=_b64(nonce), ct=_b64(ciphertext))

    async def open(self, person_id: str, sealed: Sealed | None) -> str | None:
        """The plaintext, or None when there is nothing, the person was erased or the value is not ours."""
        if sealed is None or sealed.kid != self._kid(person_id):
            return None
        key = await self._key(person_id, create=False)
        if key is None:
            return None
        try:
            plain = AESGCM(key).decrypt(base64.b64decode(sealed.nonce), base64.b64decode(sealed.ct), person_id.encode())
        except Exception:
            return None
        return plain.decode("utf-8")

    async def erase(self, person_id: str) -> bool:
        """Destroy the person's keys; True if there were any. Idempotent."""
        self._cache.pop(person_id, None)
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(select(person_keys.c.erased_at).where(person_keys.c.person_id == person_id))
            ).first()
            if row is None:
                await conn.execute(
                    insert(person_keys).values(
                        person_id=person_id, key_number=1, wrapped_key=None, created_at=now, erased_at=now
                    )
                )
                return False
            await conn.execute(
                update(person_keys).where(person_keys.c.person_id == person_id).values(wrapped_key=None, erased_at=now)
            )
            return row.erased_at is None

    async def is_erased(self, person_id: str) -> bool:
        async with self.engine.connect() as conn:
            value = await conn.scalar(select(person_keys.c.erased_at).where(person_keys.c.person_id == person_id))
        return value is not None
