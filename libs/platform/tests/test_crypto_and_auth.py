"""Per-person keys: sealed values open for their person only, and erasure makes them unreadable for good."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi import HTTPException
from sqlalchemy import event, select
from tsunagu_platform.auth import Role, mint, verify
from tsunagu_platform.auth import main as token_main
from tsunagu_platform.crypto import KeyStore, PersonErasedError, load_master_key, person_keys
from tsunagu_platform.db import create_engine
from tsunagu_platform.settings import ServiceSettings, UnsafeSigningKey


@pytest.fixture
async def keys(tmp_path: Path) -> KeyStore:
    store = KeyStore(
        create_engine(f"sqlite:///{tmp_path}/keys.db"), load_master_key(None, tmp_path / "m.key"), "intake"
    )
    await store.migrate()
    return store


async def test_sealed_value_opens_for_its_person_only(keys: KeyStore) -> None:
    sealed = await keys.seal("person-1", "山田 太郎")
    assert "山田" not in sealed.ct
    assert await keys.open("person-1", sealed) == "山田 太郎"
    assert await keys.open("person-2", sealed) is None


async def test_erasure_makes_every_sealed_value_unreadable_and_refuses_new_ones(keys: KeyStore, tmp_path: Path) -> None:
    sealed = await keys.seal("person-1", "090-1234-5678")
    assert await keys.erase("person-1") is True
    assert await keys.open("person-1", sealed) is None
    again = KeyStore(keys.engine, load_master_key(None, tmp_path / "m.key"), "intake")
    assert await again.open("person-1", sealed) is None, "no cached key survives in a fresh process"
    with pytest.raises(PersonErasedError):
        await keys.seal("person-1", "new")
    assert await keys.erase("person-1") is False
    assert await keys.is_erased("person-1")


async def test_values_sealed_by_another_service_are_not_opened(keys: KeyStore, tmp_path: Path) -> None:
    other = KeyStore(keys.engine, load_master_key(None, tmp_path / "m.key"), "referral")
    sealed = await other.seal("person-1", "note")
    assert await keys.open("person-1", sealed) is None


async def _key_rows(keys: KeyStore) -> dict[str, bool]:
    async with keys.engine.connect() as conn:
        rows = await conn.execute(select(person_keys.c.person_id, person_keys.c.erased_at))
        return {person_id: erased_at is not None for person_id, erased_at in rows}


async def test_prepare_creates_and_loads_many_keys_in_one_transaction_and_seal_then_needs_no_database(
    keys: KeyStore, tmp_path: Path
) -> None:
    existing = await keys.seal("person-old", "before")
    fresh = KeyStore(keys.engine, load_master_key(None, tmp_path / "m.key"), "intake")
    transactions = []
    event.listen(keys.engine.sync_engine, "commit", lambda _conn: transactions.append(1))
    owners = ["person-old", *(f"person-{i}" for i in range(1200)), "person-3"]  # more than one chunk, a repeat
    assert await fresh.prepare(owners) == set()
    assert len(transactions) == 1
    assert set(await _key_rows(keys)) == set(owners)
    # Every key is cached once committed: sealing and opening touch the database no more.
    sealed = [await fresh.seal(owner, "text") for owner in owners[:50]]
    assert await fresh.open("person-old", existing) == "before", "the stored key was loaded, not replaced"
    assert [await fresh.open(owner, value) for owner, value in zip(owners, sealed, strict=False)] == ["text"] * 50
    assert len(transactions) == 1
    assert await fresh.prepare(owners) == set()
    assert len(transactions) == 1, "cached owners need no transaction"


async def test_prepare_never_recreates_an_erased_persons_key(keys: KeyStore, tmp_path: Path) -> None:
    sealed = await keys.seal("person-1", "090-1234-5678")
    await keys.erase("person-1")
    await keys.erase("person-2")  # erased before any key existed: a tombstone
    fresh = KeyStore(keys.engine, load_master_key(None, tmp_path / "m.key"), "intake")
    assert await fresh.prepare(["person-1", "person-2", "person-3"]) == {"person-1", "person-2"}
    assert await _key_rows(keys) == {"person-1": True, "person-2": True, "person-3": False}
    for erased in ("person-1", "person-2"):
        with pytest.raises(PersonErasedError):
            await fresh.seal(erased, "new")
    assert await fresh.open("person-1", sealed) is None
    assert await fresh.open("person-3", await fresh.seal("person-3", "ok")) == "ok"


async def test_erasure_after_prepare_drops_the_cached_key(keys: KeyStore) -> None:
    await keys.prepare(["person-1"])
    sealed = await keys.seal("person-1", "x")
    await keys.erase("person-1")
    assert await keys.open("person-1", sealed) is None
    with pytest.raises(PersonErasedError):
        await keys.seal("person-1", "y")


async def test_the_key_cache_is_bounded_and_evicted_keys_are_loaded_again(keys: KeyStore, tmp_path: Path) -> None:
    small = KeyStore(keys.engine, load_master_key(None, tmp_path / "m.key"), "intake", cache_size=3)
    sealed = {owner: await small.seal(owner, owner) for owner in ("a", "b", "c", "d", "e")}
    assert len(small._cache) == 3
    await small.prepare([f"p{i}" for i in range(10)])
    assert len(small._cache) == 3
    assert {owner: await small.open(owner, value) for owner, value in sealed.items()} == {o: o for o in sealed}
    assert len(small._cache) == 3


async def test_concurrent_seals_create_their_keys_in_one_transaction_each_key_once(keys: KeyStore) -> None:
    transactions = []
    event.listen(keys.engine.sync_engine, "commit", lambda _conn: transactions.append(1))
    owners = [f"consultation-{i}" for i in range(40)]
    sealed = await asyncio.gather(*(keys.seal(owner, f"summary {owner}") for owner in owners + owners[:5]))
    assert len(transactions) == 1, "the owners of the seals waiting together share one key-store commit"
    assert set(await _key_rows(keys)) == set(owners)
    opened = [await keys.open(owner, value) for owner, value in zip(owners + owners[:5], sealed, strict=True)]
    assert opened == [f"summary {owner}" for owner in owners + owners[:5]], "repeated owners used the same key"


async def test_concurrent_seals_for_an_erased_person_fail_and_the_others_succeed(
    keys: KeyStore, tmp_path: Path
) -> None:
    await keys.erase("person-gone")
    fresh = KeyStore(keys.engine, load_master_key(None, tmp_path / "m.key"), "intake")
    results = await asyncio.gather(
        fresh.seal("person-gone", "x"), fresh.seal("person-new", "y"), return_exceptions=True
    )
    assert isinstance(results[0], PersonErasedError)
    assert await fresh.open("person-new", results[1]) == "y"  # type: ignore[arg-type]
    assert await _key_rows(keys) == {"person-gone": True, "person-new": False}


async def test_a_seal_whose_key_is_not_cached_still_gets_the_key_it_created(keys: KeyStore, tmp_path: Path) -> None:
    uncached = KeyStore(keys.engine, load_master_key(None, tmp_path / "m.key"), "intake", cache_size=0)
    sealed = await asyncio.gather(*(uncached.seal(f"p{i}", f"v{i}") for i in range(3)))
    assert [await keys.open(f"p{i}", value) for i, value in enumerate(sealed)] == ["v0", "v1", "v2"]


async def test_a_failed_key_transaction_fails_every_waiting_seal_and_the_next_seal_retries(keys: KeyStore) -> None:
    fail = {"now": True}

    def refuse(_conn: object, *_args: object) -> None:
        if fail["now"]:
            raise RuntimeError("key database unavailable")

    event.listen(keys.engine.sync_engine, "begin", refuse)
    results = await asyncio.gather(keys.seal("a", "1"), keys.seal("b", "2"), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["RuntimeError", "RuntimeError"]
    fail["now"] = False
    assert await keys.open("a", await keys.seal("a", "1")) == "1"


async def test_a_seal_given_up_by_its_caller_leaves_the_others_waiting_for_the_same_key(keys: KeyStore) -> None:
    impatient = asyncio.ensure_future(keys.seal("shared", "first"))
    patient = asyncio.ensure_future(keys.seal("shared", "second"))
    await asyncio.sleep(0)
    impatient.cancel()
    sealed = await patient
    assert impatient.cancelled()
    assert await keys.open("shared", sealed) == "second"


def test_a_token_carries_tenant_agency_and_role() -> None:
    token = mint("k" * 32, tenant="131121", agency="ikejiri.community_center", role=Role.STAFF, staff="s-1")
    principal = verify("k" * 32, token, tenant="131121")
    assert (principal.agency, principal.role, principal.staff) == ("ikejiri.community_center", Role.STAFF, "s-1")


@pytest.mark.parametrize(
    ("key", "tenant", "ttl", "status"),
    [("x" * 32, "131121", 60, 401), ("k" * 32, "131130", 60, 403), ("k" * 32, "131121", -10, 401)],
)
def test_wrong_key_other_tenant_and_expired_tokens_are_refused(key: str, tenant: str, ttl: int, status: int) -> None:
    token = mint("k" * 32, tenant="131121", agency="a", role=Role.STAFF, staff="s", ttl_seconds=ttl)
    with pytest.raises(HTTPException) as caught:
        verify(key, token, tenant=tenant)
    assert caught.value.status_code == status


@pytest.mark.parametrize(
    "key",
    ["change-me", "changeme", "secret", "dev", "CHANGE_ME", "x" * 31, "change-me-change-me-change-me-0123", "a" * 40],
)
def test_a_placeholder_or_short_signing_key_is_refused_with_a_clear_message(key: str, tmp_path: Path) -> None:
    settings = ServiceSettings(service="intake", port=0, var_dir=tmp_path, token_signing_key=key)
    with pytest.raises(UnsafeSigningKey) as refused:
        settings.signing_key()
    assert "TSUNAGU_TOKEN_SIGNING_KEY" in str(refused.value)
    assert key not in str(refused.value), "the message never repeats the key"


def test_the_generated_local_key_and_a_random_key_are_accepted(tmp_path: Path) -> None:
    local = ServiceSettings(service="intake", port=0, var_dir=tmp_path).signing_key()
    assert len(local.encode()) >= 32
    assert ServiceSettings(service="intake", port=0, var_dir=tmp_path).signing_key() == local, "created once"
    random_key = "9f3c1e0a7b5d4c2e8a6f1b3d5c7e9a0b2d4f6a8c0e1b3d5f"
    assert ServiceSettings(service="x", port=0, token_signing_key=random_key).signing_key() == random_key


def test_tsunagu_token_refuses_a_lifetime_over_12_hours_and_an_unknown_agency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TSUNAGU_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("TSUNAGU_TOKEN_SIGNING_KEY", raising=False)
    for argv in (["--ttl", str(12 * 3600 + 1)], ["--agency", "evil.agency"]):
        with pytest.raises(SystemExit) as refused:
            token_main(argv)
        assert refused.value.code == 2
    assert token_main(["--ttl", str(12 * 3600)]) == 0
    minted = capsys.readouterr().out.strip().splitlines()[-1]
    key = ServiceSettings(service="dev", port=0, var_dir=tmp_path).signing_key()
    assert verify(key, minted, tenant="131121").agency == "setagaya.branch_office"
