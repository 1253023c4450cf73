"""Referral commands: load the referral, let it decide, append with its version and
update the read model in the same transaction. Handlers never publish to Kafka."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events import EventPayload, new_stream_id
from tsunagu_events.contracts.common import ConsultationCategory, LegalBasis, Sealed
from tsunagu_events.contracts.referral import ReferralOutcome
from tsunagu_events.reference import Ward
from tsunagu_platform.auth import Principal
from tsunagu_platform.runtime import ServiceRuntime
from tsunagu_platform.sql import BulkInsert

from tsunagu_referral import consent_view
from tsunagu_referral.clock import Clock, today_in_japan
from tsunagu_referral.domain.consent import covering_consent
from tsunagu_referral.domain.errors import InvalidTransition, NotFound
from tsunagu_referral.domain.referral import (
    AcceptReferral,
    CompleteReferral,
    DeclineReferral,
    MarkOverdue,
    Referral,
    RequestReferral,
    WithdrawReferral,
)
from tsunagu_referral.streams import append, load, load_in
from tsunagu_referral.tables import meetings, referrals

# The read-model row of a referral, written with each of its events (state, outcome and
# version change; who, what and when it was requested stay as first written).
_UPSERT_REFERRAL = BulkInsert(
    referrals,
    (
        "referral_id",
        "person_id",
        "case_id",
        "from_agency_id",
        "to_agency_id",
        "categories",
        "legal_basis",
        "meeting_id",
        "handover_lead",
        "state",
        "due_on",
        "overdue",
        "outcome",
        "decline_reason",
        "version",
        "requested_at",
        "updated_at",
    ),
    on_conflict="update",
    keys=("referral_id",),
    update=("state", "overdue", "outcome", "decline_reason", "version", "updated_at"),
)


Guard = Callable[[AsyncConnection], Awaitable[None]]
"""A check run on the command's connection before it decides (raises to refuse)."""


class PersonErased(InvalidTransition):
    code = "person_erased"


@dataclass(frozen=True)
class NewReferral:
    person_id: str
    from_agency_id: str
    to_agency_id: str
    categories: list[ConsultationCategory]
    due_on: date
    legal_basis: LegalBasis
    case_id: str | None = None
    reason: str | None = None
    meeting_id: str | None = None
    handover_lead: bool = False
    referral_id: str | None = None


class ReferralService:
    def __init__(self, runtime: ServiceRuntime, ward: Ward, clock: Clock) -> None:
        self.runtime = runtime
        self.ward = ward
        self.clock = clock

    async def load(self, referral_id: str) -> Referral:
        return Referral.from_events(referral_id, await load(self.runtime, referral_id))

    async def request(self, new: NewReferral, principal: Principal | None, guard: Guard | None = None) -> Referral:
        """`guard` (the access policy) is asked first, on the command's connection."""
        runtime = self.runtime
        referral_id = new.referral_id or new_stream_id("referral")
        now = self.clock()
        sealed = None
        if new.reason:
            # Decide once before sealing: a refused referral leaves no key behind.
            async with runtime.reader.connect() as conn:
                if guard is not None:
                    await guard(conn)
                command = await self._request_command(conn, referral_id, new, now, None)
                Referral.from_events(referral_id, await load_in(runtime, conn, referral_id)).request(command)
            sealed = await runtime.keys.seal(new.person_id, new.reason)
        async with self.runtime.transaction() as conn:
            if guard is not None:
                await guard(conn)
            command = await self._request_command(conn, referral_id, new, now, sealed)
            referral = Referral.from_events(referral_id, await load_in(runtime, conn, referral_id))
            await self._append_and_project(conn, referral, referral.request(command), principal)
        return referral

    async def _request_command(
        self, conn: AsyncConnection, referral_id: str, new: NewReferral, now: datetime, reason: Sealed | None
    ) -> RequestReferral:
        """The command with the facts the consent view and the meetings hold about it."""
        consent_id = None
        statutory_known = False
        if new.legal_basis is LegalBasis.CONSENT:
            target = self.ward.agency(new.to_agency_id)
            consent_id = covering_consent(
                await consent_view.live_consents_in(conn, new.person_id),
                to_agency_id=new.to_agency_id,
                to_agency_district=target.district if target else None,
                today=today_in_japan(now),
                referral_id=referral_id,
            )
        # An erased person has no consents left, so this is asked only when none covers the referral.
        if consent_id is None and await consent_view.is_erased_in(conn, new.person_id):
            raise PersonErased(
                "この方の情報は消去されています", "the person's data has been erased", current_state="erased"
            )
        if new.legal_basis is not LegalBasis.CONSENT and new.meeting_id:
            kind = await conn.scalar(select(meetings.c.kind).where(meetings.c.meeting_id == new.meeting_id))
            statutory_known = kind == "support_meeting"
        return RequestReferral(
            referral_id=referral_id,
            person_id=new.person_id,
            from_agency_id=new.from_agency_id,
            to_agency_id=new.to_agency_id,
            categories=new.categories,
            due_on=new.due_on,
            legal_basis=new.legal_basis,
            requested_at=now,
            case_id=new.case_id,
            reason=reason,
            meeting_id=new.meeting_id,
            handover_lead=new.handover_lead,
            consent_id=consent_id,
            statutory_meeting_known=statutory_known,
        )

    async def accept(self, referral_id: str, principal: Principal | None) -> Referral:
        return await self._decide(referral_id, lambda r: r.accept(AcceptReferral(self.clock())), principal)

    async def decline(self, referral_id: str, reason_code: str, principal: Principal | None) -> Referral:
        return await self._decide(
            referral_id, lambda r: r.decline(DeclineReferral(reason_code, self.clock())), principal
        )

    async def withdraw(self, referral_id: str, principal: Principal | None) -> Referral:
        return await self._decide(referral_id, lambda r: r.withdraw(WithdrawReferral(self.clock())), principal)

    async def complete(
        self, referral_id: str, outcome: ReferralOutcome, feedback: str | None, principal: Principal | None
    ) -> Referral:
        sealed = None
        if feedback:
            # Decide once before sealing, so a refused completion leaves no key behind.
            referral = await self._existing(referral_id)
            referral.complete(CompleteReferral(outcome, self.clock()))
            sealed = await self.runtime.keys.seal(referral.person_id, feedback)
        return await self._decide(
            referral_id, lambda r: r.complete(CompleteReferral(outcome, self.clock(), sealed)), principal
        )

    async def mark_overdue(self, referral_id: str) -> bool:
        """One referral's overdue check; True when this call emitted ReferralOverdue."""
        now = self.clock()
        async with self.runtime.transaction() as conn:
            referral = Referral.from_events(referral_id, await load_in(self.runtime, conn, referral_id))
            decided = referral.mark_overdue(MarkOverdue(today_in_japan(now), now))
            if decided:
                await self._append_and_project(conn, referral, decided, None)
        return bool(decided)

    async def _existing(self, referral_id: str) -> Referral:
        referral = await self.load(referral_id)
        if referral.version == 0:
            raise NotFound("つなぎが見つかりません", "no such referral", referral_id=referral_id)
        return referral

    async def _decide(
        self,
        referral_id: str,
        decide: Callable[[Referral], list[EventPayload]],
        principal: Principal | None,
    ) -> Referral:
        """Load, decide, append and project on one connection in one transaction."""
        async with self.runtime.transaction() as conn:
            referral = Referral.from_events(referral_id, await load_in(self.runtime, conn, referral_id))
            if referral.version == 0:
                raise NotFound("つなぎが見つかりません", "no such referral", referral_id=referral_id)
            await self._append_and_project(conn, referral, decide(referral), principal)
        return referral

    async def _append_and_project(
        self, conn: AsyncConnection, referral: Referral, decided: list[EventPayload], principal: Principal | None
    ) -> None:
        expected = referral.version
        for event in decided:
            referral.apply(event)
        await append(self.runtime, conn, referral.referral_id, expected, decided, principal)
        await self._project(conn, referral, decided)

    async def _project(self, conn: AsyncConnection, referral: Referral, decided: list[EventPayload]) -> None:
        now = self.clock()
        row = (
            referral.referral_id,
            referral.person_id,
            referral.case_id,
            referral.from_agency_id,
            referral.to_agency_id,
            json.dumps([c.value for c in referral.categories]),
            referral.legal_basis.value if referral.legal_basis else "consent",
            referral.meeting_id,
            referral.handover_lead,
            referral.state.value,
            referral.due_on,
            referral.overdue,
            referral.outcome.value if referral.outcome else None,
            referral.decline_reason,
            referral.version,
            now,
            now,
        )
        await _UPSERT_REFERRAL.run(conn, [row])
