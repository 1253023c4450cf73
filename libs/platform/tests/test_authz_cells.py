"""The authorization matrix harness: a missing row, an unexpected grant and a stale row all fail, together."""

from __future__ import annotations

from typing import Any

from tsunagu_platform.authz_cells import CALLERS, Cells, check_matrix, fill_path, judge

OPENAPI: dict[str, Any] = {
    "paths": {
        "/things/{thing_id}": {"get": {"parameters": [{"name": "on", "in": "query", "required": True}]}},
        "/things": {"post": {}},
    }
}


class Answer:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.text = ""


class FakeClient:
    """Grants everything to everyone: the table below must catch it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    async def request(
        self, method: str, url: str, *, params: Any = None, json: Any = None, headers: Any = None
    ) -> Answer:
        self.calls.append((method, url, params))
        return Answer(200)


def test_deny_is_403_or_404_and_allow_is_anything_but_401_or_403() -> None:
    assert judge("deny", 403)
    assert judge("deny", 404)
    assert not judge("deny", 200)
    assert not judge("deny", 422)
    assert judge("allow", 409)
    assert not judge("allow", 401)
    assert not judge("allow", 403)


def test_path_ids_come_from_the_seed() -> None:
    assert fill_path("/things/{thing_id}", {"thing_id": "t-1"}) == "/things/t-1"


async def test_every_mismatch_is_reported_at_once() -> None:
    everyone = dict.fromkeys(CALLERS, "allow")
    matrix = {
        "GET /things/{thing_id}": {**everyone, "other_agency": "deny", "auditor": "deny"},
        "DELETE /gone": everyone,
    }
    client = FakeClient()
    cells = Cells(headers={c: {"Authorization": c} for c in CALLERS}, ids={"thing_id": "t-1", "on": "2021-06-01"})
    problems = await check_matrix(client, OPENAPI, matrix, cells)
    assert "POST /things: no row in the authorization matrix" in problems
    assert "DELETE /gone: in the matrix but not in the OpenAPI document" in problems
    assert any(p.startswith("GET /things/{thing_id} as other_agency: expected deny, got 200") for p in problems)
    assert any(p.startswith("GET /things/{thing_id} as auditor: expected deny, got 200") for p in problems)
    assert len(problems) == 4
    assert ("GET", "/things/t-1", {"on": "2021-06-01"}) in client.calls
