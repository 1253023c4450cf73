"""The ward's annual tables, assembled from summed facts.

The layout follows the seed's tables: consultations by window column per fiscal
year side by side (with 内、相談拡充 under the comprehensive support centers),
resource development for a year with the previous year in parentheses, and
publicity. Each table can be split by area or district; the sums come in keyed
by (group, fiscal year, metric, dimension).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from tsunagu_events.contracts.common import fiscal_year_label_ja

Sums = Mapping[tuple[str, int, str, str], int]
"""(group id, fiscal year, metric, dimension) → sum."""


@dataclass(frozen=True)
class Group:
    id: str
    label_ja: str


@dataclass(frozen=True)
class YearColumn:
    fiscal_year: int
    label_ja: str
    partial: bool
    months: int
    note_ja: str | None


@dataclass(frozen=True)
class Row:
    group: Group
    item: str
    label_ja: str
    values: dict[int, int]
    indent: bool = False
    previous: dict[int, int] = field(default_factory=dict)


def fiscal_year_start(year: int) -> date:
    return date(year, 4, 1)


def fiscal_year_end(year: int) -> date:
    return date(year + 1, 3, 31)


def months_between(first: date, last: date) -> int:
    return (last.year - first.year) * 12 + last.month - first.month + 1


def year_column(year: int, first_day: date | None, today: date) -> YearColumn:
    """Label a year and say when it covers less than twelve months.

    A year is partial when its first recorded consultation falls after April (the
    windows opened mid-year: the seed's FY2016 column covers July–March, 9 months),
    or when the year has not ended yet. Derived from the events, not configured.
    """
    label = fiscal_year_label_ja(year)
    end = fiscal_year_end(year)
    start_month = first_day if first_day is not None and first_day.month != 4 else None
    last = min(end, today)
    if start_month is None and today >= end:
        return YearColumn(year, label, False, 12, None)
    if start_month is None and today < fiscal_year_start(year):
        return YearColumn(year, label, False, 0, None)
    first = date(start_month.year, start_month.month, 1) if start_month else fiscal_year_start(year)
    months = months_between(first, last)
    if months >= 12:
        return YearColumn(year, label, False, 12, None)
    if today < end:
        note = f"{label}は{first.month}月から{last.month}月までの{months}か月分（年度途中）"
    else:
        note = f"{label}は{first.month}月からの{months}か月分"
    return YearColumn(year, label, True, months, note)


CONSULTATION_ITEMS: list[tuple[str, str, str, bool]] = [
    # item, metric, dimension, indented
    ("community_center", "consultation", "community_center", False),
    ("comprehensive_support_center", "consultation", "comprehensive_support_center", False),
    ("expanded_consultation", "consultation_expanded", "comprehensive_support_center", True),
    ("welfare_council", "consultation", "welfare_council", False),
]

CONSULTATION_LABELS_JA = {
    "community_center": "まちづくりセンター",
    "comprehensive_support_center": "あんしんすこやかセンター",
    "expanded_consultation": "内、相談拡充",
    "welfare_council": "社会福祉協議会",
}


def consultation_rows(groups: Sequence[Group], years: Sequence[int], sums: Sums) -> list[Row]:
    rows = []
    for group in groups:
        for item, metric, dimension, indent in CONSULTATION_ITEMS:
            values = {y: int(sums.get((group.id, y, metric, dimension), 0)) for y in years}
            rows.append(Row(group, item, CONSULTATION_LABELS_JA[item], values, indent))
    return rows


VISIT_ITEMS = [
    ("visits.salon_mini_day", "visit", "salon_mini_day", "訪問調査：サロン、ミニデイ等"),
    ("visits.school_facility_nursery", "visit", "school_facility_nursery", "訪問調査：学校・施設、保育園等"),
    ("visits.business_npo", "visit", "business_npo", "訪問調査：事業者、NPO等"),
]
OTHER_RESOURCE_ITEMS = [
    ("resources_identified", "resource_identified", "", "資源把握数"),
    ("usable_places", "usable_place", "", "活用できる場の数"),
    ("place_uses", "place_use", "", "場の活用実績"),
]


def resource_rows(groups: Sequence[Group], year: int, sums: Sums) -> list[Row]:
    """A year's resource development, with the previous year beside it (shown in parentheses)."""
    rows = []
    prior = year - 1
    for group in groups:

        def get(y: int, metric: str, dimension: str, gid: str = group.id) -> int:
            return int(sums.get((gid, y, metric, dimension), 0))

        for item, metric, dimension, label in VISIT_ITEMS:
            rows.append(
                Row(
                    group,
                    item,
                    label,
                    {year: get(year, metric, dimension)},
                    previous={prior: get(prior, metric, dimension)},
                )
            )
        total = {y: sum(get(y, m, d) for _, m, d, _ in VISIT_ITEMS) for y in (year, prior)}
        rows.append(Row(group, "visits.total", "訪問調査：計", {year: total[year]}, previous={prior: total[prior]}))
        for item, metric, dimension, label in OTHER_RESOURCE_ITEMS:
            rows.append(
                Row(
                    group,
                    item,
                    label,
                    {year: get(year, metric, dimension)},
                    previous={prior: get(prior, metric, dimension)},
                )
            )
    return rows


def publicity_rows(groups: Sequence[Group], year: int, sums: Sums, subscribers: Mapping[str, int]) -> list[Row]:
    """Newsletter issues and groups introduced in the year; subscribers as they stood at its end."""
    rows = []
    for group in groups:
        issues = int(sums.get((group.id, year, "newsletter_issue", ""), 0))
        introduced = int(sums.get((group.id, year, "group_introduced", ""), 0))
        rows.append(Row(group, "newsletter_issues", "メールマガジン配信数", {year: issues}))
        rows.append(Row(group, "subscribers", "メールマガジン登録者数", {year: int(subscribers.get(group.id, 0))}))
        rows.append(Row(group, "groups_introduced", "団体紹介数", {year: introduced}))
    return rows


def parenthesised(current: int, previous: int) -> str:
    """The seed's spelling: 2,409 (2,482)."""
    return f"{current:,} ({previous:,})"
