"""A remembered token is still refused once it expires, and never for another tenant; tokens live at
most 12 hours and name an agency of the tenant; repeated failures from one client are throttled."""

from __future__ import annotations

import time

import jwt
import pytest
from fastapi import HTTPException
from tsunagu_platform.auth import FailedAuthentications, Role, TokenVerifier, mint

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


def _claims(lifetime: int, agency: str = "a") -> dict[str, object]:
    now = int(time.time())
    return {
        "iss": "tsunagu",
        "sub": "s",
        "tenant": "131121",
        "agency": agency,
        "role": "staff",
        "iat": now,
        "exp": now + lifetime,
    }


def test_a_token_living_longer_than_12_hours_is_refused() -> None:
    verifier = TokenVerifier(KEY, "131121")
    ten_years = jwt.encode(_claims(10 * 365 * 24 * 3600), KEY, algorithm="HS256")
    with pytest.raises(HTTPException) as refused:
        verifier(ten_years)
    assert refused.value.status_code == 401
    just_over = jwt.encode(_claims(12 * 3600 + 1), KEY, algorithm="HS256")
    with pytest.raises(HTTPException):
        verifier(just_over)
    assert verifier(jwt.encode(_claims(12 * 3600), KEY, algorithm="HS256")).staff == "s"


def test_a_token_without_an_issue_time_is_refused() -> None:
    claims = _claims(60)
    del claims["iat"]
    with pytest.raises(HTTPException) as refused:
        TokenVerifier(KEY, "131121")(jwt.encode(claims, KEY, algorithm="HS256"))
    assert refused.value.status_code == 401


def test_mint_refuses_a_lifetime_over_12_hours() -> None:
    with pytest.raises(ValueError, match="12"):
        mint(KEY, tenant="131121", agency="a", role=Role.STAFF, staff="s", ttl_seconds=12 * 3600 + 1)


def test_a_token_naming_an_agency_outside_the_reference_data_is_refused_every_time() -> None:
    verifier = TokenVerifier(KEY, "131121", agencies=frozenset({"ikejiri.community_center"}))
    evil = mint(KEY, tenant="131121", agency="evil.agency", role=Role.ADMIN, staff="s")
    for _ in range(2):
        with pytest.raises(HTTPException) as refused:
            verifier(evil)
        assert refused.value.status_code == 401
    known = mint(KEY, tenant="131121", agency="ikejiri.community_center", role=Role.STAFF, staff="s")
    assert verifier(known).agency == "ikejiri.community_center"


def test_failed_authentications_block_a_client_for_the_rest_of_the_window() -> None:
    now = [1000.0]
    failures = FailedAuthentications(limit=3, window_seconds=60, clock=lambda: now[0])
    for _ in range(3):
        assert failures.retry_after("10.0.0.1") is None
        failures.failed("10.0.0.1")
        now[0] += 1
    assert failures.retry_after("10.0.0.1") == 57  # now 1003; the first failure leaves the window at 1060
    assert failures.retry_after("10.0.0.2") is None, "another client is unaffected"
    now[0] = 1060.5
    assert failures.retry_after("10.0.0.1") is None, "the window slides"


def test_failed_authentications_keep_bounded_memory() -> None:
    failures = FailedAuthentications(limit=5, window_seconds=60, max_clients=100)
    for i in range(10_000):
        failures.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(failures) <= 100
    for _ in range(50):
        failures.failed("10.9.9.9")
    assert failures.retry_after("10.9.9.9") is not None
    assert max(len(q) for q in failures._clients.values()) <= 5
