"""The resources service on the in-memory broker: HTTP in, events out, other services' events in."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from tsunagu_events.contracts.common import JST, ConsultationCategory, Sealed
from tsunagu_events.contracts.intake import (
    ConsentGiven,
    ConsentScope,
    ConsentWithdrawn,
    PersonErased,
    PersonRegistered,
)
from tsunagu_events.contracts.referral import DecisionKind, MeetingDecisionMade
from tsunagu_platform.auth import Role

from .conftest import WINDOW, Harness, auth, envelope

REFERRAL = "tsunagu.referral.events"
INTAKE = "tsunagu.intake.events"
REFERRAL_SOURCE = "/tsunagu/131121/referral"
INTAKE_SOURCE = "/tsunagu/131121/intake"


async def register(h: Harness, **overrides: Any) -> dict[str, Any]:
    body = {
        "district_id": "ikejiri",
        "kind": "salon",
        "organization_name": "池尻町会",
        "service_name": "ふれあいいきいきサロン",
        "address": "池尻2丁目 集会所",
        "schedule": {"description": "毎週水曜 13:30-15:30", "byday": ["WE"]},
        "capacity": 20,
        "effective_on": "2021-04-01",
        **overrides,
    }
    response = await h.client.post("/resources", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def eventually(check: Any, timeout: float = 5.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


def decision(decision_id: str, **overrides: Any) -> MeetingDecisionMade:
    fields: dict[str, Any] = {
        "meeting_id": "meeting-1",
        "decision_id": decision_id,
        "kind": DecisionKind.DEVELOP_RESOURCE,
        "district_id": "ikejiri",
        "title": "買物に困る高齢者が多い",
        "categories": [ConsultationCategory.ELDERLY_CARE],
        "gap_need": True,
        "decided_at": datetime(2021, 6, 1, 10, 0, tzinfo=UTC),
        **overrides,
    }
    return MeetingDecisionMade(**fields)


async def test_a_registered_resource_is_listed_verified_and_exported_as_hsds(harness: Harness) -> None:
    created = await register(harness)
    rid = created["resource_id"]
    assert created["kind"] == {"value": "salon", "label_ja": "サロン"}
    verified = await harness.client.post(f"/resources/{rid}/verifications", json={"verified_on": "2021-05-01"})
    assert verified.status_code == 200, verified.text
    assert verified.json()["last_verified_by"] == WINDOW
    listed = (await harness.client.get("/resources", params={"district_id": "ikejiri"})).json()
    assert [r["resource_id"] for r in listed] == [rid]
    hsds = (await harness.client.get("/directory/hsds")).json()
    service = hsds["organizations"][0]["services"][0]
    assert hsds["hsds_version"] == "3.0"
    assert service["assured_date"] == "2021-05-01"
    assert service["status"] == "active"
    assert service["schedules"][0]["byday"] == "WE"
    assert hsds["organizations"][0]["locations"][0]["addresses"][0]["address_1"] == "池尻2丁目 集会所"


async def test_unknown_district_is_422_naming_the_field(harness: Harness) -> None:
    response = await harness.client.post(
        "/resources",
        json={
            "district_id": "atlantis",
            "kind": "salon",
            "organization_name": "x",
            "service_name": "y",
            "effective_on": "2021-04-01",
        },
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "district_id"


async def test_status_changes_answer_active_on_a_past_date(harness: Harness) -> None:
    rid = (await register(harness))["resource_id"]
    other = (await register(harness, service_name="ミニデイ", kind="mini_day", effective_on="2021-10-01"))[
        "resource_id"
    ]
    closed = await harness.client.post(
        f"/resources/{rid}/status", json={"status": "temporarily_closed", "effective_on": "2022-01-10"}
    )
    assert closed.status_code == 200, closed.text
    await harness.client.post(f"/resources/{rid}/status", json={"status": "active", "effective_on": "2022-03-01"})

    async def active(day: str) -> list[str]:
        response = await harness.client.get("/districts/ikejiri/active-resources", params={"on": day})
        assert response.status_code == 200, response.text
        return [r["resource_id"] for r in response.json()["resources"]]

    assert await active("2021-03-31") == []
    assert await active("2021-06-01") == [rid]
    assert sorted(await active("2021-12-01")) == sorted([rid, other])
    assert await active("2022-02-01") == [other]
    assert sorted(await active("2022-03-01")) == sorted([rid, other])
    assert (await harness.client.get("/districts/taishido/active-resources", params={"on": "2022-03-01"})).json()[
        "resources"
    ] == []


async def test_stale_expected_version_is_409_with_current_version(harness: Harness) -> None:
    rid = (await register(harness))["resource_id"]
    response = await harness.client.patch(f"/resources/{rid}", json={"capacity": 30, "expected_version": 5})
    assert response.status_code == 409
    assert response.json()["current_version"] == 1
    defunct = await harness.client.post(
        f"/resources/{rid}/status", json={"status": "defunct", "effective_on": "2022-01-01"}
    )
    assert defunct.status_code == 200
    again = await harness.client.post(
        f"/resources/{rid}/status", json={"status": "active", "effective_on": "2022-02-01"}
    )
    assert again.status_code == 409
    assert again.json()["current_status"] == "defunct"
    assert again.json()["current_version"] == 2


async def test_visits_places_and_uses_are_recorded_and_counted(harness: Harness) -> None:
    rid = (await register(harness))["resource_id"]
    visit = await harness.client.post(
        "/visits",
        json={
            "district_id": "ikejiri",
            "category": "salon_mini_day",
            "resource_id": rid,
            "visited_on": "2021-07-01",
            "findings": ["shortage_of_activity_staff"],
            "follow_up": "ボランティア募集を支援",
        },
    )
    assert visit.status_code == 201, visit.text
    assert visit.json()["category"]["label_ja"] == "サロン、ミニデイ等"
    wrong = await harness.client.post(
        "/visits",
        json={"district_id": "ikejiri", "category": "business_npo", "resource_id": rid, "visited_on": "2021-07-01"},
    )
    assert wrong.status_code == 422
    await harness.client.post(
        "/visits", json={"district_id": "ikejiri", "category": "business_npo", "visited_on": "2022-04-02"}
    )
    counts = (await harness.client.get("/visits/counts", params={"district_id": "ikejiri", "fiscal_year": 2021})).json()
    assert counts == {"district_id": "ikejiri", "fiscal_year": 2021, "by_category": {"salon_mini_day": 1}, "total": 1}
    batch = await harness.client.post(
        "/visits/batch",
        json={
            "visits": [
                {
                    "district_id": "ikejiri",
                    "category": "salon_mini_day",
                    "resource_id": rid,
                    "visited_on": "2021-08-01",
                },
                {"district_id": "ikejiri", "category": "school_facility_nursery", "visited_on": "2021-08-02"},
            ]
        },
    )
    assert batch.status_code == 201, batch.text
    assert len(batch.json()) == 2
    all_or_nothing = await harness.client.post(
        "/visits/batch",
        json={
            "visits": [
                {"district_id": "ikejiri", "category": "salon_mini_day", "visited_on": "2021-08-01"},
                {
                    "district_id": "ikejiri",
                    "category": "salon_mini_day",
                    "resource_id": "resource-x",
                    "visited_on": "2021-08-02",
                },
            ]
        },
    )
    assert all_or_nothing.status_code == 422
    counts = (await harness.client.get("/visits/counts", params={"fiscal_year": 2021})).json()
    assert counts["by_category"] == {"salon_mini_day": 2, "school_facility_nursery": 1}
    identified = await harness.client.post(f"/resources/{rid}/identifications", json={"identified_on": "2021-07-01"})
    assert identified.json()["identified_on"] == "2021-07-01"
    place = await harness.client.post(
        "/places", json={"resource_id": rid, "kind": "hall", "conditions": "平日午前のみ", "offered_on": "2021-07-01"}
    )
    assert place.status_code == 201, place.text
    pid = place.json()["place_id"]
    used = await harness.client.post(
        f"/places/{pid}/uses", json={"activity": "認知症カフェ", "used_on": "2021-08-01", "participants": 12}
    )
    assert used.status_code == 201, used.text
    assert used.json()["uses"][0]["activity"] == "認知症カフェ"
    early = await harness.client.post(f"/places/{pid}/uses", json={"activity": "x", "used_on": "2021-01-01"})
    assert early.status_code == 422


async def test_a_meeting_decision_on_the_referral_topic_becomes_one_district_issue(harness: Harness) -> None:
    event = envelope(decision("decision-42"), stream="meeting-1", version=1, source=REFERRAL_SOURCE)
    await harness.publish(REFERRAL, event)
    await harness.publish(REFERRAL, event)  # redelivered
    again = envelope(decision("decision-42"), stream="meeting-1b", version=1, source=REFERRAL_SOURCE)
    await harness.publish(REFERRAL, again)  # same decision, a different CloudEvent
    ignored = envelope(
        decision("decision-43", kind=DecisionKind.KEEP_WATCHING), stream="meeting-2", version=1, source=REFERRAL_SOURCE
    )
    await harness.publish(REFERRAL, ignored)
    nowhere = envelope(
        decision("decision-44", district_id="atlantis"), stream="meeting-3", version=1, source=REFERRAL_SOURCE
    )
    await harness.publish(REFERRAL, nowhere)  # logged and skipped: no district to raise it in

    async def found() -> list[dict[str, Any]]:
        return list((await harness.client.get("/issues", params={"decision_id": "decision-42"})).json())

    issues = await eventually(found)
    assert len(issues) == 1
    all_issues = (await harness.client.get("/issues")).json()
    assert len(all_issues) == 1
    issue = (await harness.client.get(f"/issues/{issues[0]['issue_id']}")).json()
    assert issue["source"] == {"value": "four_party_meeting", "label_ja": "四者連携会議"}
    assert issue["meeting_id"] == "meeting-1"
    assert issue["raised_on"] == "2021-06-01"


async def test_issue_taken_up_then_initiative_launched_progresses_and_concludes(harness: Harness) -> None:
    rid = (await register(harness))["resource_id"]
    issue = await harness.client.post(
        "/issues", json={"district_id": "ikejiri", "title": "居場所が少ない", "raised_on": "2021-05-01"}
    )
    assert issue.status_code == 201, issue.text
    iid = issue.json()["issue_id"]
    early = await harness.client.post(
        "/initiatives",
        json={
            "district_id": "ikejiri",
            "issue_id": iid,
            "kind": "place_to_belong",
            "title": "居場所",
            "launched_on": "2021-06-01",
        },
    )
    assert early.status_code == 409
    taken = await harness.client.post(f"/issues/{iid}/take-up", json={"taken_up_on": "2021-05-20"})
    assert taken.json()["state"] == "taken_up"
    twice = await harness.client.post(f"/issues/{iid}/take-up", json={"taken_up_on": "2021-05-21"})
    assert twice.status_code == 409
    launched = await harness.client.post(
        "/initiatives",
        json={
            "district_id": "ikejiri",
            "issue_id": iid,
            "kind": "place_to_belong",
            "title": "居場所づくり",
            "resource_ids": [rid],
            "launched_on": "2021-06-01",
        },
    )
    assert launched.status_code == 201, launched.text
    nid = launched.json()["initiative_id"]
    progressed = await harness.client.post(
        f"/initiatives/{nid}/progress", json={"note": "初回開催", "participants": 8, "on": "2021-07-01"}
    )
    assert progressed.json()["state"] == "in_progress"
    done = await harness.client.post(
        f"/initiatives/{nid}/conclusion", json={"concluded_on": "2022-03-31", "outcome": "定例化"}
    )
    assert done.json()["state"] == "concluded"
    after = await harness.client.post(f"/initiatives/{nid}/progress", json={"note": "x", "on": "2022-04-01"})
    assert after.status_code == 409


async def registered_by_window(h: Harness, person: str) -> None:
    """Intake registered the person at WINDOW (stream version 1), so WINDOW serves the person."""
    sealed = Sealed(kid=f"intake/{person}/1", nonce="AAAAAAAAAAAAAAAA", ct="c2VjcmV0")
    registered = PersonRegistered(person_id=person, district_id="ikejiri", name=sealed)
    event = envelope(registered, stream=person, version=1, source=INTAKE_SOURCE)
    await h.publish(INTAKE, event.model_copy(update={"actoragency": WINDOW, "actorstaff": "staff-1"}))


def consent(person: str, consent_id: str, scope: ConsentScope, **fields: Any) -> ConsentGiven:
    return ConsentGiven(
        consent_id=consent_id,
        person_id=person,
        scope=scope,
        given_at=datetime(2021, 4, 1, tzinfo=UTC),
        recorded_by_agency="ikejiri.community_center",
        **fields,
    )


async def test_participation_is_refused_without_consent_and_allowed_after_it_arrives(harness: Harness) -> None:
    rid = (await register(harness))["resource_id"]
    person = "person-0b6f2c1e-1111-4a4a-8888-000000000001"
    body = {"person_id": person, "resource_id": rid, "started_on": "2021-09-01"}
    await registered_by_window(harness, person)

    async def refused_for_consent() -> Any:
        response = await harness.client.post("/participations", json=body)
        return response if response.json().get("code") == "consent_required" else None

    refused = await eventually(refused_for_consent)
    assert refused.status_code == 403
    problem = refused.json()
    assert problem["code"] == "consent_required"
    assert "同意" in problem["reason_ja"]
    assert "consent" in problem["reason_en"]

    given = consent(person, "consent-1", ConsentScope.FOUR_WINDOWS, district_id="ikejiri")
    await harness.publish(INTAKE, envelope(given, stream=person, version=2, source=INTAKE_SOURCE))

    async def started() -> Any:
        response = await harness.client.post("/participations", json=body)
        return response.json() if response.status_code == 201 else None

    participation = await eventually(started)
    assert participation["consent_id"] == "consent-1"
    # A window of another district is not covered by a four-windows consent of ikejiri.
    elsewhere = await harness.client.post("/participations", json=body, headers=auth("taishido.community_center"))
    assert elsewhere.status_code == 403
    pid = participation["participation_id"]
    attended = await harness.client.post(f"/participations/{pid}/attendance", json={"attended_on": "2021-09-08"})
    assert attended.json()["attended"] == ["2021-09-08"]

    withdrawn = ConsentWithdrawn(
        consent_id="consent-1",
        person_id=person,
        withdrawn_at=datetime(2021, 10, 1, tzinfo=UTC),
        recorded_by_agency="ikejiri.community_center",
    )
    await harness.publish(INTAKE, envelope(withdrawn, stream=person, version=3, source=INTAKE_SOURCE))

    async def ended() -> Any:
        state = (await harness.client.get(f"/participations/{pid}")).json()
        return state if state["state"] == "ended" else None

    final = await eventually(ended)
    assert final["end_reason"]["value"] == "consent_withdrawn"
    assert (await harness.client.post("/participations", json=body)).status_code == 403


async def test_consent_arriving_first_allows_participation_and_erasure_refuses_it(harness: Harness) -> None:
    rid = (await register(harness))["resource_id"]
    person = "person-0b6f2c1e-1111-4a4a-8888-000000000002"
    await registered_by_window(harness, person)
    given = consent(person, "consent-2", ConsentScope.PARTICIPATION)
    await harness.publish(INTAKE, envelope(given, stream=person, version=2, source=INTAKE_SOURCE))
    body = {"person_id": person, "resource_id": rid, "started_on": "2021-09-01"}

    async def started() -> Any:
        response = await harness.client.post("/participations", json=body)
        return response.json() if response.status_code == 201 else None

    participation = await eventually(started)
    pid = participation["participation_id"]
    ended = await harness.client.post(
        f"/participations/{pid}/end", json={"ended_on": "2021-12-01", "reason": "settled"}
    )
    assert ended.json()["state"] == "ended"
    erased = PersonErased(person_id=person, erased_at=datetime(2022, 1, 1, tzinfo=UTC))
    await harness.publish(INTAKE, envelope(erased, stream=person, version=3, source=INTAKE_SOURCE))

    async def refused() -> Any:
        response = await harness.client.post("/participations", json=body)
        return response.json() if response.status_code == 403 else None

    problem = await eventually(refused)
    assert problem["reason"] == "person_erased"


async def test_publicity_and_training(harness: Harness) -> None:
    for day in ("2021-05-01", "2021-06-01"):
        sent = await harness.client.post("/districts/ikejiri/newsletter-issues", json={"sent_on": day})
        assert sent.status_code == 201
    await harness.client.post("/districts/ikejiri/subscribers", json={"delta": 40, "on": "2021-05-01"})
    negative = await harness.client.post("/districts/ikejiri/subscribers", json={"delta": -41, "on": "2021-05-02"})
    assert negative.status_code == 422
    await harness.client.post(
        "/districts/ikejiri/groups", json={"group_name": "池尻体操の会", "introduced_on": "2021-05-03"}
    )
    publicity = (await harness.client.get("/districts/ikejiri/publicity")).json()
    assert publicity["newsletter_issues_sent"] == 2
    assert publicity["subscribers"] == 40
    assert publicity["groups"][0]["group_name"] == "池尻体操の会"
    training = await harness.client.post(
        "/trainings",
        json={
            "title": "地域福祉コーディネーター研修",
            "held_on": "2021-11-01",
            "participants": 25,
            "organiser": "metropolis",
        },
    )
    assert training.status_code == 201, training.text
    assert training.json()["organiser"]["label_ja"] == "東京都"


async def test_auditors_read_but_do_not_write_and_tokens_are_required(harness: Harness) -> None:
    rid = (await register(harness))["resource_id"]
    auditor = auth(role=Role.AUDITOR)
    assert (await harness.client.get(f"/resources/{rid}", headers=auditor)).status_code == 200
    denied = await harness.client.post(
        "/trainings",
        headers=auditor,
        json={"title": "t", "held_on": "2021-11-01", "participants": 1, "organiser": "ward"},
    )
    assert denied.status_code == 403
    assert (await harness.client.get("/resources", headers={"Authorization": ""})).status_code == 401
    assert (await harness.client.get("/resources/resource-nope")).status_code == 404


async def test_own_events_reach_the_topic(harness: Harness) -> None:
    await register(harness)
    runtime = harness.app.state.runtime

    async def relayed() -> bool:
        from sqlalchemy import func, select
        from tsunagu_platform.tables import outbox

        async with runtime.engine.connect() as conn:
            return (
                int(
                    await conn.scalar(select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None)))
                    or 0
                )
                == 0
            )

    await eventually(relayed)


async def test_time_travel_can_also_answer_as_the_directory_was_known_then(harness: Harness) -> None:
    rid = (await register(harness))["resource_id"]
    before_closing = datetime.now(UTC).astimezone(JST).isoformat()  # any offset works
    await asyncio.sleep(0.01)
    closed = await harness.client.post(
        f"/resources/{rid}/status", json={"status": "defunct", "effective_on": "2021-06-01"}
    )
    assert closed.status_code == 200
    now_known = await harness.client.get("/districts/ikejiri/active-resources", params={"on": "2021-07-01"})
    assert now_known.json()["resources"] == []
    then_known = await harness.client.get(
        "/districts/ikejiri/active-resources", params={"on": "2021-07-01", "known_at": before_closing}
    )
    assert [r["resource_id"] for r in then_known.json()["resources"]] == [rid]
    naive = await harness.client.get(
        "/districts/ikejiri/active-resources", params={"on": "2021-07-01", "known_at": "2021-07-01T00:00:00"}
    )
    assert naive.status_code == 422
    unknown = await harness.client.get("/districts/atlantis/active-resources", params={"on": "2021-07-01"})
    assert unknown.status_code == 422
