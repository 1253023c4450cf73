"""The HTTP edge for window staff: commands, queries and the access log.

Every route asks `tsunagu_intake.policy.IntakePolicy` first: who may act on a person,
consultation or case, what a listing shows and which reads of personal text go to the
access log auditors query. Nothing about access is decided here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from sqlalchemy import func, select
from tsunagu_events.contracts.common import CATEGORY_LABELS_JA, ConsultationCategory
from tsunagu_events.contracts.intake import CaseReviewed, ContactRecorded, SupportPlanAdopted
from tsunagu_events.reference import Ward
from tsunagu_platform.auth import Principal, principal_dependency
from tsunagu_platform.crypto import PersonErasedError
from tsunagu_platform.http import problem
from tsunagu_platform.settings import ServiceSettings

from tsunagu_intake import schemas as s
from tsunagu_intake.application import Done
from tsunagu_intake.domain.errors import DomainError, InvalidReference, UnknownAggregate
from tsunagu_intake.policy import AccessDenied, IntakePolicy
from tsunagu_intake.tables import access_log, cases, consents, consultations
from tsunagu_intake.use_cases import Intake, NewConsent, NewConsultation, PlainDetails


def install_domain_errors(app: FastAPI) -> None:
    @app.exception_handler(AccessDenied)
    async def _denied(_r: Request, error: AccessDenied) -> JSONResponse:
        return problem(403, error.title)

    @app.exception_handler(InvalidReference)
    async def _invalid(_r: Request, error: InvalidReference) -> JSONResponse:
        errors = [{"field": f"body.{error.field}", "message": str(error), "type": "unknown_reference"}]
        return problem(422, "入力内容に誤りがあります (invalid input)", str(error), errors=errors)

    @app.exception_handler(UnknownAggregate)
    async def _unknown(_r: Request, error: UnknownAggregate) -> JSONResponse:
        return problem(404, "見つかりません (not found)", str(error))

    @app.exception_handler(PersonErasedError)
    async def _erased(_r: Request, _error: PersonErasedError) -> JSONResponse:
        return problem(409, "この方の情報は消去されています (the person was erased)", "person erased")

    @app.exception_handler(DomainError)
    async def _refused(_r: Request, error: DomainError) -> JSONResponse:
        extra: dict[str, Any] = {"field": error.field} if error.field else {}
        if error.current_version is not None:
            extra["current_version"] = error.current_version
        return problem(409, "この操作はできません (not allowed in the current state)", str(error), **extra)


def written(done: Done) -> s.Written:
    return s.Written(id=done.stream_id, version=done.version)


class CallerBearer(HTTPBearer):
    """The bearer credentials and the caller they name, checked by the platform's token rules with
    this app's settings, as ONE dependency: FastAPI solves each dependency of every request anew,
    and the scheme as a separate dependency of the check cost as much again. OpenAPI shows the
    same `HTTPBearer` scheme."""

    def __init__(self) -> None:
        super().__init__(auto_error=False, scheme_name="HTTPBearer")

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        credentials = await super().__call__(request)
        check = cast(Callable[..., Awaitable[Principal]], request.app.state.principal_check)
        return await check(request, credentials)


current_principal = CallerBearer()
Caller = Annotated[Principal, Depends(current_principal)]
PathId = Annotated[str, Path(max_length=64, description="Stream id, e.g. person-<uuid>.")]


def install_auth(app: FastAPI, settings: ServiceSettings) -> None:
    app.state.principal_check = principal_dependency(settings)


def routers(intake: Intake) -> list[APIRouter]:
    policy = IntakePolicy(intake)

    ward = intake.refs.ward
    reference = APIRouter(prefix="/reference", tags=["reference data"])

    @reference.get("/districts", summary="Districts of the ward (地区)", response_model=list[s.DistrictOut])
    async def districts() -> list[s.DistrictOut]:
        return [
            s.DistrictOut(
                id=d.id,
                label_ja=d.label_ja,
                label_en=d.label_en,
                area_id=d.area,
                window_ids=[ward.window_id(d.id, t) for t in d.window_types],
            )
            for d in ward.districts
        ]

    @reference.get("/windows", summary="Windows of every district (窓口)", response_model=list[s.WindowOut])
    async def windows(district_id: Annotated[str | None, Query(max_length=64)] = None) -> list[s.WindowOut]:
        return [
            s.WindowOut(
                id=a.id,
                label_ja=a.label_ja,
                label_en=a.label_en,
                district_id=a.district or "",
                window_type=a.window_type or "",
            )
            for a in ward.agencies()
            if a.kind == "window" and (district_id is None or a.district == district_id)
        ]

    api = APIRouter(tags=["intake"])

    # -- consultations ----------------------------------------------------------------------

    @api.post(
        "/consultations",
        status_code=201,
        summary="Receive a consultation (相談受付)",
        response_model=s.ConsultationWritten,
    )
    async def receive(body: s.ConsultationIn, principal: Caller) -> Response:
        actor = await policy.receive_consultation(principal, body.window_id, body.person_id)
        done = await intake.receive_consultation(
            NewConsultation(
                window_id=body.window_id,
                received_at=body.received_at,
                channel=body.channel,
                consulted_by=body.consulted_by,
                categories=body.categories,
                outcome=body.outcome,
                person_id=body.person_id,
                summary=body.summary,
                gap_need=body.gap_need,
            ),
            actor,
        )
        data = done.events[0].data
        written = s.ConsultationWritten(
            id=done.stream_id, version=done.version, expanded=data["expanded"], compound_need=data["compound_need"]
        )
        # The body FastAPI would serialise from `response_model`, without validating the model it
        # was just built as once more (the busiest route of the service).
        return Response(written.model_dump_json(), status_code=201, media_type="application/json")

    @api.get("/consultations", summary="Consultations (no personal data)")
    async def list_consultations(
        principal: Caller,
        district_id: Annotated[str | None, Query(max_length=64)] = None,
        fiscal_year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[s.ConsultationOut]:
        policy.reader(principal)
        query = select(consultations).order_by(consultations.c.received_at.desc()).limit(limit)
        query = policy.visible_consultations(principal, query)
        if district_id is not None:
            query = query.where(consultations.c.district_id == district_id)
        if fiscal_year is not None:
            query = query.where(consultations.c.fiscal_year == fiscal_year)
        async with intake.runtime.reader.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [consultation_out(dict(r), ward) for r in rows]

    @api.get("/consultations/counts", summary="Counts of consultations (相談件数)")
    async def counts(
        principal: Caller,
        fiscal_year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
    ) -> s.ConsultationCounts:
        policy.reader(principal)
        c = consultations.c
        query = select(
            func.count(),
            func.count().filter(c.expanded.is_(True)),
            func.count().filter(c.compound_need.is_(True)),
            func.count().filter(c.gap_need.is_(True)),
            func.count(c.person_id),
        )
        if fiscal_year is not None:
            query = query.where(c.fiscal_year == fiscal_year)
        query = policy.visible_consultations(principal, query)
        async with intake.runtime.reader.connect() as conn:
            row = (await conn.execute(query)).one()
        return s.ConsultationCounts(
            total=row[0], expanded=row[1], compound_need=row[2], gap_need=row[3], with_person=row[4]
        )

    @api.get("/consultations/{consultation_id}", summary="One consultation; the summary when you may read it")
    async def get_consultation(consultation_id: PathId, principal: Caller) -> s.ConsultationOut:
        policy.reader(principal)
        async with intake.runtime.reader.connect() as conn:
            row = (
                (await conn.execute(select(consultations).where(consultations.c.consultation_id == consultation_id)))
                .mappings()
                .first()
            )
        if row is None:
            raise UnknownAggregate(f"unknown consultation {consultation_id}")
        read = await policy.read_consultation(principal, dict(row))
        out = consultation_out(dict(row), ward)
        if read.basis is not None:
            out.summary = await intake.consultation_summary(consultation_id, row["person_id"])
        return out

    @api.post("/consultations/{consultation_id}/reclassification", summary="Correct the categories (再分類)")
    async def reclassify(consultation_id: PathId, body: s.CategoriesIn, principal: Caller) -> s.Written:
        actor = await policy.on_consultation(principal, consultation_id)
        return written(await intake.reclassify(consultation_id, body.categories, actor, body.expected_version))

    @api.post("/consultations/{consultation_id}/outcome", summary="Change the outcome")
    async def change_outcome(consultation_id: PathId, body: s.OutcomeIn, principal: Caller) -> s.Written:
        actor = await policy.on_consultation(principal, consultation_id)
        return written(await intake.change_outcome(consultation_id, body.outcome, actor, body.expected_version))

    @api.post("/consultations/{consultation_id}/gap-need", summary="Mark a gap need (狭間のニーズ)")
    async def gap_need(consultation_id: PathId, body: s.GapNeedIn, principal: Caller) -> s.Written:
        actor = await policy.on_consultation(principal, consultation_id)
        return written(await intake.mark_gap_need(consultation_id, body.marked, actor, body.expected_version))

    # -- persons ----------------------------------------------------------------------------

    @api.post("/persons", status_code=201, summary="Register a person (details are sealed)")
    async def register(body: s.PersonIn, principal: Caller) -> s.Written:
        actor = policy.register_person(principal)
        details = PlainDetails(body.name, body.kana, body.birth_date, body.address, body.phone)
        return written(await intake.register_person(details, body.district_id, actor))

    @api.get("/persons/{person_id}", summary="A person's details (access is checked and logged)")
    async def get_person(person_id: PathId, principal: Caller) -> s.PersonOut:
        basis = await policy.read_person(principal, person_id, "person.details")
        person, details = await intake.personal_details(person_id)
        return s.PersonOut(
            person_id=person_id,
            version=person.version,
            district_id=person.district_id,
            erased=person.erased,
            access_basis=basis,
            **details,
        )

    @api.patch("/persons/{person_id}", summary="Correct a person's details")
    async def correct(person_id: PathId, body: s.PersonCorrectionIn, principal: Caller) -> s.Written:
        actor = await policy.on_person(principal, person_id)
        details = PlainDetails(body.name, body.kana, body.birth_date, body.address, body.phone)
        return written(await intake.correct_person(person_id, details, body.district_id, actor, body.expected_version))

    @api.post("/persons/{person_id}/erasure", summary="Erase a person (administrators): destroys their keys")
    async def erase(person_id: PathId, principal: Caller) -> s.Written:
        actor = policy.administrator(principal)
        return written(await intake.erase_person(person_id, actor))

    @api.post("/persons/{person_id}/consents", status_code=201, summary="Record consent (同意)")
    async def give_consent(person_id: PathId, body: s.ConsentIn, principal: Caller) -> s.ConsentWritten:
        actor = await policy.on_person(principal, person_id)
        new = NewConsent(body.scope, body.district_id, body.agency_ids, body.referral_id, body.expires_on)
        done = await intake.give_consent(person_id, new, actor, body.expected_version)
        return s.ConsentWritten(id=done.stream_id, version=done.version, consent_id=done.events[0].data["consent_id"])

    @api.get("/persons/{person_id}/consents", summary="Consents of a person")
    async def list_consents(person_id: PathId, principal: Caller) -> list[s.ConsentOut]:
        await policy.read_person(principal, person_id, "person.consents")
        async with intake.runtime.reader.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        select(consents).where(consents.c.person_id == person_id).order_by(consents.c.given_at)
                    )
                )
                .mappings()
                .all()
            )
        return [s.ConsentOut(**{k: v for k, v in r.items() if k != "person_id"}) for r in rows]

    @api.post("/persons/{person_id}/consents/{consent_id}/withdrawal", summary="Withdraw consent")
    async def withdraw(person_id: PathId, consent_id: PathId, body: s.Versioned, principal: Caller) -> s.Written:
        actor = await policy.on_person(principal, person_id)
        return written(await intake.withdraw_consent(person_id, consent_id, actor, body.expected_version))

    @api.post(
        "/persons/{person_id}/statutory-sharing",
        summary="Record sharing under the support meeting's statutory basis (支援会議・社会福祉法106条の6)",
    )
    async def statutory(person_id: PathId, body: s.StatutorySharingIn, principal: Caller) -> s.Written:
        actor = await policy.on_person(principal, person_id)
        return written(
            await intake.record_statutory_sharing(
                person_id, body.meeting_id, body.agency_ids, actor, body.expected_version
            )
        )

    @api.post("/households", status_code=201, summary="Link a household (8050, double care)")
    async def household(body: s.HouseholdIn, principal: Caller) -> s.Written:
        actor = await policy.on_persons(principal, body.person_ids, "person_ids")
        return written(await intake.link_household(body.person_ids, body.situation, actor))

    # -- cases ------------------------------------------------------------------------------

    @api.post("/cases", status_code=201, summary="Open a companion-support case (伴走型支援)")
    async def open_case(body: s.CaseIn, principal: Caller) -> s.Written:
        actor = await policy.on_persons(principal, [body.person_id], "person_id")
        lead = body.lead_agency_id or principal.agency
        return written(await intake.open_case(body.person_id, body.consultation_id, lead, body.approach, actor))

    @api.get("/cases", summary="Cases; review_overdue=true lists open cases past their review date")
    async def list_cases(
        principal: Caller,
        review_overdue: bool = False,
        lead_agency_id: Annotated[str | None, Query(max_length=100)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[s.CaseOut]:
        policy.reader(principal)
        today = intake.clock().date()
        query = policy.visible_cases(principal, select(cases).order_by(cases.c.opened_at.desc()).limit(limit))
        if review_overdue:
            query = query.where(cases.c.status == "open", cases.c.review_due < today)
        if lead_agency_id is not None:
            query = query.where(cases.c.lead_agency_id == lead_agency_id)
        async with intake.runtime.reader.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [case_out(dict(r), today) for r in rows]

    @api.get("/cases/{case_id}", summary="One case")
    async def get_case(case_id: PathId, principal: Caller) -> s.CaseOut:
        policy.reader(principal)
        async with intake.runtime.reader.connect() as conn:
            row = (await conn.execute(select(cases).where(cases.c.case_id == case_id))).mappings().first()
        if row is None:
            raise UnknownAggregate(f"unknown case {case_id}")
        await policy.read_case(principal, row["person_id"], None)
        return case_out(dict(row), intake.clock().date())

    @api.get("/cases/{case_id}/timeline", summary="The case over time; notes when you may read them (logged)")
    async def timeline(case_id: PathId, principal: Caller) -> list[s.CaseEventOut]:
        policy.reader(principal)
        stored = await intake.runtime.store.read(case_id)
        if not stored:
            raise UnknownAggregate(f"unknown case {case_id}")
        person_id = str(stored[0].data["person_id"])
        basis = (await policy.read_case(principal, person_id, "case.notes")).basis
        keys = intake.runtime.keys
        out = []
        for envelope in stored:
            payload = intake.runtime.reg.decode(envelope)
            sealed = {"note", "goals"}
            item = s.CaseEventOut(
                version=envelope.streamversion,
                type=envelope.type.rsplit(".", 1)[-1],
                at=envelope.time,
                agency_id=envelope.actoragency,
                detail={k: v for k, v in envelope.data.items() if k not in sealed},
            )
            if basis is not None and isinstance(payload, ContactRecorded | CaseReviewed):
                item.note = await keys.open(person_id, payload.note)
            if basis is not None and isinstance(payload, SupportPlanAdopted):
                item.goals = [await keys.open(person_id, goal.text) for goal in payload.goals]
            out.append(item)
        return out

    @api.post("/cases/{case_id}/handover", summary="Hand the lead to another agency")
    async def handover(case_id: PathId, body: s.HandoverIn, principal: Caller) -> s.Written:
        actor = await policy.on_case(principal, case_id)
        return written(await intake.hand_over_lead(case_id, body.to_agency_id, actor, body.expected_version))

    @api.post("/cases/{case_id}/approach", summary="Change the approach")
    async def approach(case_id: PathId, body: s.ApproachIn, principal: Caller) -> s.Written:
        actor = await policy.on_case(principal, case_id)
        return written(await intake.change_approach(case_id, body.approach, actor, body.expected_version))

    @api.post("/cases/{case_id}/plans", status_code=201, summary="Adopt a new support plan version")
    async def plan(case_id: PathId, body: s.PlanIn, principal: Caller) -> s.Written:
        actor = await policy.on_case(principal, case_id)
        goals = await intake.seal_goals(await intake.person_of_case(case_id), body.goals)
        return written(await intake.adopt_plan(case_id, goals, body.review_due, actor, body.expected_version))

    @api.post("/cases/{case_id}/contacts", status_code=201, summary="Record a contact (visit, call, …)")
    async def contact(case_id: PathId, body: s.ContactIn, principal: Caller) -> s.Written:
        actor = await policy.on_case(principal, case_id)
        agency = policy.acting_agency(principal, body.agency_id)
        return written(
            await intake.record_contact(case_id, body.kind, body.at, agency, body.note, actor, body.expected_version)
        )

    @api.post("/cases/{case_id}/reviews", status_code=201, summary="Review the case")
    async def review(case_id: PathId, body: s.ReviewIn, principal: Caller) -> s.Written:
        actor = await policy.on_case(principal, case_id)
        return written(await intake.review_case(case_id, body.next_review_due, body.note, actor, body.expected_version))

    @api.post("/cases/{case_id}/closure", summary="Close the case (終結)")
    async def close(case_id: PathId, body: s.CloseIn, principal: Caller) -> s.Written:
        actor = await policy.on_case(principal, case_id)
        return written(await intake.close_case(case_id, body.reason, actor, body.expected_version))

    @api.post("/cases/{case_id}/reopening", summary="Reopen the case")
    async def reopen(case_id: PathId, body: s.Versioned, principal: Caller) -> s.Written:
        actor = await policy.on_case(principal, case_id)
        return written(await intake.reopen_case(case_id, actor, body.expected_version))

    # -- audit ------------------------------------------------------------------------------

    @api.get("/access-log", summary="Who read whose personal data, when (auditors)", tags=["audit"])
    async def read_access_log(
        principal: Caller,
        person_id: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[s.AccessLogOut]:
        policy.auditor_or_admin(principal)
        query = select(access_log).order_by(access_log.c.id.desc()).limit(limit)
        if person_id is not None:
            query = query.where(access_log.c.person_id == person_id)
        async with intake.runtime.reader.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [s.AccessLogOut(**{k: v for k, v in r.items() if k != "id"}) for r in rows]

    return [reference, api]


def consultation_out(row: dict[str, Any], ward: Ward) -> s.ConsultationOut:
    window = ward.agency(row["window_id"])
    categories = list(row["categories"])
    return s.ConsultationOut(
        consultation_id=row["consultation_id"],
        version=row["version"],
        window_id=row["window_id"],
        window_label_ja=window.label_ja if window else row["window_id"],
        district_id=row["district_id"],
        area_id=row["area_id"],
        received_at=row["received_at"],
        fiscal_year=row["fiscal_year"],
        channel=row["channel"],
        consulted_by=row["consulted_by"],
        categories=categories,
        categories_ja=[CATEGORY_LABELS_JA[ConsultationCategory(c)] for c in categories],
        expanded=row["expanded"],
        compound_need=row["compound_need"],
        gap_need=row["gap_need"],
        outcome=row["outcome"],
        outcome_ja=s.LABELS_JA.get(row["outcome"], row["outcome"]),
        channel_ja=s.LABELS_JA.get(row["channel"], row["channel"]),
        person_id=row["person_id"],
        via=row["via"],
    )


def case_out(row: dict[str, Any], today: date) -> s.CaseOut:
    overdue = row["status"] == "open" and row["review_due"] is not None and row["review_due"] < today
    return s.CaseOut(
        case_id=row["case_id"],
        version=row["version"],
        person_id=row["person_id"],
        consultation_id=row["consultation_id"],
        lead_agency_id=row["lead_agency_id"],
        district_id=row["district_id"],
        approach=row["approach"],
        approach_ja=s.LABELS_JA.get(row["approach"], row["approach"]),
        status=row["status"],
        status_ja="支援中" if row["status"] == "open" else "終結",
        opened_at=row["opened_at"],
        closed_at=row["closed_at"],
        plan_version=row["plan_version"],
        review_due=row["review_due"],
        review_overdue=overdue,
        contacts=row["contacts"],
        last_contact_at=row["last_contact_at"],
    )
