"""Bearer tokens carrying tenant, agency and role, the same in every service.

Window staff, agency systems and auditors call the HTTP APIs with a signed token
(HS256, key from settings). A service trusts the token's agency and role and
scopes every answer to them; nothing about the caller is looked up in another
service. `tsunagu-token` (and `make token`) mints tokens for local use.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tsunagu_platform.settings import ServiceSettings

ALGORITHM = "HS256"
ISSUER = "tsunagu"


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
    except (jwt.PyJWTError, KeyError, ValueError):
        raise HTTPException(401, "認証できません (invalid or expired token)") from None
    if principal.tenant != tenant:
        raise HTTPException(403, "この自治体のデータではありません (token is for another tenant)")
    return principal


_bearer = HTTPBearer(auto_error=False)


def principal_dependency(settings: ServiceSettings) -> object:
    """A FastAPI dependency returning the caller's Principal (401 without a valid token)."""
    key = settings.signing_key()

    async def current(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        if credentials is None:
            raise HTTPException(401, "認証が必要です (bearer token required)", headers={"WWW-Authenticate": "Bearer"})
        principal = verify(key, credentials.credentials, tenant=settings.tenant)
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
