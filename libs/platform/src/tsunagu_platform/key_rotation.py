"""Rotating the master key: every stored person key re-wrapped under a new master key, all or nothing.

A leaked or retired master key is replaced without touching a single sealed value: only the
wrapping of each person key changes, so events, topics and backups stay readable. The re-wrap is
one transaction, so a key the current master key cannot unwrap leaves the store exactly as it was
instead of half rotated; `verify_keys` counts what a master key opens, before and after
(`tsunagu-ops keys rotate`, docs/operations.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tsunagu_platform.key_table import KEYS_PER_STATEMENT, person_keys
from tsunagu_platform.master_key import MasterKeyError

__all__ = ["Unwrap", "rewrap_keys", "verify_keys"]

# The current master key's unwrapping of one person's wrapped key (KeyStore._unwrap).
Unwrap = Callable[[str, bytes], bytes]


async def rewrap_keys(
    engine: AsyncEngine,
    keyring: str,
    unwrap: Unwrap,
    new: AESGCM,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Re-wrap every stored key with `new` in ONE transaction; returns how many.

    Writers are locked out for the transaction (PostgreSQL: SHARE ROW EXCLUSIVE; SQLite: the
    write transaction). A key `unwrap` refuses aborts everything (MasterKeyError).
    """
    done = 0
    async with engine.connect() as conn, conn.begin():
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
        for start in range(0, len(stored), KEYS_PER_STATEMENT):
            rows = []
            for person_id, wrapped in stored[start : start + KEYS_PER_STATEMENT]:
                try:
                    key = unwrap(person_id, bytes(wrapped))
                except InvalidTag:
                    raise MasterKeyError(
                        f"the current master key does not unwrap every key of the {keyring} key "
                        "store: nothing was changed"
                    ) from None
                nonce = os.urandom(12)
                rows.append({"owner": person_id, "rewrapped": nonce + new.encrypt(nonce, key, person_id.encode())})
            await conn.execute(statement, rows)
            done += len(rows)
            if progress is not None:
                progress(done, len(stored))
    return done


async def verify_keys(engine: AsyncEngine, unwrap: Unwrap) -> tuple[int, int]:
    """(keys `unwrap` opens, keys it does not): the whole store, a page at a time, not just one key."""
    good = bad = 0
    after = ""
    stored = person_keys.c.wrapped_key.is_not(None)
    while True:
        async with engine.connect() as conn:
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
                unwrap(person_id, bytes(wrapped))
                good += 1
            except InvalidTag:
                bad += 1
        after = page[-1][0]
    return good, bad
