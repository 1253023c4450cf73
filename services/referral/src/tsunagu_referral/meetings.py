"""Meeting commands: load the meeting, let it decide, append and keep the read model."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events import EventPayload, new_stream_id
from tsunagu_events.contracts.common import ConsultationCategory, Sealed
from tsunagu_events.contracts.referral import (
    ActionItemAssigned,
    ActionItemDone,
    AgendaItemAdded,
    AgendaItemKind,
    DecisionKind,
    MeetingHeld,
    MeetingKind,
    MeetingScheduled,
    SupportPlanDecided,
)
from tsunagu_events.reference import Ward
from tsunagu_platform.auth import Principal
from tsunagu_platform.consumer import Handler, ReceivedEvent
from tsunagu_platform.crypto import PersonErasedError
from tsunagu_platform.runtime import ServiceRuntime
from tsunagu_platform.sql import insert_ignoring_duplicates, upsert

from tsunagu_referral import consent_view
from tsunagu_referral.clock import Clock, today_in_japan
from tsunagu_referral.domain.consent import has_any_consent
from tsunagu_referral.domain.errors import NotFound
from tsunagu_referral.domain.meeting import (
    AddAgendaItem,
    AssignActionItem,
    DecideSupport,
    DecideSupportPlan,
    HoldMeeting,
    MarkActionItemDone,
    Meeting,
    RecordDecision,
    ScheduleMeeting,
)
from tsunagu_referral.streams import append, load
from tsunagu_referral.tables import action_items, meeting_agencies, meeting_persons, meetings, support_plans


def owner_of(sealed: Sealed) -> str:
    """Whose key sealed a value: the person's id or the meeting's (kid = keyring/owner/number)."""
    parts = sealed.kid.rsplit("/", 2)
    return parts[-2] if len(parts) == 3 else ""


def sealed_json(sealed: Sealed | None) -> str | None:
    return json.dumps(sealed.model_dump(), sort_keys=True) if sealed else None


def sealed_from_json(raw: str | None) -> Sealed | None:
    return Sealed.model_validate_json(raw) if raw else None


def erase_meeting_keys_of(runtime: ServiceRuntime) -> Handler:
    """On PersonErased: erase the key of every meeting that discussed the person.

    The meeting's own text (its minutes, text about no single person) may name anyone it
    discussed, so once one of them is erased it is unreadable to everyone, like the text
    sealed with the person's own key.
    """

    async def erase(conn: AsyncConnection, event: ReceivedEvent) -> None:
        person_id = event.envelope.data.get("person_id")
        if not isinstance(person_id, str):
            return
        rows = await conn.execute(select(meeting_persons.c.meeting_id).where(meeting_persons.c.person_id == person_id))
        for (meeting_id,) in rows.all():
            await runtime.keys.erase(meeting_id)

    return erase


class MeetingService:
    def __init__(self, runtime: ServiceRuntime, ward: Ward, clock: Clock) -> None:
        self.runtime = runtime
        self.ward = ward
        self.clock = clock

    async def load(self, meeting_id: str) -> Meeting:
        return Meeting.from_events(meeting_id, await load(self.runtime, meeting_id))

    async def existing(self, meeting_id: str) -> Meeting:
        meeting = await self.load(meeting_id)
        if meeting.version == 0:
            raise NotFound("会議が見つかりません", "no such meeting", meeting_id=meeting_id)
        return meeting

    async def schedule(
        self,
        kind: MeetingKind,
        scheduled_for: datetime,
        member_agency_ids: Sequence[str],
        district_id: str | None,
        principal: Principal | None,
    ) -> Meeting:
        meeting_id = new_stream_id("meeting")
        meeting = Meeting(meeting_id)
        decided = meeting.schedule(ScheduleMeeting(meeting_id, kind, scheduled_for, member_agency_ids, district_id))
        return await self._commit(meeting, decided, principal)

    async def add_agenda_item(
        self,
        meeting_id: str,
        *,
        kind: AgendaItemKind,
        raised_by_agency_id: str,
        title: str,
        categories: Sequence[ConsultationCategory],
        gap_need: bool,
        case_id: str | None,
        person_id: str | None,
        consultation_id: str | None,
        principal: Principal | None,
    ) -> tuple[Meeting, str]:
        meeting = await self.existing(meeting_id)
        agency = self.ward.agency(raised_by_agency_id)
        district_window = agency is not None and agency.kind == "window" and agency.district == meeting.district_id
        today = today_in_japan(self.clock())
        consented = person_id is not None and has_any_consent(
            await consent_view.live_consents(self.runtime.reader, person_id), today=today
        )
        item_id = new_stream_id("item")
        command = AddAgendaItem(
            item_id=item_id,
            kind=kind,
            raised_by_agency_id=raised_by_agency_id,
            title=title,
            raised_by_district_window=district_window,
            categories=categories,
            gap_need=gap_need,
            case_id=case_id,
            person_id=person_id,
            consultation_id=consultation_id,
            person_has_consent=consented,
        )
        # Decide once before sealing: a refused item leaves no key behind.
        meeting.add_agenda_item(command)
        sealed = await self.runtime.keys.seal(person_id or meeting_id, title)
        decided = meeting.add_agenda_item(dataclasses.replace(command, sealed_title=sealed))
        return await self._commit(meeting, decided, principal), item_id

    async def hold(
        self,
        meeting_id: str,
        *,
        attendee_agency_ids: Sequence[str],
        confidentiality_acknowledged: bool,
        person_ids: Sequence[str],
        minutes_summary: str | None,
        principal: Principal | None,
    ) -> Meeting:
        meeting = await self.existing(meeting_id)
        today = today_in_japan(self.clock())
        for person_id in person_ids:
            if await consent_view.is_erased(self.runtime.reader, person_id):
                raise PersonErasedError(person_id)
        with_consent = [
            p
            for p in dict.fromkeys([*person_ids, *meeting.persons_on_agenda()])
            if has_any_consent(await consent_view.live_consents(self.runtime.reader, p), today=today)
        ]
        command = HoldMeeting(
            held_at=self.clock(),
            attendee_agency_ids=attendee_agency_ids,
            confidentiality_acknowledged=confidentiality_acknowledged,
            person_ids=person_ids,
            minutes_summary=minutes_summary,
            persons_with_consent=with_consent,
        )
        if minutes_summary:
            meeting.hold(command)
            command = dataclasses.replace(
                command, sealed_minutes=await self.runtime.keys.seal(meeting_id, minutes_summary)
            )
        decided = meeting.hold(command)
        return await self._commit(meeting, decided, principal)

    async def decide(
        self,
        meeting_id: str,
        *,
        kind: DecisionKind,
        title: str,
        item_id: str | None,
        categories: Sequence[ConsultationCategory],
        gap_need: bool,
        branch_office_id: str | None,
        referral_id: str | None,
        principal: Principal | None,
    ) -> tuple[Meeting, str]:
        meeting = await self.existing(meeting_id)
        if kind is DecisionKind.ESCALATE_TO_BRANCH_OFFICE and branch_office_id is None and meeting.district_id:
            district = self.ward.district(meeting.district_id)
            area = self.ward.area(district.area) if district else None
            branch_office_id = area.branch_office.id if area else None
        decision_id = new_stream_id("decision")
        command = RecordDecision(
            decision_id=decision_id,
            kind=kind,
            title=title,
            decided_at=self.clock(),
            item_id=item_id,
            categories=categories,
            gap_need=gap_need,
            branch_office_id=branch_office_id,
            referral_id=referral_id,
        )
        meeting.record_decision(command)
        if not meeting.decision_title_is_public(kind, item_id):
            owner = meeting.person_of_item(item_id) or meeting_id
            command = dataclasses.replace(command, sealed_title=await self.runtime.keys.seal(owner, title))
        decided = meeting.record_decision(command)
        return await self._commit(meeting, decided, principal), decision_id

    async def assign_action_item(
        self,
        meeting_id: str,
        agency_id: str,
        title: str,
        due_on: date,
        principal: Principal | None,
        item_id: str | None = None,
    ) -> tuple[Meeting, str]:
        meeting = await self.existing(meeting_id)
        action_id = new_stream_id("action")
        command = AssignActionItem(
            action_id, agency_id, title, due_on, item_id=item_id, assignee_is_member=agency_id in meeting.members()
        )
        meeting.assign_action_item(command)
        owner = meeting.person_of_item(item_id) or meeting_id
        sealed = await self.runtime.keys.seal(owner, title)
        decided = meeting.assign_action_item(dataclasses.replace(command, sealed_title=sealed))
        return await self._commit(meeting, decided, principal), action_id

    async def action_item_done(self, meeting_id: str, action_id: str, principal: Principal | None) -> Meeting:
        meeting = await self.existing(meeting_id)
        decided = meeting.mark_action_item_done(MarkActionItemDone(action_id, self.clock()))
        return await self._commit(meeting, decided, principal)

    async def decide_support_plan(
        self,
        meeting_id: str,
        *,
        case_id: str,
        person_id: str,
        revision: bool,
        goals: Sequence[str],
        review_due: date,
        principal: Principal | None,
    ) -> Meeting:
        meeting = await self.existing(meeting_id)
        async with self.runtime.reader.connect() as conn:
            exists = await conn.scalar(select(support_plans.c.case_id).where(support_plans.c.case_id == case_id))
        command = DecideSupportPlan(
            case_id=case_id,
            person_id=person_id,
            revision=revision,
            review_due=review_due,
            decided_at=self.clock(),
            plan_exists=exists is not None,
        )
        meeting.decide_support_plan(command)
        sealed = [await self.runtime.keys.seal(person_id, goal) for goal in goals]
        decided = meeting.decide_support_plan(DecideSupportPlan(**{**command.__dict__, "goals": sealed}))
        return await self._commit(meeting, decided, principal)

    async def decide_support(
        self, meeting_id: str, *, case_id: str, person_id: str, decision: str, principal: Principal | None
    ) -> Meeting:
        meeting = await self.existing(meeting_id)
        decided = meeting.decide_support(DecideSupport(case_id, person_id, decision, self.clock()))
        return await self._commit(meeting, decided, principal)

    async def _commit(self, meeting: Meeting, decided: list[EventPayload], principal: Principal | None) -> Meeting:
        expected = meeting.version
        for event in decided:
            meeting.apply(event)
        async with self.runtime.transaction() as conn:
            await append(self.runtime, conn, meeting.meeting_id, expected, decided, principal)
            for event in decided:
                await self._project(conn, meeting, event)
            await conn.execute(
                update(meetings).where(meetings.c.meeting_id == meeting.meeting_id).values(version=meeting.version)
            )
        return meeting

    async def _project(self, conn: AsyncConnection, meeting: Meeting, event: EventPayload) -> None:
        if isinstance(event, MeetingScheduled):
            await upsert(
                conn,
                meetings,
                [
                    {
                        "meeting_id": event.meeting_id,
                        "kind": event.kind.value,
                        "district_id": event.district_id,
                        "state": "scheduled",
                        "scheduled_for": event.scheduled_for,
                        "version": meeting.version,
                    }
                ],
                keys=["meeting_id"],
                update=["state"],
            )
            await self._agencies(conn, event.meeting_id, event.member_agency_ids)
        elif isinstance(event, MeetingHeld):
            await conn.execute(
                update(meetings)
                .where(meetings.c.meeting_id == event.meeting_id)
                .values(state="held", held_at=event.held_at)
            )
            await self._agencies(conn, event.meeting_id, event.attendee_agency_ids)
            await self._persons(conn, event.meeting_id, event.person_ids)
        elif isinstance(event, AgendaItemAdded) and event.person_id:
            await self._persons(conn, event.meeting_id, [event.person_id])
        elif isinstance(event, ActionItemAssigned):
            await upsert(
                conn,
                action_items,
                [
                    {
                        "action_id": event.action_id,
                        "meeting_id": event.meeting_id,
                        "agency_id": event.agency_id,
                        "title": sealed_json(event.title),
                        "due_on": event.due_on,
                        "done_at": None,
                    }
                ],
                keys=["action_id"],
                update=["agency_id"],
            )
        elif isinstance(event, ActionItemDone):
            await conn.execute(
                update(action_items).where(action_items.c.action_id == event.action_id).values(done_at=event.done_at)
            )
        elif isinstance(event, SupportPlanDecided):
            current = await conn.scalar(
                select(support_plans.c.decisions).where(support_plans.c.case_id == event.case_id)
            )
            await conn.execute(delete(support_plans).where(support_plans.c.case_id == event.case_id))
            await insert_ignoring_duplicates(
                conn,
                support_plans,
                [
                    {
                        "case_id": event.case_id,
                        "person_id": event.person_id,
                        "decisions": int(current or 0) + 1,
                        "last_meeting_id": event.meeting_id,
                    }
                ],
            )

    @staticmethod
    async def _persons(conn: AsyncConnection, meeting_id: str, person_ids: Sequence[str]) -> None:
        await insert_ignoring_duplicates(
            conn, meeting_persons, [{"meeting_id": meeting_id, "person_id": p} for p in dict.fromkeys(person_ids)]
        )

    @staticmethod
    async def _agencies(conn: AsyncConnection, meeting_id: str, agency_ids: Sequence[str]) -> None:
        await insert_ignoring_duplicates(
            conn, meeting_agencies, [{"meeting_id": meeting_id, "agency_id": a} for a in dict.fromkeys(agency_ids)]
        )
