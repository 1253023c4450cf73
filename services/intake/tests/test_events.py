"""The consumers on the in-memory broker: agency reports on the inbound topic, referral decisions, erasure."""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from tsunagu_events import EventEnvelope
from tsunagu_events.chain import GENESIS_HASH, chain_hash
from tsunagu_events.contracts.common import Sealed
from tsunagu_events.topics import INTAKE_INBOUND, dlq_topic, events_topic
from tsunagu_intake.tables import cases, consultations, persons
from tsunagu_platform.auth import Role
from tsunagu_platform.store import deserialise
from tsunagu_platform.tables import events, inbox, outbox

from .helpers import (
    WINDOW,
    Running,
    agency_event,
    agency_source,
    consultation_reported,
    eventually,
    send_binary,
    send_raw,
    send_structured,
    token,
)

REPORTED = "tsunagu.agency.ConsultationReported"
CONTACT = "tsunagu.agency.ContactReported"


async def count(running: Running, table: Any, *where: Any) -> int:
    async with running.runtime.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def dlq_reasons(running: Running) -> list[str]:
    return [dict(m.headers)["dlq_reason"].decode() for m in running.captured.on(dlq_topic(INTAKE_INBOUND))]


async def test_binary_and_structured_reports_become_consultations_and_duplicates_are_ignored(
    running_on: Running,
) -> None:
    running = running_on
    binary = agency_event(REPORTED, consultation_reported())
    structured = agency_event(
        REPORTED, consultation_reported(person=None, categories=["8050"]), source=agency_source(WINDOW, "csw")
    )
    await send_binary(running.broker, binary)
    await send_structured(running.broker, structured)
    await send_binary(running.broker, binary)  # a redelivery
    await send_structured(running.broker, structured)
    assert await count(running, consultations) == 2
    assert await count(running, consultations, consultations.c.via == "agency_inbound") == 2
    assert await count(running, persons) == 1
    assert dlq_reasons(running) == []
    # Even with the inbox lost (a restored backup), a replay maps onto the same streams.
    async with running.runtime.engine.begin() as conn:
        await conn.execute(delete(inbox))
    await send_binary(running.broker, binary)
    assert await count(running, consultations) == 2
    assert await count(running, persons) == 1
    assert dlq_reasons(running) == []
    # The same id from another source is another event.
    await send_binary(running.broker, binary.model_copy(update={"source": agency_source(WINDOW, "other")}))
    assert await count(running, consultations) == 3
    # The person the agency reported is registered by the window, sealed.
    async with running.runtime.engine.connect() as conn:
        person_id = await conn.scalar(select(persons.c.person_id))
    person = (await running.client.get(f"/persons/{person_id}", headers=token(agency=WINDOW))).json()
    assert person["name"] == "山田 花子"
    assert person["access_basis"] == "registering_window"


async def test_bad_input_lands_in_the_dlq_with_the_reason_and_the_consumer_carries_on(running: Running) -> None:
    await send_raw(running.broker, os.urandom(300), [])
    await send_raw(running.broker, b"\xff\xfe not json", [("content-type", b"application/cloudevents+json")])
    wrong_type = agency_event(REPORTED, consultation_reported(categories="poverty", channel=42))
    await send_binary(running.broker, wrong_type)
    missing = consultation_reported()
    del missing["window_id"]
    await send_binary(running.broker, agency_event(REPORTED, missing))
    await send_binary(running.broker, agency_event(REPORTED, consultation_reported(summary="x" * 5000)))
    huge = agency_event(REPORTED, consultation_reported())
    await send_raw(running.broker, b"{" + b" " * 1_100_000 + b"}", [(k, v) for k, v in _headers(huge)])
    await send_binary(running.broker, agency_event("tsunagu.agency.Unheard", {"x": 1}))
    await send_binary(running.broker, agency_event(REPORTED, consultation_reported(window_id="nowhere.window")))
    await send_binary(
        running.broker,
        agency_event(
            CONTACT, {"case_id": "case-nope", "kind": "call", "at": "2026-06-01T09:00:00+09:00", "agency_id": WINDOW}
        ),
    )
    good = agency_event(REPORTED, consultation_reported())
    await send_binary(running.broker, good)
    reasons = dlq_reasons(running)
    assert len(reasons) == 9, reasons
    assert set(reasons) <= {"undecodable", "schema_violation", "oversized", "unknown_type", "handler_error"}
    assert reasons.count("handler_error") == 2
    details = [dict(m.headers)["dlq_detail"].decode() for m in running.captured.on(dlq_topic(INTAKE_INBOUND))]
    assert any("unknown window" in d for d in details)
    assert any("unknown case" in d for d in details)
    assert await count(running, consultations) == 1


def _headers(envelope: EventEnvelope) -> list[tuple[str, bytes]]:
    from tsunagu_events import to_kafka

    return to_kafka(envelope)[1]


async def test_contact_reports_reach_the_case(running: Running) -> None:
    person = (await running.client.post("/persons", json={"name": "佐藤"}, headers=token())).json()["id"]
    case = (
        await running.client.post(
            "/cases", json={"person_id": person, "approach": "staying_connected"}, headers=token()
        )
    ).json()["id"]
    report = agency_event(
        CONTACT,
        {
            "case_id": case,
            "kind": "outreach",
            "at": "2026-06-01T09:00:00+09:00",
            "agency_id": "specialist.hospital",
            "note": "n",
        },
    )
    await send_structured(running.broker, report)
    await send_binary(running.broker, report)
    got = (await running.client.get(f"/cases/{case}", headers=token())).json()
    assert got["contacts"] == 1


_HEADS: dict[str, str] = {}


def referral_event(type_: str, stream: str, version: int, data: dict[str, Any]) -> EventEnvelope:
    """An event as referral's relay publishes it: hash-chained to the one made before it of its stream."""
    previous = GENESIS_HASH if version == 1 else _HEADS[stream]
    draft = EventEnvelope(
        id=str(uuid.uuid4()),
        source="/tsunagu/131121/referral",
        type=type_,
        time=datetime.now(UTC),
        tenant="131121",
        streamid=stream,
        streamversion=version,
        dataversion=1,
        data=data,
        actoragency="ikejiri.welfare_council_office",
        actorstaff="csw-1",
        prevhash=previous,
    )
    envelope = draft.model_copy(update={"chainhash": chain_hash(previous, draft)})
    _HEADS[stream] = envelope.chainhash or ""
    return envelope


async def test_referral_decisions_drive_the_case_idempotently(running_on: Running) -> None:
    running = running_on
    person = (await running.client.post("/persons", json={"name": "鈴木"}, headers=token())).json()["id"]
    case = (
        await running.client.post("/cases", json={"person_id": person, "approach": "problem_solving"}, headers=token())
    ).json()["id"]
    topic = events_topic("referral")
    now = "2026-06-01T00:00:00Z"
    accepted = referral_event(
        "tsunagu.referral.ReferralAccepted",
        "referral-1",
        1,
        {
            "referral_id": "referral-1",
            "person_id": person,
            "case_id": case,
            "from_agency_id": WINDOW,
            "to_agency_id": "specialist.poverty_support",
            "handover_lead": True,
            "accepted_at": now,
        },
    )
    goal = Sealed(kid=f"referral/{person}/1", nonce=base64.b64encode(b"n" * 12).decode(), ct="Y3Q=")
    plan = referral_event(
        "tsunagu.referral.SupportPlanDecided",
        "meeting-1",
        1,
        {
            "meeting_id": "meeting-1",
            "case_id": case,
            "person_id": person,
            "revision": False,
            "goals": [goal.model_dump()],
            "review_due": "2099-01-01",
            "decided_at": now,
        },
    )
    end = referral_event(
        "tsunagu.referral.SupportDecided",
        "meeting-1",
        2,
        {"meeting_id": "meeting-1", "case_id": case, "person_id": person, "decision": "end", "decided_at": now},
    )
    start = referral_event(
        "tsunagu.referral.SupportDecided",
        "meeting-1",
        3,
        {"meeting_id": "meeting-1", "case_id": case, "person_id": person, "decision": "start", "decided_at": now},
    )
    for envelope in (accepted, plan, accepted, plan):
        await send_binary(running.broker, envelope, topic)
    got = (await running.client.get(f"/cases/{case}", headers=token())).json()
    assert got["lead_agency_id"] == "specialist.poverty_support"
    assert got["plan_version"] == 1
    stored = await running.runtime.store.read(case)
    assert [e.type.rsplit(".", 1)[1] for e in stored] == ["CaseOpened", "LeadAgencyHandedOver", "SupportPlanAdopted"]
    assert stored[2].data["meeting_id"] == "meeting-1"
    assert stored[1].causationid == accepted.id
    await send_binary(running.broker, end, topic)
    assert (await running.client.get(f"/cases/{case}", headers=token())).json()["status"] == "closed"
    await send_binary(running.broker, start, topic)
    await send_binary(running.broker, end, topic)  # replayed: already seen
    assert (await running.client.get(f"/cases/{case}", headers=token())).json()["status"] == "open"
    assert await count(running, cases) == 1


async def test_erasure_leaves_nothing_readable_and_counts_unchanged(running_on: Running) -> None:
    running = running_on
    secrets = [
        "高橋 次郎",
        "たかはし じろう",
        "1950-03-04",
        "世田谷区池尻9-9-9",
        "03-1111-2222",
        "借金の相談",
        "訪問メモ",
    ]
    name, kana, birth, address, phone, summary, note = secrets
    r = await running.client.post(
        "/persons",
        json={
            "name": name,
            "kana": kana,
            "birth_date": birth,
            "address": address,
            "phone": phone,
            "district_id": "ikejiri",
        },
        headers=token(),
    )
    person = r.json()["id"]
    consultation = {
        "window_id": WINDOW,
        "received_at": "2026-05-01T10:00:00+09:00",
        "channel": "walk_in",
        "consulted_by": "person",
        "categories": ["poverty", "health"],
        "outcome": "continued_support",
        "person_id": person,
        "summary": summary,
    }
    await running.client.post("/consultations", json=consultation, headers=token())
    case = (
        await running.client.post("/cases", json={"person_id": person, "approach": "both"}, headers=token())
    ).json()["id"]
    await running.client.post(
        f"/cases/{case}/contacts",
        json={"kind": "home_visit", "at": "2026-05-02T10:00:00+09:00", "note": note},
        headers=token(),
    )
    await running.client.post(
        f"/cases/{case}/plans", json={"goals": ["働く"], "review_due": "2099-01-01"}, headers=token()
    )
    counts_before = (await running.client.get("/consultations/counts", headers=token())).json()
    assert (await running.client.get(f"/persons/{person}", headers=token())).json()["name"] == name

    assert (await running.client.post(f"/persons/{person}/erasure", headers=token())).status_code == 403
    r = await running.client.post(f"/persons/{person}/erasure", headers=token(Role.ADMIN))
    assert r.status_code == 200, r.text
    assert (await running.client.post(f"/persons/{person}/erasure", headers=token(Role.ADMIN))).status_code == 409

    async def all_published() -> bool:
        return await count(running, outbox, outbox.c.published_at.is_(None)) == 0

    await eventually(all_published, what="outbox published")
    after = (await running.client.get(f"/persons/{person}", headers=token(Role.ADMIN))).json()
    assert after["erased"] is True
    assert [after[f] for f in ("name", "kana", "birth_date", "address", "phone")] == [None] * 5
    assert (await running.client.get("/consultations/counts", headers=token())).json() == counts_before
    case_after = (await running.client.get(f"/cases/{case}", headers=token())).json()
    assert case_after["contacts"] == 1

    # Nothing readable in the store, the outbox or anything published to the topics.
    async with running.runtime.engine.connect() as conn:
        stored = [deserialise(t) for (t,) in await conn.execute(select(events.c.envelope))]
        dumped = "\n".join(str(row) for row in await conn.execute(select(outbox)))
        for table in (persons, consultations, cases):
            dumped += "\n".join(str(row) for row in await conn.execute(select(table)))
    published = [m.value or b"" for m in running.captured.messages] + [
        b"".join(v for _k, v in m.headers) for m in running.captured.messages
    ]
    assert len(running.captured.on(events_topic("intake"))) == len(stored)
    text = "\n".join(e.model_dump_json() for e in stored) + dumped + b"\n".join(published).decode("utf-8", "replace")
    for secret in [*secrets, "働く"]:
        assert secret not in text
        assert json.dumps(secret)[1:-1] not in text
    sealed_values = list(_sealed_in([e.data for e in stored]))
    sealed_values += list(
        _sealed_in([json.loads(m.value or b"null") for m in running.captured.on(events_topic("intake"))])
    )
    assert len(sealed_values) >= 16
    for owner, value in sealed_values:
        assert await running.runtime.keys.open(owner, value) is None
    assert any(e.type == "tsunagu.intake.PersonErased" for e in stored)


def _sealed_in(items: list[Any]) -> Any:
    for item in items:
        if isinstance(item, dict):
            if set(item) == {"kid", "nonce", "ct"}:
                yield item["kid"].split("/")[1], Sealed(**item)
            else:
                yield from _sealed_in(list(item.values()))
        elif isinstance(item, list):
            yield from _sealed_in(item)
