"""The master key that wraps a service's person keys: where it comes from, and what it must be.

Deployments give it in settings (TSUNAGU_KEYSTORE_MASTER_KEY, from a secret); local runs keep it in a
file under var/, created on first use. Creating one is only ever right for an empty key store: a
recreated container that minted a new key beside existing keys made every person unreadable, so
KeyStore.migrate asks `MasterKey.configured()` before anything could create it.
"""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


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
