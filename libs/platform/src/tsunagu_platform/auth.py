"""Bearer tokens carrying tenant, agency and role, the same in every service.

Window staff, agency systems and auditors call the HTTP APIs with a signed token
(HS256, key from settings). A service trusts the token's agency and role and
scopes every answer to them; nothing about the caller is looked up in another
service. `tsunagu-token` (and `make token`) mints tokens for local use.

Because the token is all a service knows of its caller, it is held to a few rules
(issue 14): it lives at most 12 hours (`exp - iat`), its agency is one of the tenant's
reference data (an admin token for `evil.agency` is refused), the signing key is not a
placeholder (settings.check_signing_key stops the service at start), and a client that
keeps failing to authenticate gets 429 with Retry-After for the rest of a sliding window.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from tsunagu_events.reference import ward_for

from tsunagu_platform.settings import ServiceSettings, UnsafeSigningKey

ALGORITHM = "HS256"
ISSUER = "tsunagu"
INVALID_TOKEN = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
"""What a 401 for a bad or expired token says the client should do (RFC 6750, section 3)."""
MAX_LIFETIME_SECONDS = 12 * 3600
"""The longest a token may live (exp - iat): one working day; a leaked token stops working by the next."""
INVALID = "認証できません (invalid or expired token)"


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
    if ttl_seconds > MAX_LIFETIME_SECONDS:
        raise ValueError(f"a token lives at most 12 hours ({MAX_LIFETIME_SECONDS} s), not {ttl_seconds} s")
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
            token, key, algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["exp", "iat", "sub", "iss"]}
        )
        principal = Principal(
            staff=str(claims["sub"]),
            agency=str(claims["agency"]),
            role=Role(claims["role"]),
            tenant=str(claims["tenant"]),
        )
        expires = float(claims["exp"])
        lifetime = expires - float(claims["iat"])
    except (jwt.PyJWTError, KeyError, ValueError, TypeError):
        raise HTTPException(401, INVALID, headers=INVALID_TOKEN) from None
    if lifetime > MAX_LIFETIME_SECONDS:
        raise HTTPException(401, "認証できません (token lives longer than 12 hours)", headers=INVALID_TOKEN)
    return principal, expires


def _check_tenant(principal: Principal, tenant: str) -> Principal:
    if principal.tenant != tenant:
        raise HTTPException(403, "この自治体のデータではありません (token is for another tenant)")
    return principal


class TokenVerifier:
    """Checks bearer tokens and remembers the valid ones until they expire.

    A client sends the same token with every request; its signature and claims were
    already checked, so later requests only compare the expiry with the clock. Only
    valid tokens are remembered, at most `capacity` of them. With `agencies` (the
    tenant's reference data, loaded once), a token naming any other agency is refused.
    """

    def __init__(
        self,
        key: str,
        tenant: str,
        *,
        agencies: Collection[str] | None = None,
        capacity: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.tenant = tenant
        self.agencies = frozenset(agencies) if agencies is not None else None
        self.capacity = capacity
        self.clock = clock
        self._valid: dict[str, tuple[Principal, float]] = {}

    def remembers(self, token: str) -> bool:
        """Whether this token was verified before and has not expired (a working session)."""
        known = self._valid.get(token)
        return known is not None and self.clock() < known[1]

    def __call__(self, token: str) -> Principal:
        known = self._valid.get(token)
        if known is not None:
            principal, expires = known
            if self.clock() < expires:
                return _check_tenant(principal, self.tenant)
            del self._valid[token]
            raise HTTPException(401, INVALID, headers=INVALID_TOKEN)
        principal, expires = _decode(self.key, token)
        _check_tenant(principal, self.tenant)
        if self.agencies is not None and principal.agency not in self.agencies:
            raise HTTPException(
                401, "認証できません (the token names no agency of this municipality)", headers=INVALID_TOKEN
            )
        if len(self._valid) >= self.capacity:
            self._valid.clear()
        self._valid[token] = (principal, expires)
        return principal


class FailedAuthentications:
    """Failed authentications per client address in a sliding window, in bounded memory.

    A client with `limit` failures within the last `window_seconds` is told to wait (429) until
    the oldest of them leaves the window. Each client keeps at most `limit` timestamps and at most
    `max_clients` clients are tracked: when full, expired clients go first, then the oldest tracked.
    """

    def __init__(
        self,
        *,
        limit: int = 20,
        window_seconds: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window_seconds
        self.max_clients = max_clients
        self.clock = clock
        self._clients: dict[str, deque[float]] = {}

    def __len__(self) -> int:
        return len(self._clients)

    def retry_after(self, client: str) -> int | None:
        """Seconds the client must wait, or None when it may try."""
        failures = self._clients.get(client)
        if failures is None:
            return None
        now = self.clock()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._clients[client]
            return None
        if len(failures) < self.limit:
            return None
        return max(1, math.ceil(failures[0] + self.window - now))

    def failed(self, client: str) -> None:
        failures = self._clients.get(client)
        if failures is None:
            if len(self._clients) >= self.max_clients:
                self._make_room()
            failures = self._clients[client] = deque(maxlen=self.limit)
        failures.append(self.clock())

    def _make_room(self) -> None:
        horizon = self.clock() - self.window
        for client in [c for c, f in self._clients.items() if not f or f[-1] <= horizon]:
            del self._clients[client]
        while len(self._clients) >= self.max_clients:
            del self._clients[next(iter(self._clients))]


_bearer = HTTPBearer(auto_error=False)


def principal_dependency(settings: ServiceSettings, *, failures: FailedAuthentications | None = None) -> object:
    """A FastAPI dependency returning the caller's Principal (401 without a valid token, 429 after
    repeated failures from the same client address; a token it already accepted keeps working).

    The signing key is checked here, when the app is built, so a placeholder key stops the service
    at start (UnsafeSigningKey); the tenant's agencies are read once from its reference data."""
    agencies = {agency.id for agency in ward_for(settings.tenant).agencies()}
    verifier = TokenVerifier(settings.signing_key(), settings.tenant, agencies=agencies)
    throttle = failures or FailedAuthentications()

    async def current(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        if credentials is None:
            raise HTTPException(401, "認証が必要です (bearer token required)", headers={"WWW-Authenticate": "Bearer"})
        client = request.client.host if request.client else "unknown"
        wait = throttle.retry_after(client)
        if wait is not None and not verifier.remembers(credentials.credentials):
            raise HTTPException(
                429,
                "認証の失敗が続いています。しばらくお待ちください (too many failed authentications)",
                headers={"Retry-After": str(wait)},
            )
        try:
            principal = verifier(credentials.credentials)
        except HTTPException:
            throttle.failed(client)
            raise
        request.state.principal = principal
        return principal

    return current


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tsunagu-token", description="Mint a bearer token for local use.")
    parser.add_argument("--role", choices=[r.value for r in Role], default="admin")
    parser.add_argument("--agency", default="setagaya.branch_office")
    parser.add_argument("--staff", default="dev-staff")
    parser.add_argument("--ttl", type=int, default=8 * 3600, help="seconds (at most 12 hours)")
    args = parser.parse_args(argv)
    if args.ttl > MAX_LIFETIME_SECONDS:
        parser.error(f"--ttl: a token lives at most 12 hours ({MAX_LIFETIME_SECONDS} seconds)")
    settings = ServiceSettings(service="dev", port=0)
    if ward_for(settings.tenant).agency(args.agency) is None:
        parser.error(f"--agency: {args.agency!r} is no agency of municipality {settings.tenant}")
    try:
        key = settings.signing_key()
    except UnsafeSigningKey as refused:
        parser.exit(2, f"tsunagu-token: {refused}\n")
    token = mint(
        key,
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
