"""Request and response bodies of the HTTP API (OpenAPI at /openapi.json).

Limits mirror the event contracts so a request the API accepts can always become
an event; dates are bounded to the fiscal years the contracts accept.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from tsunagu_events.contracts.common import ConsultationCategory
from tsunagu_events.contracts.resources import (
    InitiativeKind,
    IssueSource,
    PlaceKind,
    ResourceKind,
    ResourceStatus,
    Schedule,
    VisitCategory,
)

NO_NUL = r"^[^\x00]*$"
ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
PERSON_ID = r"^person-[A-Za-z0-9-]{1,100}$"
FIRST_DAY = date(2000, 4, 1)
LAST_DAY = date(2100, 12, 31)


def _in_range(day: date) -> date:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"date must be between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}")
    return day


Day = Annotated[date, AfterValidator(_in_range)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Versioned(Body):
    expected_version: int | None = Field(
        default=None, ge=0, le=1_000_000, description="Version you read; 409 when someone changed it since."
    )


# ---- directory ---------------------------------------------------------------------------


class RegisterResourceIn(Body):
    district_id: str = Field(pattern=ID, examples=["ikejiri"], description="District (reference data), e.g. ikejiri.")
    kind: ResourceKind = Field(description="Kind from the seed: salon, mini_day, school, facility, nursery…")
    organization_name: str = Field(min_length=1, max_length=200, pattern=NO_NUL, description="HSDS organization.name.")
    service_name: str = Field(min_length=1, max_length=200, pattern=NO_NUL, description="HSDS service.name.")
    description: str | None = Field(default=None, max_length=2000, pattern=NO_NUL, description="What it offers.")
    address: str | None = Field(default=None, max_length=300, pattern=NO_NUL, description="Where (a place).")
    schedule: Schedule | None = Field(default=None, description="When it runs.")
    eligibility: str | None = Field(default=None, max_length=500, pattern=NO_NUL, description="Who may take part.")
    capacity: int | None = Field(default=None, ge=0, le=1_000_000, description="How many people it can take.")
    status: ResourceStatus = Field(default=ResourceStatus.ACTIVE, description="Status at registration.")
    effective_on: Day = Field(description="Date from which the status holds.")


class ChangeDetailsIn(Versioned):
    service_name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL, description="Name.")
    description: str | None = Field(default=None, max_length=2000, pattern=NO_NUL, description="Description.")
    schedule: Schedule | None = Field(default=None, description="Schedule.")
    eligibility: str | None = Field(default=None, max_length=500, pattern=NO_NUL, description="Eligibility.")
    capacity: int | None = Field(default=None, ge=0, le=1_000_000, description="Capacity.")


class ChangeStatusIn(Versioned):
    status: ResourceStatus = Field(description="active, inactive, temporarily_closed or defunct.")
    effective_on: Day = Field(description="Date from which it holds (may be in the past).")


class VerifyIn(Versioned):
    verified_on: Day = Field(description="When someone checked the entry; the checker is the caller's agency.")


class IdentifyIn(Versioned):
    identified_on: Day = Field(description="資源把握: when its capacity and needs were recorded.")


class Labelled(BaseModel):
    value: str = Field(description="Identifier.")
    label_ja: str = Field(description="Japanese label for staff.")


class ResourceOut(BaseModel):
    resource_id: str = Field(description="Resource stream id.")
    version: int = Field(description="Stream version; send it back as expected_version.")
    district_id: str = Field(description="District.")
    kind: Labelled = Field(description="Kind.")
    organization_name: str = Field(description="Organisation.")
    service_name: str = Field(description="Service.")
    description: str | None = Field(description="Description.")
    address: str | None = Field(description="Address of the place.")
    schedule: Schedule | None = Field(description="Schedule.")
    eligibility: str | None = Field(description="Eligibility.")
    capacity: int | None = Field(description="Capacity.")
    status: Labelled = Field(description="Current status.")
    status_since: date = Field(description="Date the current status took effect.")
    last_verified_on: date | None = Field(description="When someone last checked the entry.")
    last_verified_by: str | None = Field(description="Agency that checked it.")
    identified_on: date | None = Field(description="資源把握 date.")


class ResourceSummary(BaseModel):
    resource_id: str = Field(description="Resource stream id.")
    district_id: str = Field(description="District.")
    kind: str = Field(description="Kind.")
    organization_name: str = Field(description="Organisation.")
    service_name: str = Field(description="Service.")
    status: str = Field(description="Status now.")
    status_label_ja: str = Field(description="Status in Japanese.")
    last_verified_on: date | None = Field(description="Last verification.")


class ActiveOnOut(BaseModel):
    district_id: str = Field(description="District.")
    on: date = Field(description="The date asked about.")
    resources: list[ResourceSummary] = Field(description="Resources active on that date.")


# ---- visits and places -------------------------------------------------------------------


class RecordVisitIn(Body):
    district_id: str = Field(pattern=ID, examples=["ikejiri"], description="District visited.")
    category: VisitCategory = Field(description="The seed's visit column.")
    resource_id: str | None = Field(default=None, pattern=ID, description="The resource, when in the directory.")
    visited_on: Day = Field(description="Date of the visit.")
    findings: list[Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]] = Field(
        default_factory=list, max_length=20, description="Codes, e.g. shortage_of_activity_staff, needs_venue."
    )
    follow_up: str | None = Field(default=None, max_length=1000, pattern=NO_NUL, description="Agreed follow-up.")


class RecordVisitsIn(Body):
    visits: list[RecordVisitIn] = Field(
        min_length=1, max_length=500, description="A survey round's visits, recorded together or not at all."
    )


class VisitOut(BaseModel):
    visit_id: str = Field(description="Visit stream id.")
    district_id: str = Field(description="District.")
    category: Labelled = Field(description="Visit column.")
    resource_id: str | None = Field(description="Resource.")
    visited_on: date = Field(description="Date.")
    findings: list[Labelled] = Field(description="Findings.")
    follow_up: str | None = Field(description="Follow-up.")


class VisitCounts(BaseModel):
    district_id: str | None = Field(description="District, or all.")
    fiscal_year: int | None = Field(description="Fiscal year, or all.")
    by_category: dict[str, int] = Field(description="Visits per category.")
    total: int = Field(description="All visits.")


class OfferPlaceIn(Body):
    resource_id: str = Field(pattern=ID, description="Resource offering the place.")
    kind: PlaceKind = Field(description="room, hall, garden, farm, kitchen, other.")
    conditions: str | None = Field(default=None, max_length=1000, pattern=NO_NUL, description="Conditions of use.")
    offered_on: Day = Field(description="Date.")


class UsePlaceIn(Versioned):
    activity: str = Field(min_length=1, max_length=200, pattern=NO_NUL, description="Which activity used it.")
    used_on: Day = Field(description="Date.")
    participants: int | None = Field(default=None, ge=0, le=100_000, description="How many took part.")


class PlaceUseOut(BaseModel):
    use_id: str = Field(description="Id of the use.")
    activity: str = Field(description="Activity.")
    used_on: date = Field(description="Date.")
    participants: int | None = Field(description="Participants.")


class PlaceOut(BaseModel):
    place_id: str = Field(description="Place stream id.")
    version: int = Field(description="Stream version.")
    resource_id: str = Field(description="Resource offering it.")
    district_id: str = Field(description="District.")
    kind: Labelled = Field(description="Kind of place.")
    conditions: str | None = Field(description="Conditions.")
    offered_on: date = Field(description="Date offered.")
    uses: list[PlaceUseOut] = Field(description="場の活用実績.")


# ---- issues and initiatives --------------------------------------------------------------


class RaiseIssueIn(Body):
    district_id: str = Field(pattern=ID, examples=["ikejiri"], description="District.")
    title: str = Field(min_length=1, max_length=200, pattern=NO_NUL, description="The issue; no personal data.")
    categories: list[ConsultationCategory] = Field(default_factory=list, max_length=14, description="Topics.")
    gap_need: bool = Field(default=False, description="A gap need (狭間のニーズ).")
    raised_on: Day = Field(description="Date of the district assessment.")


class TakeUpIn(Versioned):
    taken_up_on: Day = Field(description="When the tier-2 council (第2層協議体) took it up.")


class IssueOut(BaseModel):
    issue_id: str = Field(description="Issue stream id.")
    version: int = Field(description="Stream version.")
    district_id: str = Field(description="District.")
    title: str = Field(description="Issue.")
    source: Labelled = Field(description="Meeting decision or district assessment.")
    categories: list[Labelled] = Field(description="Topics.")
    gap_need: bool = Field(description="Gap need.")
    meeting_id: str | None = Field(description="Meeting, for a meeting decision.")
    decision_id: str | None = Field(description="Decision, for a meeting decision.")
    raised_on: date = Field(description="Date.")
    state: str = Field(description="raised or taken_up.")
    taken_up_on: date | None = Field(description="When the tier-2 council took it up.")


class IssueSummary(BaseModel):
    issue_id: str = Field(description="Issue stream id.")
    district_id: str = Field(description="District.")
    title: str = Field(description="Issue.")
    source: IssueSource = Field(description="Source.")
    decision_id: str | None = Field(description="Meeting decision.")
    state: str = Field(description="raised or taken_up.")
    raised_on: date = Field(description="Date.")


class LaunchInitiativeIn(Body):
    district_id: str = Field(pattern=ID, examples=["ikejiri"], description="District.")
    issue_id: str | None = Field(default=None, pattern=ID, description="The district issue it answers.")
    kind: InitiativeKind = Field(description="Kind.")
    title: str = Field(min_length=1, max_length=200, pattern=NO_NUL, description="e.g. 買物支援マップ.")
    resource_ids: list[Annotated[str, Field(pattern=ID)]] = Field(
        default_factory=list, max_length=50, description="Resources it uses."
    )
    launched_on: Day = Field(description="Date.")


class ProgressIn(Versioned):
    note: str = Field(min_length=1, max_length=2000, pattern=NO_NUL, description="Progress; no personal data.")
    participants: int | None = Field(default=None, ge=0, le=100_000, description="Participants this time.")
    on: Day = Field(description="Date.")


class ConcludeIn(Versioned):
    concluded_on: Day = Field(description="Date.")
    outcome: str = Field(max_length=2000, pattern=NO_NUL, description="What it achieved; no personal data.")


class ProgressOut(BaseModel):
    note: str = Field(description="Progress.")
    participants: int | None = Field(description="Participants.")
    on: date = Field(description="Date.")


class InitiativeOut(BaseModel):
    initiative_id: str = Field(description="Initiative stream id.")
    version: int = Field(description="Stream version.")
    district_id: str = Field(description="District.")
    issue_id: str | None = Field(description="District issue.")
    kind: Labelled = Field(description="Kind.")
    title: str = Field(description="Title.")
    resource_ids: list[str] = Field(description="Resources it uses.")
    launched_on: date = Field(description="Date.")
    state: str = Field(description="launched, in_progress or concluded.")
    progress: list[ProgressOut] = Field(description="Progress notes.")
    concluded_on: date | None = Field(description="Date concluded.")
    outcome: str | None = Field(description="Outcome.")


# ---- participation -----------------------------------------------------------------------


class StartParticipationIn(Body):
    person_id: str = Field(pattern=PERSON_ID, description="Pseudonymous id from intake (person-<uuid>); no names.")
    resource_id: str = Field(pattern=ID, description="Resource.")
    place_id: str | None = Field(default=None, pattern=ID, description="A specific usable place of the resource.")
    started_on: Day = Field(description="Date.")


class AttendanceIn(Versioned):
    attended_on: Day = Field(description="Date attended.")


class EndParticipationIn(Versioned):
    ended_on: Day = Field(description="Date.")
    reason: str = Field(
        pattern=r"^(settled|moved_on|health|declined|consent_withdrawn|resource_closed|other)$",
        description="settled, moved_on, health, declined, consent_withdrawn, resource_closed, other.",
    )


class ParticipationOut(BaseModel):
    participation_id: str = Field(description="Participation stream id.")
    version: int = Field(description="Stream version.")
    person_id: str = Field(description="Pseudonymous person id.")
    resource_id: str = Field(description="Resource.")
    place_id: str | None = Field(description="Place.")
    district_id: str = Field(description="District.")
    consent_id: str = Field(description="The consent relied on.")
    started_on: date = Field(description="Date.")
    attended: list[date] = Field(description="Attendance.")
    state: str = Field(description="active or ended.")
    ended_on: date | None = Field(description="Date ended.")
    end_reason: Labelled | None = Field(description="Why it ended.")


# ---- publicity and training --------------------------------------------------------------


class NewsletterIn(Versioned):
    sent_on: Day = Field(description="Date the issue was sent.")


class SubscribersIn(Versioned):
    delta: int = Field(ge=-1_000_000, le=1_000_000, description="Change in subscribers (+/-), not zero.")
    on: Day = Field(description="Date.")


class GroupIn(Versioned):
    group_name: str = Field(min_length=1, max_length=200, pattern=NO_NUL, description="The group (an organisation).")
    introduced_on: Day = Field(description="Date.")


class GroupOut(BaseModel):
    group_id: str = Field(description="Id of the introduction.")
    group_name: str = Field(description="Group.")
    introduced_on: date = Field(description="Date.")


class PublicityOut(BaseModel):
    district_id: str = Field(description="District.")
    version: int = Field(description="Stream version.")
    newsletter_issues_sent: int = Field(description="Issues sent (the last issue number).")
    subscribers: int = Field(description="Subscribers now.")
    groups: list[GroupOut] = Field(description="Groups introduced on the district page.")


class TrainingIn(Body):
    title: str = Field(min_length=1, max_length=200, pattern=NO_NUL, description="Title.")
    held_on: Day = Field(description="Date.")
    participants: int = Field(ge=0, le=100_000, description="How many took part.")
    organiser: str = Field(
        pattern=r"^(council|metropolis|ward|other)$", description="council, metropolis, ward, other."
    )


class TrainingOut(BaseModel):
    session_id: str = Field(description="Training stream id.")
    title: str = Field(description="Title.")
    held_on: date = Field(description="Date.")
    participants: int = Field(description="Participants.")
    organiser: Labelled = Field(description="Organiser.")


HsdsDocument = dict[str, Any]
