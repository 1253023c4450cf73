"""The consent view: what intake's events say about each person's consent and sharing basis.

Consent events and referral commands arrive in any order. A referral that needs
consent is refused while this view holds none for the person, and succeeds once the
ConsentGiven event has been consumed; a withdrawal or an erasure takes it away again.
"""

from __future__ import annotations

import json
from datetime import date

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tsunagu_events.contracts.intake import ConsentGiven, ConsentWithdrawn, PersonErased, SharingBasisRecorded
from tsunagu_platform.consumer import ReceivedEvent
from tsunagu_platform.sql import upsert

from tsunagu_referral.domain.consent import ConsentFact
from tsunagu_referral.tables import consents, erased_persons, sharing_bases

HANDLES = [
    ConsentGiven.event_type,
    ConsentWithdrawn.event_type,
    SharingBasisRecorded.event_type,
    PersonErased.event_type,
]


async def apply_intake_event(conn: AsyncConnection, event: ReceivedEvent) -> None:
    payload = event.payload
    if isinstance(payload, ConsentGiven):
        erased = await conn.scalar(
            select(erased_persons.c.person_id).where(erased_persons.c.person_id == payload.person_id)
        )
        if erased is not None:
            return
        await upsert(
            conn,
            consents,
            [
                {
                    "consent_id": payload.consent_id,
                    "person_id": payload.person_id,
                    "scope": payload.scope.value,
                    "district_id": payload.district_id,
                    "agency_ids": json.dumps(payload.agency_ids),
                    "referral_id": payload.referral_id,
                    "expires_on": payload.expires_on,
                    "withdrawn": False,
                    "given_at": payload.given_at,
                }
            ],
            keys=["consent_id"],
            update=["scope", "district_id", "agency_ids", "referral_id", "expires_on", "given_at"],
        )
    elif isinstance(payload, ConsentWithdrawn):
        # A withdrawal seen before its consent (another partition) still wins: keep a tombstone.
        await upsert(
            conn,
            consents,
            [
                {
                    "consent_id": payload.consent_id,
                    "person_id": payload.person_id,
                    "scope": "withdrawn",
                    "agency_ids": "[]",
                    "withdrawn": True,
                }
            ],
            keys=["consent_id"],
            update=["withdrawn"],
        )
    elif isinstance(payload, SharingBasisRecorded):
        await conn.execute(
            insert(sharing_bases).values(
                person_id=payload.person_id,
                basis=payload.basis.value,
                meeting_id=payload.meeting_id,
                recorded_at=payload.recorded_at,
            )
        )
    elif isinstance(payload, PersonErased):
        await conn.execute(delete(consents).where(consents.c.person_id == payload.person_id))
        await upsert(
            conn,
            erased_persons,
            [{"person_id": payload.person_id, "erased_at": payload.erased_at}],
            keys=["person_id"],
            update=["erased_at"],
        )


async def live_consents(engine: AsyncEngine, person_id: str) -> list[ConsentFact]:
    async with engine.connect() as conn:
        return await live_consents_in(conn, person_id)


async def live_consents_in(conn: AsyncConnection, person_id: str) -> list[ConsentFact]:
    rows = await conn.execute(
        select(consents).where(consents.c.person_id == person_id, consents.c.withdrawn.is_(False))
    )
    return [
        ConsentFact(
            consent_id=row.consent_id,
            scope=row.scope,
            district_id=row.district_id,
            agency_ids=tuple(json.loads(row.agency_ids or "[]")),
            referral_id=row.referral_id,
            expires_on=row.expires_on,
        )
        for row in rows
    ]


async def is_erased(engine: AsyncEngine, person_id: str) -> bool:
    async with engine.connect() as conn:
        return await is_erased_in(conn, person_id)


async def is_erased_in(conn: AsyncConnection, person_id: str) -> bool:
    found = await conn.scalar(select(erased_persons.c.person_id).where(erased_persons.c.person_id == person_id))
    return found is not None


async def sharing_basis_meetings(engine: AsyncEngine, person_id: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(sharing_bases.c.meeting_id).where(
                sharing_bases.c.person_id == person_id, sharing_bases.c.meeting_id.is_not(None)
            )
        )
        return [row[0] for row in rows]


def consent_summary(facts: list[ConsentFact], today: date) -> list[dict[str, object]]:
    return [
        {"consent_id": f.consent_id, "scope": f.scope, "expires_on": f.expires_on}
        for f in facts
        if f.expires_on is None or f.expires_on >= today
    ]
