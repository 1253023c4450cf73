"""What this service learns from the others' events.

- referral: a four-party meeting's decision to develop a resource becomes one
  district issue (one per decision id, however often it is delivered);
- intake: consents (for participation support) and erasures. A withdrawn consent
  or an erased person ends the participations that relied on it;
- intake: who serves each person (registering window, lead agency of an open case),
  the view policy.py asks before any command or query on a person's data.
"""

from __future__ import annotations

import json
from datetime import date

import structlog
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events.contracts.common import JST
from tsunagu_events.contracts.intake import ConsentGiven, ConsentWithdrawn, PersonErased
from tsunagu_events.contracts.referral import DecisionKind, MeetingDecisionMade
from tsunagu_events.contracts.resources import IssueSource
from tsunagu_events.topics import events_topic
from tsunagu_platform.consumer import ReceivedEvent
from tsunagu_platform.serving import SERVING_TYPES, ServingEvent, apply_serving
from tsunagu_platform.sql import insert_ignoring_duplicates, upsert
from tsunagu_platform.store import EventContext

from tsunagu_resources import tables
from tsunagu_resources.domain.issues import RaiseDistrictIssue, issue_id_for_decision
from tsunagu_resources.service import ResourcesService

log = structlog.get_logger("tsunagu.resources.consumers")

REFERRAL_TYPES = [MeetingDecisionMade.event_type]
INTAKE_TYPES = [ConsentGiven.event_type, ConsentWithdrawn.event_type, PersonErased.event_type]


def register_consumers(service: ResourcesService) -> None:
    runtime = service.runtime
    tenant = runtime.settings.tenant

    def context_of(event: ReceivedEvent) -> EventContext:
        envelope = event.envelope
        if envelope.correlationid:
            return service.context(None, None, causation_id=envelope.id, correlation_id=envelope.correlationid)
        return service.context(None, None, causation_id=envelope.id)

    async def on_meeting_decision(conn: AsyncConnection, event: ReceivedEvent) -> None:
        payload = event.payload
        if event.envelope.tenant != tenant or not isinstance(payload, MeetingDecisionMade):
            return
        if payload.kind != DecisionKind.DEVELOP_RESOURCE:
            return
        if payload.district_id is None or service.ward.district(payload.district_id) is None:
            log.warning("issue.decision_without_known_district", decision_id=payload.decision_id)
            return
        command = RaiseDistrictIssue(
            issue_id=issue_id_for_decision(payload.decision_id),
            district_id=payload.district_id,
            # A decision about a person keeps its text sealed in referral (no public title).
            title=payload.title or "四者連携会議で決定した地域資源の開発",
            source=IssueSource.FOUR_PARTY_MEETING,
            raised_on=payload.decided_at.astimezone(JST).date(),
            categories=tuple(payload.categories),
            gap_need=payload.gap_need,
            meeting_id=payload.meeting_id,
            decision_id=payload.decision_id,
        )
        raised = await service.raise_issue(command, context_of(event), conn=conn)
        log.info("issue.from_meeting_decision", issue_id=command.issue_id, new=raised is not None)

    async def on_intake(conn: AsyncConnection, event: ReceivedEvent) -> None:
        payload = event.payload
        if event.envelope.tenant != tenant:
            return
        if isinstance(payload, ConsentGiven):
            await insert_ignoring_duplicates(
                conn,
                tables.consents,
                [
                    {
                        "consent_id": payload.consent_id,
                        "person_id": payload.person_id,
                        "scope": payload.scope.value,
                        "district_id": payload.district_id,
                        "agency_ids": json.dumps(payload.agency_ids),
                        "expires_on": payload.expires_on,
                        "withdrawn": False,
                    }
                ],
            )
            # A withdrawal seen first (another stream, another partition) left a placeholder: fill it in.
            await conn.execute(
                update(tables.consents)
                .where(tables.consents.c.consent_id == payload.consent_id, tables.consents.c.scope == "unknown")
                .values(
                    scope=payload.scope.value,
                    district_id=payload.district_id,
                    agency_ids=json.dumps(payload.agency_ids),
                    expires_on=payload.expires_on,
                )
            )
        elif isinstance(payload, ConsentWithdrawn):
            await upsert(
                conn,
                tables.consents,
                [
                    {
                        "consent_id": payload.consent_id,
                        "person_id": payload.person_id,
                        "scope": "unknown",
                        "district_id": None,
                        "agency_ids": "[]",
                        "expires_on": None,
                        "withdrawn": True,
                    }
                ],
                keys=["consent_id"],
                update=["withdrawn"],
            )
            ended_on = payload.withdrawn_at.astimezone(JST).date()
            await _end_all(conn, event, payload.person_id, payload.consent_id, ended_on, "consent_withdrawn")
        elif isinstance(payload, PersonErased):
            await insert_ignoring_duplicates(conn, tables.erased_persons, [{"person_id": payload.person_id}])
            ended_on = payload.erased_at.astimezone(JST).date()
            await _end_all(conn, event, payload.person_id, None, ended_on, "other")

    async def _end_all(
        conn: AsyncConnection, event: ReceivedEvent, person_id: str, consent_id: str | None, on: date, reason: str
    ) -> None:
        active = await service.active_participations(conn, person_id=person_id, consent_id=consent_id)
        ended = await service.end_participations(conn, context_of(event), active, on=on, reason=reason)
        for participation_id in ended:
            log.info("participation.ended_by_intake_event", participation_id=participation_id, reason=reason)

    async def on_serving(conn: AsyncConnection, event: ReceivedEvent) -> None:
        envelope = event.envelope
        if envelope.tenant != tenant:
            return
        await apply_serving(conn, tables.serving, [ServingEvent(envelope.type, envelope.data, envelope.actoragency)])

    runtime.consume("meeting-decisions", [events_topic("referral")], on_meeting_decision, handles=REFERRAL_TYPES)
    runtime.consume("consents", [events_topic("intake")], on_intake, handles=INTAKE_TYPES)
    # Its own group: on a first start it reads intake's topic from the beginning, so persons and
    # cases announced before this view existed are known too.
    runtime.consume("serving", [events_topic("intake")], on_serving, handles=sorted(SERVING_TYPES))
