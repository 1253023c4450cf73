"""The key store's master key: a wrong or missing one stops the service at start; rotation re-wraps every key.

A recreated container used to mint a new master key beside a store full of keys wrapped with the old
one: the service started, and reading any existing person answered 500 (InvalidTag).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tsunagu_platform.crypto import KeyStore, MasterKey, MasterKeyError, person_keys
from tsunagu_platform.db import create_engine
from tsunagu_platform.ops import parser as ops_parser
from tsunagu_platform.runtime import ServiceRuntime
from tsunagu_platform.settings import ServiceSettings


async def ops_main(argv: list[str]) -> int:
    """`tsunagu-ops …` in this test's event loop (main() would start its own)."""
    args = ops_parser().parse_args(argv)
    return int(await args.run(args))


def _b64_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _settings(tmp_path: Path, master_key: str | None) -> ServiceSettings:
    return ServiceSettings(
        service="intake", port=8001, var_dir=tmp_path, broker_mode="memory", keystore_master_key=master_key
    )


async def _close(runtime: ServiceRuntime) -> None:
    await runtime.keys_engine.dispose()
    await runtime.engine.dispose()
    await runtime.reader.dispose()


async def _count(store: KeyStore) -> int:
    async with store.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(person_keys)) or 0)


async def test_a_service_whose_key_store_holds_keys_of_another_master_key_refuses_to_start(tmp_path: Path) -> None:
    first = ServiceRuntime(_settings(tmp_path, _b64_key()))
    await first.migrate()
    await first.keys.seal("person-1", "山田 太郎")
    await _close(first)

    recreated = ServiceRuntime(_settings(tmp_path, _b64_key()))
    try:
        with pytest.raises(Exception, match="does not unwrap the 1 keys of the intake key store") as refused:
            await recreated.migrate()
        assert "person-1" not in str(refused.value)
        assert "マスター鍵" in str(refused.value)
        assert await _count(recreated.keys) == 1, "no key was minted under the wrong master key"
    finally:
        await _close(recreated)


async def test_a_service_without_its_master_key_file_refuses_to_mint_one_over_existing_keys(tmp_path: Path) -> None:
    first = ServiceRuntime(_settings(tmp_path, None))
    await first.migrate()
    await first.keys.seal("person-1", "090-1234-5678")
    await _close(first)
    master_file = tmp_path / "intake-master.key"
    assert master_file.exists(), "local runs keep the master key in var/"
    master_file.unlink()  # a recreated container: the key store survived, the key file did not

    recreated = ServiceRuntime(_settings(tmp_path, None))
    try:
        with pytest.raises(Exception, match="refusing to mint a new master key over existing keys"):
            await recreated.migrate()
        assert not master_file.exists(), "no new master key was written"
    finally:
        await _close(recreated)


@pytest.mark.parametrize("placeholder", ["change-me", "ab" * 32, base64.b64encode(b"short").decode()])
async def test_a_placeholder_or_malformed_master_key_stops_the_start(tmp_path: Path, placeholder: str) -> None:
    runtime = ServiceRuntime(_settings(tmp_path, placeholder))
    try:
        with pytest.raises(Exception, match="must be 32 random bytes in base64"):
            await runtime.migrate()
    finally:
        await _close(runtime)


async def test_an_empty_key_store_starts_without_a_master_key_and_creates_none(tmp_path: Path) -> None:
    store = KeyStore(create_engine(f"sqlite:///{tmp_path / 'keys.db'}"), MasterKey(None, tmp_path / "m.key"), "x")
    try:
        await store.migrate()
        assert not (tmp_path / "m.key").exists(), "services that never seal need no master key"
        await store.erase("person-gone")  # a tombstone is not a key
        await store.migrate()
    finally:
        await store.engine.dispose()


async def test_a_service_with_its_own_master_key_starts_and_opens_what_it_sealed(tmp_path: Path) -> None:
    key = _b64_key()
    first = ServiceRuntime(_settings(tmp_path, key))
    await first.migrate()
    sealed = await first.keys.seal("person-1", "世田谷区池尻")
    await _close(first)
    again = ServiceRuntime(_settings(tmp_path, key))
    try:
        await again.migrate()
        assert await again.keys.open("person-1", sealed) == "世田谷区池尻"
    finally:
        await _close(again)


def _files(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.iterdir() if p.name.startswith("intake-keys.db"))


async def test_rotation_rewraps_every_key_so_the_new_master_key_opens_them_and_the_old_one_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = os.urandom(32), os.urandom(32)
    people = [f"person-{i:04d}" for i in range(1234)]
    store = KeyStore(create_engine(f"sqlite:///{tmp_path / 'intake-keys.db'}"), old, "intake")
    await store.migrate()
    await store.prepare(people)
    sealed = {p: await store.seal(p, f"相談 {p}") for p in people[:3]}
    await store.erase(people[5])
    async with store.engine.connect() as conn:
        before = {
            p: bytes(w) for p, w in await conn.execute(select(person_keys.c.person_id, person_keys.c.wrapped_key)) if w
        }
    await store.engine.dispose()

    monkeypatch.setenv("TSUNAGU_KEYSTORE_MASTER_KEY", base64.b64encode(old).decode())
    new_file = tmp_path / "new.key"
    new_file.write_text(base64.b64encode(new).decode())
    code = await ops_main(
        ["keys", "rotate", "--service", "intake", "--var-dir", str(tmp_path), "--new-key-file", str(new_file)]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "1233 keys re-wrapped" in out.out
    assert "1 erased" in out.out
    assert "1233 open with the new key, 0 do not" in out.out
    assert "/1233 keys re-wrapped" in out.err, "progress is shown as counts"
    assert "person-" not in out.out + out.err, "never a person id"

    rotated = KeyStore(create_engine(f"sqlite:///{tmp_path / 'intake-keys.db'}"), new, "intake")
    stale = KeyStore(create_engine(f"sqlite:///{tmp_path / 'intake-keys.db'}"), old, "intake")
    try:
        await rotated.migrate()
        assert {p: await rotated.open(p, v) for p, v in sealed.items()} == {p: f"相談 {p}" for p in sealed}
        assert await rotated.verify() == (1233, 0)
        with pytest.raises(MasterKeyError):
            await stale.migrate()
        assert await stale.verify() == (0, 1233)
        files = _files(tmp_path)
        assert not [p for p, w in before.items() if w in files], "no copy wrapped under the old key remains"
    finally:
        await rotated.engine.dispose()
        await stale.engine.dispose()

    monkeypatch.setenv("TSUNAGU_KEYSTORE_MASTER_KEY", base64.b64encode(new).decode())
    assert await ops_main(["keys", "verify", "--service", "intake", "--var-dir", str(tmp_path)]) == 0


async def test_rotation_with_a_wrong_current_master_key_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = os.urandom(32)
    store = KeyStore(create_engine(f"sqlite:///{tmp_path / 'intake-keys.db'}"), real, "intake")
    await store.migrate()
    sealed = await store.seal("person-1", "x")
    await store.engine.dispose()
    monkeypatch.setenv("TSUNAGU_KEYSTORE_MASTER_KEY", _b64_key())
    monkeypatch.setenv("TSUNAGU_KEYSTORE_NEW_MASTER_KEY", _b64_key())
    assert await ops_main(["keys", "rotate", "--service", "intake", "--var-dir", str(tmp_path)]) == 1
    assert "does not unwrap" in capsys.readouterr().err
    again = KeyStore(create_engine(f"sqlite:///{tmp_path / 'intake-keys.db'}"), real, "intake")
    try:
        assert await again.open("person-1", sealed) == "x"
    finally:
        await again.engine.dispose()


async def test_rotation_takes_no_master_key_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TSUNAGU_KEYSTORE_MASTER_KEY", raising=False)
    monkeypatch.delenv("TSUNAGU_KEYSTORE_NEW_MASTER_KEY", raising=False)
    with pytest.raises(SystemExit):
        ops_parser().parse_args(["keys", "rotate", "--service", "intake", "--new-key", _b64_key()])
    assert await ops_main(["keys", "rotate", "--service", "intake", "--var-dir", str(tmp_path)]) == 2


async def test_rewrap_turns_every_key_over_to_the_new_master_key_on_each_database(database_url: str) -> None:
    old, new = os.urandom(32), os.urandom(32)
    store = KeyStore(create_engine(database_url), old, "referral")
    stale = KeyStore(store.engine, old, "referral")
    try:
        await store.migrate()
        await store.prepare([f"person-{i}" for i in range(700)])
        sealed = await store.seal("person-7", "紹介理由")
        await store.erase("person-8")
        counted: list[tuple[int, int]] = []
        assert await store.rewrap(new, progress=lambda done, of: counted.append((done, of))) == 699
        assert counted == [(500, 699), (699, 699)]
        rotated = KeyStore(store.engine, new, "referral")
        await rotated.migrate()
        assert await rotated.open("person-7", sealed) == "紹介理由"
        assert await rotated.verify() == (699, 0)
        assert await rotated.is_erased("person-8")
        with pytest.raises(MasterKeyError):
            await stale.migrate()
    finally:
        await store.engine.dispose()


async def test_rotating_a_local_key_store_replaces_its_master_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TSUNAGU_KEYSTORE_MASTER_KEY", raising=False)
    runtime = ServiceRuntime(_settings(tmp_path, None))
    await runtime.migrate()
    sealed = await runtime.keys.seal("person-1", "住所")
    await _close(runtime)
    before = (tmp_path / "intake-master.key").read_text()
    new = _b64_key()
    monkeypatch.setenv("TSUNAGU_KEYSTORE_NEW_MASTER_KEY", new)
    assert await ops_main(["keys", "rotate", "--service", "intake", "--var-dir", str(tmp_path)]) == 0
    assert (tmp_path / "intake-master.key").read_text() == new != before
    assert (tmp_path / "intake-master.key").stat().st_mode & 0o077 == 0
    again = ServiceRuntime(_settings(tmp_path, None))
    try:
        await again.migrate()  # the service starts with the rotated file
        assert await again.keys.open("person-1", sealed) == "住所"
    finally:
        await _close(again)
