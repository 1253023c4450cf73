"""Agency reports applied a batch at a time: same effects as one by one, keys in one key-store transaction."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, event, func, select
from sqlalchemy.exc import OperationalError
from tsunagu_events import EventEnvelope, to_kafka
from tsunagu_events.topics import INTAKE_INBOUND, dlq_topic
from tsunagu_intake.application import derived_id, project
from tsunagu_intake.consumers import agency_event_key
from tsunagu_intake.tables import consultations, persons
from tsunagu_platform.auth import Role
from tsunagu_platform.consumer import EventConsumer, IncomingRecord
from tsunagu_platform.crypto import person_keys
from tsunagu_platform.store import deserialise
from tsunagu_platform.tables import events, inbox

from .helpers import WINDOW, Running, agency_event, agency_source, consultation_reported, token

REPORTED = "tsunagu.agency.ConsultationReported"


def inbound(running: Running) -> EventConsumer:
    return next(c for c in running.runtime.consumers if c.name == "intake.agency-inbound")


def records(envelopes: list[EventEnvelope]) -> list[IncomingRecord]:
    out = []
    for offset, envelope in enumerate(envelopes):
        key, headers, value = to_kafka(envelope)
        out.append(IncomingRecord(INTAKE_INBOUND, 0, offset, key, value, tuple(headers)))
    return out


async def rows(running: Running, table: Any) -> list[dict[str, Any]]:
    async with running.runtime.engine.connect() as conn:
        result = await conn.execute(select(table).order_by(*table.primary_key.columns))
        return [dict(row) for row in result.mappings()]


async def count(running: Running, table: Any) -> int:
    async with running.runtime.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


def dlq(running: Running) -> list[tuple[str, str]]:
    return [
        (dict(m.headers)["dlq_reason"].decode(), dict(m.headers)["dlq_detail"].decode())
        for m in running.captured.on(dlq_topic(INTAKE_INBOUND))
    ]


def key_store_commits(running: Running) -> list[int]:
    commits: list[int] = []
    event.listen(running.runtime.keys_engine.sync_engine, "commit", lambda _conn: commits.append(1))
    return commits


async def known_person(running: Running) -> str:
    response = await running.client.post("/persons", json={"name": "既知 太郎"}, headers=token())
    return str(response.json()["id"])


def mixed_reports(known: str, n: int = 30) -> list[EventEnvelope]:
    reports = []
    for i in range(n):
        if i % 3 == 0:
            data = consultation_reported(person={"name": f"山田 {i}", "phone": "03-0000-0000"})
        elif i % 3 == 1:
            data = consultation_reported(person=None, summary=f"no person {i}", categories=["8050"])
        else:
            data = consultation_reported(person={"person_id": known}, summary=None)
        reports.append(agency_event(REPORTED, data, source=agency_source(WINDOW, f"a{i % 2}")))
    return reports


async def test_a_batch_of_reports_becomes_consultations_and_persons_with_one_key_store_transaction(
    running_on: Running,
) -> None:
    running = running_on
    known = await known_person(running)
    reports = mixed_reports(known)
    commits = key_store_commits(running)
    batch = records(reports)
    await inbound(running).handle_batch([*batch, batch[4]])  # with a duplicate inside the batch
    assert len(commits) == 1
    assert await count(running, consultations) == 30
    assert await count(running, persons) == 1 + 10
    assert dlq(running) == []
    # Each report maps onto its derived streams, sealed under the right owner.
    for i, report in enumerate(reports):
        key = agency_event_key(report)
        consultation_id = derived_id("consultation", key)
        stored = await running.runtime.store.read(consultation_id)
        assert [e.type for e in stored] == ["tsunagu.intake.ConsultationReceived"]
        assert stored[0].causationid == report.id
        person_id = stored[0].data["person_id"]
        expected_person = {0: derived_id("person", key), 1: None, 2: known}[i % 3]
        assert person_id == expected_person
        summary = await running.intake.consultation_summary(consultation_id, person_id)
        assert summary == {0: "agency summary text", 1: f"no person {i}", 2: None}[i % 3]
    registered = derived_id("person", agency_event_key(reports[0]))
    person = (await running.client.get(f"/persons/{registered}", headers=token(agency=WINDOW))).json()
    assert (person["name"], person["phone"], person["access_basis"]) == ("山田 0", "03-0000-0000", "registering_window")
    # A redelivered batch changes nothing and needs no key-store transaction (the keys are cached).
    await inbound(running).handle_batch(batch)
    assert (await count(running, consultations), len(commits)) == (30, 1)


async def test_batch_read_model_rows_are_those_the_events_project_to(running_on: Running) -> None:
    running = running_on
    await inbound(running).handle_batch(records(mixed_reports(await known_person(running), 12)))
    written = {table.name: await rows(running, table) for table in (consultations, persons)}
    async with running.runtime.engine.begin() as conn:
        for table in (consultations, persons):
            await conn.execute(delete(table))
        for (text,) in await conn.execute(select(events.c.envelope).order_by(events.c.position)):
            envelope = deserialise(text)
            await project(conn, envelope, running.runtime.reg.decode(envelope))
    assert {table.name: await rows(running, table) for table in (consultations, persons)} == written
    assert len(written[consultations.name]) == 12


async def test_a_replayed_batch_after_the_inbox_was_lost_maps_onto_the_same_streams(running_on: Running) -> None:
    running = running_on
    batch = records(mixed_reports(await known_person(running), 9))
    await inbound(running).handle_batch(batch)
    before = await count(running, events)
    async with running.runtime.engine.begin() as conn:
        await conn.execute(delete(inbox))
    await inbound(running).handle_batch(batch)
    assert await count(running, events) == before
    assert (await count(running, consultations), await count(running, persons)) == (9, 1 + 3)
    assert dlq(running) == []


async def test_bad_reports_in_a_batch_go_to_the_dlq_and_the_others_are_applied(running_on: Running) -> None:
    running = running_on
    erased = await known_person(running)
    r = await running.client.post(f"/persons/{erased}/erasure", headers=token(Role.ADMIN))
    assert r.status_code == 200, r.text
    good = [agency_event(REPORTED, consultation_reported()) for _ in range(4)]
    bad = [
        agency_event(REPORTED, consultation_reported(window_id="nowhere.window")),
        agency_event(REPORTED, consultation_reported(person={"person_id": "person-nobody"})),
        agency_event(REPORTED, consultation_reported(person={"person_id": erased})),
    ]
    await inbound(running).handle_batch(records([good[0], bad[0], good[1], bad[1], good[2], bad[2], good[3]]))
    assert await count(running, consultations) == 4
    assert await count(running, persons) == 1 + 4
    reasons = dlq(running)
    assert [reason for reason, _ in reasons] == ["handler_error"] * 3
    details = " | ".join(detail for _, detail in reasons)
    assert "unknown window" in details
    assert "unknown person person-nobody" in details
    assert "PersonErasedError" in details
    async with running.runtime.keys_engine.connect() as conn:
        tombstone = (await conn.execute(select(person_keys).where(person_keys.c.person_id == erased))).one()
    assert tombstone.wrapped_key is None, "an erased person's key is never recreated"


async def test_keys_are_durable_before_the_events_and_a_failed_batch_reuses_them(
    running_on: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = running_on
    reports = [agency_event(REPORTED, consultation_reported()) for _ in range(5)]
    intake = running.intake
    original = intake.append_new_streams

    async def unreachable(*_args: Any, **_kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("database is unreachable"))

    monkeypatch.setattr(intake, "append_new_streams", unreachable)
    with pytest.raises(OperationalError):
        await inbound(running).handle_batch(records(reports))
    assert await count(running, events) == 0
    async with running.runtime.keys_engine.connect() as conn:
        created = {p: k for p, k in await conn.execute(select(person_keys.c.person_id, person_keys.c.wrapped_key))}
    assert len(created) == 5  # the persons to register: their keys seal the details and the summaries

    monkeypatch.setattr(intake, "append_new_streams", original)
    await inbound(running).handle_batch(records(reports))
    assert await count(running, consultations) == 5
    async with running.runtime.keys_engine.connect() as conn:
        after = {p: k for p, k in await conn.execute(select(person_keys.c.person_id, person_keys.c.wrapped_key))}
    assert after == created, "the redelivery used the keys the failed attempt left, and made no others"
    for report in reports:
        person_id = derived_id("person", agency_event_key(report))
        details = (await running.client.get(f"/persons/{person_id}", headers=token(agency=WINDOW))).json()
        assert details["name"] == "山田 花子"


@pytest.mark.parametrize("key", ["/agency/a 1", "/agency/池尻 e-01", ""])
def test_a_reported_ids_stream_is_the_uuid5_of_its_source_and_id_so_replays_find_stored_streams(key: str) -> None:
    import uuid

    assert derived_id("consultation", key) == f"consultation-{uuid.uuid5(uuid.NAMESPACE_URL, key)}"
