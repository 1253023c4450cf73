"""Request and response bodies of the HTTP API (labels in Japanese where staff read)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from tsunagu_events.contracts.common import ConsultationCategory
from tsunagu_events.contracts.intake import (
    Approach,
    Channel,
    ConsentScope,
    ConsultedBy,
    ContactKind,
    HouseholdSituation,
    Outcome,
)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Versioned(Body):
    expected_version: int | None = Field(
        default=None, ge=0, description="The version you read; a concurrent edit makes this a 409."
    )


class LabelledRef(BaseModel):
    id: str = Field(description="Reference id.")
    label_ja: str = Field(description="Japanese label.")
    label_en: str = Field(description="English label.")


class DistrictOut(LabelledRef):
    area_id: str = Field(description="Area (branch office) of the district.")
    window_ids: list[str] = Field(description="Windows of the district.")


class WindowOut(LabelledRef):
    district_id: str = Field(description="District of the window.")
    window_type: str = Field(description="community_center, comprehensive_support_center, …")


class ConsultationIn(Body):
    window_id: str = Field(
        max_length=100, description="Window (agency id) that received it, e.g. ikejiri.community_center."
    )
    received_at: AwareDatetime = Field(description="When it was received, with offset.")
    channel: Channel = Field(description="How it came in.")
    consulted_by: ConsultedBy = Field(description="Who consulted.")
    categories: list[ConsultationCategory] = Field(min_length=1, max_length=14, description="Every topic raised.")
    outcome: Outcome = Field(description="What came of it.")
    person_id: str | None = Field(default=None, max_length=64, description="The person, when registered.")
    summary: str | None = Field(default=None, max_length=4000, description="Free text (personal; sealed).")
    gap_need: bool = Field(default=False, description="No program owns this need (狭間のニーズ).")


class Written(BaseModel):
    id: str = Field(description="Stream id written.")
    version: int = Field(description="Stream version after the command.")


class ConsultationWritten(Written):
    expanded: bool = Field(description="相談拡充 (derived).")
    compound_need: bool = Field(description="Compound need (derived).")


class ConsultationOut(BaseModel):
    consultation_id: str = Field(description="Stream id.")
    version: int = Field(description="Stream version.")
    window_id: str = Field(description="Window.")
    window_label_ja: str = Field(description="Window label.")
    district_id: str = Field(description="District.")
    area_id: str = Field(description="Area.")
    received_at: datetime = Field(description="When.")
    fiscal_year: int = Field(description="Japanese fiscal year.")
    channel: str = Field(description="Channel.")
    consulted_by: str = Field(description="Who consulted.")
    categories: list[str] = Field(description="Categories.")
    categories_ja: list[str] = Field(description="Category labels.")
    expanded: bool = Field(description="相談拡充.")
    compound_need: bool = Field(description="Compound need.")
    gap_need: bool = Field(description="Gap need.")
    outcome: str = Field(description="Outcome.")
    outcome_ja: str = Field(description="Outcome label.")
    channel_ja: str = Field(description="Channel label.")
    person_id: str | None = Field(description="Person.")
    via: str = Field(description="http or agency_inbound.")
    summary: str | None = Field(default=None, description="Summary, when you may read it.")


class CategoriesIn(Versioned):
    categories: list[ConsultationCategory] = Field(min_length=1, max_length=14, description="Corrected categories.")


class OutcomeIn(Versioned):
    outcome: Outcome = Field(description="The new outcome.")


class GapNeedIn(Versioned):
    marked: bool = Field(default=True, description="False takes the mark back.")


class PersonIn(Body):
    name: str = Field(min_length=1, max_length=200, description="Name (sealed).")
    kana: str | None = Field(default=None, max_length=200, description="Kana (sealed).")
    birth_date: date | None = Field(default=None, description="Birth date (sealed).")
    address: str | None = Field(default=None, max_length=500, description="Address (sealed).")
    phone: str | None = Field(default=None, max_length=40, description="Phone (sealed).")
    district_id: str | None = Field(default=None, max_length=64, description="District of residence.")


class PersonCorrectionIn(Versioned):
    name: str | None = Field(default=None, min_length=1, max_length=200, description="Corrected name.")
    kana: str | None = Field(default=None, max_length=200, description="Corrected kana.")
    birth_date: date | None = Field(default=None, description="Corrected birth date.")
    address: str | None = Field(default=None, max_length=500, description="Corrected address.")
    phone: str | None = Field(default=None, max_length=40, description="Corrected phone.")
    district_id: str | None = Field(default=None, max_length=64, description="New district of residence.")


class PersonOut(BaseModel):
    person_id: str = Field(description="Pseudonymous id.")
    version: int = Field(description="Stream version.")
    district_id: str | None = Field(description="District of residence.")
    erased: bool = Field(description="Keys destroyed; details are gone.")
    access_basis: str = Field(
        description="Why you may read this: registering_window, lead_agency, consent, administrator."
    )
    name: str | None = Field(description="Name.")
    kana: str | None = Field(description="Kana.")
    birth_date: str | None = Field(description="Birth date (ISO).")
    address: str | None = Field(description="Address.")
    phone: str | None = Field(description="Phone.")


class ConsentIn(Versioned):
    scope: ConsentScope = Field(description="four_windows, named_agencies, referral or participation.")
    district_id: str | None = Field(default=None, max_length=64, description="For four_windows.")
    agency_ids: list[str] = Field(default_factory=list, max_length=50, description="For named_agencies/referral.")
    referral_id: str | None = Field(default=None, max_length=64, description="For referral, when known.")
    expires_on: date | None = Field(default=None, description="Last day it holds.")


class ConsentWritten(Written):
    consent_id: str = Field(description="Id of the consent given.")


class ConsentOut(BaseModel):
    consent_id: str = Field(description="Consent id.")
    scope: str = Field(description="Scope.")
    district_id: str | None = Field(description="District (four_windows).")
    agency_ids: list[str] = Field(description="Agencies.")
    given_at: datetime = Field(description="When given.")
    expires_on: date | None = Field(description="Last day.")
    withdrawn_at: datetime | None = Field(description="When withdrawn.")
    recorded_by_agency: str = Field(description="Who recorded it.")


class StatutorySharingIn(Versioned):
    meeting_id: str | None = Field(default=None, max_length=64, description="The support meeting (支援会議).")
    agency_ids: list[str] = Field(default_factory=list, max_length=50, description="Who received the information.")


class HouseholdIn(Body):
    person_ids: list[str] = Field(min_length=2, max_length=20, description="Members.")
    situation: HouseholdSituation = Field(description="8050, double_care or other.")


class CaseIn(Body):
    person_id: str = Field(max_length=64, description="The person supported.")
    consultation_id: str | None = Field(default=None, max_length=64, description="Consultation it opens from.")
    lead_agency_id: str | None = Field(default=None, max_length=100, description="Lead agency; default: yours.")
    approach: Approach = Field(description="problem_solving, staying_connected or both.")


class CaseOut(BaseModel):
    case_id: str = Field(description="Stream id.")
    version: int = Field(description="Stream version.")
    person_id: str = Field(description="Person.")
    consultation_id: str | None = Field(description="Consultation.")
    lead_agency_id: str = Field(description="Lead agency.")
    district_id: str = Field(description="District.")
    approach: str = Field(description="Approach.")
    approach_ja: str = Field(description="課題解決型 / つながり続ける支援 / 両方.")
    status: str = Field(description="open or closed.")
    status_ja: str = Field(description="支援中 / 終結.")
    opened_at: datetime = Field(description="Opened.")
    closed_at: datetime | None = Field(description="Closed.")
    plan_version: int = Field(description="Current plan version (0: none yet).")
    review_due: date | None = Field(description="Next review date.")
    review_overdue: bool = Field(description="Open and past its review date.")
    contacts: int = Field(description="Contacts recorded.")
    last_contact_at: datetime | None = Field(description="Last contact.")


class HandoverIn(Versioned):
    to_agency_id: str = Field(max_length=100, description="New lead agency.")


class ApproachIn(Versioned):
    approach: Approach = Field(description="New approach.")


class PlanIn(Versioned):
    goals: list[str] = Field(default_factory=list, max_length=20, description="Goals in the person's words (sealed).")
    review_due: date = Field(description="When to review the plan.")


class ContactIn(Versioned):
    kind: ContactKind = Field(description="Kind of contact.")
    at: AwareDatetime = Field(description="When it happened.")
    agency_id: str | None = Field(default=None, max_length=100, description="Agency; default: yours.")
    note: str | None = Field(default=None, max_length=4000, description="Note (sealed).")


class ReviewIn(Versioned):
    next_review_due: date = Field(description="Next review date.")
    note: str | None = Field(default=None, max_length=4000, description="Note (sealed).")


class CloseIn(Versioned):
    reason: str = Field(
        pattern=r"^(goals_met|moved_away|declined_support|deceased|transferred|other)$", description="Why."
    )


class AccessLogOut(BaseModel):
    at: datetime = Field(description="When.")
    staff: str = Field(description="Staff pseudonym.")
    agency: str = Field(description="Their agency.")
    role: str = Field(description="Their role.")
    person_id: str = Field(description="Whose data.")
    what: str = Field(description="What was read.")
    granted: bool = Field(description="Whether it was shown.")
    basis: str = Field(description="Why it was shown, or 'denied'.")


class ConsultationCounts(BaseModel):
    total: int = Field(description="Consultations.")
    expanded: int = Field(description="相談拡充.")
    compound_need: int = Field(description="Compound needs.")
    gap_need: int = Field(description="Gap needs.")
    with_person: int = Field(description="Linked to a person.")


class CaseEventOut(BaseModel):
    """One step of a case's timeline; `note`/`goals` only when you may read the person's data."""

    version: int = Field(description="Stream version.")
    type: str = Field(description="Event type (CaseOpened, ContactRecorded, …).")
    at: datetime = Field(description="When it was recorded.")
    agency_id: str | None = Field(description="Agency that acted.")
    detail: dict[str, object] = Field(description="The event's non-personal fields.")
    note: str | None = Field(default=None, description="Contact or review note.")
    goals: list[str | None] | None = Field(default=None, description="Plan goals.")


LABELS_JA: dict[str, str] = {
    "information_given": "情報提供・終了",
    "continued_support": "継続支援",
    "referred": "つなぎ",
    "four_party_meeting": "四者連携会議へ",
    "walk_in": "来所",
    "phone": "電話",
    "home_visit": "訪問",
    "outreach": "アウトリーチ",
    "online": "オンライン",
    "pop_up_event": "出張相談",
    "problem_solving": "課題解決型支援",
    "staying_connected": "つながり続ける支援",
    "both": "課題解決型・つながり続ける支援",
}
