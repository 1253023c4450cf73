"""The HTTP API on the in-memory broker: reference data, commands, queries, access rules and the access log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tsunagu_platform.auth import Role

from .helpers import CSC, WINDOW, Running, token

CONSULTATION: dict[str, Any] = {
    "window_id": CSC,
    "received_at": "2026-05-01T10:00:00+09:00",
    "channel": "walk_in",
    "consulted_by": "family",
    "categories": ["withdrawal", "elderly_care"],
    "outcome": "continued_support",
}


async def register(running: Running, agency: str = WINDOW, **extra: Any) -> str:
    body = {"name": "山田 太郎", "kana": "やまだ たろう", "birth_date": "1970-01-02", "district_id": "ikejiri"} | extra
    r = await running.client.post("/persons", json=body, headers=token(agency=agency))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_reference_lists_districts_and_windows_with_labels(running: Running) -> None:
    districts = (await running.client.get("/reference/districts")).json()
    assert len(districts) == 28
    ikejiri = next(d for d in districts if d["id"] == "ikejiri")
    assert ikejiri["label_ja"] == "池尻地区"
    assert CSC in ikejiri["window_ids"]
    windows = (await running.client.get("/reference/windows", params={"district_id": "ikejiri"})).json()
    assert {w["window_type"] for w in windows} == {
        "community_center",
        "comprehensive_support_center",
        "welfare_council_office",
        "childrens_center",
    }
    assert all(w["label_ja"] and w["label_en"] for w in windows)


async def test_unknown_window_or_district_is_a_422_naming_the_field(running: Running) -> None:
    r = await running.client.post("/consultations", json=CONSULTATION | {"window_id": "nowhere.x"}, headers=token())
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.window_id"
    r = await running.client.post("/persons", json={"name": "x", "district_id": "atlantis"}, headers=token())
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.district_id"
    r = await running.client.post("/consultations", json=CONSULTATION | {"categories": []}, headers=token())
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.categories"


async def test_authentication_and_roles(running: Running) -> None:
    assert (await running.client.post("/consultations", json=CONSULTATION)).status_code == 401
    r = await running.client.post("/consultations", json=CONSULTATION, headers=token(Role.AUDITOR))
    assert r.status_code == 403


async def test_a_request_without_a_valid_bearer_token_is_a_401_problem(running: Running) -> None:
    missing = await running.client.post("/consultations", json=CONSULTATION)
    assert missing.json() == {
        "type": "about:blank",
        "title": "認証が必要です (bearer token required)",
        "status": 401,
    }
    basic = await running.client.post("/consultations", json=CONSULTATION, headers={"Authorization": "Basic eDp5"})
    assert (basic.status_code, basic.json()["title"]) == (401, "認証が必要です (bearer token required)")
    forged = await running.client.get("/consultations", headers={"Authorization": "Bearer not.a.token"})
    assert (forged.status_code, forged.json()["title"]) == (401, "認証できません (invalid or expired token)")
    # RFC 6750: a 401 names the scheme, and for a bad token says so
    assert missing.headers["www-authenticate"] == basic.headers["www-authenticate"] == "Bearer"
    assert forged.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_openapi_names_the_bearer_scheme_on_every_staff_route(running: Running) -> None:
    schema = running.app.openapi()
    assert schema["components"]["securitySchemes"] == {"HTTPBearer": {"type": "http", "scheme": "bearer"}}
    post = schema["paths"]["/consultations"]["post"]
    assert post["security"] == [{"HTTPBearer": []}]
    assert post["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ConsultationWritten"
    }


async def test_consultation_flags_corrections_409_and_404(running_on: Running) -> None:
    running = running_on
    # Staff of the window the consultation is received at (only they may record it there).
    r = await running.client.post("/consultations", json=CONSULTATION, headers=token(agency=CSC))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["expanded"]
    assert created["compound_need"]
    cid = created["id"]
    r = await running.client.post(
        f"/consultations/{cid}/reclassification",
        json={"categories": ["elderly_care"], "expected_version": 1},
        headers=token(agency=CSC),
    )
    assert r.json()["version"] == 2
    stale = await running.client.post(
        f"/consultations/{cid}/outcome", json={"outcome": "referred", "expected_version": 1}, headers=token(agency=CSC)
    )
    assert stale.status_code == 409
    assert stale.json()["current_version"] == 2
    await running.client.post(f"/consultations/{cid}/gap-need", json={"marked": True}, headers=token(agency=CSC))
    got = (await running.client.get(f"/consultations/{cid}", headers=token(agency=CSC))).json()
    assert got["categories"] == ["elderly_care"]
    assert got["expanded"] is False
    assert got["compound_need"] is False
    assert got["gap_need"] is True
    assert got["categories_ja"] == ["高齢者介護"]
    missing = await running.client.get(
        "/consultations/consultation-00000000-0000-0000-0000-000000000000", headers=token(agency=CSC)
    )
    assert missing.status_code == 404
    r = await running.client.post(
        "/consultations/consultation-unknown/outcome", json={"outcome": "referred"}, headers=token(agency=CSC)
    )
    assert r.status_code == 404
    counts = (await running.client.get("/consultations/counts", headers=token(agency=CSC))).json()
    assert counts == {"total": 1, "expanded": 0, "compound_need": 0, "gap_need": 1, "with_person": 0}


async def test_personal_data_only_for_agencies_serving_the_person_and_every_read_logged(running_on: Running) -> None:
    running = running_on
    person = await register(running)
    own = await running.client.get(f"/persons/{person}", headers=token())
    assert own.status_code == 200
    assert own.json()["name"] == "山田 太郎"
    assert own.json()["access_basis"] == "registering_window"
    other = "ikejiri.childrens_center"
    assert (await running.client.get(f"/persons/{person}", headers=token(agency=other))).status_code == 403
    # Consent to share among the district's four windows.
    r = await running.client.post(
        f"/persons/{person}/consents", json={"scope": "four_windows", "district_id": "ikejiri"}, headers=token()
    )
    assert r.status_code == 201, r.text
    consent_id = r.json()["consent_id"]
    seen = await running.client.get(f"/persons/{person}", headers=token(agency=other, staff="staff-2"))
    assert seen.json()["access_basis"] == "consent"
    elsewhere = "daizawa.community_center"
    assert (await running.client.get(f"/persons/{person}", headers=token(agency=elsewhere))).status_code == 403
    await running.client.post(f"/persons/{person}/consents/{consent_id}/withdrawal", json={}, headers=token())
    assert (await running.client.get(f"/persons/{person}", headers=token(agency=other))).status_code == 403
    # A lead agency of an open case sees the person.
    lead = "specialist.poverty_support"
    r = await running.client.post(
        "/cases", json={"person_id": person, "lead_agency_id": lead, "approach": "both"}, headers=token()
    )
    assert r.status_code == 201, r.text
    assert (await running.client.get(f"/persons/{person}", headers=token(agency=lead))).json()["access_basis"] == (
        "lead_agency"
    )
    assert (await running.client.get(f"/persons/{person}", headers=token(Role.AUDITOR))).status_code == 403
    # Auditors read the log; staff may not.
    assert (await running.client.get("/access-log", headers=token())).status_code == 403
    log = (await running.client.get("/access-log", params={"person_id": person}, headers=token(Role.AUDITOR))).json()
    assert [(e["agency"], e["granted"], e["basis"]) for e in reversed(log)] == [
        (WINDOW, True, "registering_window"),
        (other, False, "denied"),
        (other, True, "consent"),
        (elsewhere, False, "denied"),
        (other, False, "denied"),
        (lead, True, "lead_agency"),
        (WINDOW, False, "denied"),
    ]
    assert all(e["staff"] and e["at"] for e in log)
    consents = (await running.client.get(f"/persons/{person}/consents", headers=token())).json()
    assert consents[0]["withdrawn_at"] is not None


async def test_summary_is_shown_only_with_access(running: Running) -> None:
    person = await register(running)
    r = await running.client.post(
        "/consultations",
        json=CONSULTATION | {"window_id": WINDOW, "person_id": person, "summary": "息子が部屋から出てこない"},
        headers=token(),
    )
    cid = r.json()["id"]
    assert (await running.client.get(f"/consultations/{cid}", headers=token())).json()[
        "summary"
    ] == "息子が部屋から出てこない"
    # Staff of an agency not serving the person are refused outright (test_authorization); an auditor
    # sees the consultation without its summary.
    other = (await running.client.get(f"/consultations/{cid}", headers=token(Role.AUDITOR))).json()
    assert other["summary"] is None
    unknown_person = await running.client.post(
        "/consultations", json=CONSULTATION | {"window_id": WINDOW, "person_id": "person-nobody"}, headers=token()
    )
    assert unknown_person.status_code == 422


async def test_case_lifecycle_and_overdue_reviews(running_on: Running) -> None:
    running = running_on
    person = await register(running)
    r = await running.client.post(
        "/cases", json={"person_id": person, "approach": "staying_connected"}, headers=token()
    )
    case = r.json()["id"]
    steps = [
        ("plans", {"goals": ["外に出る"], "review_due": "2020-01-01"}, 409),
        ("plans", {"goals": ["外に出る"], "review_due": "2099-01-01"}, 201),
        ("contacts", {"kind": "home_visit", "at": "2026-05-02T10:00:00+09:00", "note": "元気そう"}, 201),
        ("reviews", {"next_review_due": "2099-06-01"}, 201),
        ("approach", {"approach": "both"}, 200),
        ("handover", {"to_agency_id": "specialist.hikikomori_support"}, 200),
        ("handover", {"to_agency_id": "specialist.unknown"}, 422),
        ("closure", {"reason": "goals_met"}, 409),
        ("closure", {"reason": "moved_away"}, 200),
        ("contacts", {"kind": "call", "at": "2026-05-02T10:00:00+09:00"}, 409),
        ("reopening", {}, 200),
    ]
    for path, body, status in steps:
        r = await running.client.post(f"/cases/{case}/{path}", json=body, headers=token())
        assert r.status_code == status, (path, body, r.text)
        if status == 409:
            assert isinstance(r.json()["current_version"], int)
    got = (await running.client.get(f"/cases/{case}", headers=token())).json()
    assert got["status"] == "open"
    assert got["plan_version"] == 1
    assert got["contacts"] == 1
    assert got["lead_agency_id"] == "specialist.hikikomori_support"
    assert got["review_overdue"] is False
    assert got["approach_ja"] == "課題解決型・つながり続ける支援"
    timeline = (await running.client.get(f"/cases/{case}/timeline", headers=token())).json()
    assert [t["type"] for t in timeline][:3] == ["CaseOpened", "SupportPlanAdopted", "ContactRecorded"]
    assert timeline[1]["goals"] == ["外に出る"]
    assert timeline[2]["note"] == "元気そう"
    assert "note" not in timeline[2]["detail"]
    # The lead is now the hikikomori support center; an auditor sees no notes (another district's
    # window is refused the timeline outright, see test_authorization).
    stranger = token(Role.AUDITOR)
    hidden = (await running.client.get(f"/cases/{case}/timeline", headers=stranger)).json()
    assert hidden[2]["note"] is None
    assert hidden[1]["goals"] is None
    # A review date in the past makes the case show up as overdue.
    running.intake.clock = lambda: datetime(2099, 7, 1, tzinfo=UTC)
    overdue = (await running.client.get("/cases", params={"review_overdue": True}, headers=token())).json()
    assert [c["case_id"] for c in overdue] == [case]
    assert overdue[0]["review_overdue"] is True
    assert (await running.client.get("/cases/case-nope", headers=token())).status_code == 404


async def test_household_and_statutory_sharing(running: Running) -> None:
    parent, child = await register(running), await register(running, name="山田 一郎")
    r = await running.client.post(
        "/households", json={"person_ids": [parent, child], "situation": "8050"}, headers=token()
    )
    assert r.status_code == 201, r.text
    r = await running.client.post(
        f"/persons/{parent}/statutory-sharing",
        json={"meeting_id": "meeting-1", "agency_ids": ["specialist.hospital"]},
        headers=token(),
    )
    assert r.status_code == 200, r.text
    r = await running.client.post(
        "/households", json={"person_ids": [parent, "person-nobody"], "situation": "8050"}, headers=token()
    )
    assert r.status_code == 422
