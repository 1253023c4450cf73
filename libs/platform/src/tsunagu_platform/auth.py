"""Bearer tokens carrying tenant, agency and role, the same in every service.

Window staff, agency systems and auditors call the HTTP APIs with a signed token
(HS256, key from settings). A service trusts the token's agency and role and
scopes every answer to them; nothing about the caller is looked up in another
service. `tsunagu-token` (and `make token`) mints tokens for local use.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tsunagu_platform.settings import ServiceSettings

ALGORITHM = "HS256"
ISSUER = "tsunagu"
INVALID_TOKEN = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
"""What a 401 for a bad or expired token says the client should do (RFC 6750, section 3)."""


class Role(StrEnum):
    ADMIN = "admin"
    STAFF = "staff"
    AUDITOR = "auditor"
    AGENCY_SYSTEM = "agency_system"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a staff pseudonym (never a name), their agency, role and tenant."""

    staff: str
    agency: str
    role: Role
    tenant: str

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


def mint(key: str, *, tenant: str, agency: str, role: Role, staff: str, ttl_seconds: int = 8 * 3600) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": staff,
        "tenant": tenant,
        "agency": agency,
        "role": role.value,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify(key: str, token: str, *, tenant: str) -> Principal:
    """The principal of a valid token for this tenant; raises HTTPException 401/403 otherwise."""
    return _check_tenant(_decode(key, token)[0], tenant)


def _decode(key: str, token: str) -> tuple[Principal, float]:
    try:
        claims = jwt.decode(
            token, key, algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["exp", "sub", "iss"]}
        )
        principal = Principal(
            staff=str(claims["sub"]),
            agency=str(claims["agency"]),
            role=Role(claims["role"]),
            tenant=str(claims["tenant"]),
        )
        expires = float(claims["exp"])
    except (jwt.PyJWTError, KeyError, ValueError, TypeError):
        raise HTTPException(401, "認証できません (invalid or expired token)", headers=INVALID_TOKEN) from None
    return principal, expires


def _check_tenant(principal: Principal, tenant: str) -> Principal:
    if principal.tenant != tenant:
        raise HTTPException(403, "この自治体のデータではありません (token is for another tenant)")
    return principal


class TokenVerifier:
    """Checks bearer tokens and remembers the valid ones until they expire.

    A client sends the same token with every request; its signature and claims were
    already checked, so later requests only compare the expiry with the clock. Only
    valid tokens are remembered, at most `capacity` of them.
    """

    def __init__(self, key: str, tenant: str, *, capacity: int = 4096, clock: Callable[[], float] = time.time) -> None:
        self.key = key
        self.tenant = tenant
        self.capacity = capacity
        self.clock = clock
        self._valid: dict[str, tuple[Principal, float]] = {}

    def __call__(self, token: str) -> Principal:
        known = self._valid.get(token)
        if known is not None:
            principal, expires = known
            if self.clock() < expires:
                return _check_tenant(principal, self.tenant)
            del self._valid[token]
            raise HTTPException(401, "認証できません (invalid or expired token)", headers=INVALID_TOKEN)
        principal, expires = _decode(self.key, token)
        _check_tenant(principal, self.tenant)
        if len(self._valid) >= self.capacity:
            self._valid.clear()
        self._valid[token] = (principal, expires)
        return principal


_bearer = HTTPBearer(auto_error=False)


def principal_dependency(settings: ServiceSettings) -> object:
    """A FastAPI dependency returning the caller's Principal (401 without a valid token)."""
    verifier = TokenVerifier(settings.signing_key(), settings.tenant)

    async def current(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        if credentials is None:
            raise HTTPException(401, "認証が必要です (bearer token required)", headers={"WWW-Authenticate": "Bearer"})
        principal = verifier(credentials.credentials)
        request.state.principal = principal
        return principal

    return current


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tsunagu-token", description="Mint a bearer token for local use.")
    parser.add_argument("--role", choices=[r.value for r in Role], default="admin")
    parser.add_argument("--agency", default="setagaya.branch_office")
    parser.add_argument("--staff", default="dev-staff")
    parser.add_argument("--ttl", type=int, default=8 * 3600, help="seconds")
    args = parser.parse_args(argv)
    settings = ServiceSettings(service="dev", port=0)
    token = mint(
        settings.signing_key(),
        tenant=settings.tenant,
        agency=args.agency,
        role=Role(args.role),
        staff=args.staff,
        ttl_seconds=args.ttl,
    )
    print(f"# {args.role} @ {args.agency} (tenant {settings.tenant}); use as: Authorization: Bearer <token>")
    print(token)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
