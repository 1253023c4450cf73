"""Request and response bodies of the HTTP API (English field names, Japanese labels for staff)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from tsunagu_events.contracts.common import ConsultationCategory, LegalBasis
from tsunagu_events.contracts.referral import AgendaItemKind, DecisionKind, MeetingKind, ReferralOutcome

ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"


def _plausible_day(value: date) -> date:
    if not 2000 <= value.year <= 2100:
        raise ValueError("year must be between 2000 and 2100")
    return value


def _plausible_moment(value: datetime) -> datetime:
    if not 2000 <= value.year <= 2100:
        raise ValueError("year must be between 2000 and 2100")
    return value


Day = Annotated[date, AfterValidator(_plausible_day)]
Moment = Annotated[AwareDatetime, AfterValidator(_plausible_moment)]
Id = Annotated[str, Field(pattern=ID_PATTERN)]
AgencyId = Annotated[str, Field(pattern=r"^[a-z0-9_.]{1,64}$", description="Agency id from the ward's reference data.")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReferralRequest(Body):
    person_id: Id = Field(description="The person referred (pseudonymous id from intake).")
    to_agency_id: AgencyId = Field(description="Receiving agency (a window, a branch office, a specialist agency).")
    from_agency_id: AgencyId | None = Field(default=None, description="Referring agency; defaults to the caller's.")
    categories: list[ConsultationCategory] = Field(min_length=1, max_length=14, description="What it is about.")
    due_on: Day = Field(description="Respond by this date (Japan time), or the referral becomes overdue.")
    legal_basis: LegalBasis = Field(
        default=LegalBasis.CONSENT, description="consent, or support_meeting_statutory with a meeting_id."
    )
    meeting_id: Id | None = Field(
        default=None, description="The support meeting (支援会議) under whose basis it is made."
    )
    case_id: Id | None = Field(default=None, description="The person's companion-support case, if any.")
    reason: str | None = Field(default=None, max_length=4000, description="Reason in words; stored encrypted.")
    handover_lead: bool = Field(default=False, description="On acceptance, the receiving agency leads the case.")
    referral_id: Annotated[str, Field(pattern=r"^referral-[0-9a-f\-]{36}$")] | None = Field(
        default=None, description="Client-chosen id (referral-<uuid>) so a retried request cannot create two."
    )


class DeclineRequest(Body):
    reason_code: Literal["not_eligible", "no_capacity", "wrong_agency", "other"] = Field(
        description="Why it is declined."
    )


class CompleteRequest(Body):
    outcome: ReferralOutcome = Field(description="What came of it.")
    feedback: str | None = Field(
        default=None, max_length=4000, description="Feedback to the referrer; stored encrypted."
    )


class ReferralView(BaseModel):
    referral_id: str = Field(description="Referral id.")
    person_id: str = Field(description="The person referred.")
    case_id: str | None = Field(description="Their case, if any.")
    from_agency_id: str = Field(description="Referring agency.")
    from_agency_label_ja: str | None = Field(description="Referring agency, in Japanese.")
    to_agency_id: str = Field(description="Receiving agency.")
    to_agency_label_ja: str | None = Field(description="Receiving agency, in Japanese.")
    categories: list[ConsultationCategory] = Field(description="Topics.")
    category_labels_ja: list[str] = Field(description="Topics, in Japanese.")
    legal_basis: str = Field(description="consent or support_meeting_statutory.")
    legal_basis_label_ja: str = Field(description="Legal basis, in Japanese.")
    meeting_id: str | None = Field(default=None, description="The support meeting for a statutory referral.")
    handover_lead: bool = Field(description="The receiving agency leads the case on acceptance.")
    state: str = Field(description="requested, accepted, declined, withdrawn or completed.")
    state_label_ja: str = Field(description="State, in Japanese.")
    due_on: date = Field(description="Due date.")
    overdue: bool = Field(description="No response by the due date.")
    outcome: str | None = Field(default=None, description="Outcome, once completed.")
    outcome_label_ja: str | None = Field(default=None, description="Outcome, in Japanese.")
    decline_reason: str | None = Field(default=None, description="Reason code, when declined.")
    version: int = Field(description="Stream version (for concurrency).")
    reason: str | None = Field(default=None, description="Reason in words (detail view only; None once erased).")
    feedback: str | None = Field(default=None, description="Feedback to the referrer (detail view only).")
    text_withheld: bool = Field(
        default=False, description="Reason and feedback withheld: the caller may not read personal text (auditors)."
    )


class MeetingRequest(Body):
    kind: MeetingKind = Field(description="four_party, support_meeting or multi_layered.")
    scheduled_for: Moment = Field(description="When it will be held (with time zone).")
    district_id: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")] | None = Field(
        default=None, description="District (required for four_party)."
    )
    member_agency_ids: list[AgencyId] = Field(
        default_factory=list,
        max_length=50,
        description="Invited agencies; a four-party meeting defaults to the district's four windows.",
    )


class AgendaItemRequest(Body):
    kind: AgendaItemKind = Field(description="case or district_issue.")
    raised_by_agency_id: AgencyId | None = Field(
        default=None, description="Window raising it; defaults to the caller's."
    )
    title: str = Field(
        min_length=1,
        max_length=200,
        description="Short title; stored encrypted (with the person's key for an item about a person).",
    )
    categories: list[ConsultationCategory] = Field(default_factory=list, max_length=14, description="Topics.")
    gap_need: bool = Field(default=False, description="A need no program owns (狭間のニーズ).")
    case_id: Id | None = Field(default=None, description="For a case item.")
    person_id: Id | None = Field(default=None, description="For a case item.")
    consultation_id: Id | None = Field(default=None, description="The consultation that raised it, if any.")


class HoldRequest(Body):
    attendee_agency_ids: list[AgencyId] = Field(min_length=1, max_length=50, description="Agencies present.")
    confidentiality_acknowledged: bool = Field(default=False, description="Members acknowledged confidentiality.")
    person_ids: list[Id] = Field(default_factory=list, max_length=50, description="Persons discussed.")
    minutes_summary: str | None = Field(
        default=None, max_length=4000, description="Minutes; stored encrypted, readable by the members only."
    )


class DecisionRequest(Body):
    kind: DecisionKind = Field(description="develop_resource, escalate_to_branch_office, refer or keep_watching.")
    title: str = Field(
        min_length=1,
        max_length=200,
        description="What was decided; stored encrypted, except a develop_resource decision about no person "
        "(it becomes the district issue's title in resources).",
    )
    item_id: Id | None = Field(default=None, description="Agenda item decided on.")
    categories: list[ConsultationCategory] = Field(default_factory=list, max_length=14, description="Topics.")
    gap_need: bool = Field(default=False, description="Taken up as a gap need.")
    branch_office_id: AgencyId | None = Field(
        default=None, description="For an escalation; defaults to the district's."
    )
    referral_id: Id | None = Field(default=None, description="For a referral decision.")


class ActionItemRequest(Body):
    agency_id: AgencyId = Field(description="Who does it (a member agency of the meeting).")
    title: str = Field(min_length=1, max_length=200, description="What; stored encrypted.")
    due_on: Day = Field(description="By when.")
    item_id: Id | None = Field(
        default=None, description="The agenda item it follows from (its person's key seals the title)."
    )


class SupportPlanRequest(Body):
    case_id: Id = Field(description="The case.")
    person_id: Id = Field(description="The person (discussed at the meeting with consent).")
    action: Literal["adopt", "revise"] = Field(description="adopt the first plan, or revise it.")
    goals: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        default_factory=list, max_length=20, description="Goals in the person's words; stored encrypted."
    )
    review_due: Day = Field(description="When to review the plan.")


class SupportDecisionRequest(Body):
    case_id: Id = Field(description="The case.")
    person_id: Id = Field(description="The person.")
    decision: Literal["start", "end"] = Field(description="start or end support.")


class ActionItemView(BaseModel):
    action_id: str = Field(description="Action item id.")
    meeting_id: str = Field(description="Meeting it came from.")
    agency_id: str = Field(description="Who does it.")
    title: str | None = Field(description="What (None when not readable by the caller, or erased).")
    due_on: date = Field(description="By when.")
    done: bool = Field(description="Done.")


class AgendaItemView(BaseModel):
    item_id: str = Field(description="Agenda item id.")
    kind: str = Field(description="case or district_issue.")
    title: str | None = Field(description="Title (detail view for members only; None once erased).")
    gap_need: bool = Field(description="Gap need.")


class MeetingView(BaseModel):
    meeting_id: str = Field(description="Meeting id.")
    kind: str = Field(description="Kind.")
    kind_label_ja: str = Field(description="Kind, in Japanese.")
    district_id: str | None = Field(description="District.")
    state: str = Field(description="scheduled or held.")
    state_label_ja: str = Field(description="State, in Japanese.")
    member_agency_ids: list[str] = Field(description="Invited agencies.")
    attendee_agency_ids: list[str] = Field(description="Agencies present.")
    legal_basis: str | None = Field(description="Legal basis once held.")
    legal_basis_label_ja: str | None = Field(description="Legal basis, in Japanese.")
    agenda: list[AgendaItemView] = Field(description="Agenda items.")
    decisions: list[str] = Field(description="Decision ids.")
    action_items: list[ActionItemView] = Field(description="Action items.")
    minutes_summary: str | None = Field(default=None, description="Minutes (detail view for members only).")
    text_withheld: bool = Field(
        default=False, description="Minutes and titles withheld: the caller may not read them (auditors)."
    )
    version: int = Field(description="Stream version.")
    created_id: str | None = Field(
        default=None, description="Id of what the last command created (item, decision, action)."
    )


class MeetingSummary(BaseModel):
    meeting_id: str = Field(description="Meeting id.")
    kind: str = Field(description="Kind.")
    kind_label_ja: str = Field(description="Kind, in Japanese.")
    district_id: str | None = Field(description="District.")
    state: str = Field(description="scheduled or held.")
    scheduled_for: datetime = Field(description="When.")


class OverdueRun(BaseModel):
    emitted: int = Field(description="ReferralOverdue events emitted by this run.")


class ConsentStatus(BaseModel):
    person_id: str = Field(description="The person.")
    has_consent: bool = Field(description="A live consent is on record.")
    consent_ids: list[str] = Field(description="Live consents.")
    erased: bool = Field(description="The person was erased.")
