"""The HTTP edge: thin routes turning requests into commands and aggregates into responses.

No `from __future__ import annotations` here: FastAPI resolves the per-app `Caller`
dependency alias at definition time.
"""

import json
import uuid
from collections import Counter
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from tsunagu_events import new_stream_id
from tsunagu_events.contracts.common import CATEGORY_LABELS_JA
from tsunagu_events.contracts.resources import VISIT_CATEGORY_LABELS_JA, IssueSource, ResourceStatus
from tsunagu_platform.auth import Principal, principal_dependency
from tsunagu_platform.http import problem
from tsunagu_platform.store import EventContext

from tsunagu_resources import tables
from tsunagu_resources.domain import directory, issues, participation, publicity, surveys
from tsunagu_resources.domain.errors import (
    ConsentRequired,
    DomainError,
    InvalidCommand,
    InvalidTransition,
    NotFound,
    NotPermitted,
)
from tsunagu_resources.history import active_on
from tsunagu_resources.hsds import hsds_document
from tsunagu_resources.models import (
    ID,
    ActiveOnOut,
    AttendanceIn,
    ChangeDetailsIn,
    ChangeStatusIn,
    ConcludeIn,
    Day,
    EndParticipationIn,
    GroupIn,
    GroupOut,
    IdentifyIn,
    InitiativeOut,
    IssueOut,
    IssueSummary,
    Labelled,
    LaunchInitiativeIn,
    NewsletterIn,
    OfferPlaceIn,
    ParticipationOut,
    PlaceOut,
    PlaceUseOut,
    ProgressIn,
    ProgressOut,
    PublicityOut,
    RaiseIssueIn,
    RecordVisitIn,
    RecordVisitsIn,
    RegisterResourceIn,
    ResourceOut,
    ResourceSummary,
    StartParticipationIn,
    SubscribersIn,
    TakeUpIn,
    TrainingIn,
    TrainingOut,
    UsePlaceIn,
    VerifyIn,
    VisitCounts,
    VisitOut,
)
from tsunagu_resources.policy import ResourcesPolicy
from tsunagu_resources.service import ResourcesService, UnknownDistrict

IdPath = Annotated[str, Path(pattern=ID, description="Stream id.")]
DistrictPath = Annotated[str, Path(pattern=ID, examples=["ikejiri"], description="District id (reference data).")]


RESERVED = {"status", "title", "detail", "type", "code", "errors"}
"""Problem-details members a domain error's details must not overwrite (they get a `current_` prefix)."""


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UnknownDistrict)
    async def _unknown_district(_request: Request, error: UnknownDistrict) -> JSONResponse:
        return problem(
            422,
            "入力内容に誤りがあります (invalid input)",
            errors=[
                {"field": error.field, "message": "unknown district (地区が見つかりません)", "type": "unknown_district"}
            ],
        )

    @app.exception_handler(DomainError)
    async def _domain(_request: Request, error: DomainError) -> JSONResponse:
        status = 422
        title = "入力内容に誤りがあります (invalid input)"
        if isinstance(error, NotFound):
            status, title = 404, "見つかりません (not found)"
        elif isinstance(error, InvalidTransition):
            status, title = 409, "現在の状態ではできません (invalid in the current state)"
        elif isinstance(error, ConsentRequired):
            status, title = 403, "本人の同意がありません (consent required)"
        elif isinstance(error, NotPermitted):
            status, title = 403, "この操作の権限がありません (not permitted)"
        extra: dict[str, Any] = {"code": error.code, "reason_ja": error.message_ja, "reason_en": error.message_en}
        for key, value in error.details.items():
            if isinstance(value, str | int | float | bool):
                extra[f"current_{key}" if key in RESERVED else key] = value
        if isinstance(error, InvalidCommand) and "field" in error.details:
            extra["errors"] = [{"field": error.details["field"], "message": error.message_en, "type": error.code}]
        return problem(status, title, error.message_en, **extra)


def _labelled(value: str, labels: dict[Any, str]) -> Labelled:
    return Labelled(value=value, label_ja=labels.get(value, value))


def resource_out(r: directory.Resource) -> ResourceOut:
    return ResourceOut(
        resource_id=r.resource_id,
        version=r.version,
        district_id=r.district_id,
        kind=_labelled(r.kind.value, directory.KIND_LABELS_JA),
        organization_name=r.organization_name,
        service_name=r.service_name,
        description=r.description,
        address=r.address,
        schedule=r.schedule,
        eligibility=r.eligibility,
        capacity=r.capacity,
        status=_labelled(r.status.value, directory.STATUS_LABELS_JA),
        status_since=r.status_since,
        last_verified_on=r.last_verified_on,
        last_verified_by=r.last_verified_by,
        identified_on=r.identified_on,
    )


def visit_out(v: surveys.Visit) -> VisitOut:
    return VisitOut(
        visit_id=v.visit_id,
        district_id=v.district_id,
        category=_labelled(v.category.value, VISIT_CATEGORY_LABELS_JA),
        resource_id=v.resource_id,
        visited_on=v.visited_on,
        findings=[_labelled(f, surveys.FINDING_LABELS_JA) for f in v.findings],
        follow_up=v.follow_up,
    )


def place_out(p: surveys.Place) -> PlaceOut:
    return PlaceOut(
        place_id=p.place_id,
        version=p.version,
        resource_id=p.resource_id,
        district_id=p.district_id,
        kind=_labelled(p.kind.value, surveys.PLACE_KIND_LABELS_JA),
        conditions=p.conditions,
        offered_on=p.offered_on,
        uses=[
            PlaceUseOut(use_id=u.use_id, activity=u.activity, used_on=u.used_on, participants=u.participants)
            for u in p.uses
        ],
    )


def issue_out(i: issues.DistrictIssue) -> IssueOut:
    return IssueOut(
        issue_id=i.issue_id,
        version=i.version,
        district_id=i.district_id,
        title=i.title,
        source=_labelled(i.source.value, issues.ISSUE_SOURCE_LABELS_JA),
        categories=[_labelled(c.value, CATEGORY_LABELS_JA) for c in i.categories],
        gap_need=i.gap_need,
        meeting_id=i.meeting_id,
        decision_id=i.decision_id,
        raised_on=i.raised_on,
        state=i.state,
        taken_up_on=i.taken_up_on,
    )


def initiative_out(i: issues.Initiative) -> InitiativeOut:
    return InitiativeOut(
        initiative_id=i.initiative_id,
        version=i.version,
        district_id=i.district_id,
        issue_id=i.issue_id,
        kind=_labelled(i.kind.value, issues.INITIATIVE_KIND_LABELS_JA),
        title=i.title,
        resource_ids=i.resource_ids,
        launched_on=i.launched_on,
        state=i.state,
        progress=[ProgressOut(note=p.note, participants=p.participants, on=p.on) for p in i.progress],
        concluded_on=i.concluded_on,
        outcome=i.outcome,
    )


def participation_out(p: participation.Participation) -> ParticipationOut:
    return ParticipationOut(
        participation_id=p.participation_id,
        version=p.version,
        person_id=p.person_id,
        resource_id=p.resource_id,
        place_id=p.place_id,
        district_id=p.district_id,
        consent_id=p.consent_id,
        started_on=p.started_on,
        attended=p.attended,
        state=p.state,
        ended_on=p.ended_on,
        end_reason=_labelled(p.end_reason, participation.END_REASON_LABELS_JA) if p.end_reason else None,
    )


def publicity_out(p: publicity.Publicity) -> PublicityOut:
    return PublicityOut(
        district_id=p.district_id,
        version=p.version,
        newsletter_issues_sent=p.issues_sent,
        subscribers=p.subscribers,
        groups=[
            GroupOut(group_id=g.group_id, group_name=g.group_name, introduced_on=g.introduced_on) for g in p.groups
        ],
    )


def training_out(t: publicity.TrainingSession) -> TrainingOut:
    return TrainingOut(
        session_id=t.session_id,
        title=t.title,
        held_on=t.held_on,
        participants=t.participants,
        organiser=_labelled(t.organiser, publicity.ORGANISER_LABELS_JA),
    )


def build_router(service: ResourcesService) -> APIRouter:
    settings = service.runtime.settings
    caller = principal_dependency(settings)
    Caller = Annotated[Principal, Depends(caller)]  # noqa: N806
    router = APIRouter()
    policy = ResourcesPolicy(service.runtime, service.ward)

    def writes(principal: Principal) -> EventContext:
        """The context of a write the policy has already allowed (auditors never get one)."""
        policy.write(principal)
        return service.context(principal.agency, principal.staff)

    # ---- directory ------------------------------------------------------------------------

    @router.post("/resources", status_code=201, tags=["directory"], summary="Register a local resource (地域資源)")
    async def register_resource(body: RegisterResourceIn, principal: Caller) -> ResourceOut:
        policy.write_in_district(principal, body.district_id)
        resource = await service.register_resource(
            directory.RegisterResource(
                resource_id=new_stream_id("resource"), **body.model_dump(exclude={"schedule"}), schedule=body.schedule
            ),
            writes(principal),
        )
        return resource_out(resource)

    @router.get("/resources", tags=["directory"], summary="List the directory")
    async def list_resources(
        principal: Caller,
        district_id: Annotated[str | None, Query(pattern=ID, description="District.")] = None,
        status: Annotated[ResourceStatus | None, Query(description="Current status.")] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="At most this many.")] = 200,
    ) -> list[ResourceSummary]:
        policy.read_district_data(principal)
        if district_id is not None:
            service.check_district(district_id)
        t = tables.resources
        query = select(t).order_by(t.c.district_id, t.c.resource_id).limit(limit)
        if district_id is not None:
            query = query.where(t.c.district_id == district_id)
        if status is not None:
            query = query.where(t.c.status == status.value)
        async with service.runtime.reader.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            ResourceSummary(
                resource_id=r["resource_id"],
                district_id=r["district_id"],
                kind=r["kind"],
                organization_name=r["organization_name"],
                service_name=r["service_name"],
                status=r["status"],
                status_label_ja=directory.STATUS_LABELS_JA[ResourceStatus(r["status"])],
                last_verified_on=r["last_verified_on"],
            )
            for r in rows
        ]

    @router.get("/resources/{resource_id}", tags=["directory"], summary="One resource")
    async def get_resource(resource_id: IdPath, principal: Caller) -> ResourceOut:
        policy.read_district_data(principal)
        return resource_out(await service.get_resource(resource_id))

    @router.patch("/resources/{resource_id}", tags=["directory"], summary="Change a resource's details")
    async def change_details(resource_id: IdPath, body: ChangeDetailsIn, principal: Caller) -> ResourceOut:
        await policy.write_resource(principal, resource_id)
        command = directory.ChangeResourceDetails(
            **body.model_dump(exclude={"expected_version", "schedule"}), schedule=body.schedule
        )
        resource = await service.change_resource(resource_id, command, writes(principal), body.expected_version)
        return resource_out(resource)

    @router.post("/resources/{resource_id}/status", tags=["directory"], summary="Change status from a date")
    async def change_status(resource_id: IdPath, body: ChangeStatusIn, principal: Caller) -> ResourceOut:
        await policy.write_resource(principal, resource_id)
        command = directory.ChangeResourceStatus(status=body.status, effective_on=body.effective_on)
        return resource_out(
            await service.change_resource(resource_id, command, writes(principal), body.expected_version)
        )

    @router.post(
        "/resources/{resource_id}/verifications", tags=["directory"], summary="Record that the entry was checked"
    )
    async def verify(resource_id: IdPath, body: VerifyIn, principal: Caller) -> ResourceOut:
        await policy.write_resource(principal, resource_id)
        command = directory.VerifyResource(verified_on=body.verified_on, verified_by_agency_id=principal.agency[:64])
        return resource_out(
            await service.change_resource(resource_id, command, writes(principal), body.expected_version)
        )

    @router.post(
        "/resources/{resource_id}/identifications", tags=["directory"], summary="資源把握 (resource identified)"
    )
    async def identify(resource_id: IdPath, body: IdentifyIn, principal: Caller) -> ResourceOut:
        await policy.write_resource(principal, resource_id)
        command = directory.IdentifyResource(identified_on=body.identified_on)
        return resource_out(
            await service.change_resource(resource_id, command, writes(principal), body.expected_version)
        )

    @router.get(
        "/districts/{district_id}/active-resources",
        tags=["directory"],
        summary="Time travel: resources active in a district on a date",
    )
    async def active_resources(
        district_id: DistrictPath,
        principal: Caller,
        on: Annotated[Day, Query(description="The date asked about.")],
        known_at: Annotated[datetime | None, Query(description="Answer as the directory stood then.")] = None,
    ) -> ActiveOnOut:
        policy.read_district_data(principal)
        service.check_district(district_id)
        if known_at is not None and known_at.tzinfo is None:
            raise InvalidCommand(
                "known_at にはタイムゾーンが必要です。", "known_at needs a time zone.", field="known_at"
            )
        found = await active_on(service.runtime.reader, service.runtime.reg, district_id, on, known_at=known_at)
        return ActiveOnOut(
            district_id=district_id,
            on=on,
            resources=[
                ResourceSummary(
                    resource_id=r.resource_id,
                    district_id=r.district_id,
                    kind=r.kind.value,
                    organization_name=r.organization_name,
                    service_name=r.service_name,
                    status=ResourceStatus.ACTIVE.value,
                    status_label_ja=directory.STATUS_LABELS_JA[ResourceStatus.ACTIVE],
                    last_verified_on=None,
                )
                for r in found
            ],
        )

    @router.get("/directory/hsds", tags=["directory"], summary="The directory as Open Referral HSDS 3 JSON")
    async def export_hsds(
        principal: Caller, district_id: Annotated[str | None, Query(pattern=ID, description="District.")] = None
    ) -> dict[str, Any]:
        policy.read_district_data(principal)
        if district_id is not None:
            service.check_district(district_id)
        t = tables.resources
        query = select(t).order_by(t.c.resource_id)
        if district_id is not None:
            query = query.where(t.c.district_id == district_id)
        async with service.runtime.reader.connect() as conn:
            rows = [dict(r) for r in (await conn.execute(query)).mappings().all()]
        for row in rows:
            row["details"] = json.loads(row["details"])
        return hsds_document(rows, service.ward)

    # ---- visits and places ----------------------------------------------------------------

    @router.post("/visits", status_code=201, tags=["visits"], summary="Record a visit survey (訪問調査)")
    async def record_visit(body: RecordVisitIn, principal: Caller) -> VisitOut:
        policy.write_in_district(principal, body.district_id)
        command = surveys.RecordVisit(
            visit_id=new_stream_id("visit"),
            district_id=body.district_id,
            category=body.category,
            visited_on=body.visited_on,
            resource_id=body.resource_id,
            findings=tuple(body.findings),
            follow_up=body.follow_up,
        )
        return visit_out(await service.record_visit(command, writes(principal)))

    @router.post("/visits/batch", status_code=201, tags=["visits"], summary="Record a survey round's visits at once")
    async def record_visits(body: RecordVisitsIn, principal: Caller) -> list[VisitOut]:
        for district_id in {v.district_id for v in body.visits}:
            policy.write_in_district(principal, district_id)
        context = writes(principal)
        commands = [
            surveys.RecordVisit(
                visit_id=new_stream_id("visit"),
                district_id=v.district_id,
                category=v.category,
                visited_on=v.visited_on,
                resource_id=v.resource_id,
                findings=tuple(v.findings),
                follow_up=v.follow_up,
            )
            for v in body.visits
        ]
        return [visit_out(v) for v in await service.record_visits(commands, context)]

    @router.get("/visits/counts", tags=["visits"], summary="Visits per category (the seed's table)")
    async def visit_counts(
        principal: Caller,
        district_id: Annotated[str | None, Query(pattern=ID, description="District.")] = None,
        fiscal_year: Annotated[int | None, Query(ge=2000, le=2100, description="Fiscal year.")] = None,
    ) -> VisitCounts:
        policy.read_district_data(principal)
        if district_id is not None:
            service.check_district(district_id)
        t = tables.visits
        query = select(t.c.category, func.count()).group_by(t.c.category)
        if district_id is not None:
            query = query.where(t.c.district_id == district_id)
        if fiscal_year is not None:
            query = query.where(t.c.fiscal_year == fiscal_year)
        async with service.runtime.reader.connect() as conn:
            counts = Counter({category: int(n) for category, n in (await conn.execute(query)).all()})
        return VisitCounts(
            district_id=district_id, fiscal_year=fiscal_year, by_category=dict(counts), total=sum(counts.values())
        )

    @router.get("/visits/{visit_id}", tags=["visits"], summary="One visit")
    async def get_visit(visit_id: IdPath, principal: Caller) -> VisitOut:
        policy.read_district_data(principal)
        return visit_out(await service.get_visit(visit_id))

    @router.post("/places", status_code=201, tags=["places"], summary="A resource offers a usable place (活用できる場)")
    async def offer_place(body: OfferPlaceIn, principal: Caller) -> PlaceOut:
        await policy.write_resource(principal, body.resource_id)
        command = surveys.OfferPlace(
            place_id=new_stream_id("place"),
            resource_id=body.resource_id,
            district_id="",
            kind=body.kind,
            offered_on=body.offered_on,
            conditions=body.conditions,
        )
        return place_out(await service.offer_place(command, writes(principal)))

    @router.get("/places/{place_id}", tags=["places"], summary="One usable place and its uses")
    async def get_place(place_id: IdPath, principal: Caller) -> PlaceOut:
        policy.read_district_data(principal)
        return place_out(await service.get_place(place_id))

    @router.post("/places/{place_id}/uses", status_code=201, tags=["places"], summary="場の活用実績 (place use)")
    async def use_place(place_id: IdPath, body: UsePlaceIn, principal: Caller) -> PlaceOut:
        await policy.write_place(principal, place_id)
        command = surveys.UsePlace(
            use_id=f"use-{uuid.uuid4()}", activity=body.activity, used_on=body.used_on, participants=body.participants
        )
        return place_out(await service.use_place(place_id, command, writes(principal), body.expected_version))

    # ---- district issues and initiatives --------------------------------------------------

    @router.post(
        "/issues", status_code=201, tags=["issues"], summary="Raise a district issue from a district assessment"
    )
    async def raise_issue(body: RaiseIssueIn, principal: Caller) -> IssueOut:
        policy.write_in_district(principal, body.district_id)
        command = issues.RaiseDistrictIssue(
            issue_id=new_stream_id("issue"),
            district_id=body.district_id,
            title=body.title,
            source=IssueSource.DISTRICT_ASSESSMENT,
            raised_on=body.raised_on,
            categories=tuple(body.categories),
            gap_need=body.gap_need,
        )
        issue = await service.raise_issue(command, writes(principal))
        assert issue is not None
        return issue_out(issue)

    @router.get("/issues", tags=["issues"], summary="District issues")
    async def list_issues(
        principal: Caller,
        district_id: Annotated[str | None, Query(pattern=ID, description="District.")] = None,
        decision_id: Annotated[str | None, Query(pattern=ID, description="Four-party meeting decision.")] = None,
    ) -> list[IssueSummary]:
        policy.read_district_data(principal)
        if district_id is not None:
            service.check_district(district_id)
        t = tables.issues
        query = select(t).order_by(t.c.raised_on, t.c.issue_id).limit(1000)
        if district_id is not None:
            query = query.where(t.c.district_id == district_id)
        if decision_id is not None:
            query = query.where(t.c.decision_id == decision_id)
        async with service.runtime.reader.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            IssueSummary(
                issue_id=r["issue_id"],
                district_id=r["district_id"],
                title=r["title"],
                source=r["source"],
                decision_id=r["decision_id"],
                state=r["state"],
                raised_on=r["raised_on"],
            )
            for r in rows
        ]

    @router.get("/issues/{issue_id}", tags=["issues"], summary="One district issue")
    async def get_issue(issue_id: IdPath, principal: Caller) -> IssueOut:
        policy.read_district_data(principal)
        return issue_out(await service.get_issue(issue_id))

    @router.post("/issues/{issue_id}/take-up", tags=["issues"], summary="The tier-2 council (第2層協議体) takes it up")
    async def take_up(issue_id: IdPath, body: TakeUpIn, principal: Caller) -> IssueOut:
        await policy.write_issue(principal, issue_id)
        command = issues.TakeUpIssue(taken_up_on=body.taken_up_on)
        return issue_out(await service.take_up_issue(issue_id, command, writes(principal), body.expected_version))

    @router.post("/initiatives", status_code=201, tags=["initiatives"], summary="Launch an initiative (取組み)")
    async def launch(body: LaunchInitiativeIn, principal: Caller) -> InitiativeOut:
        policy.write_in_district(principal, body.district_id)
        command = issues.LaunchInitiative(
            initiative_id=new_stream_id("initiative"),
            district_id=body.district_id,
            kind=body.kind,
            title=body.title,
            launched_on=body.launched_on,
            issue_id=body.issue_id,
            resource_ids=tuple(body.resource_ids),
        )
        return initiative_out(await service.launch_initiative(command, writes(principal)))

    @router.get("/initiatives/{initiative_id}", tags=["initiatives"], summary="One initiative")
    async def get_initiative(initiative_id: IdPath, principal: Caller) -> InitiativeOut:
        policy.read_district_data(principal)
        return initiative_out(await service.get_initiative(initiative_id))

    @router.post("/initiatives/{initiative_id}/progress", tags=["initiatives"], summary="Record progress")
    async def progress(initiative_id: IdPath, body: ProgressIn, principal: Caller) -> InitiativeOut:
        await policy.write_initiative(principal, initiative_id)
        command = issues.RecordProgress(note=body.note, on=body.on, participants=body.participants)
        return initiative_out(
            await service.change_initiative(initiative_id, command, writes(principal), body.expected_version)
        )

    @router.post("/initiatives/{initiative_id}/conclusion", tags=["initiatives"], summary="Conclude the initiative")
    async def conclude(initiative_id: IdPath, body: ConcludeIn, principal: Caller) -> InitiativeOut:
        await policy.write_initiative(principal, initiative_id)
        command = issues.ConcludeInitiative(concluded_on=body.concluded_on, outcome=body.outcome)
        return initiative_out(
            await service.change_initiative(initiative_id, command, writes(principal), body.expected_version)
        )

    # ---- participation support ------------------------------------------------------------

    @router.post(
        "/participations",
        status_code=201,
        tags=["participation"],
        summary="参加支援: link a person to a resource (needs the person's consent)",
        responses={403: {"description": "No consent covers it; reason_ja / reason_en say why."}},
    )
    async def start_participation(body: StartParticipationIn, principal: Caller) -> ParticipationOut:
        context = writes(principal)
        await policy.for_person(principal, body.person_id)
        command = participation.StartParticipation(
            participation_id=new_stream_id("participation"),
            person_id=body.person_id,
            resource_id=body.resource_id,
            district_id="",
            started_on=body.started_on,
            place_id=body.place_id,
        )
        return participation_out(await service.start_participation(command, principal.agency, context))

    @router.get("/participations/{participation_id}", tags=["participation"], summary="One participation")
    async def get_participation(participation_id: IdPath, principal: Caller) -> ParticipationOut:
        await policy.for_participation(principal, participation_id, writing=False)
        return participation_out(await service.get_participation(participation_id))

    @router.post("/participations/{participation_id}/attendance", tags=["participation"], summary="Record attendance")
    async def attend(participation_id: IdPath, body: AttendanceIn, principal: Caller) -> ParticipationOut:
        await policy.for_participation(principal, participation_id, writing=True)
        command = participation.RecordAttendance(attended_on=body.attended_on)
        return participation_out(
            await service.change_participation(participation_id, command, writes(principal), body.expected_version)
        )

    @router.post("/participations/{participation_id}/end", tags=["participation"], summary="End, with a reason")
    async def end(participation_id: IdPath, body: EndParticipationIn, principal: Caller) -> ParticipationOut:
        await policy.for_participation(principal, participation_id, writing=True)
        command = participation.EndParticipation(ended_on=body.ended_on, reason=body.reason)
        return participation_out(
            await service.change_participation(participation_id, command, writes(principal), body.expected_version)
        )

    # ---- publicity and training -----------------------------------------------------------

    @router.get(
        "/districts/{district_id}/publicity", tags=["publicity"], summary="広報: newsletter, subscribers, groups"
    )
    async def get_publicity(district_id: DistrictPath, principal: Caller) -> PublicityOut:
        policy.read_district_data(principal)
        return publicity_out(await service.get_publicity(district_id))

    @router.post(
        "/districts/{district_id}/newsletter-issues",
        status_code=201,
        tags=["publicity"],
        summary="A newsletter (メールマガジン) issue was sent",
    )
    async def newsletter(district_id: DistrictPath, body: NewsletterIn, principal: Caller) -> PublicityOut:
        policy.write_in_district(principal, district_id)
        command = publicity.SendNewsletterIssue(sent_on=body.sent_on)
        return publicity_out(await service.publicity(district_id, command, writes(principal), body.expected_version))

    @router.post("/districts/{district_id}/subscribers", tags=["publicity"], summary="Subscribers changed")
    async def subscribers(district_id: DistrictPath, body: SubscribersIn, principal: Caller) -> PublicityOut:
        policy.write_in_district(principal, district_id)
        command = publicity.ChangeSubscribers(delta=body.delta, on=body.on)
        return publicity_out(await service.publicity(district_id, command, writes(principal), body.expected_version))

    @router.post(
        "/districts/{district_id}/groups",
        status_code=201,
        tags=["publicity"],
        summary="A group introduced on the district page (団体紹介)",
    )
    async def group(district_id: DistrictPath, body: GroupIn, principal: Caller) -> PublicityOut:
        policy.write_in_district(principal, district_id)
        command = publicity.IntroduceGroup(
            group_id=f"group-{uuid.uuid4()}", group_name=body.group_name, introduced_on=body.introduced_on
        )
        return publicity_out(await service.publicity(district_id, command, writes(principal), body.expected_version))

    @router.post("/trainings", status_code=201, tags=["training"], summary="A training session (スキルアップ研修) held")
    async def hold_training(body: TrainingIn, principal: Caller) -> TrainingOut:
        policy.write(principal)
        command = publicity.HoldTrainingSession(session_id=new_stream_id("training"), **body.model_dump())
        return training_out(await service.hold_training(command, writes(principal)))

    @router.get("/trainings/{session_id}", tags=["training"], summary="One training session")
    async def get_training(session_id: IdPath, principal: Caller) -> TrainingOut:
        policy.read_district_data(principal)
        return training_out(await service.get_training(session_id))

    return router
