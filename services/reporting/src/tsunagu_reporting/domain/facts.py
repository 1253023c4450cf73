"""Counted facts: the one shape every annual table and indicator is summed from.

Each event that counts becomes one or more `Fact`s carrying its fiscal year,
place (area, district) and a signed value; the projection stamps them with the
day the event was recorded. Corrections become further facts (+1/-1), never
edits, so a table "as it stood on 31 March" is the same sum restricted to the
facts recorded by then, and a reclassified consultation moves between columns.

Every question asked of the facts is a sum, a minimum or a distinct count, asked
"as it stood at the end of a day", so facts that agree on everything a question can
tell apart are stored as one summed row (`fact_key`): the recording day, not the
instant; the subject only for the metrics counted by distinct subject; the day of
occurrence only for the metrics asked about by date, the earliest one otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, NamedTuple

from tsunagu_events.contracts.common import JST, fiscal_year_of

CONSULTATION_RECEIVED = "tsunagu.intake.ConsultationReceived"
CONSULTATION_RECLASSIFIED = "tsunagu.intake.ConsultationReclassified"
GAP_NEED_MARKED = "tsunagu.intake.GapNeedMarked"
SUBSCRIBERS_CHANGED = "tsunagu.resources.SubscribersChanged"


class Fact(NamedTuple):
    fiscal_year: int
    metric: str
    dimension: str
    district_id: str
    area_id: str
    value: int
    occurred_on: str
    subject: str | None = None


DISTINCT_METRICS = frozenset({"participation_started", "participation_resource"})
"""Metrics counted by distinct subject (persons, resources): their facts keep the subject apart."""

DATED_METRICS = frozenset({"subscribers"})
"""Metrics asked about by the day they occurred on (a level at the end of a fiscal year): their facts
keep that day apart. Every other metric is asked only for the earliest day (`first_days`)."""

FactKey = tuple[int, str, str, str, str, str, str | None]
"""(fiscal_year, metric, dimension, district_id, area_id, occurred_on or "", subject or None)."""


def fact_key(fact: Fact) -> FactKey:
    """What tells this fact apart from others recorded on the same day, for every question asked of
    the facts; facts with the same key are stored as one row summing their values, with the
    earliest occurrence day."""
    metric = fact.metric
    return (
        fact.fiscal_year,
        metric,
        fact.dimension,
        fact.district_id,
        fact.area_id,
        fact.occurred_on if metric in DATED_METRICS else "",
        fact.subject if metric in DISTINCT_METRICS else None,
    )


class ConsultationState(NamedTuple):
    """What a later correction of a consultation needs to know to move its counts (a row of the
    projection's consultations table, in column order)."""

    consultation_id: str
    fiscal_year: int
    report_group: str
    district_id: str
    area_id: str
    occurred_on: str
    expanded: bool
    compound_need: bool
    gap_need: bool


_JST_OFFSET = timezone(timedelta(hours=9))
_SINCE_FIXED_OFFSET = datetime(1952, 1, 1, tzinfo=UTC)


def day_of(value: Any) -> date:
    """The Japan-time calendar day of a date, a datetime or their ISO spelling."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.date()
        # Japan has kept UTC+9 without summer time since 1952: a fixed offset, far cheaper than the zone.
        return value.astimezone(_JST_OFFSET if value >= _SINCE_FIXED_OFFSET else JST).date()
    if isinstance(value, date):
        return value
    text = str(value)
    if "T" in text or " " in text:
        return day_of(datetime.fromisoformat(text.replace("Z", "+00:00")))
    return date.fromisoformat(text)


_DAY_OF_UTC_HOUR: dict[str, str] = {}


def day_text(value: Any) -> str:
    """`day_of(value).isoformat()`; for the UTC spelling events carry ("YYYY-MM-DDTHH:…Z") looked up
    by its hour (Japan's offset is whole hours, so every instant of an hour falls on one day)."""
    if type(value) is str and len(value) >= 20 and value[10] == "T" and value[-1] == "Z":
        hour = value[:13]
        found = _DAY_OF_UTC_HOUR.get(hour)
        if found is None:
            if len(_DAY_OF_UTC_HOUR) >= 100_000:
                _DAY_OF_UTC_HOUR.clear()
            _DAY_OF_UTC_HOUR[hour] = found = day_of(hour + ":00:00Z").isoformat()
        return found
    return day_of(value).isoformat()


SIMPLE_COUNTS: dict[str, tuple[str, str, str]] = {
    # event type: (metric, date field, dimension field or "")
    "tsunagu.resources.ResourceVisited": ("visit", "visited_on", "category"),
    "tsunagu.resources.ResourceIdentified": ("resource_identified", "identified_on", ""),
    "tsunagu.resources.UsablePlaceOffered": ("usable_place", "offered_on", ""),
    "tsunagu.resources.PlaceUsed": ("place_use", "used_on", ""),
    "tsunagu.resources.NewsletterIssueSent": ("newsletter_issue", "sent_on", ""),
    "tsunagu.resources.GroupIntroduced": ("group_introduced", "introduced_on", ""),
    "tsunagu.resources.InitiativeLaunched": ("initiative_launched", "launched_on", "kind"),
    "tsunagu.resources.DistrictIssueRaised": ("district_issue", "raised_on", ""),
    "tsunagu.resources.DistrictIssueTakenUp": ("district_issue_taken_up", "taken_up_on", ""),
}

AreaOf = Callable[[str], str]


def consultation_state(data: Mapping[str, Any], report_group: str) -> ConsultationState:
    day = day_text(data["received_at"])
    get = data.get
    return ConsultationState(  # positional: a NamedTuple built by keywords costs twice as much
        str(data["consultation_id"]),
        int(get("fiscal_year") or fiscal_year_of(date.fromisoformat(day))),
        report_group,
        str(data["district_id"]),
        str(data["area_id"]),
        day,
        bool(get("expanded")),
        bool(get("compound_need")),
        bool(get("gap_need")),
    )


def _flag_facts(state: ConsultationState, metric: str, before: bool, after: bool) -> list[Fact]:
    if before == after:
        return []
    dimension = state.report_group if metric == "consultation_expanded" else ""
    return [
        Fact(
            state.fiscal_year,
            metric,
            dimension,
            state.district_id,
            state.area_id,
            1 if after else -1,
            state.occurred_on,
            state.consultation_id,
        )
    ]


def consultation_facts(state: ConsultationState) -> list[Fact]:
    """A new consultation: one in its window column, and its flags."""
    base = Fact(
        state.fiscal_year,
        "consultation",
        state.report_group,
        state.district_id,
        state.area_id,
        1,
        state.occurred_on,
        state.consultation_id,
    )
    if not (state.expanded or state.compound_need or state.gap_need):
        return [base]
    # The flags as corrections from all-false.
    return [
        base,
        *_flag_facts(state, "consultation_expanded", False, state.expanded),
        *_flag_facts(state, "compound_need", False, state.compound_need),
        *_flag_facts(state, "gap_need", False, state.gap_need),
    ]


def correction_facts(before: ConsultationState, after: ConsultationState) -> list[Fact]:
    """A correction moves only the flags that changed, in the consultation's own year and place."""
    return [
        *_flag_facts(after, "consultation_expanded", before.expanded, after.expanded),
        *_flag_facts(after, "compound_need", before.compound_need, after.compound_need),
        *_flag_facts(after, "gap_need", before.gap_need, after.gap_need),
    ]


def simple_facts(event_type: str, data: Mapping[str, Any], area_of: AreaOf) -> list[Fact]:
    """Counts the resources, referral and participation events carry without any earlier state."""
    if event_type in SIMPLE_COUNTS:
        metric, date_field, dimension_field = SIMPLE_COUNTS[event_type]
        day = day_of(data[date_field])
        district = str(data.get("district_id") or "")
        fiscal_year = int(data.get("fiscal_year") or fiscal_year_of(day))
        dimension = str(data.get(dimension_field) or "") if dimension_field else ""
        facts = [Fact(fiscal_year, metric, dimension, district, area_of(district), 1, day.isoformat())]
        if event_type == "tsunagu.resources.PlaceUsed" and data.get("participants"):
            facts.append(
                Fact(
                    fiscal_year,
                    "place_participants",
                    "",
                    district,
                    area_of(district),
                    int(data["participants"]),
                    day.isoformat(),
                )
            )
        return facts
    if event_type == SUBSCRIBERS_CHANGED:
        day = day_of(data["on"])
        district = str(data["district_id"])
        return [
            Fact(
                fiscal_year_of(day), "subscribers", "", district, area_of(district), int(data["delta"]), day.isoformat()
            )
        ]
    if event_type == "tsunagu.resources.ParticipationStarted":
        day = day_of(data["started_on"])
        district = str(data["district_id"])
        fy = int(data.get("fiscal_year") or fiscal_year_of(day))
        area = area_of(district)
        return [
            Fact(fy, "participation_started", "", district, area, 1, day.isoformat(), str(data["person_id"])),
            Fact(fy, "participation_resource", "", district, area, 1, day.isoformat(), str(data["resource_id"])),
        ]
    return []


PlaceOfAgency = Callable[[str], tuple[str, str]]
"""(district, area) of an agency id; ("", area) for a branch office, ("", "") when unknown."""


def referral_facts(event_type: str, data: Mapping[str, Any], place_of_agency: PlaceOfAgency) -> list[Fact]:
    """Multi-agency collaboration counts, placed at the referring agency."""
    spec = {
        "tsunagu.referral.ReferralRequested": ("referral_requested", "requested_at", "from_agency_id"),
        "tsunagu.referral.ReferralAccepted": ("referral_accepted", "accepted_at", "from_agency_id"),
        "tsunagu.referral.ReferralOverdue": ("referral_overdue", "detected_at", "from_agency_id"),
        "tsunagu.referral.SupportPlanDecided": ("plan_by_meeting", "decided_at", ""),
        "tsunagu.referral.MeetingHeld": ("meeting_held", "held_at", ""),
        "tsunagu.intake.CaseOpened": ("case_opened", "opened_at", "lead_agency_id"),
    }.get(event_type)
    if spec is None:
        return []
    metric, date_field, agency_field = spec
    day = day_of(data[date_field])
    district, area = place_of_agency(str(data[agency_field])) if agency_field else ("", "")
    if event_type == "tsunagu.intake.CaseOpened":
        district = str(data.get("district_id") or district)
    dimension = str(data.get("kind") or "") if event_type == "tsunagu.referral.MeetingHeld" else ""
    return [Fact(fiscal_year_of(day), metric, dimension, district, area, 1, day.isoformat(), data.get("referral_id"))]
