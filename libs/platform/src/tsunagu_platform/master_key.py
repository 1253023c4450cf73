"""The master key that wraps a service's person keys: where it comes from, and what it must be.

Deployments give it in settings (TSUNAGU_KEYSTORE_MASTER_KEY, from a secret); local runs keep it in a
file under var/, created on first use. Creating one is only ever right for an empty key store: a
recreated container that minted a new key beside existing keys made every person unreadable, so
KeyStore.migrate asks `MasterKey.configured()` before anything could create it, and
`check_against_store` unwraps one stored key so that a wrong master key stops the start.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tsunagu_platform.key_table import person_keys


class MasterKeyError(Exception):
    """The key store's master key is missing or is not the one its keys were wrapped with: do not start."""


def decode_master_key(value: str) -> bytes:
    """32 bytes from base64; anything else (a placeholder such as change-me, hex, a short key) is refused."""
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise MasterKeyError(
            "鍵ストアのマスター鍵は32バイトのbase64です (the key-store master key must be 32 random bytes in "
            "base64: openssl rand -base64 32)"
        )
    return key


def load_master_key(value: str | None, fallback_file: Path, *, create: bool = True) -> bytes:
    """The key-wrapping key: base64 from settings, else a file created once for local runs."""
    if value:
        return decode_master_key(value)
    if not fallback_file.exists():
        if not create:
            raise MasterKeyError(f"no master key is configured and {fallback_file} does not exist")
        fallback_file.parent.mkdir(parents=True, exist_ok=True)
        fallback_file.write_text(base64.b64encode(AESGCM.generate_key(bit_length=256)).decode("ascii"))
        fallback_file.chmod(0o600)
    return decode_master_key(fallback_file.read_text())


class MasterKey:
    """Where a service's master key comes from: settings (deployments), else a file under var/ (local runs).

    Callable like the plain loaders KeyStore also accepts; the start-up check asks `configured()`
    first, so that a store which already holds keys never gets a new master key minted over them.
    """

    def __init__(self, value: str | None, fallback_file: Path) -> None:
        self.value = value
        self.fallback_file = fallback_file

    def configured(self) -> bool:
        return bool(self.value) or self.fallback_file.exists()

    def describe(self) -> str:
        return "TSUNAGU_KEYSTORE_MASTER_KEY" if self.value else str(self.fallback_file)

    def __call__(self) -> bytes:
        return load_master_key(self.value, self.fallback_file)


async def check_against_store(
    engine: AsyncEngine, keyring: str, source: object, unwrap: Callable[[str, bytes], bytes]
) -> None:
    """Unwrap one stored key: a store whose keys the master key cannot open must not start.

    Otherwise the service would run, mint keys under the wrong master key for new persons and
    answer 500 (InvalidTag) for every existing one. Nothing is loaded while the store holds no
    key, so services that never seal never need a master key. `source` is what the KeyStore was
    given (a MasterKey, bytes or a loader); `unwrap` unwraps with it.
    """
    if isinstance(source, MasterKey) and source.value:
        decode_master_key(source.value)  # a placeholder stops the start, not the first seal
    async with engine.connect() as conn:
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
            f"鍵ストア({keyring})に{count}件の鍵がありますが、マスター鍵が設定されていません。"
            f"新しいマスター鍵は作りません (the {keyring} key store holds {count} keys but no master key "
            f"is configured: TSUNAGU_KEYSTORE_MASTER_KEY is unset and {source.fallback_file} does not exist; "
            "refusing to mint a new master key over existing keys — restore the master key from its backup, "
            "docs/operations.md)"
        )
    try:
        unwrap(row.person_id, bytes(row.wrapped_key))
    except InvalidTag:
        origin = source.describe() if isinstance(source, MasterKey) else "the configured master key"
        raise MasterKeyError(
            f"マスター鍵が鍵ストア({keyring})の鍵と一致しません (the master key from {origin} does not "
            f"unwrap the {count} keys of the {keyring} key store: it is not the key they were wrapped "
            "with — configure the right TSUNAGU_KEYSTORE_MASTER_KEY, or rotate with `tsunagu-ops keys "
            "rotate`; docs/operations.md)"
        ) from None
