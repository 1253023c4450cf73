"""The annual tables reproduced from events: two fiscal years side by side, a partial year,
corrections, area and district splits, as-of dates and the downloads."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from openpyxl import load_workbook
from reporting_support import Running, feed, token
from tsunagu_reporting.scenario.generator import Scenario, YearPlan

FY2016 = YearPlan(
    fiscal_year=2016,
    community_center=43,
    comprehensive_support_center=61,
    expanded=9,
    welfare_council=17,
    first_month=7,
    corrected_after_year=0,
)
FY2021 = YearPlan(
    fiscal_year=2021,
    community_center=57,
    comprehensive_support_center=88,
    expanded=21,
    welfare_council=29,
    corrected_after_year=5,
    visits={"salon_mini_day": 24, "school_facility_nursery": 13, "business_npo": 11},
    resources_identified=40,
    usable_places=12,
    place_uses=7,
    newsletter_issues=16,
    subscribers_added=57,
    groups_introduced=11,
)
FY2020 = YearPlan(
    fiscal_year=2020,
    community_center=5,
    comprehensive_support_center=5,
    expanded=0,
    welfare_council=5,
    visits={"salon_mini_day": 20, "school_facility_nursery": 9, "business_npo": 9},
    resources_identified=37,
    usable_places=10,
    place_uses=6,
    subscribers_added=30,
)


def scenario() -> Scenario:
    s = Scenario()
    for plan in (FY2016, FY2020, FY2021):
        s.year(plan)
    return s


def values(body: dict, group: str = "ward") -> dict[str, dict[str, int]]:
    return {r["item"]: r["values"] for r in body["rows"] if r["group_id"] == group}


async def test_consultations_side_by_side_with_partial_year_and_corrections(running: Running) -> None:
    s = scenario()
    await feed(running.reporting.annual, s.writer.out)
    response = await running.client.get(
        "/reports/consultations", params={"fiscal_years": [2016, 2021]}, headers=token()
    )
    assert response.status_code == 200, response.text
    body = response.json()
    got = values(body)
    assert got["community_center"] == {"2016": 43, "2021": 57}
    assert got["comprehensive_support_center"] == {"2016": 61, "2021": 88}
    assert got["expanded_consultation"] == {"2016": 9, "2021": 21}
    assert got["welfare_council"] == {"2016": 17, "2021": 29}
    years = {y["fiscal_year"]: y for y in body["fiscal_years"]}
    assert years[2016]["label_ja"] == "平成28年度"
    assert years[2021]["label_ja"] == "令和3年度"
    assert years[2016]["partial"]
    assert years[2016]["months"] == 9
    assert "7月からの9か月分" in years[2016]["note_ja"]
    assert not years[2021]["partial"]

    # What did we report on 31 March 2022? The five corrections were recorded in April.
    before = await running.client.get(
        "/reports/consultations", params={"fiscal_years": [2021], "as_of": "2022-03-31"}, headers=token()
    )
    assert values(before.json())["expanded_consultation"] == {"2021": 16}
    assert s.expected.before_corrections[(2021, "consultation_expanded", "comprehensive_support_center")] == 16


async def test_tables_by_area_and_district_match_the_generator(running: Running) -> None:
    s = scenario()
    await feed(running.reporting.annual, s.writer.out)
    for by, expected in (("district", s.expected.district), ("area", s.expected.area)):
        response = await running.client.get(
            "/reports/consultations", params={"fiscal_years": [2021], "by": by}, headers=token()
        )
        for row in response.json()["rows"]:
            metric = "consultation_expanded" if row["item"] == "expanded_consultation" else "consultation"
            group = "comprehensive_support_center" if row["item"] == "expanded_consultation" else row["item"]
            assert row["values"]["2021"] == expected[(row["group_id"], 2021, metric, group)], row


async def test_resource_development_with_previous_year_and_publicity(running: Running) -> None:
    s = scenario()
    await feed(running.reporting.annual, s.writer.out)
    response = await running.client.get("/reports/resource-development", params={"fiscal_year": 2021}, headers=token())
    rows = {r["item"]: r for r in response.json()["rows"]}
    assert rows["visits.salon_mini_day"]["display"]["2021"] == "24 (20)"
    assert rows["visits.total"]["values"] == {"2021": 48}
    assert rows["visits.total"]["previous"] == {"2020": 38}
    assert rows["resources_identified"]["display"]["2021"] == "40 (37)"
    assert rows["usable_places"]["display"]["2021"] == "12 (10)"
    assert rows["place_uses"]["display"]["2021"] == "7 (6)"
    publicity = await running.client.get("/reports/publicity", params={"fiscal_year": 2021}, headers=token())
    got = values(publicity.json())
    assert got["newsletter_issues"] == {"2021": 16}
    assert got["subscribers"] == {"2021": 87}  # a level: 30 by the end of FY2020, 57 more in FY2021
    assert got["groups_introduced"] == {"2021": 11}


async def test_csv_and_xlsx_downloads_carry_japanese_headers(running: Running) -> None:
    s = scenario()
    await feed(running.reporting.annual, s.writer.out)
    params = {"fiscal_years": [2016, 2021], "format": "csv"}
    response = await running.client.get("/reports/consultations", params=params, headers=token())
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0] == ["区", "項目", "平成28年度", "令和3年度"]
    assert rows[1][1:] == ["まちづくりセンター", "43", "57"]
    assert rows[3][1].endswith("内、相談拡充")
    assert any("9か月分" in r[0] for r in rows[5:])
    params["format"] = "xlsx"
    response = await running.client.get("/reports/consultations", params=params, headers=token())
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    assert [c.value for c in sheet[1]] == ["区", "項目", "平成28年度", "令和3年度"]
    assert sheet.cell(2, 4).value == 57


async def test_reports_need_a_token(running: Running) -> None:
    response = await running.client.get("/reports/consultations", params={"fiscal_years": [2021]})
    assert response.status_code == 401
    assert datetime.now(UTC).year >= 2024
