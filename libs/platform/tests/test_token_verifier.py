"""A remembered token is still refused once it expires, and never for another tenant."""

from __future__ import annotations

import time

import pytest
from fastapi import HTTPException
from tsunagu_platform.auth import Role, TokenVerifier, mint

KEY = "k" * 32


def test_a_valid_token_is_remembered_until_it_expires() -> None:
    now = [time.time()]
    verifier = TokenVerifier(KEY, "131121", clock=lambda: now[0])
    token = mint(KEY, tenant="131121", agency="a", role=Role.STAFF, staff="s", ttl_seconds=60)

    assert verifier(token).agency == "a"
    assert verifier(token).staff == "s"  # from memory
    now[0] += 61
    with pytest.raises(HTTPException) as refused:
        verifier(token)
    assert refused.value.status_code == 401


def test_forged_and_foreign_tokens_are_refused_every_time() -> None:
    verifier = TokenVerifier(KEY, "131121")
    forged = mint("x" * 32, tenant="131121", agency="a", role=Role.ADMIN, staff="s")
    foreign = mint(KEY, tenant="999999", agency="a", role=Role.STAFF, staff="s")
    for _ in range(2):
        with pytest.raises(HTTPException) as bad:
            verifier(forged)
        assert bad.value.status_code == 401
        with pytest.raises(HTTPException) as other:
            verifier(foreign)
        assert other.value.status_code == 403


def test_memory_is_bounded() -> None:
    verifier = TokenVerifier(KEY, "131121", capacity=3)
    for i in range(10):
        verifier(mint(KEY, tenant="131121", agency="a", role=Role.STAFF, staff=f"s{i}"))
    assert len(verifier._valid) <= 3
