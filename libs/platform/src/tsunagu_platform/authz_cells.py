"""The authorization matrix as a test: every operation of an OpenAPI document × every kind of caller.

A service commits its expected outcomes as data (`tests/authorization_matrix.json`):

    {"METHOD /path": {"own_agency": "allow" | "deny", "other_agency": ..., "other_district": ...,
                      "auditor": ..., "agency_system": ..., "admin": ...}}

`check_matrix` calls every operation of `app.openapi()` as each caller, with path ids filled
from a seed, and compares: "deny" must answer 403 or 404, "allow" anything but 401 or 403.
An operation the document has and the table lacks (or the reverse, or a missing caller)
fails too, so a new route cannot ship without its row. All mismatches are reported at once.
Deny cells run before allow cells: an allowed write may change the seed's state, a refused
one must not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

CALLERS: tuple[str, ...] = ("own_agency", "other_agency", "other_district", "auditor", "agency_system", "admin")
Outcome = Literal["allow", "deny"]
Matrix = Mapping[str, Mapping[str, str]]
METHODS = ("get", "post", "put", "patch", "delete")
_PARAM = re.compile(r"\{([^}]+)\}")


class Answer(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...


class Client(Protocol):
    """What the harness calls: an httpx.AsyncClient on the app's ASGI transport, say (not a dependency here)."""

    async def request(
        self, method: str, url: str, *, params: Any = ..., json: Any = ..., headers: Any = ...
    ) -> Answer: ...


def load_matrix(path: Path) -> dict[str, dict[str, str]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {key: dict(value) for key, value in data.items() if not key.startswith("_")}


def operations(openapi: Mapping[str, Any], *, skip: Callable[[str], bool] | None = None) -> list[str]:
    """Every "METHOD /path" of the document, in its order (`skip` leaves out, say, health probes)."""
    out = []
    for path, item in openapi.get("paths", {}).items():
        if skip is not None and skip(path):
            continue
        for method in METHODS:
            if method in item:
                out.append(f"{method.upper()} {path}")
    return out


@dataclass
class Cells:
    """What the calls need: a token per caller, the seed's ids, and per operation a body and query."""

    headers: Mapping[str, Mapping[str, str]]
    ids: Mapping[str, str]
    bodies: Mapping[str, Callable[[], Any]] = field(default_factory=dict)
    """Operation → a function returning a fresh minimal valid body (called once per call)."""
    queries: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Operation → its query parameters (required ones from `ids` by name otherwise)."""


def fill_path(path: str, ids: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in ids:
            raise KeyError(f"the seed has no value for path parameter {name!r} of {path}")
        return ids[name]

    return _PARAM.sub(one, path)


def _required_query(openapi: Mapping[str, Any], path: str, method: str, ids: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for parameter in openapi["paths"][path][method].get("parameters", []):
        if parameter.get("in") == "query" and parameter.get("required") and parameter["name"] in ids:
            out[parameter["name"]] = ids[parameter["name"]]
    return out


def judge(expected: str, status: int) -> bool:
    if expected == "deny":
        return status in (403, 404)
    if expected == "allow":
        return status not in (401, 403)
    return False


async def check_matrix(
    client: Client,
    openapi: Mapping[str, Any],
    matrix: Matrix,
    cells: Cells,
    *,
    skip: Callable[[str], bool] | None = None,
) -> list[str]:
    """Every mismatch between the table and what the app answers, as readable lines (empty: all hold)."""
    problems: list[str] = []
    ops = operations(openapi, skip=skip)
    for op in ops:
        row = matrix.get(op)
        if row is None:
            problems.append(f"{op}: no row in the authorization matrix")
            continue
        for caller in CALLERS:
            if row.get(caller) not in ("allow", "deny"):
                problems.append(f"{op}: no allow/deny for {caller}")
    problems += [f"{op}: in the matrix but not in the OpenAPI document" for op in matrix if op not in ops]
    for wanted in ("deny", "allow"):
        for op in ops:
            row = matrix.get(op) or {}
            method, path = op.split(" ", 1)
            for caller in CALLERS:
                if row.get(caller) != wanted:
                    continue
                url = fill_path(path, cells.ids)
                params = {**_required_query(openapi, path, method.lower(), cells.ids), **cells.queries.get(op, {})}
                body = cells.bodies[op]() if op in cells.bodies else None
                response = await client.request(
                    method, url, params=params, json=body, headers=dict(cells.headers[caller])
                )
                if not judge(wanted, response.status_code):
                    problems.append(
                        f"{op} as {caller}: expected {wanted}, got {response.status_code} {response.text[:160]}"
                    )
    return problems
