"""The platform's token rules as the intake service applies them (issue 14).

A 10-year token and an administrator's token for an agency the ward does not know
are refused; a placeholder signing key stops the service at start; a client that
keeps failing to authenticate gets 429 with Retry-After, others and working sessions
carry on.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import jwt
import pytest
from tsunagu_intake.__main__ import main
from tsunagu_intake.app import create_app
from tsunagu_intake.settings import IntakeSettings
from tsunagu_platform.auth import Role
from tsunagu_platform.settings import UnsafeSigningKey

from .helpers import KEY, WINDOW, Running, token


def forged_lifetime(seconds: int, agency: str = WINDOW, role: str = "staff") -> dict[str, str]:
    now = int(time.time())
    claims = {
        "iss": "tsunagu",
        "sub": "probe",
        "tenant": "131121",
        "agency": agency,
        "role": role,
        "iat": now,
        "exp": now + seconds,
    }
    return {"Authorization": f"Bearer {jwt.encode(claims, KEY, algorithm='HS256')}"}


async def test_a_ten_year_token_is_refused(running: Running) -> None:
    r = await running.client.get("/consultations", headers=forged_lifetime(10 * 365 * 24 * 3600))
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert (await running.client.get("/consultations", headers=forged_lifetime(8 * 3600))).status_code == 200


async def test_an_admin_token_for_an_agency_the_ward_does_not_know_is_refused(running: Running) -> None:
    r = await running.client.get("/access-log", headers=token(Role.ADMIN, agency="evil.agency"))
    assert r.status_code == 401
    assert r.json()["status"] == 401
    admin = await running.client.get("/access-log", headers=token(Role.ADMIN, agency="setagaya.branch_office"))
    assert admin.status_code == 200


@pytest.mark.parametrize("key", ["change-me", "secret", "short-but-random-9f3c1e"])
def test_the_service_refuses_to_start_with_a_placeholder_signing_key(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UnsafeSigningKey):
        create_app(IntakeSettings(broker_mode="memory", var_dir=tmp_path, token_signing_key=key))
    monkeypatch.setenv("TSUNAGU_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("TSUNAGU_TOKEN_SIGNING_KEY", key)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert "TSUNAGU_TOKEN_SIGNING_KEY" in err
    assert "openssl rand -hex 32" in err
    assert not (tmp_path / "intake.db").exists(), "nothing started"


async def test_repeated_failed_authentications_get_429_with_retry_after(running: Running) -> None:
    def client_at(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=running.app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://intake")

    bad = {"Authorization": "Bearer not.a.token"}
    async with client_at("203.0.113.7") as prober, client_at("203.0.113.8") as colleague:
        session = token(staff="already-working")
        assert (await prober.get("/consultations", headers=session)).status_code == 200
        statuses = [(await prober.get("/consultations", headers=bad)).status_code for _ in range(25)]
        assert statuses[0] == 401
        assert statuses[-1] == 429
        refused = await prober.get("/consultations", headers=bad)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.json()["status"] == 429
        # a new token from the throttled address waits too; the session it already had keeps working
        assert (await prober.get("/consultations", headers=token(staff="new"))).status_code == 429
        assert (await prober.get("/consultations", headers=session)).status_code == 200
        # another client is unaffected
        assert (await colleague.get("/consultations", headers=token(staff="colleague"))).status_code == 200
