"""The companion-support timeline: every service's events in order, protected fields,
entitled readers only, every read logged, and the case as of a past moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reporting_support import Running, feed, token
from tsunagu_platform.auth import Role
from tsunagu_reporting.scenario.generator import Scenario

START = datetime(2022, 5, 9, 1, 0, tzinfo=UTC)


async def test_case_timeline_in_order_with_agencies_and_protected_fields(running: Running) -> None:
    s = Scenario()
    person, case = s.case_story(20, START)
    await feed(running.reporting.timelines, s.writer.out)
    response = await running.client.get(f"/timelines/cases/{case}", headers=token())
    assert response.status_code == 200, response.text
    body = response.json()
    entries = body["entries"]
    assert [e["recorded_at"] for e in entries] == sorted(e["recorded_at"] for e in entries)
    assert {e["service"] for e in entries} == {"intake", "referral"}
    assert all(e["agency_id"] for e in entries)
    contact = next(e for e in entries if e["event_type"].endswith("ContactRecorded"))
    assert contact["data"]["note"]["label_ja"] == "保護された情報"
    assert contact["data"]["note"]["readable_at"] == "intake"
    assert "c2VjcmV0" not in str(entries)  # the ciphertext never reaches reporting's output
    completed = next(e for e in entries if e["event_type"].endswith("ReferralCompleted"))
    assert completed["case_id"] == case  # linked through its referral
    assert body["state"]["status"] == "open"
    assert body["state"]["person_id"] == person
    assert body["state"]["contacts"] > 0


async def test_only_entitled_readers_and_every_read_is_logged(running: Running) -> None:
    s = Scenario()
    person, case = s.case_story(12, START, district="ikejiri")
    await feed(running.reporting.timelines, s.writer.out)
    served = token(Role.STAFF, agency="ikejiri.comprehensive_support_center", staff="staff-served")
    by_consent = token(Role.STAFF, agency="ikejiri.community_center", staff="staff-consent")  # four windows
    stranger = token(Role.STAFF, agency="kitazawa.community_center", staff="staff-stranger")
    assert (await running.client.get(f"/timelines/persons/{person}", headers=served)).json()["basis"] == "served"
    assert (await running.client.get(f"/timelines/cases/{case}", headers=by_consent)).json()["basis"] == "consent"
    refused = await running.client.get(f"/timelines/persons/{person}", headers=stranger)
    assert refused.status_code == 403
    assert (await running.client.get(f"/timelines/cases/{case}", headers=token(Role.AUDITOR))).status_code == 200
    reads = await running.client.get("/audit/reads", params={"subject_id": person}, headers=token(Role.AUDITOR))
    logged = {(r["staff"], r["basis"]) for r in reads.json()}
    assert ("staff-served", "served") in logged
    assert ("staff-stranger", "refused") in logged
    assert (await running.client.get("/audit/reads", headers=stranger)).status_code == 403


async def test_timeline_as_of_equals_the_timeline_live_then(running: Running) -> None:
    s = Scenario()
    person, case = s.case_story(30, START)
    first, rest = s.writer.out[:15], s.writer.out[15:]
    await feed(running.reporting.timelines, first)
    live = (await running.client.get(f"/timelines/cases/{case}", headers=token())).json()
    moment = datetime.fromisoformat(live["entries"][-1]["recorded_at"].replace("Z", "+00:00"))
    await feed(running.reporting.timelines, rest, start=len(first))
    later = await running.client.get(f"/timelines/cases/{case}", params={"as_of": moment.isoformat()}, headers=token())
    assert later.json()["entries"] == live["entries"]
    assert later.json()["state"] == live["state"]
    now = (await running.client.get(f"/timelines/cases/{case}", headers=token())).json()
    assert len(now["entries"]) > len(live["entries"])
    before_opening = await running.client.get(
        f"/timelines/cases/{case}", params={"as_of": (START - timedelta(days=1)).isoformat()}, headers=token()
    )
    assert before_opening.json()["state"]["status"] == "none"
    assert person


async def test_unknown_case_is_404(running: Running) -> None:
    response = await running.client.get("/timelines/cases/case-unknown", headers=token())
    assert response.status_code == 404
