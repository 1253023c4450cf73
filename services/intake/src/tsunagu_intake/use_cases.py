"""The commands window staff and agency systems give, each one transaction (see application.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import structlog
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events import Actor, EventEnvelope, new_stream_id
from tsunagu_events.contracts.common import ConsultationCategory, Sealed
from tsunagu_events.contracts.intake import (
    Approach,
    Channel,
    ConsentScope,
    ConsultationReceived,
    ConsultedBy,
    ContactKind,
    HouseholdSituation,
    Outcome,
    PersonRegistered,
    PlanGoal,
    Via,
)
from tsunagu_events.registry import EventPayload
from tsunagu_platform.store import ConcurrencyConflict, EventContext, NewEvent, StreamAppend
from tsunagu_platform.tables import events as events_table

from tsunagu_intake.application import (
    CONSULTATION_ROWS,
    PERSON_ROWS,
    Done,
    IntakeService,
    consultation_row,
    person_row,
)
from tsunagu_intake.domain.case import (
    AdoptPlan,
    Case,
    ChangeApproach,
    CloseCase,
    HandOverLead,
    OpenCase,
    RecordContact,
    ReopenCase,
    ReviewCase,
)
from tsunagu_intake.domain.consultation import (
    ChangeOutcome,
    Consultation,
    MarkGapNeed,
    ReceiveConsultation,
    ReclassifyConsultation,
    Window,
)
from tsunagu_intake.domain.errors import DomainError, InvalidReference, UnknownAggregate
from tsunagu_intake.domain.household import Household, LinkHousehold
from tsunagu_intake.domain.person import (
    CorrectPersonDetails,
    ErasePerson,
    GiveConsent,
    Person,
    RecordStatutorySharing,
    RegisterPerson,
    SealedDetails,
    WithdrawConsent,
)

log = structlog.get_logger("tsunagu.intake.use_cases")


@dataclass(frozen=True)
class PlainDetails:
    """Personal details as typed by staff or sent by an agency; sealed before any event exists."""

    name: str | None = None
    kana: str | None = None
    birth_date: date | None = None
    address: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class NewConsultation:
    window_id: str
    received_at: datetime
    channel: Channel
    consulted_by: ConsultedBy
    categories: list[ConsultationCategory]
    outcome: Outcome
    person_id: str | None = None
    summary: str | None = None
    gap_need: bool = False
    via: Via = Via.HTTP
    agency_event: str | None = None
    consultation_id: str | None = None


@dataclass(frozen=True)
class ReportedConsultation:
    """A consultation an agency reported, ready for `receive_reported` (ids derived by the caller).

    With `register` the person is registered first under `consultation.person_id` with
    these details; otherwise `consultation.person_id`, when given, must name a known person.
    """

    consultation: NewConsultation
    actor: Actor
    causation: EventEnvelope
    register: PlainDetails | None = None


@dataclass(frozen=True)
class NewStream:
    """Events that start a stream; `report` is the agency event a consultation stream answers."""

    stream_id: str
    payloads: list[EventPayload]
    context: EventContext
    report: EventEnvelope | None = None


# Read-model rows of the batch path: prebuilt statements, one executemany per batch.
_EXISTING_STREAMS = select(events_table.c.stream_id).where(
    events_table.c.stream_id.in_(bindparam("stream_ids", expanding=True)), events_table.c.stream_version == 1
)


@dataclass(frozen=True)
class NewConsent:
    scope: ConsentScope
    district_id: str | None = None
    agency_ids: list[str] = field(default_factory=list)
    referral_id: str | None = None
    expires_on: date | None = None
    given_at: datetime | None = None


class Intake(IntakeService):
    async def seal_details(self, person_id: str, details: PlainDetails) -> SealedDetails:
        return SealedDetails(
            name=await self.seal(person_id, details.name),
            kana=await self.seal(person_id, details.kana),
            birth_date=await self.seal(person_id, details.birth_date),
            address=await self.seal(person_id, details.address),
            phone=await self.seal(person_id, details.phone),
        )

    # -- consultations ---------------------------------------------------------------------

    async def receive_consultation(
        self,
        new: NewConsultation,
        actor: Actor | None,
        *,
        conn: AsyncConnection | None = None,
        causation: EventEnvelope | None = None,
    ) -> Done:
        window = self.refs.window(new.window_id)
        consultation_id = new.consultation_id or new_stream_id("consultation")
        if new.person_id is not None:
            await self._require_person(new.person_id, conn)
        command = await self._receive_command(new, consultation_id, window)
        return await self.execute(
            Consultation,
            consultation_id,
            lambda c: c.receive(command),
            self.context(actor, causation=causation),
            expected_version=0,
            conn=conn,
        )

    async def _receive_command(self, new: NewConsultation, consultation_id: str, window: Window) -> ReceiveConsultation:
        # Without a person the summary is sealed under the consultation's own key.
        return ReceiveConsultation(
            consultation_id=consultation_id,
            window=window,
            received_at=new.received_at,
            channel=new.channel,
            consulted_by=new.consulted_by,
            categories=new.categories,
            outcome=new.outcome,
            person_id=new.person_id,
            summary=await self.seal(new.person_id or consultation_id, new.summary),
            gap_need=new.gap_need,
            via=new.via,
            agency_event=new.agency_event,
        )

    async def receive_reported(
        self, conn: AsyncConnection, reports: Sequence[ReportedConsultation]
    ) -> list[Done | None]:
        """Many agency reports in the caller's transaction: per report, register the person if asked,
        then receive the consultation; None for a report whose consultation stream already exists.

        The same commands, events and read-model rows as `register_person` + `receive_consultation`
        one by one, at batch cost: the keys of every owner are loaded or created in one key-store
        transaction (committed before any event that uses them), the referenced persons are checked
        with one query, new streams are appended without loading them (a replay finds its stream
        taken and is skipped), and the read-model rows are written with one statement per table.
        Raises like the single commands (InvalidReference, DomainError, PersonErasedError), which
        fails the caller's whole transaction.
        """
        if not reports:
            return []
        windows = [self.refs.window(r.consultation.window_id) for r in reports]
        owners = []
        referenced = set()
        for report, window in zip(reports, windows, strict=True):
            new = report.consultation
            if new.consultation_id is None:
                raise ValueError("reported consultations carry their (derived) consultation_id")
            if report.register is not None:
                self.refs.district(window.district_id)
                if new.person_id is None:
                    raise ValueError("a person to register needs its (derived) person_id")
            elif new.person_id is not None:
                referenced.add(new.person_id)
            owners.append(new.person_id or new.consultation_id)
        known: set[str] = set()
        if referenced:
            rows = await conn.execute(_EXISTING_STREAMS, {"stream_ids": sorted(referenced)})
            known = {stream_id for (stream_id,) in rows}
        # One key-store transaction for the batch; erased owners get no key, so sealing for
        # them raises PersonErasedError below.
        await self.runtime.keys.prepare(owners)
        streams: list[NewStream] = []
        for report, window in zip(reports, windows, strict=True):
            new = report.consultation
            consultation_id, person_id = new.consultation_id, new.person_id
            assert consultation_id is not None
            context = self.context(report.actor, causation=report.causation)
            if report.register is not None:
                assert person_id is not None
                person = Person()
                details = await self.seal_details(person_id, report.register)
                person.register(RegisterPerson(person_id, details, window.district_id))
                streams.append(NewStream(person_id, person.collect(), context))
                known.add(person_id)
            elif person_id is not None and person_id not in known:
                raise InvalidReference(f"unknown person {person_id}", field="person_id")
            consultation = Consultation()
            consultation.receive(await self._receive_command(new, consultation_id, window))
            streams.append(NewStream(consultation_id, consultation.collect(), context, report.causation))
        person_rows: list[tuple[Any, ...]] = []
        consultation_rows: list[tuple[Any, ...]] = []
        results: list[Done | None] = []
        for stream, stored in zip(streams, await self.append_new_streams(conn, streams), strict=True):
            if stored is None:
                if stream.report is not None:
                    # An earlier delivery was applied and the inbox forgot it (e.g. restored
                    # from a backup); a person stream taken is one registered by it.
                    log.info(
                        "intake.agency_report_already_applied",
                        source=stream.report.source,
                        event_id=stream.report.id,
                    )
                    results.append(None)
                continue
            for envelope, payload in zip(stored, stream.payloads, strict=True):
                if isinstance(payload, ConsultationReceived):
                    consultation_rows.append(consultation_row(payload, envelope.streamversion))
                elif isinstance(payload, PersonRegistered):
                    person_rows.append(person_row(envelope, payload))
            if stream.report is not None:
                results.append(Done(stream.stream_id, len(stored), stored))
        await PERSON_ROWS.run(conn, person_rows)
        await CONSULTATION_ROWS.run(conn, consultation_rows)
        return results

    async def append_new_streams(
        self, conn: AsyncConnection, streams: Sequence[NewStream]
    ) -> list[list[EventEnvelope] | None]:
        """Start each stream (expected version 0), in order; None for a stream that already exists.

        The store's head check finds a taken stream before anything is written, so a skipped
        stream leaves the transaction usable on PostgreSQL too.
        """
        appends = [StreamAppend(s.stream_id, 0, [NewEvent(p) for p in s.payloads], s.context) for s in streams]
        results = await self.runtime.append_many(conn, appends)
        return [None if isinstance(r, ConcurrencyConflict) else r for r in results]

    async def _require_person(
        self, person_id: str, conn: AsyncConnection | None, error: type[DomainError] = InvalidReference
    ) -> None:
        if conn is not None:
            person = await self.load(conn, Person, person_id)
        else:
            async with self.runtime.reader.connect() as reader:
                person = await self.load(reader, Person, person_id)
        if not person.exists:
            raise error(f"unknown person {person_id}", field="person_id")

    async def reclassify(
        self, consultation_id: str, categories: list[ConsultationCategory], actor: Actor, expected: int | None
    ) -> Done:
        command = ReclassifyConsultation(categories)
        return await self._on_consultation(consultation_id, lambda c: c.reclassify(command), actor, expected)

    async def change_outcome(self, consultation_id: str, outcome: Outcome, actor: Actor, expected: int | None) -> Done:
        command = ChangeOutcome(outcome)
        return await self._on_consultation(consultation_id, lambda c: c.change_outcome(command), actor, expected)

    async def mark_gap_need(self, consultation_id: str, marked: bool, actor: Actor, expected: int | None) -> Done:
        command = MarkGapNeed(marked)
        return await self._on_consultation(consultation_id, lambda c: c.mark_gap_need(command), actor, expected)

    async def _on_consultation(
        self, stream: str, decide: Callable[[Consultation], None], actor: Actor, expected: int | None
    ) -> Done:
        return await self.execute(
            Consultation,
            stream,
            decide,
            self.context(actor),
            expected_version=expected,
            must_exist="consultation",
        )

    # -- persons, consent, households ------------------------------------------------------

    async def register_person(
        self,
        details: PlainDetails,
        district_id: str | None,
        actor: Actor | None,
        *,
        conn: AsyncConnection | None = None,
        causation: EventEnvelope | None = None,
        person_id: str | None = None,
    ) -> Done:
        if district_id is not None:
            self.refs.district(district_id)
        person_id = person_id or new_stream_id("person")
        command = RegisterPerson(person_id, await self.seal_details(person_id, details), district_id)
        return await self.execute(
            Person,
            person_id,
            lambda p: p.register(command),
            self.context(actor, causation=causation),
            expected_version=0,
            conn=conn,
        )

    async def correct_person(
        self, person_id: str, details: PlainDetails, district_id: str | None, actor: Actor, expected: int | None
    ) -> Done:
        if district_id is not None:
            self.refs.district(district_id)
        await self._require_person(person_id, None, UnknownAggregate)
        command = CorrectPersonDetails(await self.seal_details(person_id, details), district_id)
        return await self.execute(
            Person,
            person_id,
            lambda p: p.correct(command),
            self.context(actor),
            expected_version=expected,
            must_exist="person",
        )

    async def erase_person(self, person_id: str, actor: Actor | None) -> Done:
        """PersonErased first, then the keys: if the process dies in between, the service's own
        PersonErased consumer destroys the keys when it starts again."""
        command = ErasePerson(self.clock())
        done = await self.execute(
            Person, person_id, lambda p: p.erase(command), self.context(actor), must_exist="person"
        )
        await self.runtime.keys.erase(person_id)
        return done

    async def give_consent(self, person_id: str, new: NewConsent, actor: Actor, expected: int | None) -> Done:
        if new.district_id is not None:
            self.refs.district(new.district_id)
        for index, agency in enumerate(new.agency_ids):
            self.refs.agency(agency, field=f"agency_ids.{index}")
        command = GiveConsent(
            consent_id=new_stream_id("consent"),
            scope=new.scope,
            given_at=new.given_at or self.clock(),
            recorded_by_agency=actor.agency,
            district_id=new.district_id,
            agency_ids=new.agency_ids,
            referral_id=new.referral_id,
            expires_on=new.expires_on,
        )
        return await self.execute(
            Person,
            person_id,
            lambda p: p.give_consent(command),
            self.context(actor),
            expected_version=expected,
            must_exist="person",
        )

    async def withdraw_consent(self, person_id: str, consent_id: str, actor: Actor, expected: int | None) -> Done:
        command = WithdrawConsent(consent_id, self.clock(), actor.agency)
        return await self.execute(
            Person,
            person_id,
            lambda p: p.withdraw_consent(command),
            self.context(actor),
            expected_version=expected,
            must_exist="person",
        )

    async def record_statutory_sharing(
        self, person_id: str, meeting_id: str | None, agency_ids: list[str], actor: Actor, expected: int | None
    ) -> Done:
        for index, agency in enumerate(agency_ids):
            self.refs.agency(agency, field=f"agency_ids.{index}")
        command = RecordStatutorySharing(self.clock(), meeting_id, agency_ids)
        return await self.execute(
            Person,
            person_id,
            lambda p: p.record_statutory_sharing(command),
            self.context(actor),
            expected_version=expected,
            must_exist="person",
        )

    async def link_household(self, person_ids: list[str], situation: HouseholdSituation, actor: Actor) -> Done:
        for person_id in person_ids:
            await self._require_person(person_id, None)
        household_id = new_stream_id("household")
        command = LinkHousehold(household_id, person_ids, situation)
        return await self.execute(
            Household, household_id, lambda h: h.link(command), self.context(actor), expected_version=0
        )

    # -- cases -----------------------------------------------------------------------------

    async def open_case(
        self,
        person_id: str,
        consultation_id: str | None,
        lead_agency_id: str,
        approach: Approach,
        actor: Actor,
    ) -> Done:
        self.refs.agency(lead_agency_id, field="lead_agency_id")
        async with self.runtime.reader.connect() as reader:
            person = await self.load(reader, Person, person_id)
            if not person.exists:
                raise InvalidReference(f"unknown person {person_id}", field="person_id")
            district = self.refs.agency_district(lead_agency_id)
            if consultation_id is not None:
                consultation = await self.load(reader, Consultation, consultation_id)
                if not consultation.exists:
                    raise InvalidReference(f"unknown consultation {consultation_id}", field="consultation_id")
                district = consultation.district_id
        district = district or person.district_id
        if district is None:
            raise InvalidReference("no district: the lead agency and the person have none", field="lead_agency_id")
        case_id = new_stream_id("case")
        command = OpenCase(case_id, person_id, lead_agency_id, district, approach, self.clock(), consultation_id)
        return await self.execute(Case, case_id, lambda c: c.open(command), self.context(actor), expected_version=0)

    async def hand_over_lead(
        self,
        case_id: str,
        to_agency_id: str,
        actor: Actor | None,
        expected: int | None,
        *,
        referral_id: str | None = None,
        conn: AsyncConnection | None = None,
        causation: EventEnvelope | None = None,
    ) -> Done:
        self.refs.agency(to_agency_id, field="to_agency_id")
        command = HandOverLead(to_agency_id, self.clock(), referral_id)
        return await self.execute(
            Case,
            case_id,
            lambda c: c.hand_over_lead(command),
            self.context(actor, causation=causation),
            expected_version=expected,
            conn=conn,
            must_exist="case",
        )

    async def change_approach(self, case_id: str, approach: Approach, actor: Actor, expected: int | None) -> Done:
        command = ChangeApproach(approach)
        return await self.execute(
            Case,
            case_id,
            lambda c: c.change_approach(command),
            self.context(actor),
            expected_version=expected,
            must_exist="case",
        )

    async def adopt_plan(
        self,
        case_id: str,
        goals: list[PlanGoal],
        review_due: date,
        actor: Actor | None,
        expected: int | None,
        *,
        meeting_id: str | None = None,
        at: datetime | None = None,
        conn: AsyncConnection | None = None,
        causation: EventEnvelope | None = None,
    ) -> Done:
        command = AdoptPlan(goals, review_due, at or self.clock(), meeting_id)
        return await self.execute(
            Case,
            case_id,
            lambda c: c.adopt_plan(command),
            self.context(actor, causation=causation),
            expected_version=expected,
            conn=conn,
            must_exist="case",
        )

    async def person_of_case(self, case_id: str, conn: AsyncConnection | None = None) -> str:
        if conn is None:
            async with self.runtime.reader.connect() as reader:
                case = await self.load_existing(reader, Case, case_id, "case")
        else:
            case = await self.load_existing(conn, Case, case_id, "case")
        return case.person_id

    async def seal_goals(self, person_id: str, texts: list[str]) -> list[PlanGoal]:
        goals = []
        for text in texts:
            sealed = await self.seal(person_id, text)
            assert sealed is not None
            goals.append(PlanGoal(goal_id=new_stream_id("goal"), text=sealed))
        return goals

    async def record_contact(
        self,
        case_id: str,
        kind: ContactKind,
        at: datetime,
        agency_id: str,
        note: str | None,
        actor: Actor | None,
        expected: int | None,
        *,
        via: Via = Via.HTTP,
        contact_id: str | None = None,
        conn: AsyncConnection | None = None,
        causation: EventEnvelope | None = None,
    ) -> Done:
        self.refs.agency(agency_id)
        person_id = await self.person_of_case(case_id, conn)
        sealed: Sealed | None = await self.seal(person_id, note)
        command = RecordContact(contact_id or new_stream_id("contact"), kind, at, agency_id, sealed, via)
        return await self.execute(
            Case,
            case_id,
            lambda c: c.record_contact(command),
            self.context(actor, causation=causation),
            expected_version=expected,
            conn=conn,
            must_exist="case",
        )

    async def review_case(
        self, case_id: str, next_review_due: date, note: str | None, actor: Actor, expected: int | None
    ) -> Done:
        person_id = await self.person_of_case(case_id)
        command = ReviewCase(self.clock(), next_review_due, await self.seal(person_id, note))
        return await self.execute(
            Case,
            case_id,
            lambda c: c.review(command),
            self.context(actor),
            expected_version=expected,
            must_exist="case",
        )

    async def close_case(
        self,
        case_id: str,
        reason: str,
        actor: Actor | None,
        expected: int | None,
        *,
        conn: AsyncConnection | None = None,
        causation: EventEnvelope | None = None,
    ) -> Done:
        command = CloseCase(reason, self.clock())
        return await self.execute(
            Case,
            case_id,
            lambda c: c.close(command),
            self.context(actor, causation=causation),
            expected_version=expected,
            conn=conn,
            must_exist="case",
        )

    async def reopen_case(
        self,
        case_id: str,
        actor: Actor | None,
        expected: int | None,
        *,
        conn: AsyncConnection | None = None,
        causation: EventEnvelope | None = None,
    ) -> Done:
        command = ReopenCase(self.clock())
        return await self.execute(
            Case,
            case_id,
            lambda c: c.reopen(command),
            self.context(actor, causation=causation),
            expected_version=expected,
            conn=conn,
            must_exist="case",
        )
