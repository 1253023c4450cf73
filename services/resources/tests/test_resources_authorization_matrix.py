"""Every operation of resources' OpenAPI document × every kind of caller, against the committed table
(authorization_matrix.json): a grant the table does not allow, or a refusal it does not expect, fails.

The callers: staff of the agency that registered the seed person and whose district holds the seed
data (own_agency), staff of another window of that district (other_agency), staff of another district
(other_district), an auditor, that own agency's system (agency_system) and an administrator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tsunagu_platform.auth import Role
from tsunagu_platform.authz_matrix import Cells, assert_matrix, http_call, load_matrix

from .conftest import Harness, auth
from .test_resources_authorization import person_served_by
from .test_resources_component import eventually, register

OWN = "ikejiri.welfare_council_office"
MATRIX = Path(__file__).with_name("authorization_matrix.json")
PERSON = "person-0b6f2c1e-3333-4a4a-8888-000000000001"

HEADERS = {
    "own_agency": auth(OWN),
    "other_agency": auth("ikejiri.community_center"),
    "other_district": auth("okusawa.community_center"),
    "auditor": auth(OWN, Role.AUDITOR),
    "agency_system": auth(OWN, Role.AGENCY_SYSTEM),
    "admin": auth("setagaya.branch_office", Role.ADMIN),
}


async def created(h: Harness, path: str, body: dict[str, Any], key: str) -> str:
    response = await h.client.post(path, json=body, headers=HEADERS["own_agency"])
    assert response.status_code == 201, response.text
    return str(response.json()[key])


async def seed(h: Harness) -> dict[str, str]:
    rid = (await register(h))["resource_id"]
    visit = {"district_id": "ikejiri", "category": "business_npo", "visited_on": "2021-07-01"}
    place = {"resource_id": rid, "kind": "hall", "offered_on": "2021-07-01"}
    issue = {"district_id": "ikejiri", "title": "居場所が少ない", "raised_on": "2021-05-01"}
    initiative = {"district_id": "ikejiri", "kind": "place_to_belong", "title": "居場所", "launched_on": "2021-06-01"}
    training = {"title": "研修", "held_on": "2021-11-01", "participants": 3, "organiser": "ward"}
    await person_served_by(h, PERSON, OWN)
    participation = {"person_id": PERSON, "resource_id": rid, "started_on": "2021-09-01"}

    async def started() -> Any:
        response = await h.client.post("/participations", json=participation, headers=HEADERS["own_agency"])
        return response.json() if response.status_code == 201 else None

    return {
        "resource_id": rid,
        "district_id": "ikejiri",
        "on": "2021-06-01",
        "visit_id": await created(h, "/visits", visit, "visit_id"),
        "place_id": await created(h, "/places", place, "place_id"),
        "issue_id": await created(h, "/issues", issue, "issue_id"),
        "initiative_id": await created(h, "/initiatives", initiative, "initiative_id"),
        "session_id": await created(h, "/trainings", training, "session_id"),
        "participation_id": str((await eventually(started))["participation_id"]),
        "person_id": PERSON,
    }


def bodies(ids: dict[str, str]) -> dict[str, Any]:
    """A minimal valid body per operation that takes one (a fresh dict per call)."""
    visit = {"district_id": "ikejiri", "category": "business_npo", "visited_on": "2021-07-01"}
    fixed: dict[str, dict[str, Any]] = {
        "POST /resources": {
            "district_id": "ikejiri",
            "kind": "salon",
            "organization_name": "町会",
            "service_name": "サロン",
            "effective_on": "2021-04-01",
        },
        "PATCH /resources/{resource_id}": {"capacity": 25},
        "POST /resources/{resource_id}/status": {"status": "temporarily_closed", "effective_on": "2030-01-01"},
        "POST /resources/{resource_id}/verifications": {"verified_on": "2021-05-01"},
        "POST /resources/{resource_id}/identifications": {"identified_on": "2021-05-01"},
        "POST /visits": visit,
        "POST /visits/batch": {"visits": [visit]},
        "POST /places": {"resource_id": ids["resource_id"], "kind": "hall", "offered_on": "2021-07-01"},
        "POST /places/{place_id}/uses": {"activity": "体操", "used_on": "2021-08-01", "participants": 3},
        "POST /issues": {"district_id": "ikejiri", "title": "買物支援", "raised_on": "2021-05-01"},
        "POST /issues/{issue_id}/take-up": {"taken_up_on": "2021-05-20"},
        "POST /initiatives": {
            "district_id": "ikejiri",
            "kind": "place_to_belong",
            "title": "居場所",
            "launched_on": "2021-06-01",
        },
        "POST /initiatives/{initiative_id}/progress": {"note": "初回", "on": "2021-07-01"},
        "POST /initiatives/{initiative_id}/conclusion": {"concluded_on": "2022-03-31", "outcome": "定例化"},
        "POST /participations": {
            "person_id": ids["person_id"],
            "resource_id": ids["resource_id"],
            "started_on": "2021-09-01",
        },
        "POST /participations/{participation_id}/attendance": {"attended_on": "2021-09-08"},
        "POST /participations/{participation_id}/end": {"ended_on": "2021-12-01", "reason": "settled"},
        "POST /districts/{district_id}/newsletter-issues": {"sent_on": "2021-05-01"},
        "POST /districts/{district_id}/subscribers": {"delta": 1, "on": "2021-05-01"},
        "POST /districts/{district_id}/groups": {"group_name": "体操の会", "introduced_on": "2021-05-01"},
        "POST /trainings": {"title": "研修", "held_on": "2021-11-01", "participants": 3, "organiser": "ward"},
    }
    return {op: (lambda body=body: dict(body)) for op, body in fixed.items()}


async def test_every_operation_answers_each_kind_of_caller_as_the_committed_matrix_says(harness: Harness) -> None:
    ids = await seed(harness)
    cells = Cells(headers=HEADERS, ids=ids, bodies=bodies(ids))
    document = harness.app.openapi()
    call = http_call(harness.client, document, cells)
    await assert_matrix(document, load_matrix(MATRIX), call, deny_statuses=(403, 404))
