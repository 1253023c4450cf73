"""Intake's authorization matrix: every operation of its OpenAPI document × six kinds of caller,
against the outcomes committed in authorization_matrix.json (format: tsunagu_platform.authz_matrix).

Each call that may write gets a fresh seed (two persons registered by the comprehensive support
center of ikejiri, a consultation of the first, a case it leads and a consent it recorded), so no
allowed cell changes what a later one finds; reads share one seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tsunagu_platform.auth import Role
from tsunagu_platform.authz_matrix import Operation, assert_matrix, load_matrix, operations, shape_problems

from .helpers import CSC, Running, token

MATRIX = Path(__file__).with_name("authorization_matrix.json")
CALLERS: dict[str, dict[str, str]] = {
    "own_agency": token(agency=CSC, staff="own"),
    "other_agency": token(agency="ikejiri.community_center", staff="other"),
    "other_district": token(agency="okusawa.community_center", staff="okusawa"),
    "auditor": token(Role.AUDITOR, agency="setagaya.branch_office", staff="auditor"),
    "agency_system": token(Role.AGENCY_SYSTEM, agency="specialist.hospital", staff="hospital-system"),
    "admin": token(Role.ADMIN, agency="setagaya.branch_office", staff="admin"),
}
AT = "2026-05-02T10:00:00+09:00"
CONSULTATION: dict[str, Any] = {
    "window_id": CSC,
    "received_at": AT,
    "channel": "walk_in",
    "consulted_by": "person",
    "categories": ["poverty"],
    "outcome": "continued_support",
}


@dataclass
class Seed:
    ids: dict[str, str]

    def body(self, operation: Operation) -> dict[str, Any] | None:
        """A minimal valid body that names only the seed and the own agency (so granting nothing new)."""
        bodies: dict[str, dict[str, Any]] = {
            "POST /consultations": CONSULTATION | {"person_id": self.ids["person_id"]},
            "POST /consultations/{consultation_id}/reclassification": {"categories": ["health"]},
            "POST /consultations/{consultation_id}/outcome": {"outcome": "referred"},
            "POST /consultations/{consultation_id}/gap-need": {"marked": True},
            "POST /persons": {"name": "新規 太郎"},
            "PATCH /persons/{person_id}": {"phone": "03-0000-0000"},
            "POST /persons/{person_id}/consents": {"scope": "named_agencies", "agency_ids": [CSC]},
            "POST /persons/{person_id}/consents/{consent_id}/withdrawal": {},
            "POST /persons/{person_id}/statutory-sharing": {"agency_ids": [CSC]},
            "POST /households": {"person_ids": [self.ids["person_id"], self.ids["second_person"]], "situation": "8050"},
            "POST /cases": {"person_id": self.ids["person_id"], "lead_agency_id": CSC, "approach": "both"},
            "POST /cases/{case_id}/handover": {"to_agency_id": "specialist.poverty_support"},
            "POST /cases/{case_id}/approach": {"approach": "problem_solving"},
            "POST /cases/{case_id}/plans": {"goals": ["外に出る"], "review_due": "2099-01-01"},
            "POST /cases/{case_id}/contacts": {"kind": "call", "at": AT},
            "POST /cases/{case_id}/reviews": {"next_review_due": "2099-01-01"},
            "POST /cases/{case_id}/closure": {"reason": "moved_away"},
            "POST /cases/{case_id}/reopening": {},
        }
        return bodies.get(operation.key)


async def seed(running: Running) -> Seed:
    client, own = running.client, CALLERS["own_agency"]

    async def created(path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await client.post(path, json=body, headers=own)
        assert r.status_code == 201, (path, r.text)
        return dict(r.json())

    person = (await created("/persons", {"name": "池尻 花子", "district_id": "ikejiri"}))["id"]
    second = (await created("/persons", {"name": "池尻 一郎", "district_id": "ikejiri"}))["id"]
    consultation = await created("/consultations", CONSULTATION | {"person_id": person, "summary": "相談内容"})
    case = await created("/cases", {"person_id": person, "approach": "both"})
    consent = await created(f"/persons/{person}/consents", {"scope": "named_agencies", "agency_ids": [CSC]})
    return Seed(
        {
            "person_id": person,
            "second_person": second,
            "consultation_id": consultation["id"],
            "case_id": case["id"],
            "consent_id": consent["consent_id"],
        }
    )


async def test_every_intake_operation_answers_each_caller_as_the_matrix_says(running: Running) -> None:
    shared = await seed(running)

    async def call(operation: Operation, column: str) -> int:
        current = shared if operation.method == "get" else await seed(running)
        response = await running.client.request(
            operation.method.upper(),
            operation.fill(current.ids),
            json=current.body(operation),
            headers=CALLERS[column],
        )
        return response.status_code

    await assert_matrix(running.app.openapi(), load_matrix(MATRIX), call)


def test_a_new_intake_route_without_a_row_fails_the_matrix(running: Running) -> None:
    document = running.app.openapi()
    document["paths"]["/persons/{person_id}/export"] = {"get": {}}
    problems = shape_problems(operations(document), load_matrix(MATRIX))
    assert [(p.operation, p.column) for p in problems] == [("GET /persons/{person_id}/export", "*")]
