"""Intake's use cases: one command, one transaction.

Each command loads its aggregate from the store inside a write transaction,
lets the aggregate decide, and appends the resulting events with the version it
was loaded at, together with the read-model rows they imply. Personal data is
sealed with the person's key before it reaches a command, so events, the outbox
and the topics only ever carry ciphertext.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events import Actor, EventEnvelope
from tsunagu_events.aggregate import Aggregate
from tsunagu_events.contracts.common import Sealed
from tsunagu_events.contracts.intake import (
    ApproachChanged,
    CaseClosed,
    CaseOpened,
    CaseReopened,
    CaseReviewed,
    ConsentGiven,
    ConsentWithdrawn,
    ConsultationOutcomeChanged,
    ConsultationReceived,
    ConsultationReclassified,
    ContactRecorded,
    GapNeedMarked,
    HouseholdLinked,
    LeadAgencyHandedOver,
    PersonDetailsCorrected,
    PersonErased,
    PersonRegistered,
    SupportPlanAdopted,
)
from tsunagu_events.envelope import now
from tsunagu_events.reference import Ward
from tsunagu_events.registry import EventPayload
from tsunagu_platform.runtime import ServiceRuntime
from tsunagu_platform.sql import BulkInsert
from tsunagu_platform.store import ConcurrencyConflict, EventContext, NewEvent

from tsunagu_intake.domain.consultation import Window
from tsunagu_intake.domain.errors import DomainError, InvalidReference, UnknownAggregate
from tsunagu_intake.domain.person import PERSONAL_FIELDS, Person
from tsunagu_intake.tables import access_log, cases, consents, consultations, households, persons

A = TypeVar("A", bound=Aggregate)

# Read-model statements built once and run with parameters: building one per event cost
# more in SQLAlchemy than SQLite spends executing it.
INSERT = {
    "consents": insert(consents),
    "households": insert(households),
    "cases": insert(cases),
}
# The rows every received consultation and registered person write, one insert per batch (or
# command) on the driver: SQLAlchemy's own execution of them cost more than SQLite's insert.
CONSULTATION_ROWS = BulkInsert(consultations, tuple(c.name for c in consultations.c))
PERSON_ROWS = BulkInsert(persons, tuple(c.name for c in persons.c))
_UPDATE_CONSULTATION = update(consultations).where(consultations.c.consultation_id == bindparam("b_id"))
_PERSON_VERSION = update(persons).where(persons.c.person_id == bindparam("b_id"))


_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes


def derived_id(kind: str, key: str) -> str:
    """A stable id for something an agency reported, so a replay maps onto the same stream:
    `<kind>-<uuid5(NAMESPACE_URL, key)>`, spelled out (building the UUID object cost more than
    its hash, once per report)."""
    digest = bytearray(hashlib.sha1(_URL_NAMESPACE + key.encode("utf-8"), usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = digest.hex()
    return f"{kind}-{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


@dataclass(frozen=True)
class Done:
    """What a command wrote: the stream, its version after the command and the stored events."""

    stream_id: str
    version: int
    events: list[EventEnvelope]


class References:
    """The ward's reference data as the commands need it; unknown ids are InvalidReference (422)."""

    def __init__(self, ward: Ward) -> None:
        self.ward = ward
        # A ward's windows do not change while the service runs, and every consultation asks for
        # its window twice (the policy, then the command): each known window is built once.
        self._windows: dict[str, Window] = {}

    def window(self, window_id: str, field: str = "window_id") -> Window:
        known = self._windows.get(window_id)
        if known is not None:
            return known
        agency = self.ward.agency(window_id)
        if agency is None or agency.kind != "window" or agency.district is None or agency.area is None:
            raise InvalidReference(f"unknown window {window_id!r}", field=field)
        assert agency.window_type is not None
        window = self._windows[window_id] = Window(window_id, agency.window_type, agency.district, agency.area)
        return window

    def district(self, district_id: str, field: str = "district_id") -> str:
        if self.ward.district(district_id) is None:
            raise InvalidReference(f"unknown district {district_id!r}", field=field)
        return district_id

    def agency(self, agency_id: str, field: str = "agency_id") -> str:
        if self.ward.agency(agency_id) is None:
            raise InvalidReference(f"unknown agency {agency_id!r}", field=field)
        return agency_id

    def agency_district(self, agency_id: str) -> str | None:
        agency = self.ward.agency(agency_id)
        return agency.district if agency else None


class IntakeService:
    def __init__(self, runtime: ServiceRuntime, ward: Ward, clock: Callable[[], datetime] = now) -> None:
        self.runtime = runtime
        self.refs = References(ward)
        self.clock = clock

    # -- plumbing -------------------------------------------------------------------------

    def context(self, actor: Actor | None, *, causation: EventEnvelope | None = None) -> EventContext:
        settings = self.runtime.settings
        if causation is not None:
            return EventContext(
                tenant=settings.tenant,
                source=settings.source,
                correlation_id=causation.correlationid,
                causation_id=causation.id,
                actor=actor,
            )
        return EventContext(tenant=settings.tenant, source=settings.source, actor=actor)

    async def load(self, conn: AsyncConnection, kind: type[A], stream_id: str) -> A:
        reg = self.runtime.reg
        return kind.replay(reg.decode(e) for e in await self.runtime.store.read(stream_id, conn=conn))

    async def load_existing(self, conn: AsyncConnection, kind: type[A], stream_id: str, what: str) -> A:
        aggregate = await self.load(conn, kind, stream_id)
        if not aggregate.exists:
            raise UnknownAggregate(f"unknown {what} {stream_id}")
        return aggregate

    async def execute(
        self,
        kind: type[A],
        stream_id: str,
        decide: Callable[[A], None],
        context: EventContext,
        *,
        expected_version: int | None = None,
        conn: AsyncConnection | None = None,
        must_exist: str | None = None,
    ) -> Done:
        """Load, decide, append and project in one transaction (the caller's, when given)."""
        if conn is None:
            async with self.runtime.transaction() as own:
                return await self.execute(
                    kind, stream_id, decide, context, expected_version=expected_version, conn=own, must_exist=must_exist
                )
        if expected_version == 0 and not must_exist:
            # A new stream: nothing to load; the append still refuses if the stream exists.
            aggregate = kind()
        elif must_exist:
            aggregate = await self.load_existing(conn, kind, stream_id, must_exist)
        else:
            aggregate = await self.load(conn, kind, stream_id)
        if expected_version is not None and expected_version != aggregate.version:
            raise ConcurrencyConflict(stream_id, expected_version, aggregate.version)
        loaded = aggregate.version
        try:
            decide(aggregate)
        except DomainError as error:
            error.current_version = loaded
            raise
        pending = aggregate.collect()
        stored = await self.runtime.append(stream_id, loaded, [NewEvent(p) for p in pending], context, conn=conn)
        for envelope, payload in zip(stored, pending, strict=True):
            await project(conn, envelope, payload)
        return Done(stream_id, loaded + len(stored), stored)

    async def seal(self, owner: str, value: str | date | None) -> Sealed | None:
        if value is None:
            return None
        return await self.runtime.keys.seal(owner, value.isoformat() if isinstance(value, date) else value)

    # -- queries --------------------------------------------------------------------------

    async def personal_details(self, person_id: str) -> tuple[Person, dict[str, str | None]]:
        async with self.runtime.reader.connect() as conn:
            person = await self.load_existing(conn, Person, person_id, "person")
        opened = {name: await self.runtime.keys.open(person_id, person.details[name]) for name in PERSONAL_FIELDS}
        return person, opened

    async def consultation_summary(self, consultation_id: str, person_id: str | None) -> str | None:
        received = await self.runtime.store.read(consultation_id, up_to_version=1)
        if not received:
            return None
        payload = self.runtime.reg.decode(received[0])
        assert isinstance(payload, ConsultationReceived)
        return await self.runtime.keys.open(person_id or consultation_id, payload.summary)

    async def record_access(
        self, person_id: str, *, staff: str, agency: str, role: str, what: str, basis: str | None
    ) -> None:
        async with self.runtime.transaction() as conn:
            await conn.execute(
                insert(access_log).values(
                    at=self.clock(),
                    staff=staff,
                    agency=agency,
                    role=role,
                    person_id=person_id,
                    what=what,
                    granted=basis is not None,
                    basis=basis or "denied",
                )
            )


def consultation_row(p: ConsultationReceived, version: int) -> tuple[Any, ...]:
    """The `intake_consultations` row of a received consultation (CONSULTATION_ROWS' columns)."""
    return (
        p.consultation_id,
        p.window_id,
        p.window_type,
        p.district_id,
        p.area_id,
        p.received_at,
        p.fiscal_year,
        p.channel.value,
        p.consulted_by.value,
        [c.value for c in p.categories],
        p.expanded,
        p.compound_need,
        p.gap_need,
        p.outcome.value,
        p.person_id,
        p.via.value,
        version,
    )


def person_row(envelope: EventEnvelope, p: PersonRegistered) -> tuple[Any, ...]:
    """The `intake_persons` row of a registered person (PERSON_ROWS' columns)."""
    return (
        p.person_id,
        p.district_id,
        envelope.actoragency or "unknown",
        envelope.time,
        None,
        envelope.streamversion,
    )


async def project(conn: AsyncConnection, envelope: EventEnvelope, p: EventPayload) -> None:
    """Keep the read models in step with one stored event (same transaction)."""
    version = envelope.streamversion
    if isinstance(p, ConsultationReceived):
        await CONSULTATION_ROWS.run(conn, [consultation_row(p, version)])
    elif isinstance(p, ConsultationReclassified):
        await _update(
            conn,
            p.consultation_id,
            categories=[c.value for c in p.categories],
            expanded=p.expanded,
            compound_need=p.compound_need,
            version=version,
        )
    elif isinstance(p, ConsultationOutcomeChanged):
        await _update(conn, p.consultation_id, outcome=p.outcome.value, version=version)
    elif isinstance(p, GapNeedMarked):
        await _update(conn, p.consultation_id, gap_need=p.marked, version=version)
    elif isinstance(p, PersonRegistered):
        await PERSON_ROWS.run(conn, [person_row(envelope, p)])
    elif isinstance(p, PersonDetailsCorrected):
        values: dict[str, Any] = {"version": version}
        if p.district_id is not None:
            values["district_id"] = p.district_id
        await conn.execute(update(persons).where(persons.c.person_id == p.person_id).values(**values))
    elif isinstance(p, PersonErased):
        await conn.execute(
            update(persons).where(persons.c.person_id == p.person_id).values(erased_at=p.erased_at, version=version)
        )
    elif isinstance(p, ConsentGiven | ConsentWithdrawn):
        await _project_consent(conn, p)
    elif isinstance(p, HouseholdLinked):
        await conn.execute(
            INSERT["households"],
            dict(household_id=p.household_id, person_ids=list(p.person_ids), situation=p.situation.value),
        )
    else:
        await _project_case(conn, envelope, p)
    if envelope.streamid.startswith("person-"):
        await conn.execute(_PERSON_VERSION, {"b_id": envelope.streamid, "version": version})


async def _update(conn: AsyncConnection, consultation_id: str, **values: Any) -> None:
    await conn.execute(_UPDATE_CONSULTATION, {"b_id": consultation_id, **values})


async def _project_consent(conn: AsyncConnection, p: ConsentGiven | ConsentWithdrawn) -> None:
    if isinstance(p, ConsentGiven):
        await conn.execute(
            INSERT["consents"],
            dict(
                consent_id=p.consent_id,
                person_id=p.person_id,
                scope=p.scope.value,
                district_id=p.district_id,
                agency_ids=list(p.agency_ids),
                given_at=p.given_at,
                expires_on=p.expires_on,
                recorded_by_agency=p.recorded_by_agency,
            ),
        )
    else:
        await conn.execute(
            update(consents)
            .where(and_(consents.c.consent_id == p.consent_id, consents.c.person_id == p.person_id))
            .values(withdrawn_at=p.withdrawn_at)
        )


async def _project_case(conn: AsyncConnection, envelope: EventEnvelope, p: EventPayload) -> None:
    version = envelope.streamversion
    where = cases.c.case_id == envelope.streamid
    values: dict[str, Any] = {"version": version}
    if isinstance(p, CaseOpened):
        await conn.execute(
            INSERT["cases"],
            dict(
                case_id=p.case_id,
                person_id=p.person_id,
                consultation_id=p.consultation_id,
                lead_agency_id=p.lead_agency_id,
                district_id=p.district_id,
                approach=p.approach.value,
                status="open",
                opened_at=p.opened_at,
                plan_version=0,
                contacts=0,
                version=version,
            ),
        )
        return
    if isinstance(p, LeadAgencyHandedOver):
        values["lead_agency_id"] = p.to_agency_id
    elif isinstance(p, ApproachChanged):
        values["approach"] = p.approach.value
    elif isinstance(p, SupportPlanAdopted):
        values.update(plan_version=p.plan_version, review_due=p.review_due)
    elif isinstance(p, ContactRecorded):
        values.update(contacts=cases.c.contacts + 1, last_contact_at=p.at)
    elif isinstance(p, CaseReviewed):
        values["review_due"] = p.next_review_due
    elif isinstance(p, CaseClosed):
        values.update(status="closed", closed_at=p.closed_at, close_reason=p.reason)
    elif isinstance(p, CaseReopened):
        values.update(status="open", closed_at=None, close_reason=None)
    else:
        return
    await conn.execute(update(cases).where(where).values(**values))
