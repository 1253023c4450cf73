"""Events the intake service publishes on `tsunagu.intake.events`.

Intake is the front door: consultations at every window (断らない相談), persons and
households, consent, and companion-support (伴走型支援) cases. Other services learn
about persons, cases and consent only from these events.

Streams: `consultation-<uuid>`, `person-<uuid>`, `household-<uuid>`, `case-<uuid>`.
Personal fields are `Sealed` (encrypted per person); everything else is safe to
count, index and show in headers-free tooling.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from tsunagu_events.contracts.common import ConsultationCategory, LegalBasis, PersonId, Sealed
from tsunagu_events.registry import EventPayload, registry

PREFIX = "tsunagu.intake."


class Channel(StrEnum):
    WALK_IN = "walk_in"
    PHONE = "phone"
    HOME_VISIT = "home_visit"
    OUTREACH = "outreach"
    ONLINE = "online"
    POP_UP_EVENT = "pop_up_event"


class ConsultedBy(StrEnum):
    PERSON = "person"
    FAMILY = "family"
    NEIGHBOUR = "neighbour"
    MINSEI_IIN = "minsei_iin"
    AGENCY = "agency"


class Outcome(StrEnum):
    INFORMATION_GIVEN = "information_given"
    CONTINUED_SUPPORT = "continued_support"
    REFERRED = "referred"
    FOUR_PARTY_MEETING = "four_party_meeting"


class ConsentScope(StrEnum):
    FOUR_WINDOWS = "four_windows"
    """Share among the four windows of the person's district."""
    NAMED_AGENCIES = "named_agencies"
    REFERRAL = "referral"
    PARTICIPATION = "participation"
    """Match the person to a local resource (participation support, 参加支援)."""


class Approach(StrEnum):
    PROBLEM_SOLVING = "problem_solving"
    STAYING_CONNECTED = "staying_connected"
    BOTH = "both"


class ContactKind(StrEnum):
    HOME_VISIT = "home_visit"
    CALL = "call"
    ACCOMPANYING = "accompanying"
    OUTREACH = "outreach"
    ONLINE = "online"
    WALK_IN = "walk_in"


class HouseholdSituation(StrEnum):
    EIGHT_ZERO_FIVE_ZERO = "8050"
    DOUBLE_CARE = "double_care"
    OTHER = "other"


class Via(StrEnum):
    HTTP = "http"
    AGENCY_INBOUND = "agency_inbound"


@registry.event(PREFIX + "ConsultationReceived", 1)
class ConsultationReceived(EventPayload):
    """A consultation at a window, of any topic; no one is turned away (断らない相談)."""

    consultation_id: str = Field(description="Stream id of the consultation.")
    window_id: str = Field(description="Agency id of the window, e.g. ikejiri.community_center.")
    window_type: str = Field(description="community_center, comprehensive_support_center, welfare_council_office…")
    district_id: str = Field(description="District of the window.")
    area_id: str = Field(description="Area (branch office) of the district.")
    received_at: datetime = Field(description="When the consultation was received.")
    fiscal_year: int = Field(ge=2000, le=2100, description="Japanese fiscal year of received_at (Japan time).")
    channel: Channel = Field(description="How it came in.")
    consulted_by: ConsultedBy = Field(description="Who consulted.")
    categories: list[ConsultationCategory] = Field(min_length=1, description="Every topic raised (several at once).")
    expanded: bool = Field(
        description="相談拡充: a comprehensive support center consultation in a non-elderly category."
    )
    compound_need: bool = Field(description="Needs from two or more domains (複合化).")
    gap_need: bool = Field(default=False, description="Staff marked a need no program owns (狭間のニーズ).")
    person_id: PersonId | None = Field(default=None, description="The person, when known.")
    summary: Sealed | None = Field(default=None, description="Free-text summary, encrypted with the person's key.")
    outcome: Outcome = Field(description="What came of it.")
    via: Via = Field(default=Via.HTTP, description="Entered by staff over HTTP or published by an agency system.")
    agency_event: str | None = Field(default=None, description="source + id of the agency event, when via agency.")


@registry.event(PREFIX + "ConsultationReclassified", 1)
class ConsultationReclassified(EventPayload):
    """A correction of the categories; derived flags are recomputed, never typed."""

    consultation_id: str = Field(description="Consultation stream id.")
    categories: list[ConsultationCategory] = Field(min_length=1, description="The corrected categories.")
    expanded: bool = Field(description="Recomputed 相談拡充 flag.")
    compound_need: bool = Field(description="Recomputed compound-need flag.")


@registry.event(PREFIX + "ConsultationOutcomeChanged", 1)
class ConsultationOutcomeChanged(EventPayload):
    consultation_id: str = Field(description="Consultation stream id.")
    outcome: Outcome = Field(description="The new outcome.")


@registry.event(PREFIX + "GapNeedMarked", 1)
class GapNeedMarked(EventPayload):
    """Staff say no program owns this need, so the four-party meeting can take it up."""

    consultation_id: str = Field(description="Consultation stream id.")
    district_id: str = Field(description="District of the consultation.")
    categories: list[ConsultationCategory] = Field(min_length=1, description="Categories of the consultation.")
    marked: bool = Field(default=True, description="False when the mark is taken back.")


@registry.event(PREFIX + "PersonRegistered", 1)
class PersonRegistered(EventPayload):
    person_id: PersonId = Field(description="Pseudonymous id.")
    district_id: str | None = Field(default=None, description="District of residence, when known.")
    name: Sealed = Field(description="Name, encrypted.")
    kana: Sealed | None = Field(default=None, description="Name in kana, encrypted.")
    birth_date: Sealed | None = Field(default=None, description="Birth date (ISO), encrypted.")
    address: Sealed | None = Field(default=None, description="Address, encrypted.")
    phone: Sealed | None = Field(default=None, description="Phone number, encrypted.")


@registry.event(PREFIX + "PersonDetailsCorrected", 1)
class PersonDetailsCorrected(EventPayload):
    person_id: PersonId = Field(description="Pseudonymous id.")
    district_id: str | None = Field(default=None, description="District of residence, when changed.")
    name: Sealed | None = Field(default=None, description="Corrected name, encrypted.")
    kana: Sealed | None = Field(default=None, description="Corrected kana, encrypted.")
    birth_date: Sealed | None = Field(default=None, description="Corrected birth date, encrypted.")
    address: Sealed | None = Field(default=None, description="Corrected address, encrypted.")
    phone: Sealed | None = Field(default=None, description="Corrected phone, encrypted.")


@registry.event(PREFIX + "PersonErased", 1)
class PersonErased(EventPayload):
    """The person's keys are destroyed. Every service destroys its own keys for the person on this event."""

    person_id: PersonId = Field(description="Pseudonymous id (kept, so counts and timelines keep their shape).")
    erased_at: datetime = Field(description="When the erasure took effect.")


@registry.event(PREFIX + "HouseholdLinked", 1)
class HouseholdLinked(EventPayload):
    """People living together whose needs belong together (8050, double care)."""

    household_id: str = Field(description="Household stream id.")
    person_ids: list[PersonId] = Field(min_length=2, description="Members.")
    situation: HouseholdSituation = Field(description="What binds their needs.")


@registry.event(PREFIX + "ConsentGiven", 1)
class ConsentGiven(EventPayload):
    consent_id: str = Field(description="Id of this consent.")
    person_id: PersonId = Field(description="Whose consent.")
    scope: ConsentScope = Field(description="What sharing it allows.")
    district_id: str | None = Field(default=None, description="For four_windows: the district whose windows share.")
    agency_ids: list[str] = Field(default_factory=list, description="For named_agencies/referral: the agencies.")
    referral_id: str | None = Field(default=None, description="For referral: the referral, when already known.")
    given_at: datetime = Field(description="When the person consented.")
    recorded_by_agency: str = Field(description="Agency that recorded it.")
    expires_on: date | None = Field(default=None, description="Last day it holds, if limited.")


@registry.event(PREFIX + "ConsentWithdrawn", 1)
class ConsentWithdrawn(EventPayload):
    consent_id: str = Field(description="The consent withdrawn.")
    person_id: PersonId = Field(description="Whose consent.")
    withdrawn_at: datetime = Field(description="When.")
    recorded_by_agency: str = Field(description="Agency that recorded it.")


@registry.event(PREFIX + "SharingBasisRecorded", 1)
class SharingBasisRecorded(EventPayload):
    """Information about a person shared without consent under a statutory basis (支援会議, 社会福祉法106条の6)."""

    person_id: PersonId = Field(description="About whom.")
    basis: LegalBasis = Field(description="The legal basis; never 'consent' here.")
    meeting_id: str | None = Field(default=None, description="The support meeting, when known.")
    agency_ids: list[str] = Field(default_factory=list, description="Who received the information.")
    recorded_at: datetime = Field(description="When.")


@registry.event(PREFIX + "CaseOpened", 1)
class CaseOpened(EventPayload):
    """A companion-support case (伴走型支援) opened from a consultation."""

    case_id: str = Field(description="Case stream id.")
    person_id: PersonId = Field(description="The person supported.")
    consultation_id: str | None = Field(default=None, description="The consultation it was opened from.")
    lead_agency_id: str = Field(description="Agency leading the support.")
    district_id: str = Field(description="District of the lead window or the person.")
    approach: Approach = Field(description="Problem-solving, staying-connected, or both.")
    opened_at: datetime = Field(description="When.")


@registry.event(PREFIX + "LeadAgencyHandedOver", 1)
class LeadAgencyHandedOver(EventPayload):
    case_id: str = Field(description="Case stream id.")
    from_agency_id: str = Field(description="Previous lead.")
    to_agency_id: str = Field(description="New lead.")
    referral_id: str | None = Field(default=None, description="The accepted referral it rode on, if any.")
    handed_over_at: datetime = Field(description="When.")


@registry.event(PREFIX + "ApproachChanged", 1)
class ApproachChanged(EventPayload):
    case_id: str = Field(description="Case stream id.")
    approach: Approach = Field(description="The new approach.")


class PlanGoal(BaseModel):
    """One goal of a support plan (not an event on its own)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    goal_id: str = Field(description="Stable id across plan versions.")
    text: Sealed = Field(description="The goal in the person's words, encrypted.")


@registry.event(PREFIX + "SupportPlanAdopted", 1)
class SupportPlanAdopted(EventPayload):
    """A new version of the case's support plan (支援プラン)."""

    case_id: str = Field(description="Case stream id.")
    plan_version: int = Field(ge=1, description="1 for the first plan, then 2, 3…")
    goals: list[PlanGoal] = Field(default_factory=list, description="Goals of this version.")
    review_due: date = Field(description="When the plan is to be reviewed.")
    adopted_at: datetime = Field(description="When.")
    meeting_id: str | None = Field(default=None, description="The multi-layered support meeting that decided it.")


@registry.event(PREFIX + "ContactRecorded", 1)
class ContactRecorded(EventPayload):
    """A moment of staying connected: visit, call, accompanying, outreach, online."""

    case_id: str = Field(description="Case stream id.")
    contact_id: str = Field(description="Id of the contact.")
    kind: ContactKind = Field(description="What kind of contact.")
    at: datetime = Field(description="When it happened.")
    agency_id: str = Field(description="Agency that made the contact.")
    note: Sealed | None = Field(default=None, description="Note about the person, encrypted.")
    via: Via = Field(default=Via.HTTP, description="Staff over HTTP or an agency system.")


@registry.event(PREFIX + "CaseReviewed", 1)
class CaseReviewed(EventPayload):
    case_id: str = Field(description="Case stream id.")
    reviewed_at: datetime = Field(description="When.")
    next_review_due: date = Field(description="Next review date.")
    note: Sealed | None = Field(default=None, description="Review note, encrypted.")


@registry.event(PREFIX + "CaseClosed", 1)
class CaseClosed(EventPayload):
    case_id: str = Field(description="Case stream id.")
    reason: str = Field(
        pattern=r"^(goals_met|moved_away|declined_support|deceased|transferred|other)$",
        description="Why: goals_met, moved_away, declined_support, deceased, transferred, other.",
    )
    closed_at: datetime = Field(description="When.")


@registry.event(PREFIX + "CaseReopened", 1)
class CaseReopened(EventPayload):
    case_id: str = Field(description="Case stream id.")
    reopened_at: datetime = Field(description="When.")
