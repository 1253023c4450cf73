"""Command handlers: one command, one transaction.

Each handler loads the aggregate from its stream, lets the domain decide, and
appends the new events at the version it read, together with the read-model rows
that reflect them. A concurrent writer makes the append fail (HTTP 409) instead
of silently overwriting.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import date
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events import Actor
from tsunagu_events.aggregate import Aggregate
from tsunagu_events.contracts.common import fiscal_year_of
from tsunagu_events.contracts.resources import IssueSource, ResourceKind, ResourceStatus
from tsunagu_events.reference import Ward
from tsunagu_platform.runtime import ServiceRuntime
from tsunagu_platform.sql import upsert
from tsunagu_platform.store import ConcurrencyConflict, EventContext, NewEvent

from tsunagu_resources import tables
from tsunagu_resources.domain.directory import (
    ChangeResourceDetails,
    ChangeResourceStatus,
    IdentifyResource,
    RegisterResource,
    Resource,
    VerifyResource,
)
from tsunagu_resources.domain.errors import DomainError, InvalidCommand, InvalidTransition, NotFound
from tsunagu_resources.domain.issues import (
    ConcludeInitiative,
    DistrictIssue,
    Initiative,
    LaunchInitiative,
    RaiseDistrictIssue,
    RecordProgress,
    TakeUpIssue,
    check_issue_allows_initiative,
)
from tsunagu_resources.domain.participation import (
    Consent,
    EndParticipation,
    Participation,
    RecordAttendance,
    Requester,
    StartParticipation,
)
from tsunagu_resources.domain.publicity import (
    ChangeSubscribers,
    HoldTrainingSession,
    IntroduceGroup,
    Publicity,
    SendNewsletterIssue,
    TrainingSession,
    publicity_stream,
)
from tsunagu_resources.domain.surveys import OfferPlace, Place, RecordVisit, UsePlace, Visit, check_visit_category
from tsunagu_resources.streams import load, read_payloads


@contextmanager
def deciding(aggregate: Aggregate) -> Iterator[None]:
    """Refusals carry the version the aggregate is at, so a 409 tells the client what it must reload."""
    try:
        yield
    except DomainError as error:
        error.details.setdefault("current_version", aggregate.version)
        raise


_RESOURCES_BY_ID = select(
    tables.resources.c.resource_id, tables.resources.c.district_id, tables.resources.c.kind
).where(tables.resources.c.resource_id.in_(bindparam("ids", expanding=True)))


class UnknownDistrict(Exception):
    """A district id the tenant's reference data does not know (HTTP 422 naming the field)."""

    def __init__(self, district_id: str, field: str = "district_id") -> None:
        super().__init__(f"unknown district {district_id}")
        self.field = field


def _missing(what_ja: str, what_en: str, ident: str) -> NotFound:
    return NotFound(f"{what_ja}が見つかりません。", f"No {what_en} {ident}.")


class ResourcesService:
    def __init__(self, runtime: ServiceRuntime, ward: Ward) -> None:
        self.runtime = runtime
        self.ward = ward

    # ---- shared -------------------------------------------------------------------------

    def context(self, agency: str | None, staff: str | None, **extra: Any) -> EventContext:
        actor = Actor(agency=agency[:64], staff=staff[:64]) if agency and staff else None
        return EventContext(
            tenant=self.runtime.settings.tenant, source=self.runtime.settings.source, actor=actor, **extra
        )

    def check_district(self, district_id: str, field: str = "district_id") -> None:
        if self.ward.district(district_id) is None:
            raise UnknownDistrict(district_id, field)

    @staticmethod
    def check_expected(stream: str, aggregate: Aggregate, expected: int | None) -> None:
        if expected is not None and expected != aggregate.version:
            raise ConcurrencyConflict(stream, expected, aggregate.version)

    async def _append(self, conn: AsyncConnection, stream: str, aggregate: Aggregate, context: EventContext) -> None:
        await self.runtime.append(
            stream, aggregate.version, [NewEvent(e) for e in aggregate.pending], context, conn=conn
        )
        aggregate.version += len(aggregate.pending)
        aggregate.pending.clear()

    async def _existing(self, conn: AsyncConnection, cls: type[Any], stream: str, ja: str, en: str) -> Any:
        aggregate = await load(conn, self.runtime.reg, cls, stream)
        if not aggregate.exists:
            raise _missing(ja, en, stream)
        return aggregate

    # ---- directory ----------------------------------------------------------------------

    async def register_resource(self, command: RegisterResource, context: EventContext) -> Resource:
        self.check_district(command.district_id)
        async with self.runtime.transaction() as conn:
            resource = await load(conn, self.runtime.reg, Resource, command.resource_id)
            resource.register(command)
            await self._append(conn, command.resource_id, resource, context)
            await self._resource_row(conn, resource)
        return resource

    async def get_resource(self, resource_id: str) -> Resource:
        async with self.runtime.reader.connect() as conn:
            return await self._existing(conn, Resource, resource_id, "資源", "resource")  # type: ignore[no-any-return]

    async def change_resource(
        self,
        resource_id: str,
        command: ChangeResourceDetails | ChangeResourceStatus | VerifyResource | IdentifyResource,
        context: EventContext,
        expected_version: int | None = None,
    ) -> Resource:
        async with self.runtime.transaction() as conn:
            resource: Resource = await self._existing(conn, Resource, resource_id, "資源", "resource")
            self.check_expected(resource_id, resource, expected_version)
            with deciding(resource):
                if isinstance(command, ChangeResourceDetails):
                    resource.change_details(command)
                elif isinstance(command, ChangeResourceStatus):
                    resource.change_status(command)
                elif isinstance(command, VerifyResource):
                    resource.verify(command)
                else:
                    resource.identify(command)
            await self._append(conn, resource_id, resource, context)
            await self._resource_row(conn, resource)
            if isinstance(command, ChangeResourceStatus) and command.status == ResourceStatus.DEFUNCT:
                closed = await self.active_participations(conn, resource_id=resource_id)
                await self.end_participations(conn, context, closed, on=command.effective_on, reason="resource_closed")
        return resource

    async def _resource_row(self, conn: AsyncConnection, r: Resource) -> None:
        await upsert(
            conn,
            tables.resources,
            [
                {
                    "resource_id": r.resource_id,
                    "district_id": r.district_id,
                    "kind": r.kind.value,
                    "organization_name": r.organization_name,
                    "service_name": r.service_name,
                    "status": r.status.value,
                    "status_since": r.status_since,
                    "last_verified_on": r.last_verified_on,
                    "last_verified_by": r.last_verified_by,
                    "details": json.dumps(
                        {
                            "description": r.description,
                            "address": r.address,
                            "schedule": r.schedule.model_dump() if r.schedule else None,
                            "eligibility": r.eligibility,
                            "capacity": r.capacity,
                            "identified_on": r.identified_on.isoformat() if r.identified_on else None,
                        },
                        ensure_ascii=False,
                    ),
                    "version": r.version,
                }
            ],
            keys=["resource_id"],
            update=[
                "service_name",
                "status",
                "status_since",
                "last_verified_on",
                "last_verified_by",
                "details",
                "version",
            ],
        )

    async def _listed_resource(self, conn: AsyncConnection, resource_id: str, field: str = "resource_id") -> Resource:
        resource = await load(conn, self.runtime.reg, Resource, resource_id)
        if not resource.exists:
            raise InvalidCommand("資源が見つかりません。", f"No resource {resource_id}.", field=field)
        return resource

    # ---- visits and places --------------------------------------------------------------

    async def record_visit(self, command: RecordVisit, context: EventContext) -> Visit:
        return (await self.record_visits([command], context))[0]

    async def record_visits(self, commands: Sequence[RecordVisit], context: EventContext) -> list[Visit]:
        """Visits are the busiest write (a survey round is entered at once): all in one transaction,
        the resources checked against the read model (committed with their events) in one query,
        and the fresh visit streams not read back (appending at version 0 fails if an id was taken)."""
        for command in commands:
            self.check_district(command.district_id)
        wanted = {c.resource_id for c in commands if c.resource_id is not None}
        async with self.runtime.transaction() as conn:
            known: dict[str, tuple[str, str]] = {}
            if wanted:
                rows = await conn.execute(_RESOURCES_BY_ID, {"ids": sorted(wanted)})
                known = {row.resource_id: (row.district_id, row.kind) for row in rows}
            visits = []
            for command in commands:
                if command.resource_id is not None:
                    if command.resource_id not in known:
                        raise InvalidCommand(
                            "資源が見つかりません。", f"No resource {command.resource_id}.", field="resource_id"
                        )
                    district_id, kind = known[command.resource_id]
                    if district_id != command.district_id:
                        raise InvalidCommand("資源の地区と一致しません。", "The resource belongs to another district.")
                    check_visit_category(ResourceKind(kind), command.category)
                visit = Visit.replay([])
                visit.record(command)
                await self._append(conn, command.visit_id, visit, context)
                visits.append(visit)
            await conn.execute(
                tables.visits.insert(),
                [
                    {
                        "visit_id": v.visit_id,
                        "district_id": v.district_id,
                        "category": v.category.value,
                        "resource_id": v.resource_id,
                        "visited_on": v.visited_on,
                        "fiscal_year": fiscal_year_of(v.visited_on),
                    }
                    for v in visits
                ],
            )
        return visits

    async def get_visit(self, visit_id: str) -> Visit:
        async with self.runtime.reader.connect() as conn:
            return await self._existing(conn, Visit, visit_id, "訪問", "visit")  # type: ignore[no-any-return]

    async def offer_place(self, command: OfferPlace, context: EventContext) -> Place:
        async with self.runtime.transaction() as conn:
            resource = await self._listed_resource(conn, command.resource_id)
            if not resource.is_active_on(command.offered_on):
                raise InvalidTransition(
                    "活動中でない資源は場を提供できません。",
                    "Only a resource active on that day can offer a place.",
                    status=resource.status.value,
                )
            place = await load(conn, self.runtime.reg, Place, command.place_id)
            place.offer(OfferPlace(**{**asdict(command), "district_id": resource.district_id}))
            await self._append(conn, command.place_id, place, context)
        return place

    async def use_place(
        self, place_id: str, command: UsePlace, context: EventContext, expected_version: int | None = None
    ) -> Place:
        async with self.runtime.transaction() as conn:
            place: Place = await self._existing(conn, Place, place_id, "活用できる場", "place")
            self.check_expected(place_id, place, expected_version)
            with deciding(place):
                place.use(command)
            await self._append(conn, place_id, place, context)
        return place

    async def get_place(self, place_id: str) -> Place:
        async with self.runtime.reader.connect() as conn:
            return await self._existing(conn, Place, place_id, "活用できる場", "place")  # type: ignore[no-any-return]

    # ---- district issues and initiatives ------------------------------------------------

    async def raise_issue(
        self, command: RaiseDistrictIssue, context: EventContext, *, conn: AsyncConnection | None = None
    ) -> DistrictIssue | None:
        """Raise an issue; None when it exists already (a redelivered meeting decision)."""
        self.check_district(command.district_id)
        if conn is None:
            async with self.runtime.transaction() as own:
                return await self._raise_issue(own, command, context)
        return await self._raise_issue(conn, command, context)

    async def _raise_issue(
        self, conn: AsyncConnection, command: RaiseDistrictIssue, context: EventContext
    ) -> DistrictIssue | None:
        issue = await load(conn, self.runtime.reg, DistrictIssue, command.issue_id)
        if issue.exists and command.source == IssueSource.FOUR_PARTY_MEETING:
            return None
        issue.raise_issue(command)
        await self._append(conn, command.issue_id, issue, context)
        await conn.execute(
            tables.issues.insert().values(
                issue_id=issue.issue_id,
                district_id=issue.district_id,
                title=issue.title,
                source=issue.source.value,
                decision_id=issue.decision_id,
                meeting_id=issue.meeting_id,
                state=issue.state,
                raised_on=issue.raised_on,
                version=issue.version,
            )
        )
        return issue

    async def take_up_issue(
        self, issue_id: str, command: TakeUpIssue, context: EventContext, expected_version: int | None = None
    ) -> DistrictIssue:
        async with self.runtime.transaction() as conn:
            issue: DistrictIssue = await self._existing(conn, DistrictIssue, issue_id, "地区課題", "district issue")
            self.check_expected(issue_id, issue, expected_version)
            with deciding(issue):
                issue.take_up(command)
            await self._append(conn, issue_id, issue, context)
            await conn.execute(
                update(tables.issues)
                .where(tables.issues.c.issue_id == issue_id)
                .values(state=issue.state, version=issue.version)
            )
        return issue

    async def get_issue(self, issue_id: str) -> DistrictIssue:
        async with self.runtime.reader.connect() as conn:
            return await self._existing(  # type: ignore[no-any-return]
                conn, DistrictIssue, issue_id, "地区課題", "district issue"
            )

    async def launch_initiative(self, command: LaunchInitiative, context: EventContext) -> Initiative:
        self.check_district(command.district_id)
        async with self.runtime.transaction() as conn:
            if command.issue_id is not None:
                issue = await load(conn, self.runtime.reg, DistrictIssue, command.issue_id)
                check_issue_allows_initiative(issue, command.district_id)
            for resource_id in command.resource_ids:
                await self._listed_resource(conn, resource_id, field="resource_ids")
            initiative = await load(conn, self.runtime.reg, Initiative, command.initiative_id)
            initiative.launch(command)
            await self._append(conn, command.initiative_id, initiative, context)
        return initiative

    async def change_initiative(
        self,
        initiative_id: str,
        command: RecordProgress | ConcludeInitiative,
        context: EventContext,
        expected_version: int | None = None,
    ) -> Initiative:
        async with self.runtime.transaction() as conn:
            initiative: Initiative = await self._existing(conn, Initiative, initiative_id, "取組み", "initiative")
            self.check_expected(initiative_id, initiative, expected_version)
            with deciding(initiative):
                if isinstance(command, RecordProgress):
                    initiative.record_progress(command)
                else:
                    initiative.conclude(command)
            await self._append(conn, initiative_id, initiative, context)
        return initiative

    async def get_initiative(self, initiative_id: str) -> Initiative:
        async with self.runtime.reader.connect() as conn:
            return await self._existing(conn, Initiative, initiative_id, "取組み", "initiative")  # type: ignore[no-any-return]

    # ---- participation support ----------------------------------------------------------

    def requester(self, agency_id: str) -> Requester:
        agency = self.ward.agency(agency_id)
        district = agency.district if agency is not None and agency.kind == "window" else None
        return Requester(agency_id=agency_id, window_district_id=district)

    async def consents_of(self, conn: AsyncConnection, person_id: str) -> tuple[list[Consent], bool]:
        rows = (await conn.execute(select(tables.consents).where(tables.consents.c.person_id == person_id))).mappings()
        found = [
            Consent(
                consent_id=row["consent_id"],
                person_id=row["person_id"],
                scope=row["scope"],
                district_id=row["district_id"],
                agency_ids=tuple(json.loads(row["agency_ids"])),
                expires_on=row["expires_on"],
                withdrawn=bool(row["withdrawn"]),
            )
            for row in rows
            if row["scope"] != "unknown"
        ]
        erased = await conn.scalar(
            select(tables.erased_persons.c.person_id).where(tables.erased_persons.c.person_id == person_id)
        )
        return found, erased is not None

    async def start_participation(
        self, command: StartParticipation, requesting_agency: str, context: EventContext
    ) -> Participation:
        async with self.runtime.transaction() as conn:
            resource = await self._listed_resource(conn, command.resource_id)
            if not resource.is_active_on(command.started_on):
                raise InvalidTransition(
                    "この資源はその日に活動していません。",
                    "The resource is not active on that day.",
                    status=resource.status.value,
                )
            if command.place_id is not None:
                place = await load(conn, self.runtime.reg, Place, command.place_id)
                if not place.exists or place.resource_id != command.resource_id:
                    raise InvalidCommand(
                        "この資源の活用できる場ではありません。",
                        "The place is not one this resource offers.",
                        field="place_id",
                    )
            consents, erased = await self.consents_of(conn, command.person_id)
            participation = await load(conn, self.runtime.reg, Participation, command.participation_id)
            participation.start(
                StartParticipation(**{**asdict(command), "district_id": resource.district_id}),
                consents,
                self.requester(requesting_agency),
                erased=erased,
            )
            await self._append(conn, command.participation_id, participation, context)
            await conn.execute(
                tables.participations.insert().values(
                    participation_id=participation.participation_id,
                    person_id=participation.person_id,
                    consent_id=participation.consent_id,
                    resource_id=participation.resource_id,
                    district_id=participation.district_id,
                    state=participation.state,
                )
            )
        return participation

    async def change_participation(
        self,
        participation_id: str,
        command: RecordAttendance | EndParticipation,
        context: EventContext,
        expected_version: int | None = None,
        *,
        conn: AsyncConnection | None = None,
    ) -> Participation:
        if conn is None:
            async with self.runtime.transaction() as own:
                return await self._change_participation(own, participation_id, command, context, expected_version)
        return await self._change_participation(conn, participation_id, command, context, expected_version)

    async def _change_participation(
        self,
        conn: AsyncConnection,
        participation_id: str,
        command: RecordAttendance | EndParticipation,
        context: EventContext,
        expected_version: int | None,
    ) -> Participation:
        participation: Participation = await self._existing(
            conn, Participation, participation_id, "参加支援", "participation"
        )
        self.check_expected(participation_id, participation, expected_version)
        with deciding(participation):
            if isinstance(command, RecordAttendance):
                participation.record_attendance(command)
            else:
                participation.end(command)
        await self._append(conn, participation_id, participation, context)
        await conn.execute(
            update(tables.participations)
            .where(tables.participations.c.participation_id == participation_id)
            .values(state=participation.state)
        )
        return participation

    async def get_participation(self, participation_id: str) -> Participation:
        async with self.runtime.reader.connect() as conn:
            return await self._existing(  # type: ignore[no-any-return]
                conn, Participation, participation_id, "参加支援", "participation"
            )

    async def active_participations(
        self,
        conn: AsyncConnection,
        *,
        person_id: str | None = None,
        consent_id: str | None = None,
        resource_id: str | None = None,
    ) -> Sequence[str]:
        t = tables.participations
        query = select(t.c.participation_id).where(t.c.state == "active").order_by(t.c.participation_id)
        if person_id is not None:
            query = query.where(t.c.person_id == person_id)
        if consent_id is not None:
            query = query.where(t.c.consent_id == consent_id)
        if resource_id is not None:
            query = query.where(t.c.resource_id == resource_id)
        return list((await conn.execute(query)).scalars())

    async def end_participations(
        self, conn: AsyncConnection, context: EventContext, participation_ids: Sequence[str], *, on: date, reason: str
    ) -> list[str]:
        """End participations because of something outside them (consent withdrawn, person erased,
        resource closed for good), in the caller's transaction."""
        for participation_id in participation_ids:
            participation = await load(conn, self.runtime.reg, Participation, participation_id)
            participation.end(EndParticipation(ended_on=max(on, participation.started_on), reason=reason))
            await self._append(conn, participation_id, participation, context)
            await conn.execute(
                update(tables.participations)
                .where(tables.participations.c.participation_id == participation_id)
                .values(state=participation.state)
            )
        return list(participation_ids)

    # ---- publicity and training ---------------------------------------------------------

    async def publicity(
        self,
        district_id: str,
        command: SendNewsletterIssue | ChangeSubscribers | IntroduceGroup,
        context: EventContext,
        expected_version: int | None = None,
    ) -> Publicity:
        self.check_district(district_id)
        stream = publicity_stream(district_id)
        async with self.runtime.transaction() as conn:
            publicity = Publicity.of(district_id, await read_payloads(conn, self.runtime.reg, stream))
            self.check_expected(stream, publicity, expected_version)
            with deciding(publicity):
                if isinstance(command, SendNewsletterIssue):
                    publicity.send_issue(command)
                elif isinstance(command, ChangeSubscribers):
                    publicity.change_subscribers(command)
                else:
                    publicity.introduce_group(command)
            await self._append(conn, stream, publicity, context)
        return publicity

    async def get_publicity(self, district_id: str) -> Publicity:
        self.check_district(district_id)
        async with self.runtime.reader.connect() as conn:
            return Publicity.of(district_id, await read_payloads(conn, self.runtime.reg, publicity_stream(district_id)))

    async def hold_training(self, command: HoldTrainingSession, context: EventContext) -> TrainingSession:
        async with self.runtime.transaction() as conn:
            session = await load(conn, self.runtime.reg, TrainingSession, command.session_id)
            session.hold(command)
            await self._append(conn, command.session_id, session, context)
        return session

    async def get_training(self, session_id: str) -> TrainingSession:
        async with self.runtime.reader.connect() as conn:
            return await self._existing(  # type: ignore[no-any-return]
                conn, TrainingSession, session_id, "研修", "training session"
            )
