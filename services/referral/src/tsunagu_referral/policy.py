"""The referral service's access policy: who may do what to a referral, a meeting or a person.

One rule, applied by every command and query of the API:
- an administrator may do everything;
- an auditor reads records but never their personal text (reasons, feedback, minutes,
  titles) and changes nothing;
- staff and agency systems act only for their own agency (the token's agency), and only
  on what that agency already serves: a referral it sent or received, a meeting it was
  invited to (or recorded as attending by a member), a person it registered or leads an
  open case for. Nothing in a command can make an agency a party: naming itself as the
  referrer, raising a person at a meeting it scheduled or listing itself as attendee
  grants nothing it did not already have.
Every read of personal text is written to the access log, granted or denied, with the
basis of the grant. Out-of-scope referrals and meetings answer 404 (so their existence is
not revealed); commands refused to a known party or to an auditor answer 403.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn

from fastapi import HTTPException
from sqlalchemy import insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_platform.auth import Principal, Role
from tsunagu_platform.runtime import ServiceRuntime
from tsunagu_platform.serving import served_case, serving_agencies

from tsunagu_referral.clock import Clock
from tsunagu_referral.tables import access_log, referrals, serving

ACTING = frozenset({Role.STAFF, Role.AGENCY_SYSTEM})
OVERSEERS = frozenset({Role.ADMIN, Role.AUDITOR})


class Action(StrEnum):
    READ = "read"
    """The record without personal text."""
    READ_TEXT = "read_text"
    """Personal text: referral reasons and feedback, meeting minutes and titles."""
    ACCEPT = "accept"
    DECLINE = "decline"
    COMPLETE = "complete"
    WITHDRAW = "withdraw"
    WRITE = "write"
    """Any command on a meeting."""


RECEIVER_ACTIONS = frozenset({Action.ACCEPT, Action.DECLINE, Action.COMPLETE})


@dataclass(frozen=True)
class Decision:
    granted: bool
    basis: str
    """Why it was granted (admin, referral_party, meeting_member…), or why not."""


def forbidden(message_ja: str, message_en: str) -> NoReturn:
    raise HTTPException(403, f"{message_ja} ({message_en})")


# -- the rule, on plain facts -----------------------------------------------------------------


def on_referral(principal: Principal, from_agency: str, to_agency: str, action: Action) -> Decision:
    """A referral's sender and receiver, each for its own side of the loop."""
    if principal.role == Role.ADMIN:
        return Decision(True, "admin")
    if principal.role == Role.AUDITOR:
        return Decision(action is Action.READ, "auditor" if action is Action.READ else "auditor_no_personal_text")
    if principal.role not in ACTING:
        return Decision(False, "role")
    if action in (Action.READ, Action.READ_TEXT):
        return Decision(principal.agency in (from_agency, to_agency), "referral_party")
    if action in RECEIVER_ACTIONS:
        return Decision(principal.agency == to_agency, "receiving_agency")
    if action is Action.WITHDRAW:
        return Decision(principal.agency == from_agency, "referring_agency")
    return Decision(False, "unknown_action")


def on_meeting(principal: Principal, members: Iterable[str], action: Action) -> Decision:
    """A meeting's invited (or recorded attending) member agencies."""
    if principal.role == Role.ADMIN:
        return Decision(True, "admin")
    if principal.role == Role.AUDITOR:
        return Decision(action is Action.READ, "auditor" if action is Action.READ else "auditor_no_personal_text")
    if principal.role not in ACTING:
        return Decision(False, "role")
    return Decision(principal.agency in set(members), "meeting_member")


def on_person(principal: Principal, serving: Iterable[str]) -> Decision:
    """Bringing a person into a referral or a meeting: only an agency that already serves them."""
    if principal.role == Role.ADMIN:
        return Decision(True, "admin")
    if principal.role not in ACTING:
        return Decision(False, "role")
    return Decision(principal.agency in set(serving), "serves_person")


def sees_every_record(principal: Principal) -> bool:
    """Listings: admins and auditors list every referral and meeting; others their agency's own."""
    return principal.role in OVERSEERS


def on_assigned_text(principal: Principal) -> Decision:
    """The title of an action item assigned to the caller's agency (its inbox); never to auditors."""
    if principal.role == Role.AUDITOR:
        return Decision(False, "auditor_no_personal_text")
    return Decision(principal.role in ACTING or principal.role == Role.ADMIN, "assigned_agency")


# -- the rule applied, with the facts referral holds ------------------------------------------


class AccessPolicy:
    """Gathers the facts (serving agencies, cases) and writes the access log."""

    def __init__(self, runtime: ServiceRuntime, clock: Clock) -> None:
        self.runtime = runtime
        self.clock = clock

    @staticmethod
    def may_write(principal: Principal) -> None:
        if principal.role not in ACTING and principal.role != Role.ADMIN:
            forbidden("監査担当は変更できません", "auditors cannot change records")

    @staticmethod
    def admin_only(principal: Principal) -> None:
        if principal.role != Role.ADMIN:
            forbidden("管理者のみ実行できます", "admins only")

    @staticmethod
    def members_of_new_meeting(principal: Principal, invited: list[str]) -> list[str]:
        """A new meeting holds nothing yet: its scheduler is a member (an admin need not be), and
        persons come in only through agenda items and attendance, each checked against who serves them."""
        if principal.role != Role.ADMIN and principal.agency not in invited:
            return [*invited, principal.agency]
        return invited

    def referral(self, principal: Principal, from_agency: str, to_agency: str, action: Action) -> None:
        """A referral already known to be visible to the caller: 403 unless the action is theirs."""
        if action is not Action.READ:
            self.may_write(principal)
        if not on_referral(principal, from_agency, to_agency, action).granted:
            forbidden("この操作は担当機関のみ行えます", "only the agency concerned may do this")

    @staticmethod
    def sees_referral(principal: Principal, from_agency: str, to_agency: str) -> bool:
        return on_referral(principal, from_agency, to_agency, Action.READ).granted

    async def new_referral(
        self,
        principal: Principal,
        *,
        person_id: str,
        from_agency: str,
        case_id: str | None,
        handover_lead: bool,
        statutory_meeting_persons: Iterable[str] | None,
        conn: AsyncConnection,
    ) -> None:
        """The referrer is the caller's own agency and already serves the person (or the case).

        Asked on the command's own connection (inside its transaction), so it costs no extra one.
        """
        self.may_write(principal)
        if principal.role == Role.ADMIN:
            return
        if principal.agency != from_agency:
            forbidden("自機関以外の名義でつなぐことはできません", "refer only in your own agency's name")
        serving_now = await serving_agencies(conn, serving, person_id)
        case = await served_case(conn, serving, case_id) if case_id else None
        if case_id is not None:
            if case is None or case.person_id != person_id:
                forbidden("このケースは担当していません", "your agency does not serve this case")
            if handover_lead and not (case.open and case.lead_agency_id == principal.agency):
                forbidden("主担当機関のみ主担当を引き継げます", "only the lead agency hands the case over")
        elif handover_lead:
            forbidden("主担当の引継ぎにはケースが必要です", "a lead handover names the case")
        in_support_meeting = statutory_meeting_persons is not None and person_id in set(statutory_meeting_persons)
        if not (on_person(principal, serving_now).granted or in_support_meeting):
            forbidden("この方を担当していない機関はつなげません", "your agency does not serve this person")

    async def person_facts(self, principal: Principal, person_id: str) -> Decision:
        """A person's consents: overseers, agencies serving them, parties of a referral about them."""
        if principal.role in OVERSEERS:
            return Decision(True, principal.role.value)
        if principal.role not in ACTING:
            return Decision(False, "role")
        async with self.runtime.reader.connect() as conn:
            serving_now = await serving_agencies(conn, serving, person_id)
            party = await conn.scalar(
                select(referrals.c.referral_id)
                .where(
                    referrals.c.person_id == person_id,
                    or_(referrals.c.from_agency_id == principal.agency, referrals.c.to_agency_id == principal.agency),
                )
                .limit(1)
            )
        if principal.agency in serving_now:
            return Decision(True, "serves_person")
        return Decision(party is not None, "referral_party")

    def meeting(self, principal: Principal, members: Iterable[str], action: Action) -> None:
        """A meeting already known to be visible to the caller: 403 unless the action is theirs."""
        if action is not Action.READ:
            self.may_write(principal)
        if not on_meeting(principal, members, action).granted:
            forbidden("会議の参加機関のみ行えます", "only the meeting's member agencies may do this")

    @staticmethod
    def sees_meeting(principal: Principal, members: Iterable[str]) -> bool:
        return on_meeting(principal, members, Action.READ).granted

    async def persons_served(self, principal: Principal, person_ids: Iterable[str]) -> None:
        """Persons brought to a meeting by the caller: each served by the caller's agency."""
        async with self.runtime.reader.connect() as conn:
            for person_id in dict.fromkeys(person_ids):
                serving_now = await serving_agencies(conn, serving, person_id)
                if not on_person(principal, serving_now).granted:
                    forbidden("担当していない方を会議で扱うことはできません", "your agency does not serve this person")

    async def case_person(self, principal: Principal, case_id: str, person_id: str | None) -> str | None:
        """The person of a case the caller brings to a meeting, checked like the person themself."""
        async with self.runtime.reader.connect() as conn:
            case = await served_case(conn, serving, case_id)
        if case is None:
            if person_id is None and principal.role != Role.ADMIN:
                forbidden("このケースは担当していません", "your agency does not serve this case")
            return person_id
        if person_id is not None and case.person_id != person_id:
            forbidden("このケースは担当していません", "your agency does not serve this case")
        return case.person_id

    async def log_text_read(
        self,
        principal: Principal,
        *,
        subject_id: str,
        what: str,
        person_ids: Iterable[str | None],
        decision: Decision,
    ) -> None:
        """One access-log row per person whose text was asked for (None: a meeting's own text)."""
        rows = [
            {
                "at": self.clock(),
                "staff": principal.staff[:64],
                "agency": principal.agency[:100],
                "role": principal.role.value,
                "person_id": person_id,
                "subject_id": subject_id[:128],
                "what": what,
                "granted": decision.granted,
                "basis": decision.basis if decision.granted else "denied",
            }
            for person_id in dict.fromkeys(person_ids)
        ]
        if rows:
            async with self.runtime.transaction() as conn:
                await conn.execute(insert(access_log), rows)


def text_decision_for_referral(principal: Principal, from_agency: str, to_agency: str) -> Decision:
    return on_referral(principal, from_agency, to_agency, Action.READ_TEXT)


def text_decision_for_meeting(principal: Principal, members: Iterable[str]) -> Decision:
    return on_meeting(principal, members, Action.READ_TEXT)
