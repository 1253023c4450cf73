"""The inbound contract (libs/events/asyncapi/intake-inbound.yaml) checked as written: times with their UTC
offset, this tenant only, agency types only, and each report only for the agency its source is registered with."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, func, select
from tsunagu_events import EventEnvelope, to_kafka
from tsunagu_events.reference import AgencySource, ward_for
from tsunagu_events.topics import INTAKE_INBOUND, dlq_topic
from tsunagu_intake.tables import consultations
from tsunagu_platform.consumer import EventConsumer, IncomingRecord

from .helpers import WINDOW, Running, agency_event, agency_source, consultation_reported, send_binary

REPORTED = "tsunagu.agency.ConsultationReported"
CONTACT = "tsunagu.agency.ContactReported"
HOSPITAL = "specialist.hospital"


def dlq(running: Running) -> list[tuple[str, str]]:
    return [
        (dict(m.headers)["dlq_reason"].decode(), dict(m.headers)["dlq_detail"].decode())
        for m in running.captured.on(dlq_topic(INTAKE_INBOUND))
    ]


async def consultation_count(running: Running) -> int:
    async with running.runtime.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(consultations)) or 0)


def inbound(running: Running) -> EventConsumer:
    return next(c for c in running.runtime.consumers if c.name == "intake.agency-inbound")


def records(envelopes: list[EventEnvelope]) -> list[IncomingRecord]:
    out = []
    for offset, envelope in enumerate(envelopes):
        key, headers, value = to_kafka(envelope)
        out.append(IncomingRecord(INTAKE_INBOUND, 0, offset, key, value, tuple(headers)))
    return out


async def test_a_received_at_without_a_utc_offset_is_a_schema_violation(running: Running) -> None:
    """2020-03-31T20:00 without an offset was read in the server's time zone and landed in FY2020."""
    await send_binary(running.broker, agency_event(REPORTED, consultation_reported(received_at="2020-03-31T20:00:00")))
    assert [reason for reason, _ in dlq(running)] == ["schema_violation"]
    assert "received_at" in dlq(running)[0][1]
    assert await consultation_count(running) == 0


async def test_a_contact_time_without_a_utc_offset_is_a_schema_violation(running: Running) -> None:
    data = {"case_id": "case-1", "kind": "call", "at": "2026-06-01T09:00:00", "agency_id": WINDOW}
    await send_binary(running.broker, agency_event(CONTACT, data))
    assert [reason for reason, _ in dlq(running)] == ["schema_violation"]


async def test_a_report_of_a_foreign_tenant_goes_to_the_dlq(running: Running) -> None:
    foreign = agency_event(REPORTED, consultation_reported()).model_copy(update={"tenant": "999999"})
    await send_binary(running.broker, foreign)
    assert [reason for reason, _ in dlq(running)] == ["foreign_tenant"]
    assert await consultation_count(running) == 0


async def test_an_internal_event_type_on_the_inbound_topic_goes_to_the_dlq(running: Running) -> None:
    erased = agency_event("tsunagu.intake.PersonErased", {"person_id": "person-1", "erased_at": "2026-06-01T00:00:00Z"})
    await send_binary(running.broker, erased)
    assert [reason for reason, _ in dlq(running)] == ["unknown_type"]


@pytest.mark.parametrize(
    ("source", "data"),
    [
        (agency_source(HOSPITAL), consultation_reported(window_id=WINDOW)),  # a hospital reporting as a window
        ("/somewhere/else", consultation_reported(window_id=WINDOW)),  # a source registered with no agency
        (
            agency_source(WINDOW),
            {"case_id": "case-1", "kind": "call", "at": "2026-06-01T09:00:00+09:00", "agency_id": HOSPITAL},
        ),
    ],
    ids=["hospital_as_window", "unregistered_source", "contact_for_another_agency"],
)
async def test_a_report_for_a_window_or_agency_that_is_not_its_sources_goes_to_the_dlq(
    running: Running, source: str, data: dict[str, Any]
) -> None:
    kind = REPORTED if "window_id" in data else CONTACT
    await send_binary(running.broker, agency_event(kind, data, source=source))
    assert [reason for reason, _ in dlq(running)] == ["unbound_source"]
    assert await consultation_count(running) == 0


async def test_a_report_from_its_windows_own_system_is_applied(running: Running) -> None:
    await send_binary(
        running.broker, agency_event(REPORTED, consultation_reported(), source=agency_source(WINDOW, "k1"))
    )
    assert dlq(running) == []
    assert await consultation_count(running) == 1


def test_each_agency_source_is_bound_to_its_agency_in_the_reference_data() -> None:
    ward = ward_for("131121")
    assert ward.agency_of_source(f"/agency/{WINDOW}") == WINDOW
    assert ward.agency_of_source(f"/agency/{HOSPITAL}/records-system") == HOSPITAL
    assert ward.agency_of_source("/agency/evil.agency") is None
    assert ward.agency_of_source("/tsunagu/131121/intake") is None
    listed = ward.model_copy(update={"agency_sources": [AgencySource(source="urn:hospital:emr", agency=HOSPITAL)]})
    listed.__dict__.pop("_source_index", None)
    assert listed.agency_of_source("urn:hospital:emr") == HOSPITAL


async def test_bad_reports_are_refused_before_the_batch_so_it_commits_once(running: Running) -> None:
    """One bad report made the whole batch retry one transaction per report (118 reports/s instead of ~400/s)."""
    reports = [agency_event(REPORTED, consultation_reported(person=None)) for _ in range(60)]
    reports[10] = agency_event(REPORTED, consultation_reported(person=None), source=agency_source(HOSPITAL))
    reports[30] = agency_event(REPORTED, consultation_reported(person={"person_id": "person-nobody"}))
    reports[50] = agency_event(REPORTED, consultation_reported(window_id="nowhere.window"))
    commits: list[int] = []
    event.listen(running.runtime.engine.sync_engine, "commit", lambda _conn: commits.append(1))
    await inbound(running).handle_batch(records(reports))
    assert await consultation_count(running) == 57
    assert sorted(reason for reason, _ in dlq(running)) == ["handler_error", "handler_error", "unbound_source"]
    assert len(commits) == 1
