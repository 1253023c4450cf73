"""Erasure cannot be undone: no copy of an erased person's wrapped key stays in any file of the key store.

The old erasure set the wrapped key to NULL and left the page that held it in SQLite's write-ahead
log (and the freed bytes in the page): the key was unwrapped from `<service>-keys.db-wal` with the
master key beside it, and every sealed value about the person decrypted again. These tests read the
wrapped bytes before erasure and search every byte of every file of the key store for them: while
the store is open, after the process that erased was killed with SIGKILL, and after reopening.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import select, text
from tsunagu_events.contracts.common import Sealed
from tsunagu_platform.crypto import KeyStore, load_master_key, person_keys
from tsunagu_platform.db import create_engine
from tsunagu_platform.testing import create_postgres_database, drop_postgres_database

PEOPLE = [f"person-{i:04d}" for i in range(600)]
# Spread over the B-tree's pages: first, last and in between.
ERASED = [*PEOPLE[::37], PEOPLE[-1]]


async def _wrapped(store: KeyStore, people: list[str]) -> dict[str, bytes]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            select(person_keys.c.person_id, person_keys.c.wrapped_key).where(person_keys.c.person_id.in_(people))
        )
        return {person_id: bytes(wrapped) for person_id, wrapped in rows}


def _files_holding(directory: Path, wrapped: dict[str, bytes]) -> dict[str, list[str]]:
    """Person -> the files of the key store (database, -wal, -shm, anything else) that hold its wrapped key."""
    contents = {path.name: path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file()}
    found: dict[str, list[str]] = {}
    for person_id, secret in wrapped.items():
        holders = [name for name, data in contents.items() if secret in data]
        if holders:
            found[person_id] = holders
    return found


def _store(directory: Path) -> KeyStore:
    return KeyStore(
        create_engine(f"sqlite:///{directory / 'intake-keys.db'}"),
        load_master_key(None, directory.parent / "master.key"),
        "intake",
    )


async def test_an_erased_persons_wrapped_key_is_in_no_file_of_the_open_key_store(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    store = _store(directory)
    await store.migrate()
    await store.prepare(PEOPLE)
    sealed = {p: await store.seal(p, f"DV相談 {p}") for p in PEOPLE[:5]}
    erased = await _wrapped(store, ERASED)
    kept = await _wrapped(store, PEOPLE[1:4])
    assert _files_holding(directory, kept), "the scan finds wrapped keys that are still there"
    try:
        for person_id in ERASED:
            assert await store.erase(person_id) is True
        assert _files_holding(directory, erased) == {}, "erased keys are still readable in the key store's files"
        assert set(_files_holding(directory, kept)) == set(kept), "the other persons' keys stay"
        assert await store.open(PEOPLE[1], sealed[PEOPLE[1]]) == f"DV相談 {PEOPLE[1]}"
        assert await store.open(PEOPLE[0], sealed[PEOPLE[0]]) is None
    finally:
        await store.engine.dispose()


async def test_every_connection_of_the_key_store_deletes_securely(tmp_path: Path) -> None:
    store = KeyStore(
        create_engine(f"sqlite:///{tmp_path / 'keys.db'}", for_writes=False, pool_size=3),
        load_master_key(None, tmp_path / "m.key"),
        "intake",
    )
    await store.migrate()
    connections = [await store.engine.connect() for _ in range(3)]
    try:
        assert [await c.scalar(text("PRAGMA secure_delete")) for c in connections] == [1, 1, 1]
    finally:
        for conn in connections:
            await conn.close()
        await store.engine.dispose()


_ERASING_CHILD = textwrap.dedent(
    """
    import asyncio, base64, json, sys
    from pathlib import Path
    from sqlalchemy import select
    from tsunagu_platform.crypto import KeyStore, load_master_key, person_keys
    from tsunagu_platform.db import create_engine

    async def main(directory, people, erased):
        store = KeyStore(create_engine(f"sqlite:///{directory / 'intake-keys.db'}"),
                         load_master_key(None, directory.parent / "master.key"), "intake")
        await store.migrate()
        await store.prepare(people)
        kept = await store.seal(people[1], "住所 世田谷区")
        async with store.engine.connect() as conn:
            rows = await conn.execute(select(person_keys.c.person_id, person_keys.c.wrapped_key)
                                      .where(person_keys.c.person_id.in_(erased)))
            wrapped = {p: base64.b64encode(w).decode() for p, w in rows}
        for person_id in erased:
            await store.erase(person_id)
        print(json.dumps({"wrapped": wrapped, "kept": kept.model_dump()}), flush=True)
        sys.stdin.read()  # killed here, with the key store still open

    asyncio.run(main(Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])))
    """
)


async def test_an_erased_persons_wrapped_key_is_in_no_file_after_kill_9_and_after_reopening(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _ERASING_CHILD,
        str(directory),
        json.dumps(PEOPLE),
        json.dumps(ERASED),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), timeout=120)
    child.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(child.wait(), timeout=60) == -signal.SIGKILL
    reported = json.loads(line)
    erased = {p: base64.b64decode(w) for p, w in reported["wrapped"].items()}
    assert set(erased) == set(ERASED)
    assert _files_holding(directory, erased) == {}, "after kill -9"

    store = _store(directory)
    try:
        await store.migrate()
        assert await store.open(PEOPLE[1], Sealed(**reported["kept"])) == "住所 世田谷区"
        assert all([await store.is_erased(p) for p in ERASED])
        assert _files_holding(directory, erased) == {}, "after reopening"
    finally:
        await store.engine.dispose()


async def test_a_store_erased_by_an_earlier_version_is_scrubbed_when_opened(tmp_path: Path) -> None:
    """Erasures done before this fix (NULL only, no secure_delete, WAL kept) are made irreversible at start."""
    directory = tmp_path / "keys"
    store = _store(directory)
    await store.migrate()
    await store.prepare(PEOPLE)
    erased = await _wrapped(store, ERASED)
    async with store.engine.begin() as conn:  # what the old KeyStore.erase did, on a store it made
        await conn.execute(text("PRAGMA user_version=0"))
        await conn.execute(text("PRAGMA secure_delete=OFF"))
        for person_id in ERASED:
            await conn.execute(
                person_keys.update().where(person_keys.c.person_id == person_id).values(wrapped_key=None)
            )
    await store.engine.dispose()
    assert _files_holding(directory, erased), "the old erasure left the keys behind"

    reopened = _store(directory)
    try:
        await reopened.migrate()
        assert _files_holding(directory, erased) == {}
    finally:
        await reopened.engine.dispose()


async def test_on_postgresql_an_erased_persons_wrapped_key_is_gone_from_the_tables_heap() -> None:
    """Erasure overwrites, nulls and vacuums the key table: the dead tuples holding the key are removed.

    Read as superuser (the test server's `postgres`) through pg_read_binary_file on the table's file.
    The server's WAL and backups still hold it for their retention: docs/operations.md.
    """
    url = await create_postgres_database()
    store = KeyStore(create_engine(url), os.urandom(32), "intake")
    try:
        await store.migrate()
        await store.prepare(PEOPLE)
        erased = await _wrapped(store, ERASED)
        kept = await _wrapped(store, PEOPLE[1:4])

        async def heap() -> bytes:
            async with store.engine.connect() as conn:
                await conn.execute(text("CHECKPOINT"))
                path = await conn.scalar(text("SELECT pg_relation_filepath('person_keys')"))
                return bytes(await conn.scalar(text("SELECT pg_read_binary_file(:p)"), {"p": path}))

        before = await heap()
        assert all(secret in before for secret in erased.values()), "the scan finds the keys before erasure"
        for person_id in ERASED:
            assert await store.erase(person_id) is True
        after = await heap()
        assert [p for p, secret in erased.items() if secret in after] == []
        assert all(secret in after for secret in kept.values())
    finally:
        await store.engine.dispose()
        await drop_postgres_database(url)
