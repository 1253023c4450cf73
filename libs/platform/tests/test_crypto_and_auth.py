"""Per-person keys: sealed values open for their person only, and erasure makes them unreadable for good."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import HTTPException
from tsunagu_platform.auth import Role, mint, verify
from tsunagu_platform.crypto import KeyStore, PersonErasedError, load_master_key
from tsunagu_platform.db import create_engine


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
