"""Authorization matrices: every operation of a service's OpenAPI document × every kind of caller,
checked against an expected outcome committed as data (issue 14).

A service's routes can only grow: a new route nobody thought about is exactly where one agency
reaches another's people. So the matrix is generated from `app.openapi()`: an operation without a
row fails the test, as does a row for an operation that no longer exists, and a call that gets
further than its cell allows (a *grant the table does not allow*) fails it too. All mismatching
cells are reported at once, so one run shows the whole picture.

Data format (one JSON file per service, e.g. `services/intake/tests/authorization_matrix.json`)::

    {
      "_columns": {"own_agency": "staff of the agency that registered the seed", ...},
      "_note": "keys starting with '_' are documentation and are ignored",
      "GET /persons/{person_id}": {
        "own_agency": "allow", "other_agency": "deny", "other_district": "deny",
        "auditor": "deny", "agency_system": "deny", "admin": "allow"
      },
      "POST /persons/{person_id}/consents": {...}
    }

- A row's key is the upper-case HTTP method, one space and the path exactly as the OpenAPI
  document spells it (with its `{placeholders}`).
- A row names every column of the run (by default `COLUMNS`); each cell is `"allow"` or `"deny"`.
- `"deny"`: the call must be refused with one of `deny_statuses` (default 403; a service that
  hides existence passes `{404}`; choose one and keep to it).
- `"allow"`: the call must reach the operation: not 401, 403 or 429, and not one of `inconclusive`
  (default 404 and 422, which mean the seed or the body was wrong and the cell proved nothing).
  A domain refusal such as 409 is an allowed call. Any 5xx is a mismatch in every cell.

Columns (the caller kinds every service's matrix uses, seeded by the service's own test):
`own_agency` (staff of the agency that created the seeded records), `other_agency` (staff of
another agency of the same district), `other_district` (staff of an agency of another district),
`auditor`, `agency_system` (a system token of an agency that does not serve the seed) and `admin`.

The service-specific part is one callable, `call(operation, column) -> status`, which seeds what
the operation needs, fills the path, sends a minimal valid body as that column's caller and
returns the HTTP status; `http_call` builds one from an HTTP client, a token per column and the
seed's ids (`Cells`) for services whose calls need nothing more. `check_matrix` does the rest:
every deny cell runs before any allow cell (a refused call must not change the seed, an allowed
write may), reads before writes within each pass. `assert_matrix` raises with every mismatch.
`skeleton` prints rows for operations the file lacks, with `"?"` cells to decide.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

COLUMNS = ("own_agency", "other_agency", "other_district", "auditor", "agency_system", "admin")
OUTCOMES = ("allow", "deny")
METHODS = ("get", "put", "post", "delete", "patch")
REFUSED = frozenset({401, 403, 429})

Matrix = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str

    @property
    def key(self) -> str:
        """The row key: `POST /persons/{person_id}/consents`."""
        return f"{self.method.upper()} {self.path}"

    def fill(self, ids: Mapping[str, str]) -> str:
        """The path with each `{name}` replaced by ids[name] (KeyError names a placeholder not seeded)."""
        path = self.path
        for name, value in ids.items():
            path = path.replace("{" + name + "}", value)
        if "{" in path:
            raise KeyError(f"{self.key}: no seeded id for {path[path.index('{') :]}")
        return path


@dataclass(frozen=True)
class Mismatch:
    """One cell (or row) that does not match the data file."""

    operation: str
    column: str
    expected: str
    got: str

    def __str__(self) -> str:
        return f"{self.operation} as {self.column}: expected {self.expected}, got {self.got}"


def operations(openapi: Mapping[str, Any]) -> list[Operation]:
    """Every operation of an OpenAPI document, in the document's order."""
    found = []
    for path, item in openapi.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                found.append(Operation(method, path))
    return found


def load_matrix(path: Path) -> dict[str, dict[str, str]]:
    """The rows of a data file (documentation keys starting with `_` dropped)."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {key: dict(row) for key, row in raw.items() if not key.startswith("_")}


def shape_problems(ops: Sequence[Operation], matrix: Matrix, columns: Sequence[str] = COLUMNS) -> list[Mismatch]:
    """Rows missing for an operation, rows for operations that are gone, missing columns, unknown outcomes."""
    problems: list[Mismatch] = []
    keys = {op.key for op in ops}
    for op in ops:
        row = matrix.get(op.key)
        if row is None:
            problems.append(Mismatch(op.key, "*", "a row in the data file", "none (new operation?)"))
            continue
        for column in columns:
            if row.get(column) not in OUTCOMES:
                problems.append(Mismatch(op.key, column, "allow or deny", repr(row.get(column))))
    for key in matrix:
        if key not in keys:
            problems.append(Mismatch(key, "*", "an operation in the OpenAPI document", "none (stale row)"))
    return problems


def judge(
    expected: str, status: int, *, deny_statuses: Collection[int] = (403,), inconclusive: Collection[int] = (404, 422)
) -> str | None:
    """Why a status does not match its cell, or None when it does."""
    if status >= 500:
        return f"{status} (server error)"
    if expected == "deny":
        if status in deny_statuses:
            return None
        return f"{status} (a grant the table does not allow)" if status < 400 else str(status)
    if status in REFUSED:
        return f"{status} (refused)"
    if status in inconclusive:
        return f"{status} (inconclusive: check the seed and the body)"
    return None


async def check_matrix(
    openapi: Mapping[str, Any],
    matrix: Matrix,
    call: Callable[[Operation, str], Awaitable[int]],
    *,
    columns: Sequence[str] = COLUMNS,
    deny_statuses: Collection[int] = (403,),
    inconclusive: Collection[int] = (404, 422),
    reached: Mapping[str, Collection[int]] | None = None,
) -> list[Mismatch]:
    """Every mismatch between the data file and what the service answers, all at once.

    `reached` names, per operation key, statuses that prove an allowed call got past the caller
    checks although the operation could not finish in the test (say the 503 of a route that needs
    a broker, answered after its policy check): such a status counts as an allowed call.
    """
    ops = operations(openapi)
    problems = shape_problems(ops, matrix, columns)
    reads_first = sorted(ops, key=lambda op: op.method != "get")
    for expected in ("deny", "allow"):
        for op in reads_first:
            row = matrix.get(op.key, {})
            for column in columns:
                if row.get(column) != expected:
                    continue
                status = await call(op, column)
                if expected == "allow" and reached and status in reached.get(op.key, ()):
                    continue
                why = judge(expected, status, deny_statuses=deny_statuses, inconclusive=inconclusive)
                if why is not None:
                    problems.append(Mismatch(op.key, column, expected, why))
    return problems


async def assert_matrix(
    openapi: Mapping[str, Any],
    matrix: Matrix,
    call: Callable[[Operation, str], Awaitable[int]],
    **options: Any,
) -> None:
    """`check_matrix`, raising AssertionError that lists every mismatching cell."""
    problems = await check_matrix(openapi, matrix, call, **options)
    if problems:
        lines = "\n  ".join(str(p) for p in problems)
        raise AssertionError(f"{len(problems)} authorization matrix mismatch(es):\n  {lines}")


def skeleton(openapi: Mapping[str, Any], matrix: Matrix, columns: Sequence[str] = COLUMNS) -> str:
    """JSON rows for the operations the data file lacks, every cell `"?"`, to paste and decide."""
    missing = {op.key: dict.fromkeys(columns, "?") for op in operations(openapi) if op.key not in matrix}
    return json.dumps(missing, indent=2, ensure_ascii=False)


class Answer(Protocol):
    @property
    def status_code(self) -> int: ...


class Client(Protocol):
    """What `http_call` sends through: an httpx.AsyncClient on the app's ASGI transport, say."""

    async def request(
        self, method: str, url: str, *, params: Any = ..., json: Any = ..., headers: Any = ...
    ) -> Answer: ...


@dataclass
class Cells:
    """What plain HTTP calls need: a token per column, the seed's ids, per operation a body and query."""

    headers: Mapping[str, Mapping[str, str]]
    ids: Mapping[str, str]
    """Path placeholders and required query parameters, by name."""
    bodies: Mapping[str, Callable[[], Any]] = field(default_factory=dict)
    """Operation key → a function returning a fresh minimal valid body (called once per call)."""
    queries: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Operation key → query parameters besides the required ones taken from `ids`."""


def _required_query(openapi: Mapping[str, Any], op: Operation, ids: Mapping[str, str]) -> dict[str, Any]:
    parameters = openapi["paths"][op.path][op.method].get("parameters", [])
    return {
        p["name"]: ids[p["name"]]
        for p in parameters
        if p.get("in") == "query" and p.get("required") and p["name"] in ids
    }


def http_call(client: Client, openapi: Mapping[str, Any], cells: Cells) -> Callable[[Operation, str], Awaitable[int]]:
    """A `call` for `check_matrix` that sends each cell as one HTTP request on one shared seed."""

    async def call(op: Operation, column: str) -> int:
        params = {**_required_query(openapi, op, cells.ids), **cells.queries.get(op.key, {})}
        body = cells.bodies[op.key]() if op.key in cells.bodies else None
        response = await client.request(
            op.method.upper(), op.fill(cells.ids), params=params, json=body, headers=dict(cells.headers[column])
        )
        return response.status_code

    return call
