"""Events the resources service publishes on `tsunagu.resources.events`.

The welfare council's resource development (地域資源開発): the directory of local
resources (modelled on Open Referral HSDS 3), visit surveys (訪問調査), resources
identified (資源把握), usable places (活用できる場) and their use (場の活用実績);
district issues taken up by the tier-2 council (第2層協議体) and the initiatives
launched for them; participation support (参加支援) linking a person to a place;
publicity (広報・啓発) and training (スキルアップ研修).

Streams: `resource-<uuid>`, `visit-<uuid>`, `place-<uuid>`, `issue-<uuid>`,
`initiative-<uuid>`, `participation-<uuid>`, `publicity-<district>`, `training-<uuid>`.
Resources are organisations, not persons: their fields are not personal data.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from tsunagu_events.contracts.common import ConsultationCategory, PersonId
from tsunagu_events.registry import EventPayload, registry

PREFIX = "tsunagu.resources."


class ResourceKind(StrEnum):
    SALON = "salon"
    MINI_DAY = "mini_day"
    SCHOOL = "school"
    FACILITY = "facility"
    NURSERY = "nursery"
    BUSINESS = "business"
    NPO = "npo"
    NEIGHBOURHOOD_ASSOCIATION = "neighbourhood_association"
    OTHER = "other"


class ResourceStatus(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    TEMPORARILY_CLOSED = "temporarily_closed"
    DEFUNCT = "defunct"


class VisitCategory(StrEnum):
    """The three visit columns of the seed's table."""

    SALON_MINI_DAY = "salon_mini_day"
    SCHOOL_FACILITY_NURSERY = "school_facility_nursery"
    BUSINESS_NPO = "business_npo"


VISIT_CATEGORY_LABELS_JA = {
    VisitCategory.SALON_MINI_DAY: "サロン、ミニデイ等",
    VisitCategory.SCHOOL_FACILITY_NURSERY: "学校・施設、保育園等",
    VisitCategory.BUSINESS_NPO: "事業者、NPO等",
}


class PlaceKind(StrEnum):
    ROOM = "room"
    HALL = "hall"
    GARDEN = "garden"
    FARM = "farm"
    KITCHEN = "kitchen"
    OTHER = "other"


class InitiativeKind(StrEnum):
    SHOPPING_SUPPORT_MAP = "shopping_support_map"
    DEMENTIA_CAFE = "dementia_cafe"
    PLACE_TO_BELONG = "place_to_belong"
    OUTREACH = "outreach"
    COURSE = "course"
    OTHER = "other"


class IssueSource(StrEnum):
    FOUR_PARTY_MEETING = "four_party_meeting"
    DISTRICT_ASSESSMENT = "district_assessment"


class Schedule(BaseModel):
    """HSDS schedule, simplified: when the service runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str = Field(max_length=500, description="e.g. 毎週水曜 13:30-15:30.")
    byday: list[str] = Field(default_factory=list, description="RFC 5545 days: MO, TU, WE…")


@registry.event(PREFIX + "ResourceRegistered", 1)
class ResourceRegistered(EventPayload):
    """A local resource enters the directory (HSDS organization + service + location)."""

    resource_id: str = Field(description="Resource stream id.")
    district_id: str = Field(description="District it belongs to.")
    kind: ResourceKind = Field(description="Kind from the seed.")
    organization_name: str = Field(min_length=1, max_length=200, description="HSDS organization.name.")
    service_name: str = Field(min_length=1, max_length=200, description="HSDS service.name.")
    description: str | None = Field(default=None, max_length=2000, description="HSDS service.description.")
    address: str | None = Field(
        default=None, max_length=300, description="HSDS location address (a place, not a person)."
    )
    schedule: Schedule | None = Field(default=None, description="When it runs.")
    eligibility: str | None = Field(default=None, max_length=500, description="Who may take part.")
    capacity: int | None = Field(default=None, ge=0, description="How many people it can take.")
    status: ResourceStatus = Field(default=ResourceStatus.ACTIVE, description="Status at registration.")
    effective_on: date = Field(description="Date from which the status holds.")


@registry.event(PREFIX + "ResourceDetailsChanged", 1)
class ResourceDetailsChanged(EventPayload):
    resource_id: str = Field(description="Resource stream id.")
    service_name: str | None = Field(default=None, max_length=200, description="New service name.")
    description: str | None = Field(default=None, max_length=2000, description="New description.")
    schedule: Schedule | None = Field(default=None, description="New schedule.")
    eligibility: str | None = Field(default=None, max_length=500, description="New eligibility.")
    capacity: int | None = Field(default=None, ge=0, description="New capacity.")


@registry.event(PREFIX + "ResourceStatusChanged", 1)
class ResourceStatusChanged(EventPayload):
    resource_id: str = Field(description="Resource stream id.")
    district_id: str = Field(description="District of the resource.")
    status: ResourceStatus = Field(description="New status.")
    effective_on: date = Field(description="Date from which it holds.")


@registry.event(PREFIX + "ResourceVerified", 1)
class ResourceVerified(EventPayload):
    """Someone checked the entry is true (`updated_at` is no proof anyone did)."""

    resource_id: str = Field(description="Resource stream id.")
    verified_on: date = Field(description="When it was checked.")
    verified_by_agency_id: str = Field(description="Who checked it.")


@registry.event(PREFIX + "ResourceVisited", 1)
class ResourceVisited(EventPayload):
    """A visit survey (訪問調査)."""

    visit_id: str = Field(description="Visit stream id.")
    district_id: str = Field(description="District visited.")
    category: VisitCategory = Field(description="The seed's visit column.")
    resource_id: str | None = Field(default=None, description="The resource, when in the directory.")
    visited_on: date = Field(description="Date of the visit.")
    fiscal_year: int = Field(ge=2000, le=2100, description="Fiscal year of visited_on.")
    findings: list[str] = Field(
        default_factory=list, description="Codes, e.g. shortage_of_activity_staff, needs_venue, wants_volunteers."
    )
    follow_up: str | None = Field(default=None, max_length=1000, description="Agreed follow-up.")


@registry.event(PREFIX + "ResourceIdentified", 1)
class ResourceIdentified(EventPayload):
    """資源把握: a resource whose capacity and needs were recorded."""

    resource_id: str = Field(description="Resource stream id.")
    district_id: str = Field(description="District.")
    identified_on: date = Field(description="Date.")
    fiscal_year: int = Field(ge=2000, le=2100, description="Fiscal year of identified_on.")


@registry.event(PREFIX + "UsablePlaceOffered", 1)
class UsablePlaceOffered(EventPayload):
    """活用できる場: a resource offers a place for community activity."""

    place_id: str = Field(description="Place stream id.")
    resource_id: str = Field(description="Resource offering it.")
    district_id: str = Field(description="District.")
    kind: PlaceKind = Field(description="Room, hall, garden, farm…")
    conditions: str | None = Field(default=None, max_length=1000, description="Conditions of use.")
    offered_on: date = Field(description="Date.")
    fiscal_year: int = Field(ge=2000, le=2100, description="Fiscal year of offered_on.")


@registry.event(PREFIX + "PlaceUsed", 1)
class PlaceUsed(EventPayload):
    """場の活用実績: an activity used an offered place."""

    place_id: str = Field(description="Place stream id.")
    use_id: str = Field(description="Id of this use.")
    district_id: str = Field(description="District.")
    activity: str = Field(min_length=1, max_length=200, description="Which activity.")
    used_on: date = Field(description="Date.")
    fiscal_year: int = Field(ge=2000, le=2100, description="Fiscal year of used_on.")
    participants: int | None = Field(default=None, ge=0, description="How many took part.")


@registry.event(PREFIX + "DistrictIssueRaised", 1)
class DistrictIssueRaised(EventPayload):
    issue_id: str = Field(description="Issue stream id.")
    district_id: str = Field(description="District.")
    title: str = Field(min_length=1, max_length=200, description="The issue; no personal data.")
    source: IssueSource = Field(description="Four-party meeting decision or district assessment.")
    categories: list[ConsultationCategory] = Field(default_factory=list, description="Topics.")
    gap_need: bool = Field(default=False, description="Raised as a gap need.")
    meeting_id: str | None = Field(default=None, description="The meeting, for a meeting decision.")
    decision_id: str | None = Field(default=None, description="The decision, for a meeting decision.")
    raised_on: date = Field(description="Date.")


@registry.event(PREFIX + "DistrictIssueTakenUp", 1)
class DistrictIssueTakenUp(EventPayload):
    """The tier-2 council (第2層協議体) takes the issue up."""

    issue_id: str = Field(description="Issue stream id.")
    district_id: str = Field(description="District.")
    taken_up_on: date = Field(description="Date.")


@registry.event(PREFIX + "InitiativeLaunched", 1)
class InitiativeLaunched(EventPayload):
    initiative_id: str = Field(description="Initiative stream id.")
    issue_id: str | None = Field(default=None, description="The district issue it answers.")
    district_id: str = Field(description="District.")
    kind: InitiativeKind = Field(description="Kind.")
    title: str = Field(min_length=1, max_length=200, description="e.g. 買物支援マップ.")
    resource_ids: list[str] = Field(default_factory=list, description="Resources it uses.")
    launched_on: date = Field(description="Date.")
    fiscal_year: int = Field(ge=2000, le=2100, description="Fiscal year of launched_on.")


@registry.event(PREFIX + "InitiativeProgressed", 1)
class InitiativeProgressed(EventPayload):
    initiative_id: str = Field(description="Initiative stream id.")
    note: str = Field(min_length=1, max_length=2000, description="Progress; no personal data.")
    participants: int | None = Field(default=None, ge=0, description="Participants this time.")
    on: date = Field(description="Date.")


@registry.event(PREFIX + "InitiativeConcluded", 1)
class InitiativeConcluded(EventPayload):
    initiative_id: str = Field(description="Initiative stream id.")
    concluded_on: date = Field(description="Date.")
    outcome: str = Field(max_length=2000, description="What it achieved; no personal data.")


@registry.event(PREFIX + "ParticipationStarted", 1)
class ParticipationStarted(EventPayload):
    """参加支援: a person is linked to a resource or place (only with consent)."""

    participation_id: str = Field(description="Participation stream id.")
    person_id: PersonId = Field(description="Pseudonymous person id; no personal data here.")
    district_id: str = Field(description="District of the resource.")
    resource_id: str = Field(description="Resource.")
    place_id: str | None = Field(default=None, description="Place, if a specific one.")
    consent_id: str = Field(description="The consent relied on.")
    started_on: date = Field(description="Date.")
    fiscal_year: int = Field(ge=2000, le=2100, description="Fiscal year of started_on.")


@registry.event(PREFIX + "AttendanceRecorded", 1)
class AttendanceRecorded(EventPayload):
    participation_id: str = Field(description="Participation stream id.")
    person_id: PersonId = Field(description="Pseudonymous person id.")
    attended_on: date = Field(description="Date.")


@registry.event(PREFIX + "ParticipationEnded", 1)
class ParticipationEnded(EventPayload):
    participation_id: str = Field(description="Participation stream id.")
    person_id: PersonId = Field(description="Pseudonymous person id.")
    ended_on: date = Field(description="Date.")
    reason: str = Field(
        pattern=r"^(settled|moved_on|health|declined|consent_withdrawn|resource_closed|other)$",
        description="settled, moved_on, health, declined, consent_withdrawn, resource_closed, other.",
    )


@registry.event(PREFIX + "NewsletterIssueSent", 1)
class NewsletterIssueSent(EventPayload):
    """One district mail-magazine issue (メールマガジン配信)."""

    district_id: str = Field(description="District.")
    issue_number: int = Field(ge=1, description="Issue number within the district.")
    sent_on: date = Field(description="Date.")
    fiscal_year: int = Field(ge=2000, le=2100, description="Fiscal year of sent_on.")


@registry.event(PREFIX + "SubscribersChanged", 1)
class SubscribersChanged(EventPayload):
    district_id: str = Field(description="District.")
    delta: int = Field(description="Change in subscribers (+/-).")
    total: int = Field(ge=0, description="Subscribers after the change.")
    on: date = Field(description="Date.")


@registry.event(PREFIX + "GroupIntroduced", 1)
class GroupIntroduced(EventPayload):
    """A group introduced on the district web page (団体紹介)."""

    district_id: str = Field(description="District.")
    group_id: str = Field(description="Id of the introduction.")
    group_name: str = Field(min_length=1, max_length=200, description="The group (an organisation).")
    introduced_on: date = Field(description="Date.")
    fiscal_year: int = Field(ge=2000, le=2100, description="Fiscal year of introduced_on.")


@registry.event(PREFIX + "TrainingSessionHeld", 1)
class TrainingSessionHeld(EventPayload):
    """Community social work training (スキルアップ研修)."""

    session_id: str = Field(description="Training stream id.")
    title: str = Field(min_length=1, max_length=200, description="Title.")
    held_on: date = Field(description="Date.")
    fiscal_year: int = Field(ge=2000, le=2100, description="Fiscal year of held_on.")
    participants: int = Field(ge=0, description="How many took part.")
    organiser: str = Field(description="council, metropolis (都), ward (区) or other.")
