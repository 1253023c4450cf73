"""Events the referral service publishes on `tsunagu.referral.events`.

Closed-loop referrals (つなぎ) between agencies and the coordination meetings: the
district's four-party meeting (四者連携会議), the statutory support meeting (支援会議)
and the multi-layered support meeting (重層的支援会議). Resources turns a
"develop a resource" decision into a district issue; intake shows plan decisions
and lead-agency handovers on the case.

Streams: `referral-<uuid>`, `meeting-<uuid>`.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from tsunagu_events.contracts.common import ConsultationCategory, LegalBasis, PersonId, Sealed
from tsunagu_events.registry import EventPayload, registry

PREFIX = "tsunagu.referral."


class ReferralOutcome(StrEnum):
    GOT_HELP = "got_help"
    COULD_NOT_CONTACT = "could_not_contact"
    NOT_ELIGIBLE = "not_eligible"
    NO_CAPACITY = "no_capacity"
    NO_LONGER_INTERESTED = "no_longer_interested"
    REFERRED_ELSEWHERE = "referred_elsewhere"


class MeetingKind(StrEnum):
    FOUR_PARTY = "four_party"
    SUPPORT_MEETING = "support_meeting"
    MULTI_LAYERED = "multi_layered"


class DecisionKind(StrEnum):
    DEVELOP_RESOURCE = "develop_resource"
    ESCALATE_TO_BRANCH_OFFICE = "escalate_to_branch_office"
    REFER = "refer"
    KEEP_WATCHING = "keep_watching"


class AgendaItemKind(StrEnum):
    CASE = "case"
    DISTRICT_ISSUE = "district_issue"


@registry.event(PREFIX + "ReferralRequested", 1)
class ReferralRequested(EventPayload):
    referral_id: str = Field(description="Referral stream id.")
    person_id: PersonId = Field(description="The person referred.")
    case_id: str | None = Field(default=None, description="Their companion-support case, if any.")
    from_agency_id: str = Field(description="Referring agency.")
    to_agency_id: str = Field(description="Receiving agency.")
    categories: list[ConsultationCategory] = Field(min_length=1, description="What the referral is about.")
    reason: Sealed | None = Field(default=None, description="Reason in words, encrypted with the person's key.")
    due_on: date = Field(description="Respond by this date, or the referral is overdue.")
    legal_basis: LegalBasis = Field(description="Consent, or the support meeting's statutory basis.")
    consent_id: str | None = Field(default=None, description="The consent relied on, when basis is consent.")
    meeting_id: str | None = Field(default=None, description="The support meeting, when basis is statutory.")
    handover_lead: bool = Field(default=False, description="On acceptance, the receiving agency leads the case.")
    requested_at: datetime = Field(description="When.")


@registry.event(PREFIX + "ReferralAccepted", 1)
class ReferralAccepted(EventPayload):
    referral_id: str = Field(description="Referral stream id.")
    person_id: PersonId = Field(description="The person referred.")
    case_id: str | None = Field(default=None, description="Their case, if any.")
    from_agency_id: str = Field(description="Referring agency.")
    to_agency_id: str = Field(description="Accepting agency.")
    handover_lead: bool = Field(description="The accepting agency now leads the case.")
    accepted_at: datetime = Field(description="When.")


@registry.event(PREFIX + "ReferralDeclined", 1)
class ReferralDeclined(EventPayload):
    referral_id: str = Field(description="Referral stream id.")
    person_id: PersonId = Field(description="The person referred.")
    reason_code: str = Field(
        pattern=r"^(not_eligible|no_capacity|wrong_agency|other)$",
        description="not_eligible, no_capacity, wrong_agency or other.",
    )
    declined_at: datetime = Field(description="When.")


@registry.event(PREFIX + "ReferralWithdrawn", 1)
class ReferralWithdrawn(EventPayload):
    referral_id: str = Field(description="Referral stream id.")
    person_id: PersonId = Field(description="The person referred.")
    withdrawn_at: datetime = Field(description="When.")


@registry.event(PREFIX + "ReferralCompleted", 1)
class ReferralCompleted(EventPayload):
    """The loop is closed: the outcome, and feedback to the referrer."""

    referral_id: str = Field(description="Referral stream id.")
    person_id: PersonId = Field(description="The person referred.")
    outcome: ReferralOutcome = Field(description="What came of it.")
    feedback: Sealed | None = Field(default=None, description="Feedback to the referrer, encrypted.")
    completed_at: datetime = Field(description="When.")


@registry.event(PREFIX + "ReferralOverdue", 1)
class ReferralOverdue(EventPayload):
    """No response by the due date; emitted once per referral."""

    referral_id: str = Field(description="Referral stream id.")
    from_agency_id: str = Field(description="Referring agency (whose overdue list it joins).")
    to_agency_id: str = Field(description="Agency that has not responded.")
    due_on: date = Field(description="The missed due date.")
    detected_at: datetime = Field(description="When the clock noticed.")


@registry.event(PREFIX + "MeetingScheduled", 1)
class MeetingScheduled(EventPayload):
    meeting_id: str = Field(description="Meeting stream id.")
    kind: MeetingKind = Field(description="four_party, support_meeting or multi_layered.")
    district_id: str | None = Field(default=None, description="District (four-party meetings).")
    scheduled_for: datetime = Field(description="When it will be held.")
    member_agency_ids: list[str] = Field(min_length=1, description="Invited agencies.")


@registry.event(PREFIX + "AgendaItemAdded", 1)
class AgendaItemAddedV1(EventPayload):
    # v1 kept its title in plaintext; it reads as v2 with the title in `legacy_title`.
    meeting_id: str = Field(description="Meeting stream id.")
    item_id: str = Field(description="Agenda item id.")
    kind: AgendaItemKind = Field(description="A case, or a district issue.")
    raised_by_agency_id: str = Field(description="Window that raised it.")
    title: str = Field(min_length=1, max_length=200, description="Short title; no personal data.")
    categories: list[ConsultationCategory] = Field(default_factory=list, description="Topics.")
    gap_need: bool = Field(default=False, description="A need no program owns (狭間のニーズ).")
    case_id: str | None = Field(default=None, description="For a case item.")
    person_id: PersonId | None = Field(default=None, description="For a case item.")
    consultation_id: str | None = Field(default=None, description="The consultation that raised it, if any.")


@registry.event(PREFIX + "MeetingHeld", 1)
class MeetingHeldV1(EventPayload):
    """Attendance and legal basis; support meetings share without consent under confidentiality."""

    # v1 kept the minutes in plaintext; it reads as v2 with them in `legacy_minutes_summary`.

    meeting_id: str = Field(description="Meeting stream id.")
    kind: MeetingKind = Field(description="Kind of meeting.")
    held_at: datetime = Field(description="When.")
    attendee_agency_ids: list[str] = Field(min_length=1, description="Agencies present.")
    legal_basis: LegalBasis = Field(description="Consent, or the support meeting's statutory basis.")
    confidentiality_acknowledged: bool = Field(description="Members acknowledged the duty of confidentiality.")
    person_ids: list[PersonId] = Field(default_factory=list, description="Persons discussed.")
    minutes_summary: str | None = Field(
        default=None, max_length=4000, description="Minutes; no personal data (cases are named by id)."
    )


@registry.event(PREFIX + "MeetingDecisionMade", 1)
class MeetingDecisionMadeV1(EventPayload):
    # v1 kept every decision's title in plaintext; it reads as v2 with it in `title`.
    meeting_id: str = Field(description="Meeting stream id.")
    decision_id: str = Field(description="Decision id.")
    item_id: str | None = Field(default=None, description="Agenda item decided on.")
    kind: DecisionKind = Field(description="develop_resource, escalate_to_branch_office, refer, keep_watching.")
    district_id: str | None = Field(default=None, description="District concerned.")
    title: str = Field(min_length=1, max_length=200, description="What was decided; no personal data.")
    categories: list[ConsultationCategory] = Field(default_factory=list, description="Topics.")
    gap_need: bool = Field(default=False, description="Taken up as a gap need.")
    branch_office_id: str | None = Field(default=None, description="For an escalation.")
    referral_id: str | None = Field(default=None, description="For a referral decision.")
    decided_at: datetime = Field(description="When.")


@registry.event(PREFIX + "ActionItemAssigned", 1)
class ActionItemAssignedV1(EventPayload):
    # v1 kept its title in plaintext; it reads as v2 with the title in `legacy_title`.
    meeting_id: str = Field(description="Meeting stream id.")
    action_id: str = Field(description="Action item id.")
    agency_id: str = Field(description="Who does it.")
    title: str = Field(min_length=1, max_length=200, description="What; no personal data.")
    due_on: date = Field(description="By when.")


@registry.event(PREFIX + "ActionItemDone", 1)
class ActionItemDone(EventPayload):
    meeting_id: str = Field(description="Meeting stream id.")
    action_id: str = Field(description="Action item id.")
    done_at: datetime = Field(description="When.")


@registry.event(PREFIX + "SupportPlanDecided", 1)
class SupportPlanDecided(EventPayload):
    """A multi-layered support meeting adopts or revises a case's plan; intake shows it on the case."""

    meeting_id: str = Field(description="Meeting stream id.")
    case_id: str = Field(description="The case.")
    person_id: PersonId = Field(description="The person.")
    revision: bool = Field(description="False: first plan adopted; True: plan revised.")
    goals: list[Sealed] = Field(default_factory=list, description="Goals, encrypted with the person's key.")
    review_due: date = Field(description="When to review.")
    decided_at: datetime = Field(description="When.")


@registry.event(PREFIX + "SupportDecided", 1)
class SupportDecided(EventPayload):
    """A multi-layered support meeting decides to start or end support."""

    meeting_id: str = Field(description="Meeting stream id.")
    case_id: str = Field(description="The case.")
    person_id: PersonId = Field(description="The person.")
    decision: str = Field(pattern=r"^(start|end)$", description="start or end.")
    decided_at: datetime = Field(description="When.")


# -- v2: the meetings' free text sealed ---------------------------------------------------
#
# Minutes, agenda titles, decisions and action titles are free text and staff do write names,
# addresses and diagnoses in them. From v2 they travel sealed: with the key of the person the
# text is about (an item about a case or a person), so the person's erasure makes every copy
# unreadable, or with the meeting's own key (`<keyring>/<meeting id>/1`), readable by the
# meeting's members in the referral service only. v1 events stay readable through the
# upcasters below, their old plaintext in a `legacy_*` field that v2 writers never set.

SEALED_TEXT_NOTE = "Encrypted with the person's key (text about a person) or the meeting's key."


@registry.event(PREFIX + "AgendaItemAdded", 2)
class AgendaItemAdded(EventPayload):
    meeting_id: str = Field(description="Meeting stream id.")
    item_id: str = Field(description="Agenda item id.")
    kind: AgendaItemKind = Field(description="A case, or a district issue.")
    raised_by_agency_id: str = Field(description="Window that raised it.")
    title: Sealed | None = Field(default=None, description="Short title. " + SEALED_TEXT_NOTE)
    legacy_title: str | None = Field(
        default=None, max_length=200, description="Only on events stored as v1: their plaintext title."
    )
    categories: list[ConsultationCategory] = Field(default_factory=list, description="Topics.")
    gap_need: bool = Field(default=False, description="A need no program owns (狭間のニーズ).")
    case_id: str | None = Field(default=None, description="For a case item.")
    person_id: PersonId | None = Field(default=None, description="For a case item.")
    consultation_id: str | None = Field(default=None, description="The consultation that raised it, if any.")


@registry.upcaster(PREFIX + "AgendaItemAdded", from_version=1)
def _agenda_item_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    title = data.pop("title", None)
    return {**data, "title": None, "legacy_title": title}


@registry.event(PREFIX + "MeetingHeld", 2)
class MeetingHeld(EventPayload):
    """Attendance and legal basis; support meetings share without consent under confidentiality."""

    meeting_id: str = Field(description="Meeting stream id.")
    kind: MeetingKind = Field(description="Kind of meeting.")
    held_at: datetime = Field(description="When.")
    attendee_agency_ids: list[str] = Field(min_length=1, description="Agencies present.")
    legal_basis: LegalBasis = Field(description="Consent, or the support meeting's statutory basis.")
    confidentiality_acknowledged: bool = Field(description="Members acknowledged the duty of confidentiality.")
    person_ids: list[PersonId] = Field(default_factory=list, description="Persons discussed.")
    minutes_summary: Sealed | None = Field(
        default=None, description="Minutes, encrypted with the meeting's key (members only)."
    )
    legacy_minutes_summary: str | None = Field(
        default=None, max_length=4000, description="Only on events stored as v1: their plaintext minutes."
    )


@registry.upcaster(PREFIX + "MeetingHeld", from_version=1)
def _meeting_held_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    minutes = data.pop("minutes_summary", None)
    return {**data, "minutes_summary": None, "legacy_minutes_summary": minutes}


@registry.event(PREFIX + "MeetingDecisionMade", 2)
class MeetingDecisionMade(EventPayload):
    """`title` is public only for a district's develop_resource decision about no person, which
    resources turns into a district issue; every other decision's text is in `sealed_title`."""

    meeting_id: str = Field(description="Meeting stream id.")
    decision_id: str = Field(description="Decision id.")
    item_id: str | None = Field(default=None, description="Agenda item decided on.")
    kind: DecisionKind = Field(description="develop_resource, escalate_to_branch_office, refer, keep_watching.")
    district_id: str | None = Field(default=None, description="District concerned.")
    title: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Public title of a develop_resource decision about no person (the district issue's title).",
    )
    sealed_title: Sealed | None = Field(default=None, description="What was decided. " + SEALED_TEXT_NOTE)
    categories: list[ConsultationCategory] = Field(default_factory=list, description="Topics.")
    gap_need: bool = Field(default=False, description="Taken up as a gap need.")
    branch_office_id: str | None = Field(default=None, description="For an escalation.")
    referral_id: str | None = Field(default=None, description="For a referral decision.")
    decided_at: datetime = Field(description="When.")


@registry.upcaster(PREFIX + "MeetingDecisionMade", from_version=1)
def _decision_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "sealed_title": None}


@registry.event(PREFIX + "ActionItemAssigned", 2)
class ActionItemAssigned(EventPayload):
    meeting_id: str = Field(description="Meeting stream id.")
    action_id: str = Field(description="Action item id.")
    agency_id: str = Field(description="Who does it (a member agency of the meeting).")
    item_id: str | None = Field(default=None, description="The agenda item it follows from, if any.")
    title: Sealed | None = Field(default=None, description="What. " + SEALED_TEXT_NOTE)
    legacy_title: str | None = Field(
        default=None, max_length=200, description="Only on events stored as v1: their plaintext title."
    )
    due_on: date = Field(description="By when.")


@registry.upcaster(PREFIX + "ActionItemAssigned", from_version=1)
def _action_item_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    title = data.pop("title", None)
    return {**data, "title": None, "legacy_title": title}
