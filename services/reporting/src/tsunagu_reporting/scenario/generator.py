"""A fiscal year of activity with known totals, per district, as the services publish it.

Counts are spread round-robin over the ward's districts and evenly over the months
the year covers (a year whose windows opened in July starts in July). Some expanded
consultations are recorded first as elderly care and corrected after the year ended
(ConsultationReclassified), so the year's table differs before and after the
correction: the test of "what did we report on 31 March?".
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from tsunagu_events import new_event_id, new_stream_id
from tsunagu_events.contracts.common import JST, ConsultationCategory, LegalBasis, Sealed
from tsunagu_events.contracts.intake import (
    Approach,
    CaseOpened,
    Channel,
    ConsentGiven,
    ConsentScope,
    ConsultationReceived,
    ConsultationReclassified,
    ConsultedBy,
    ContactKind,
    ContactRecorded,
    Outcome,
    PersonRegistered,
    SupportPlanAdopted,
)
from tsunagu_events.contracts.referral import ReferralAccepted, ReferralCompleted, ReferralOutcome, ReferralRequested
from tsunagu_events.contracts.resources import (
    GroupIntroduced,
    NewsletterIssueSent,
    PlaceUsed,
    ResourceIdentified,
    ResourceVisited,
    SubscribersChanged,
    UsablePlaceOffered,
    VisitCategory,
)
from tsunagu_events.reference import ward_for
from tsunagu_events.registry import EventPayload

from tsunagu_reporting.scenario.writer import StreamWriter

GROUP_WINDOW = {
    "community_center": "community_center",
    "comprehensive_support_center": "comprehensive_support_center",
    "welfare_council": "welfare_council_office",
}


@dataclass(frozen=True)
class YearPlan:
    fiscal_year: int
    community_center: int
    comprehensive_support_center: int
    expanded: int
    welfare_council: int
    first_month: int = 4
    corrected_after_year: int = 0
    """Of the expanded ones, how many are first recorded as elderly care and corrected in April after the year."""
    visits: dict[str, int] = field(default_factory=dict)
    resources_identified: int = 0
    usable_places: int = 0
    place_uses: int = 0
    newsletter_issues: int = 0
    subscribers_added: int = 0
    groups_introduced: int = 0


@dataclass
class Expected:
    """What the tables must show: (fiscal year, metric, dimension) → value, ward-wide and per district."""

    ward: Counter[tuple[int, str, str]] = field(default_factory=Counter)
    district: Counter[tuple[str, int, str, str]] = field(default_factory=Counter)
    area: Counter[tuple[str, int, str, str]] = field(default_factory=Counter)
    before_corrections: Counter[tuple[int, str, str]] = field(default_factory=Counter)

    def add(self, district: str, area: str, year: int, metric: str, dimension: str, value: int = 1) -> None:
        self.ward[(year, metric, dimension)] += value
        self.district[(district, year, metric, dimension)] += value
        self.area[(area, year, metric, dimension)] += value


def _months(plan: YearPlan) -> list[date]:
    first = date(plan.fiscal_year if plan.first_month >= 4 else plan.fiscal_year + 1, plan.first_month, 1)
    out = []
    day = first
    while day <= date(plan.fiscal_year + 1, 3, 1):
        out.append(day)
        day = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    return out


def _moment(months: list[date], index: int, count: int) -> datetime:
    """The index-th of count events, spread evenly over the months, at 10:00 Japan time."""
    month = months[index * len(months) // max(count, 1)]
    day = 1 + (index % 27)
    return datetime.combine(date(month.year, month.month, day), time(10, 0), tzinfo=JST).astimezone(UTC)


class Scenario:
    def __init__(self, tenant: str = "131121") -> None:
        self.ward = ward_for(tenant)
        self.districts = [(d.id, d.area) for d in self.ward.districts]
        self.writer = StreamWriter()
        self.expected = Expected()

    def _place(self, index: int) -> tuple[str, str]:
        return self.districts[index % len(self.districts)]

    def year(self, plan: YearPlan) -> None:
        months = _months(plan)
        fy = plan.fiscal_year
        n = 0
        for group in ("community_center", "comprehensive_support_center", "welfare_council"):
            count = getattr(plan, group)
            for i in range(count):
                district, area = self._place(n)
                n += 1
                at = _moment(months, i, count)
                expanded = group == "comprehensive_support_center" and i < plan.expanded
                corrected = expanded and i < plan.corrected_after_year
                cid = new_stream_id("consultation")
                window_type = GROUP_WINDOW[group]
                self.writer.emit(
                    "intake",
                    cid,
                    ConsultationReceived(
                        consultation_id=cid,
                        window_id=f"{district}.{window_type}",
                        window_type=window_type,
                        district_id=district,
                        area_id=area,
                        received_at=at,
                        fiscal_year=fy,
                        channel=Channel.WALK_IN,
                        consulted_by=ConsultedBy.PERSON,
                        categories=[
                            ConsultationCategory.ELDERLY_CARE
                            if not expanded or corrected
                            else ConsultationCategory.DISABILITY
                        ],
                        expanded=expanded and not corrected,
                        compound_need=False,
                        outcome=Outcome.INFORMATION_GIVEN,
                    ),
                    at,
                    agency=f"{district}.{window_type}",
                    staff="staff-gen",
                )
                self.expected.add(district, area, fy, "consultation", group)
                self.expected.before_corrections[(fy, "consultation", group)] += 1
                if expanded:
                    self.expected.add(district, area, fy, "consultation_expanded", group)
                    if not corrected:
                        self.expected.before_corrections[(fy, "consultation_expanded", group)] += 1
                if corrected:
                    later = datetime.combine(date(fy + 1, 4, 10), time(9, 0), tzinfo=JST).astimezone(UTC)
                    self.writer.emit(
                        "intake",
                        cid,
                        ConsultationReclassified(
                            consultation_id=cid,
                            categories=[ConsultationCategory.DISABILITY],
                            expanded=True,
                            compound_need=False,
                        ),
                        later + timedelta(seconds=i),
                        agency=f"{district}.{window_type}",
                        staff="staff-gen",
                    )
        self._resources(plan, months)

    def _resources(self, plan: YearPlan, months: list[date]) -> None:
        fy = plan.fiscal_year
        n = 0
        for category in VisitCategory:
            count = plan.visits.get(category.value, 0)
            for i in range(count):
                district, area = self._place(n)
                n += 1
                at = _moment(months, i, count)
                vid = new_stream_id("visit")
                self.writer.emit(
                    "resources",
                    vid,
                    ResourceVisited(
                        visit_id=vid,
                        district_id=district,
                        category=category,
                        visited_on=at.astimezone(JST).date(),
                        fiscal_year=fy,
                    ),
                    at,
                    agency=f"{district}.welfare_council_office",
                    staff="staff-gen",
                )
                self.expected.add(district, area, fy, "visit", category.value)
        simple = [
            ("resource_identified", plan.resources_identified),
            ("usable_place", plan.usable_places),
            ("place_use", plan.place_uses),
            ("newsletter_issue", plan.newsletter_issues),
            ("group_introduced", plan.groups_introduced),
            ("subscribers", plan.subscribers_added),
        ]
        for metric, count in simple:
            for i in range(count):
                district, area = self._place(n)
                n += 1
                at = _moment(months, i, count)
                day = at.astimezone(JST).date()
                rid = new_stream_id("resource")
                payload: EventPayload
                stream = rid
                if metric == "resource_identified":
                    payload = ResourceIdentified(
                        resource_id=rid, district_id=district, identified_on=day, fiscal_year=fy
                    )
                elif metric == "usable_place":
                    stream = new_stream_id("place")
                    payload = UsablePlaceOffered(
                        place_id=stream,
                        resource_id=rid,
                        district_id=district,
                        kind="room",
                        offered_on=day,
                        fiscal_year=fy,
                    )
                elif metric == "place_use":
                    stream = new_stream_id("place")
                    payload = PlaceUsed(
                        place_id=stream,
                        use_id=new_event_id(),
                        district_id=district,
                        activity="サロン",
                        used_on=day,
                        fiscal_year=fy,
                        participants=5,
                    )
                elif metric == "newsletter_issue":
                    stream = f"publicity-{district}-{uuid.uuid4().hex[:8]}"
                    payload = NewsletterIssueSent(district_id=district, issue_number=i + 1, sent_on=day, fiscal_year=fy)
                elif metric == "group_introduced":
                    stream = f"publicity-{district}-{uuid.uuid4().hex[:8]}"
                    payload = GroupIntroduced(
                        district_id=district,
                        group_id=new_event_id(),
                        group_name="町会",
                        introduced_on=day,
                        fiscal_year=fy,
                    )
                else:
                    stream = f"publicity-{district}-{uuid.uuid4().hex[:8]}"
                    payload = SubscribersChanged(district_id=district, delta=1, total=1, on=day)
                self.writer.emit(
                    "resources",
                    stream,
                    payload,
                    at,
                    agency=f"{district}.welfare_council_office",
                    staff="staff-gen",
                )
                self.expected.add(district, area, fy, metric, "")

    def case_story(self, events: int, start: datetime, *, district: str = "ikejiri") -> tuple[str, str]:
        """A person and a companion-support case with `events` events across intake and referral."""
        person = new_stream_id("person")
        case = new_stream_id("case")
        window = f"{district}.comprehensive_support_center"
        sealed = Sealed(kid=f"intake/{person}/1", nonce="AAAAAAAAAAAAAAAA", ct="c2VjcmV0")
        w = self.writer
        step = timedelta(minutes=1)
        at = start
        w.emit(
            "intake",
            person,
            PersonRegistered(person_id=person, district_id=district, name=sealed),
            at,
            agency=window,
            staff="staff-a",
        )
        at += step
        consent = new_event_id()
        w.emit(
            "intake",
            person,
            ConsentGiven(
                consent_id=consent,
                person_id=person,
                scope=ConsentScope.FOUR_WINDOWS,
                district_id=district,
                given_at=at,
                recorded_by_agency=window,
            ),
            at,
            agency=window,
            staff="staff-a",
        )
        at += step
        w.emit(
            "intake",
            case,
            CaseOpened(
                case_id=case,
                person_id=person,
                lead_agency_id=window,
                district_id=district,
                approach=Approach.BOTH,
                opened_at=at,
            ),
            at,
            agency=window,
            staff="staff-a",
        )
        done = 3
        plan = 0
        while done < events:
            at += step
            if done % 10 == 3 and events - done >= 3:
                rid = new_stream_id("referral")
                target = "specialist.poverty_support" if self.ward.agency("specialist.poverty_support") else window
                w.emit(
                    "referral",
                    rid,
                    ReferralRequested(
                        referral_id=rid,
                        person_id=person,
                        case_id=case,
                        from_agency_id=window,
                        to_agency_id=target,
                        categories=[ConsultationCategory.POVERTY],
                        due_on=(at + timedelta(days=7)).date(),
                        legal_basis=LegalBasis.CONSENT,
                        consent_id=consent,
                        requested_at=at,
                    ),
                    at,
                    agency=window,
                    staff="staff-a",
                )
                at += step
                w.emit(
                    "referral",
                    rid,
                    ReferralAccepted(
                        referral_id=rid,
                        person_id=person,
                        case_id=case,
                        from_agency_id=window,
                        to_agency_id=target,
                        handover_lead=False,
                        accepted_at=at,
                    ),
                    at,
                    agency=target,
                    staff="staff-b",
                )
                at += step
                w.emit(
                    "referral",
                    rid,
                    ReferralCompleted(
                        referral_id=rid,
                        person_id=person,
                        outcome=ReferralOutcome.GOT_HELP,
                        feedback=sealed,
                        completed_at=at,
                    ),
                    at,
                    agency=target,
                    staff="staff-b",
                )
                done += 3
            elif done % 10 == 7:
                plan += 1
                w.emit(
                    "intake",
                    case,
                    SupportPlanAdopted(case_id=case, plan_version=plan, review_due=at.date(), adopted_at=at),
                    at,
                    agency=window,
                    staff="staff-a",
                )
                done += 1
            else:
                w.emit(
                    "intake",
                    case,
                    ContactRecorded(
                        case_id=case,
                        contact_id=new_event_id(),
                        kind=ContactKind.CALL,
                        at=at,
                        agency_id=window,
                        note=sealed,
                    ),
                    at,
                    agency=window,
                    staff="staff-a",
                )
                done += 1
        return person, case


SEED_FY2021 = YearPlan(
    fiscal_year=2021,
    community_center=23_564,
    comprehensive_support_center=222_549,
    expanded=3_382,
    welfare_council=3_576,
    visits={"salon_mini_day": 2_409, "school_facility_nursery": 1_283, "business_npo": 1_172},
    resources_identified=4_006,
    usable_places=412,
    place_uses=252,
    newsletter_issues=1_623,
    subscribers_added=5_762,
    groups_introduced=1_114,
)
"""The seed's FY2021 figures at full (Setagaya) scale."""


def scaled(plan: YearPlan, factor: float, **changes: object) -> YearPlan:
    """The same year at a fraction of the volume (integration tests), with changes."""

    def s(x: int) -> int:
        return max(1, round(x * factor)) if x else 0

    values: dict[str, object] = {
        k: s(v) for k, v in plan.__dict__.items() if isinstance(v, int) and k not in ("fiscal_year", "first_month")
    }
    values["visits"] = {k: s(v) for k, v in plan.visits.items()}
    values.update(changes)
    return YearPlan(**{**plan.__dict__, **values})
