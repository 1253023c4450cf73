"""The HTTP API: referrals, meetings and the inboxes, scoped to the caller's agency.

Who may do what is decided by `policy.py` alone, for every command and query: an agency
sees and acts on referrals it sent or received and meetings it is a member of, and
brings into them only persons it serves; admins may do everything; auditors see records
but never their personal text, and change nothing. Unknown ids answer 404 whether they do
not exist or are out of the caller's scope, so the API does not reveal other agencies'
referrals. Every read of personal text is in the access log.
"""

import json
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, cast

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events.contracts.common import CATEGORY_LABELS_JA, LEGAL_BASIS_LABELS_JA, ConsultationCategory, LegalBasis
from tsunagu_events.contracts.referral import MeetingKind, ReferralCompleted, ReferralOutcome, ReferralRequested
from tsunagu_events.reference import Ward
from tsunagu_platform.auth import Principal
from tsunagu_platform.crypto import PersonErasedError
from tsunagu_platform.http import problem

from tsunagu_referral import consent_view
from tsunagu_referral.clock import today_in_japan
from tsunagu_referral.domain.errors import DomainError, InvalidCommand, NotFound
from tsunagu_referral.domain.meeting import KIND_LABELS_JA, Meeting
from tsunagu_referral.domain.meeting import STATE_LABELS_JA as MEETING_STATE_LABELS_JA
from tsunagu_referral.domain.referral import OUTCOME_LABELS_JA, STATE_LABELS_JA, Referral, ReferralState
from tsunagu_referral.meetings import MeetingService, owner_of, sealed_from_json
from tsunagu_referral.overdue import run_once
from tsunagu_referral.policy import (
    AccessPolicy,
    Action,
    Decision,
    forbidden,
    on_assigned_text,
    sees_every_record,
    text_decision_for_meeting,
    text_decision_for_referral,
)
from tsunagu_referral.referrals import NewReferral, ReferralService
from tsunagu_referral.schemas import (
    ActionItemRequest,
    ActionItemView,
    AgendaItemRequest,
    AgendaItemView,
    CompleteRequest,
    ConsentStatus,
    DecisionRequest,
    DeclineRequest,
    HoldRequest,
    MeetingRequest,
    MeetingSummary,
    MeetingView,
    OverdueRun,
    ReferralRequest,
    ReferralView,
    SupportDecisionRequest,
    SupportPlanRequest,
)
from tsunagu_referral.streams import load
from tsunagu_referral.tables import action_items, meeting_agencies, meetings, referrals

NO_REFERRAL = "つなぎが見つかりません (no such referral)"
NO_MEETING = "会議が見つかりません (no such meeting)"


def install_domain_errors(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_request: Request, error: DomainError) -> JSONResponse:
        title = f"{error.message_ja} ({error.message_en})"
        facts = {k: v for k, v in error.facts.items() if v is not None}
        if isinstance(error, InvalidCommand):
            fields = [{"field": f"body.{error.field}", "message": error.message_en, "type": error.code}]
            return problem(422, title, error.message_en, errors=fields, reason=error.code, **facts)
        if isinstance(error, NotFound):
            return problem(404, title, error.message_en, reason=error.code, **facts)
        return problem(409, title, error.message_en, reason=error.code, **facts)

    @app.exception_handler(PersonErasedError)
    async def _erased(_request: Request, _error: PersonErasedError) -> JSONResponse:
        return problem(
            409,
            "この方の情報は消去されています (the person's data has been erased)",
            reason="person_erased",
            current_state="erased",
        )


def _unprocessable(field: str, message_ja: str, message_en: str) -> NoReturn:
    """A 422 naming the field, for checks against reference data the schema cannot express."""
    raise InvalidCommand(field, message_ja, message_en)


def build_router(
    *,
    settings_principal: Callable[..., Any],
    referrals_service: ReferralService,
    meetings_service: MeetingService,
    ward: Ward,
    policy: AccessPolicy | None = None,
) -> APIRouter:
    router = APIRouter()
    Caller = Annotated[Principal, Depends(settings_principal)]  # noqa: N806
    runtime = referrals_service.runtime
    policy = policy or AccessPolicy(runtime, referrals_service.clock)

    def check_agency(field: str, agency_id: str) -> None:
        if ward.agency(agency_id) is None:
            _unprocessable(field, "不明な機関IDです", f"unknown agency id {agency_id!r}")

    async def open_text(sealed: Any) -> str | None:
        """A sealed value opened with its owner's key (a person's or the meeting's); None once erased."""
        return await runtime.keys.open(owner_of(sealed), sealed) if sealed is not None else None

    def agency_label(agency_id: str) -> str | None:
        agency = ward.agency(agency_id)
        return agency.label_ja if agency else None

    def referral_view(row: Any) -> ReferralView:
        """From a read-model row, or from the referral itself right after a command."""
        raw = row.categories
        categories = [ConsultationCategory(c) for c in (json.loads(raw) if isinstance(raw, str) else raw)]
        basis = LegalBasis(row.legal_basis or LegalBasis.CONSENT)
        outcome = ReferralOutcome(row.outcome) if row.outcome else None
        state = ReferralState(row.state)
        return ReferralView(
            referral_id=row.referral_id,
            person_id=row.person_id,
            case_id=row.case_id,
            from_agency_id=row.from_agency_id,
            from_agency_label_ja=agency_label(row.from_agency_id),
            to_agency_id=row.to_agency_id,
            to_agency_label_ja=agency_label(row.to_agency_id),
            categories=categories,
            category_labels_ja=[CATEGORY_LABELS_JA[c] for c in categories],
            legal_basis=basis.value,
            legal_basis_label_ja=LEGAL_BASIS_LABELS_JA[basis],
            meeting_id=row.meeting_id,
            handover_lead=row.handover_lead,
            state=state.value,
            state_label_ja=STATE_LABELS_JA[state],
            due_on=row.due_on,
            overdue=row.overdue,
            outcome=outcome.value if outcome else None,
            outcome_label_ja=OUTCOME_LABELS_JA[outcome] if outcome else None,
            decline_reason=row.decline_reason,
            version=row.version,
        )

    async def referral_row(referral_id: str, principal: Principal) -> Any:
        async with runtime.reader.connect() as conn:
            row = (await conn.execute(select(referrals).where(referrals.c.referral_id == referral_id))).first()
        if row is None or not policy.sees_referral(principal, row.from_agency_id, row.to_agency_id):
            raise HTTPException(404, NO_REFERRAL)
        return row

    async def fresh(referral: Referral, principal: Principal) -> ReferralView:
        del principal  # the caller was scoped before the command
        return referral_view(referral)

    def scoped(query: Any, principal: Principal, *, box: str) -> Any:
        if sees_every_record(principal):
            if box == "sent":
                return query.where(referrals.c.from_agency_id == principal.agency)
            if box == "received":
                return query.where(referrals.c.to_agency_id == principal.agency)
            return query
        if box == "sent":
            return query.where(referrals.c.from_agency_id == principal.agency)
        if box == "received":
            return query.where(referrals.c.to_agency_id == principal.agency)
        return query.where(
            or_(referrals.c.from_agency_id == principal.agency, referrals.c.to_agency_id == principal.agency)
        )

    async def list_referrals(query: Any, limit: int) -> list[ReferralView]:
        async with runtime.reader.connect() as conn:
            rows = (await conn.execute(query.order_by(referrals.c.due_on, referrals.c.referral_id).limit(limit))).all()
        return [referral_view(r) for r in rows]

    async def person_of_referral(referral_id: str) -> str | None:
        async with runtime.reader.connect() as conn:
            found = await conn.scalar(select(referrals.c.person_id).where(referrals.c.referral_id == referral_id))
        return str(found) if found is not None else None

    # -- referrals ----------------------------------------------------------------

    @router.post(
        "/referrals",
        status_code=201,
        response_model=ReferralView,
        tags=["referrals"],
        summary="Refer a person to another agency (つなぐ)",
    )
    async def request_referral(body: ReferralRequest, principal: Caller) -> ReferralView:
        from_agency = body.from_agency_id or principal.agency
        check_agency("from_agency_id", from_agency)
        check_agency("to_agency_id", body.to_agency_id)
        policy.may_write(principal)
        if body.legal_basis is LegalBasis.SUPPORT_MEETING_STATUTORY and body.meeting_id is None:
            _unprocessable("meeting_id", "支援会議の会議IDが必要です", "meeting_id is required for the statutory basis")
        discussed: list[str] | None = None
        if body.legal_basis is LegalBasis.SUPPORT_MEETING_STATUTORY and body.meeting_id is not None:
            # Persons discussed at a support meeting the caller is a member of may be referred on its basis.
            basis_meeting = await meetings_service.load(body.meeting_id)
            if basis_meeting.kind is MeetingKind.SUPPORT_MEETING and principal.agency in basis_meeting.members():
                discussed = basis_meeting.person_ids

        async def guard(conn: AsyncConnection) -> None:
            await policy.new_referral(
                principal,
                person_id=body.person_id,
                from_agency=from_agency,
                case_id=body.case_id,
                handover_lead=body.handover_lead,
                statutory_meeting_persons=discussed,
                conn=conn,
            )

        referral = await referrals_service.request(
            NewReferral(
                person_id=body.person_id,
                from_agency_id=from_agency,
                to_agency_id=body.to_agency_id,
                categories=list(dict.fromkeys(body.categories)),
                due_on=body.due_on,
                legal_basis=body.legal_basis,
                case_id=body.case_id,
                reason=body.reason,
                meeting_id=body.meeting_id,
                handover_lead=body.handover_lead,
                referral_id=body.referral_id,
            ),
            principal,
            guard,
        )
        return await fresh(referral, principal)

    @router.get(
        "/referrals",
        response_model=list[ReferralView],
        tags=["referrals"],
        summary="Referrals my agency sent or received",
    )
    async def referrals_list(
        principal: Caller,
        box: Annotated[str, Query(pattern="^(all|sent|received)$", description="all, sent or received")] = "all",
        state: Annotated[ReferralState | None, Query(description="Only this state.")] = None,
        limit: Annotated[int, Query(ge=1, le=500, description="At most this many.")] = 100,
    ) -> list[ReferralView]:
        query = scoped(select(referrals), principal, box=box)
        if state is not None:
            query = query.where(referrals.c.state == state.value)
        return await list_referrals(query, limit)

    @router.get(
        "/referrals/{referral_id}",
        response_model=ReferralView,
        tags=["referrals"],
        summary="One referral, with its reason and feedback",
    )
    async def referral_detail(referral_id: str, principal: Caller) -> ReferralView:
        try:
            row = await referral_row(referral_id, principal)
        except HTTPException:
            await policy.log_text_read(
                principal,
                subject_id=referral_id,
                what="referral_reason_feedback",
                person_ids=[await person_of_referral(referral_id)],
                decision=Decision(False, "not_a_party"),
            )
            raise
        view = referral_view(row)
        decision = text_decision_for_referral(principal, row.from_agency_id, row.to_agency_id)
        await policy.log_text_read(
            principal,
            subject_id=referral_id,
            what="referral_reason_feedback",
            person_ids=[row.person_id],
            decision=decision,
        )
        if not decision.granted:
            view.text_withheld = True
            return view
        for payload in await load(runtime, referral_id):
            if isinstance(payload, ReferralRequested):
                view.reason = await runtime.keys.open(row.person_id, payload.reason) if payload.reason else None
            elif isinstance(payload, ReferralCompleted):
                view.feedback = await runtime.keys.open(row.person_id, payload.feedback) if payload.feedback else None
        return view

    @router.post(
        "/referrals/{referral_id}/accept",
        response_model=ReferralView,
        tags=["referrals"],
        summary="Accept a referral (the receiving agency)",
    )
    async def accept(referral_id: str, principal: Caller) -> ReferralView:
        row = await referral_row(referral_id, principal)
        policy.referral(principal, row.from_agency_id, row.to_agency_id, Action.ACCEPT)
        return await fresh(await referrals_service.accept(referral_id, principal), principal)

    @router.post(
        "/referrals/{referral_id}/decline",
        response_model=ReferralView,
        tags=["referrals"],
        summary="Decline a referral with a reason (the receiving agency)",
    )
    async def decline(referral_id: str, body: DeclineRequest, principal: Caller) -> ReferralView:
        row = await referral_row(referral_id, principal)
        policy.referral(principal, row.from_agency_id, row.to_agency_id, Action.DECLINE)
        return await fresh(await referrals_service.decline(referral_id, body.reason_code, principal), principal)

    @router.post(
        "/referrals/{referral_id}/withdraw",
        response_model=ReferralView,
        tags=["referrals"],
        summary="Withdraw a referral (the referring agency)",
    )
    async def withdraw(referral_id: str, principal: Caller) -> ReferralView:
        row = await referral_row(referral_id, principal)
        policy.referral(principal, row.from_agency_id, row.to_agency_id, Action.WITHDRAW)
        return await fresh(await referrals_service.withdraw(referral_id, principal), principal)

    @router.post(
        "/referrals/{referral_id}/complete",
        response_model=ReferralView,
        tags=["referrals"],
        summary="Close the loop: outcome and feedback to the referrer",
    )
    async def complete(referral_id: str, body: CompleteRequest, principal: Caller) -> ReferralView:
        row = await referral_row(referral_id, principal)
        policy.referral(principal, row.from_agency_id, row.to_agency_id, Action.COMPLETE)
        done = await referrals_service.complete(referral_id, body.outcome, body.feedback, principal)
        return await fresh(done, principal)

    @router.post(
        "/overdue/run", response_model=OverdueRun, tags=["operations"], summary="Run the overdue clock once (admins)"
    )
    async def overdue_run(principal: Caller) -> OverdueRun:
        policy.admin_only(principal)
        return OverdueRun(emitted=await run_once(referrals_service))

    @router.get(
        "/persons/{person_id}/consent",
        response_model=ConsentStatus,
        tags=["referrals"],
        summary="Whether the consent view holds a live consent for the person",
    )
    async def consent_status(person_id: str, principal: Caller) -> ConsentStatus:
        decision = await policy.person_facts(principal, person_id)
        await policy.log_text_read(
            principal, subject_id=person_id, what="consent_list", person_ids=[person_id], decision=decision
        )
        if not decision.granted:
            forbidden("この方を担当していない機関は閲覧できません", "your agency does not serve this person")
        facts = await consent_view.live_consents(runtime.reader, person_id)
        today = today_in_japan(referrals_service.clock())
        live = [f.consent_id for f in facts if f.expires_on is None or f.expires_on >= today]
        return ConsentStatus(
            person_id=person_id,
            has_consent=bool(live),
            consent_ids=live,
            erased=await consent_view.is_erased(runtime.reader, person_id),
        )

    # -- inboxes --------------------------------------------------------------------

    @router.get(
        "/inbox/referrals",
        response_model=list[ReferralView],
        tags=["inboxes"],
        summary="Referrals waiting for my agency's answer",
    )
    async def inbox_waiting(principal: Caller) -> list[ReferralView]:
        query = select(referrals).where(
            referrals.c.to_agency_id == principal.agency, referrals.c.state == ReferralState.REQUESTED.value
        )
        return await list_referrals(query, 500)

    @router.get(
        "/inbox/overdue",
        response_model=list[ReferralView],
        tags=["inboxes"],
        summary="My agency's referrals with no response by their due date",
    )
    async def inbox_overdue(principal: Caller) -> list[ReferralView]:
        query = select(referrals).where(
            referrals.c.from_agency_id == principal.agency,
            referrals.c.overdue.is_(True),
            referrals.c.state == ReferralState.REQUESTED.value,
        )
        return await list_referrals(query, 500)

    @router.get(
        "/inbox/action-items",
        response_model=list[ActionItemView],
        tags=["inboxes"],
        summary="Open action items assigned to my agency",
    )
    async def inbox_actions(principal: Caller) -> list[ActionItemView]:
        async with runtime.reader.connect() as conn:
            rows = (
                await conn.execute(
                    select(action_items)
                    .where(action_items.c.agency_id == principal.agency, action_items.c.done_at.is_(None))
                    .order_by(action_items.c.due_on, action_items.c.action_id)
                )
            ).all()
        views = []
        for r in rows:
            sealed = sealed_from_json(r.title)
            owner = owner_of(sealed) if sealed else None
            decision = on_assigned_text(principal)
            await policy.log_text_read(
                principal,
                subject_id=r.meeting_id,
                what="action_item_title",
                person_ids=[owner if owner != r.meeting_id else None],
                decision=decision,
            )
            if not decision.granted:
                sealed = None
            views.append(
                ActionItemView(
                    action_id=r.action_id,
                    meeting_id=r.meeting_id,
                    agency_id=r.agency_id,
                    title=await open_text(sealed),
                    due_on=r.due_on,
                    done=False,
                )
            )
        return views

    # -- meetings -------------------------------------------------------------------

    async def meeting_view(
        meeting: Meeting, created_id: str | None = None, principal: Principal | None = None
    ) -> MeetingView:
        """The meeting; its free text opened only for `principal` (the detail view), logged.

        Command answers carry no text: a member reads it back in the detail view, which logs it.
        """
        assert meeting.kind is not None
        basis = meeting.legal_basis
        decision = text_decision_for_meeting(principal, meeting.members()) if principal else None
        opened = decision is not None and decision.granted

        async def text(sealed: Any, legacy: str | None) -> str | None:
            if not opened:
                return None
            return await open_text(sealed) if sealed is not None else legacy

        if principal is not None and decision is not None:
            persons: list[str | None] = [None]
            persons += [i.person_id for i in meeting.agenda.values() if i.person_id]
            await policy.log_text_read(
                principal, subject_id=meeting.meeting_id, what="meeting_text", person_ids=persons, decision=decision
            )
        return MeetingView(
            meeting_id=meeting.meeting_id,
            kind=meeting.kind.value,
            kind_label_ja=KIND_LABELS_JA[meeting.kind],
            district_id=meeting.district_id,
            state=meeting.state.value,
            state_label_ja=MEETING_STATE_LABELS_JA[meeting.state],
            member_agency_ids=meeting.member_agency_ids,
            attendee_agency_ids=meeting.attendee_agency_ids,
            legal_basis=basis.value if basis else None,
            legal_basis_label_ja=LEGAL_BASIS_LABELS_JA[basis] if basis else None,
            agenda=[
                AgendaItemView(
                    item_id=i.item_id, kind=i.kind.value, title=await text(i.title, i.legacy_title), gap_need=i.gap_need
                )
                for i in meeting.agenda.values()
            ],
            decisions=list(meeting.decisions),
            action_items=[
                ActionItemView(
                    action_id=a.action_id,
                    meeting_id=meeting.meeting_id,
                    agency_id=a.agency_id,
                    title=await text(a.title, a.legacy_title),
                    due_on=a.due_on,
                    done=a.done,
                )
                for a in meeting.actions.values()
            ],
            minutes_summary=await text(meeting.minutes_summary, meeting.legacy_minutes_summary),
            text_withheld=principal is not None and not opened,
            version=meeting.version,
            created_id=created_id,
        )

    async def visible_meeting(meeting_id: str, principal: Principal) -> Meeting:
        meeting = await meetings_service.load(meeting_id)
        if meeting.version == 0 or not policy.sees_meeting(principal, meeting.members()):
            raise HTTPException(404, NO_MEETING)
        return meeting

    async def member_meeting(meeting_id: str, principal: Principal) -> Meeting:
        """A meeting the caller may change: a member's (or an admin's); 403 for an auditor."""
        meeting = await visible_meeting(meeting_id, principal)
        policy.meeting(principal, meeting.members(), Action.WRITE)
        return meeting

    @router.post(
        "/meetings",
        status_code=201,
        response_model=MeetingView,
        tags=["meetings"],
        summary="Schedule a meeting (四者連携会議, 支援会議, 重層的支援会議)",
    )
    async def schedule(body: MeetingRequest, principal: Caller) -> MeetingView:
        policy.may_write(principal)
        members = list(body.member_agency_ids)
        if body.district_id is not None:
            district = ward.district(body.district_id)
            if district is None:
                _unprocessable("district_id", "不明な地区IDです", f"unknown district id {body.district_id!r}")
            if body.kind is MeetingKind.FOUR_PARTY and not members:
                members = [ward.window_id(district.id, t) for t in district.window_types]
        elif body.kind is MeetingKind.FOUR_PARTY:
            _unprocessable("district_id", "四者連携会議には地区が必要です", "a four-party meeting needs a district")
        for index, agency_id in enumerate(members):
            check_agency(f"member_agency_ids.{index}", agency_id)
        members = policy.members_of_new_meeting(principal, members)
        if not members:
            _unprocessable("member_agency_ids", "参加機関が必要です", "a meeting needs member agencies")
        meeting = await meetings_service.schedule(body.kind, body.scheduled_for, members, body.district_id, principal)
        return await meeting_view(meeting)

    @router.get(
        "/meetings",
        response_model=list[MeetingSummary],
        tags=["meetings"],
        summary="Meetings my agency was invited to or attended",
    )
    async def meetings_list(
        principal: Caller,
        kind: Annotated[MeetingKind | None, Query(description="Only this kind.")] = None,
        limit: Annotated[int, Query(ge=1, le=500, description="At most this many.")] = 100,
    ) -> list[MeetingSummary]:
        query = select(meetings)
        if not sees_every_record(principal):
            query = query.where(
                meetings.c.meeting_id.in_(
                    select(meeting_agencies.c.meeting_id).where(meeting_agencies.c.agency_id == principal.agency)
                )
            )
        if kind is not None:
            query = query.where(meetings.c.kind == kind.value)
        async with runtime.reader.connect() as conn:
            rows = (await conn.execute(query.order_by(meetings.c.scheduled_for).limit(limit))).all()
        return [
            MeetingSummary(
                meeting_id=r.meeting_id,
                kind=r.kind,
                kind_label_ja=KIND_LABELS_JA[MeetingKind(r.kind)],
                district_id=r.district_id,
                state=r.state,
                scheduled_for=r.scheduled_for,
            )
            for r in rows
        ]

    @router.get(
        "/meetings/{meeting_id}",
        response_model=MeetingView,
        tags=["meetings"],
        summary="One meeting, with its minutes and titles for its members",
    )
    async def meeting_detail(meeting_id: str, principal: Caller) -> MeetingView:
        try:
            meeting = await visible_meeting(meeting_id, principal)
        except HTTPException:
            await policy.log_text_read(
                principal,
                subject_id=meeting_id,
                what="meeting_text",
                person_ids=[None],
                decision=Decision(False, "not_a_member"),
            )
            raise
        return await meeting_view(meeting, principal=principal)

    @router.post(
        "/meetings/{meeting_id}/agenda-items",
        status_code=201,
        response_model=MeetingView,
        tags=["meetings"],
        summary="Add an agenda item (a case or a district issue)",
    )
    async def agenda(meeting_id: str, body: AgendaItemRequest, principal: Caller) -> MeetingView:
        current = await member_meeting(meeting_id, principal)
        raised_by = body.raised_by_agency_id or principal.agency
        check_agency("raised_by_agency_id", raised_by)
        person_id = body.person_id
        if body.case_id is not None:
            person_id = await policy.case_person(principal, body.case_id, person_id)
        if person_id is not None:
            await policy.persons_served(principal, [person_id])
        if raised_by != principal.agency and raised_by not in current.members() and not principal.is_admin:
            _unprocessable("raised_by_agency_id", "議題は会議の参加機関が提起します", "raised by a member agency")
        meeting, item_id = await meetings_service.add_agenda_item(
            meeting_id,
            kind=body.kind,
            raised_by_agency_id=raised_by,
            title=body.title,
            categories=list(dict.fromkeys(body.categories)),
            gap_need=body.gap_need,
            case_id=body.case_id,
            person_id=person_id,
            consultation_id=body.consultation_id,
            principal=principal,
        )
        return await meeting_view(meeting, item_id)

    @router.post(
        "/meetings/{meeting_id}/held",
        response_model=MeetingView,
        tags=["meetings"],
        summary="Record that the meeting was held: attendance, persons discussed, minutes",
    )
    async def held(meeting_id: str, body: HoldRequest, principal: Caller) -> MeetingView:
        current = await member_meeting(meeting_id, principal)
        for index, agency_id in enumerate(body.attendee_agency_ids):
            check_agency(f"attendee_agency_ids.{index}", agency_id)
        on_agenda = set(current.persons_on_agenda())
        await policy.persons_served(principal, [p for p in body.person_ids if p not in on_agenda])
        meeting = await meetings_service.hold(
            meeting_id,
            attendee_agency_ids=body.attendee_agency_ids,
            confidentiality_acknowledged=body.confidentiality_acknowledged,
            person_ids=body.person_ids,
            minutes_summary=body.minutes_summary,
            principal=principal,
        )
        return await meeting_view(meeting)

    @router.post(
        "/meetings/{meeting_id}/decisions",
        status_code=201,
        response_model=MeetingView,
        tags=["meetings"],
        summary="Record a decision (develop a resource, escalate, refer, keep watching)",
    )
    async def decision(meeting_id: str, body: DecisionRequest, principal: Caller) -> MeetingView:
        await member_meeting(meeting_id, principal)
        if body.branch_office_id is not None:
            agency = ward.agency(body.branch_office_id)
            if agency is None or agency.kind != "branch_office":
                _unprocessable("branch_office_id", "不明な総合支所IDです", "unknown branch office id")
        meeting, decision_id = await meetings_service.decide(
            meeting_id,
            kind=body.kind,
            title=body.title,
            item_id=body.item_id,
            categories=list(dict.fromkeys(body.categories)),
            gap_need=body.gap_need,
            branch_office_id=body.branch_office_id,
            referral_id=body.referral_id,
            principal=principal,
        )
        return await meeting_view(meeting, decision_id)

    @router.post(
        "/meetings/{meeting_id}/action-items",
        status_code=201,
        response_model=MeetingView,
        tags=["meetings"],
        summary="Assign an action item to a member agency",
    )
    async def action_item(meeting_id: str, body: ActionItemRequest, principal: Caller) -> MeetingView:
        await member_meeting(meeting_id, principal)
        check_agency("agency_id", body.agency_id)
        meeting, action_id = await meetings_service.assign_action_item(
            meeting_id, body.agency_id, body.title, body.due_on, principal, item_id=body.item_id
        )
        return await meeting_view(meeting, action_id)

    @router.post(
        "/meetings/{meeting_id}/action-items/{action_id}/done",
        response_model=MeetingView,
        tags=["meetings"],
        summary="Mark an action item done",
    )
    async def action_done(meeting_id: str, action_id: str, principal: Caller) -> MeetingView:
        await member_meeting(meeting_id, principal)
        return await meeting_view(await meetings_service.action_item_done(meeting_id, action_id, principal))

    @router.post(
        "/meetings/{meeting_id}/support-plan",
        response_model=MeetingView,
        tags=["meetings"],
        summary="Adopt or revise a support plan (重層的支援会議)",
    )
    async def support_plan(meeting_id: str, body: SupportPlanRequest, principal: Caller) -> MeetingView:
        await member_meeting(meeting_id, principal)
        await policy.case_person(principal, body.case_id, body.person_id)
        meeting = await meetings_service.decide_support_plan(
            meeting_id,
            case_id=body.case_id,
            person_id=body.person_id,
            revision=body.action == "revise",
            goals=body.goals,
            review_due=body.review_due,
            principal=principal,
        )
        return await meeting_view(meeting)

    @router.post(
        "/meetings/{meeting_id}/support-decision",
        response_model=MeetingView,
        tags=["meetings"],
        summary="Decide to start or end support (重層的支援会議)",
    )
    async def support_decision(meeting_id: str, body: SupportDecisionRequest, principal: Caller) -> MeetingView:
        await member_meeting(meeting_id, principal)
        await policy.case_person(principal, body.case_id, body.person_id)
        meeting = await meetings_service.decide_support(
            meeting_id, case_id=body.case_id, person_id=body.person_id, decision=body.decision, principal=principal
        )
        return await meeting_view(meeting)

    return router


def principal_of(settings_dependency: object) -> Callable[..., Any]:
    return cast(Callable[..., Any], settings_dependency)


__all__ = ["build_router", "install_domain_errors", "principal_of"]
