"""The authorization matrix, generated from the referral API's own OpenAPI document.

Every operation is called by six callers (own agency, another agency of the district, an agency
of another district, an auditor, the own agency's system, an admin) on records seeded so that the
own agency serves them: it registered the person and leads their case, sent one referral and
received another, and is a member of the meeting. The expected outcome of each cell is committed
data (authorization_matrix.json, format and judging: tsunagu_platform.authz_matrix): "deny" must
answer 403 or 404, "allow" anything but 401, 403, 404 or 422. An operation the table lacks, or a
cell that differs, fails the test; every mismatch is reported at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tsunagu_platform.auth import Role
from tsunagu_platform.authz_matrix import Operation, assert_matrix, load_matrix

from .conftest import IKEJIRI_CC, IKEJIRI_CSC, POVERTY, Harness, new_person, token

MATRIX = Path(__file__).with_name("authorization_matrix.json")
CALLERS: dict[str, dict[str, str]] = {
    "own_agency": token(IKEJIRI_CC),
    "other_agency": token(IKEJIRI_CSC),
    "other_district": token("okusawa.community_center"),
    "auditor": token("setagaya.branch_office", Role.AUDITOR),
    "agency_system": token(IKEJIRI_CC, Role.AGENCY_SYSTEM),
    "admin": token("setagaya.branch_office", Role.ADMIN),
}
DENIED = (403, 404)


async def seed(harness: Harness) -> dict[str, str]:
    """Records the own agency (ikejiri's community center) serves; ids by path parameter."""
    person = new_person()
    await harness.register(person, IKEJIRI_CC)
    case_id = await harness.open_case(person, IKEJIRI_CC)
    await harness.open_case(person, POVERTY)
    await harness.give_consent(person)
    own = token(IKEJIRI_CC)

    async def refer(sender: dict[str, str], to_agency: str) -> str:
        body = {"person_id": person, "to_agency_id": to_agency, "categories": ["poverty"], "due_on": "2026-05-01"}
        made = await harness.client.post("/referrals", json=body, headers=sender)
        assert made.status_code == 201, made.text
        return str(made.json()["referral_id"])

    sent = await refer(own, POVERTY)
    received = await refer(token(POVERTY), IKEJIRI_CC)
    meeting = await harness.client.post(
        "/meetings",
        json={
            "kind": "support_meeting",
            "scheduled_for": "2026-05-01T10:00:00+09:00",
            "member_agency_ids": [IKEJIRI_CC, POVERTY],
        },
        headers=own,
    )
    assert meeting.status_code == 201, meeting.text
    mid = meeting.json()["meeting_id"]
    item = {"kind": "case", "title": "見守り", "person_id": person}
    assert (await harness.client.post(f"/meetings/{mid}/agenda-items", json=item, headers=own)).status_code == 201
    action = {"agency_id": IKEJIRI_CC, "title": "訪問", "due_on": "2026-05-31"}
    assigned = await harness.client.post(f"/meetings/{mid}/action-items", json=action, headers=own)
    assert assigned.status_code == 201, assigned.text
    return {
        "person_id": person,
        "case_id": case_id,
        "sent_referral": sent,
        "received_referral": received,
        "meeting_id": mid,
        "action_id": str(assigned.json()["created_id"]),
    }


# What each required body field is given, by name (an operation may override it).
FIELD_VALUES: dict[str, Any] = {
    "to_agency_id": POVERTY,
    "categories": ["poverty"],
    "due_on": "2026-05-01",
    "review_due": "2026-07-01",
    "scheduled_for": "2026-05-01T10:00:00+09:00",
    "title": "matrix",
    "reason_code": "other",
    "outcome": "got_help",
    "attendee_agency_ids": [IKEJIRI_CC],
    "agency_id": IKEJIRI_CC,
    "action": "adopt",
    "decision": "start",
}
OVERRIDES: dict[str, dict[str, Any]] = {
    "POST /meetings": {"kind": "support_meeting", "member_agency_ids": [IKEJIRI_CC]},
    "POST /meetings/{meeting_id}/held": {"confidentiality_acknowledged": True},
    "POST /meetings/{meeting_id}/agenda-items": {"kind": "district_issue"},
    "POST /meetings/{meeting_id}/decisions": {"kind": "keep_watching"},
}
# The referral the own agency receives answers accept/decline/complete; the one it sent, the rest.
RECEIVER_OPERATIONS = {"accept", "decline", "complete"}


def resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def minimal_body(operation_key: str, operation: dict[str, Any], document: dict[str, Any], ids: dict[str, str]) -> Any:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    schema = resolve(content["schema"], document)
    values = {**FIELD_VALUES, "person_id": ids["person_id"], "case_id": ids["case_id"]}
    values.update(OVERRIDES.get(operation_key, {}))
    body: dict[str, Any] = {}
    for name in schema.get("required", []):
        if name in values:
            body[name] = values[name]
            continue
        field = resolve(schema["properties"][name], document)
        if "enum" in field:
            body[name] = field["enum"][0]
        else:
            raise AssertionError(f"{operation_key}: no value for required field {name!r}")
    body.update(OVERRIDES.get(operation_key, {}))  # an override is sent, required or not
    return body


def fill_path(path: str, ids: dict[str, str]) -> str:
    referral = ids["received_referral"] if path.rsplit("/", 1)[-1] in RECEIVER_OPERATIONS else ids["sent_referral"]
    return (
        path.replace("{referral_id}", referral)
        .replace("{meeting_id}", ids["meeting_id"])
        .replace("{action_id}", ids["action_id"])
        .replace("{person_id}", ids["person_id"])
    )


async def test_every_operation_answers_each_caller_as_the_committed_matrix_says(harness: Harness) -> None:
    document = harness.app.openapi()
    ids = await seed(harness)

    async def call(op: Operation, column: str) -> int:
        operation = document["paths"][op.path][op.method]
        body = minimal_body(op.key, operation, document, ids)
        response = await harness.client.request(
            op.method.upper(), fill_path(op.path, ids), json=body, headers=CALLERS[column]
        )
        return response.status_code

    await assert_matrix(document, load_matrix(MATRIX), call, deny_statuses=DENIED)
