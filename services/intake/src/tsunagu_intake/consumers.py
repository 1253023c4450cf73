"""What intake learns from Kafka: agency systems' reports and the referral service's decisions.

Agency reports on `tsunagu.intake.inbound` become the same domain events as the
HTTP path. They are keyed by CloudEvents (source, id) twice over: the consumer
inbox ignores a redelivery, and the consultation, person and contact ids are
derived from that pair, so even a replay after the inbox was lost maps onto the
same streams. Whatever an agency sends that cannot become an event (bad bytes,
wrong types, unknown windows or cases) goes to the DLQ with the reason; the
consumer carries on. The inbound contract is checked as written (AsyncAPI
`intake-inbound.yaml`): only the agency types are accepted there (any other,
Tsunagu's own included, is `unknown_type`), only this tenant's events
(`foreign_tenant`), and a report only for the agency its CloudEvents source is
registered with in the reference data (`unbound_source`).

Bad reports are refused before the batch is applied (`AgencyInbound.refuse`), so a
batch with a few of them is applied at nearly the rate of a clean one instead of
being retried report by report.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events import Actor, EventEnvelope
from tsunagu_events.contracts.agency import ConsultationReported, ContactReported
from tsunagu_events.contracts.intake import PlanGoal, Via
from tsunagu_events.contracts.referral import ReferralAccepted, SupportDecided, SupportPlanDecided
from tsunagu_events.topics import INTAKE_INBOUND, events_topic
from tsunagu_platform.consumer import EventConsumer, ReceivedEvent, Rejected, public_detail
from tsunagu_platform.crypto import PersonErasedError
from tsunagu_platform.runtime import ServiceRuntime
from tsunagu_platform.tables import events as events_table

from tsunagu_intake.application import derived_id
from tsunagu_intake.domain.case import Case
from tsunagu_intake.domain.errors import DomainError, InvalidReference
from tsunagu_intake.tables import persons
from tsunagu_intake.use_cases import Intake, NewConsultation, PlainDetails, ReportedConsultation

log = structlog.get_logger("tsunagu.intake.consumers")

AGENCY_TYPES = [ConsultationReported.event_type, ContactReported.event_type]
REFERRAL_TYPES = [ReferralAccepted.event_type, SupportPlanDecided.event_type, SupportDecided.event_type]
AGENCY_STAFF = "agency-system"


_ERASED = select(persons.c.person_id).where(
    persons.c.person_id.in_(bindparam("person_ids", expanding=True)), persons.c.erased_at.is_not(None)
)
_FIRST_EVENTS = select(events_table.c.stream_id).where(
    events_table.c.stream_id.in_(bindparam("stream_ids", expanding=True)), events_table.c.stream_version == 1
)


def agency_event_key(envelope: EventEnvelope) -> str:
    return f"{envelope.source} {envelope.id}"


def actor_of(envelope: EventEnvelope, default_agency: str | None = None) -> Actor | None:
    agency = envelope.actoragency or default_agency
    if agency is None:
        return None
    return Actor(agency=agency[:64], staff=(envelope.actorstaff or AGENCY_STAFF)[:64])


class AgencyInbound:
    """Agency reports, applied a batch at a time.

    `prepare(conn, events)` applies all the consultation reports of a batch together
    (`Intake.receive_reported`: keys in one key-store transaction, one read-model statement
    per table) in the consumer's batch transaction, before the per-event calls; those then
    skip what was prepared in the same transaction. A report that reaches `__call__`
    unprepared is applied alone the same way, so both paths have one behaviour.
    """

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        # The transaction of the last prepared batch and the events applied in it. The
        # connection object is new for every transaction and held here, so it cannot be
        # mistaken for a later one.
        self._prepared_in: AsyncConnection | None = None
        self._prepared: set[int] = set()

    async def refuse(self, conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> list[Rejected]:
        """The reports of a batch that cannot be applied, each with its reason, found before any is applied:
        a source registered with no agency or with another one than the report's window or agency
        (`unbound_source`), an unknown window, agency or district, a person id intake does not know or
        an erased person a summary would be sealed for (`handler_error`, with the detail the command
        would give). What only the command can tell (a closed case for a contact) still fails the
        batch, which the consumer then halves."""
        refused: list[Rejected] = []
        referenced: dict[str, list[ReceivedEvent]] = {}
        ward = self.intake.refs.ward
        for event in events:
            payload, source = event.payload, event.envelope.source
            try:
                if isinstance(payload, ConsultationReported):
                    claimed = payload.window_id
                    window = self.intake.refs.window(payload.window_id)
                    if payload.person is not None and payload.person.person_id is None and payload.person.name:
                        self.intake.refs.district(window.district_id)
                elif isinstance(payload, ContactReported):
                    claimed = self.intake.refs.agency(payload.agency_id)
                else:
                    continue
            except DomainError as error:
                refused.append(Rejected(event.record, "handler_error", public_detail(error)))
                continue
            agency = ward.agency_of_source(source)
            if agency != claimed:
                says = f"reports for {agency}" if agency else "is registered with no agency"
                refused.append(Rejected(event.record, "unbound_source", f"source {source} {says}, not {claimed}"))
                continue
            if isinstance(payload, ConsultationReported) and payload.person and payload.person.person_id:
                referenced.setdefault(payload.person.person_id, []).append(event)
        if referenced:
            refused += await self._refuse_references(conn, referenced)
        return refused

    async def _refuse_references(
        self, conn: AsyncConnection, referenced: dict[str, list[ReceivedEvent]]
    ) -> list[Rejected]:
        """Reports naming a person intake does not know, or an erased person whose key would seal the summary."""
        refused: list[Rejected] = []
        ids = sorted(referenced)
        known = {stream_id for (stream_id,) in await conn.execute(_FIRST_EVENTS, {"stream_ids": ids})}
        erased = {person_id for (person_id,) in await conn.execute(_ERASED, {"person_ids": ids})}
        for person_id, reports in referenced.items():
            if person_id not in known:
                unknown = InvalidReference(f"unknown person {person_id}", field="person_id")
                refused += [Rejected(e.record, "handler_error", public_detail(unknown)) for e in reports]
            elif person_id in erased:
                gone = PersonErasedError(person_id)
                sealing = [e for e in reports if isinstance(e.payload, ConsultationReported) and e.payload.summary]
                refused += [Rejected(e.record, "handler_error", public_detail(gone)) for e in sealing]
        return refused

    async def prepare(self, conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> None:
        if conn is not self._prepared_in:
            self._prepared_in, self._prepared = conn, set()
        fresh = [e for e in events if id(e) not in self._prepared]
        reports = [self.reported(e.envelope, e.payload) for e in fresh if isinstance(e.payload, ConsultationReported)]
        if not reports:
            return
        await self.intake.receive_reported(conn, reports)
        self._prepared.update(id(e) for e in fresh if isinstance(e.payload, ConsultationReported))

    async def __call__(self, conn: AsyncConnection, event: ReceivedEvent) -> None:
        payload = event.payload
        if isinstance(payload, ConsultationReported):
            if conn is not self._prepared_in or id(event) not in self._prepared:
                await self.prepare(conn, [event])
        elif isinstance(payload, ContactReported):
            await self.contact(conn, event.envelope, payload)

    def reported(self, envelope: EventEnvelope, p: ConsultationReported) -> ReportedConsultation:
        """The report as intake's command: ids derived from (source, id), so a replay maps onto the same streams."""
        key = agency_event_key(envelope)
        actor = Actor(agency=p.window_id[:64], staff=(envelope.actorstaff or AGENCY_STAFF)[:64])
        person_id = None
        register = None
        if p.person is not None:
            if p.person.person_id is not None:
                person_id = p.person.person_id
            elif p.person.name:
                person_id = derived_id("person", key)
                register = PlainDetails(
                    p.person.name, p.person.kana, p.person.birth_date, p.person.address, p.person.phone
                )
        consultation = NewConsultation(
            window_id=p.window_id,
            received_at=p.received_at,
            channel=p.channel,
            consulted_by=p.consulted_by,
            categories=p.categories,
            outcome=p.outcome,
            person_id=person_id,
            summary=p.summary,
            via=Via.AGENCY_INBOUND,
            agency_event=key,
            consultation_id=derived_id("consultation", key),
        )
        return ReportedConsultation(consultation, actor, envelope, register)

    async def contact(self, conn: AsyncConnection, envelope: EventEnvelope, p: ContactReported) -> None:
        await self.intake.record_contact(
            p.case_id,
            p.kind,
            p.at,
            p.agency_id,
            p.note,
            Actor(agency=p.agency_id[:64], staff=(envelope.actorstaff or AGENCY_STAFF)[:64]),
            None,
            via=Via.AGENCY_INBOUND,
            contact_id=derived_id("contact", agency_event_key(envelope)),
            conn=conn,
            causation=envelope,
        )


class ReferralDecisions:
    """Accepted handovers, plans decided by a meeting and start/end decisions, applied to intake's cases.

    Each is applied only when it still changes something, so a replayed decision is a no-op.
    """

    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    async def __call__(self, conn: AsyncConnection, event: ReceivedEvent) -> None:
        p, envelope = event.payload, event.envelope
        case_id = getattr(p, "case_id", None)
        if not case_id:
            return
        case = await self.intake.load(conn, Case, case_id)
        if not case.exists:
            log.info("intake.referral_event_for_unknown_case", case_id=case_id, type=envelope.type)
            return
        actor = actor_of(envelope)
        if isinstance(p, ReferralAccepted):
            if p.handover_lead and case.is_open and case.state.lead_agency_id != p.to_agency_id:
                await self.intake.hand_over_lead(
                    case_id,
                    p.to_agency_id,
                    actor,
                    case.version,
                    referral_id=p.referral_id,
                    conn=conn,
                    causation=envelope,
                )
        elif isinstance(p, SupportPlanDecided):
            if not case.is_open or p.meeting_id in case.state.meetings_planned:
                return
            goals = [
                PlanGoal(goal_id=derived_id("goal", f"{p.meeting_id}/{case_id}/{i}"), text=goal)
                for i, goal in enumerate(p.goals)
            ]
            await self.intake.adopt_plan(
                case_id,
                goals,
                p.review_due,
                actor,
                case.version,
                meeting_id=p.meeting_id,
                at=p.decided_at,
                conn=conn,
                causation=envelope,
            )
        elif isinstance(p, SupportDecided):
            if p.decision == "end" and case.is_open:
                await self.intake.close_case(case_id, "other", actor, case.version, conn=conn, causation=envelope)
            elif p.decision == "start" and not case.is_open:
                await self.intake.reopen_case(case_id, actor, case.version, conn=conn, causation=envelope)


def register_consumers(runtime: ServiceRuntime, intake: Intake) -> dict[str, EventConsumer]:
    inbound = AgencyInbound(intake)
    return {
        "inbound": runtime.consume(
            "agency-inbound", [INTAKE_INBOUND], inbound, handles=AGENCY_TYPES, check_versions=False, strict_types=True
        ),
        "referral": runtime.consume(
            "referral-decisions", [events_topic("referral")], ReferralDecisions(intake), handles=REFERRAL_TYPES
        ),
        "erasure": runtime.erase_keys_on_person_erased(),
    }
