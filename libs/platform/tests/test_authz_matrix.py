"""The generic authorization-matrix check: rows follow the OpenAPI document, every mismatch is reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tsunagu_platform.authz_matrix import (
    COLUMNS,
    Operation,
    assert_matrix,
    check_matrix,
    judge,
    load_matrix,
    operations,
    skeleton,
)

DOCUMENT = {
    "paths": {
        "/things": {"get": {}, "post": {}},
        "/things/{thing_id}": {"patch": {}, "parameters": []},
    }
}


def every(outcome: str) -> dict[str, str]:
    return dict.fromkeys(COLUMNS, outcome)


def test_operations_are_method_and_path_as_the_document_spells_them() -> None:
    assert [op.key for op in operations(DOCUMENT)] == ["GET /things", "POST /things", "PATCH /things/{thing_id}"]
    assert Operation("patch", "/things/{thing_id}").fill({"thing_id": "t-1"}) == "/things/t-1"
    with pytest.raises(KeyError, match="thing_id"):
        Operation("patch", "/things/{thing_id}").fill({})


def test_cells_judge_statuses() -> None:
    assert judge("deny", 403) is None
    assert judge("deny", 200) == "200 (a grant the table does not allow)"
    assert judge("deny", 404) == "404"
    assert judge("deny", 404, deny_statuses={404}) is None
    assert judge("allow", 200) is None
    assert judge("allow", 409) is None, "a domain refusal is an allowed call"
    assert judge("allow", 403) == "403 (refused)"
    assert judge("allow", 429) == "429 (refused)"
    assert judge("allow", 422) is not None, "a 422 proves nothing about authorization"
    assert judge("allow", 500) is not None


async def test_every_mismatch_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "matrix.json"
    rows = {
        "_columns": {"own_agency": "documentation is ignored"},
        "GET /things": every("allow"),
        "POST /things": every("deny") | {"admin": "allow"},
        "DELETE /gone": every("deny"),
    }
    path.write_text(json.dumps(rows))
    matrix = load_matrix(path)

    async def call(op: Operation, column: str) -> int:
        return 201 if op.method == "post" else 200  # POST grants everyone: five cells too many

    problems = await check_matrix(DOCUMENT, matrix, call)
    found = {(p.operation, p.column) for p in problems}
    assert found == {
        ("PATCH /things/{thing_id}", "*"),  # a new operation without a row
        ("DELETE /gone", "*"),  # a row whose operation is gone
        *{("POST /things", c) for c in COLUMNS if c != "admin"},
    }
    with pytest.raises(AssertionError, match="7 authorization matrix mismatch"):
        await assert_matrix(DOCUMENT, matrix, call)
    assert json.loads(skeleton(DOCUMENT, matrix)) == {"PATCH /things/{thing_id}": every("?")}


async def test_a_cell_that_is_neither_allow_nor_deny_is_a_mismatch() -> None:
    async def call(op: Operation, column: str) -> int:
        return 200

    matrix = {"GET /things": every("allow") | {"auditor": "maybe"}, "POST /things": every("allow")}
    matrix["PATCH /things/{thing_id}"] = every("allow")
    problems = await check_matrix(DOCUMENT, matrix, call)
    assert [(p.operation, p.column) for p in problems] == [("GET /things", "auditor")]
