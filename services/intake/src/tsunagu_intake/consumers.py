"""What intake learns from Kafka: agency systems' reports and the referral service's decisions.

Agency reports on `tsunagu.intake.inbound` become the same domain events as the
HTTP path. They are keyed by CloudEvents (source, id) twice over: the consumer
inbox ignores a redelivery, and the consultation, person and contact ids are
derived from that pair, so even a replay after the inbox was lost maps onto the
same streams. Whatever an agency sends that cannot become an event (bad bytes,
wrong types, unknown windows or cases) goes to the DLQ with the reason; the
consumer carries on.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events import Actor, EventEnvelope
from tsunagu_events.contracts.agency import ConsultationReported, ContactReported
from tsunagu_events.contracts.intake import PlanGoal, Via
from tsunagu_events.contracts.referral import ReferralAccepted, SupportDecided, SupportPlanDecided
from tsunagu_events.topics import INTAKE_INBOUND, events_topic
from tsunagu_platform.consumer import EventConsumer, ReceivedEvent
from tsunagu_platform.runtime import ServiceRuntime

from tsunagu_intake.application import derived_id
from tsunagu_intake.domain.case import Case
from tsunagu_intake.use_cases import Intake, NewConsultation, PlainDetails, ReportedConsultation

log = structlog.get_logger("tsunagu.intake.consumers")

AGENCY_TYPES = [ConsultationReported.event_type, ContactReported.event_type]
REFERRAL_TYPES = [ReferralAccepted.event_type, SupportPlanDecided.event_type, SupportDecided.event_type]
AGENCY_STAFF = "agency-system"


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
            "agency-inbound", [INTAKE_INBOUND], inbound, handles=AGENCY_TYPES, check_versions=False
        ),
        "referral": runtime.consume(
            "referral-decisions", [events_topic("referral")], ReferralDecisions(intake), handles=REFERRAL_TYPES
        ),
        "erasure": runtime.erase_keys_on_person_erased(),
    }
