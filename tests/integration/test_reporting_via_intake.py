"""Reporting fed by the real intake service: consultations entered over intake's HTTP API (and one
corrected), published by intake's relay, counted by the real reporting process.

Intake publishes on the shared `tsunagu.intake.events`, which other tests of the session also use,
so the consultations here fall in fiscal years nobody else writes (FY2012, opening in October, so
partial, and FY2013) and the assertions are on those years only.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tsunagu_events.contracts.common import JST
from tsunagu_platform.auth import Role, mint
from tsunagu_platform.tansu import free_port

from .processes import Process, eventually

pytestmark = pytest.mark.integration

KEY = "reporting-via-intake-signing-key-0123456789"
TOKEN = mint(KEY, tenant="131121", agency="setagaya.branch_office", role=Role.ADMIN, staff="it-admin")
HEADERS = {"Authorization": f"Bearer {TOKEN}"}

PLAN = {
    # (fiscal year, month, window type, categories): how many
    (2012, 10, "community_center", ("poverty",)): 4,
    (2012, 2, "comprehensive_support_center", ("elderly_care",)): 3,
    (2012, 11, "comprehensive_support_center", ("disability",)): 2,
    (2012, 12, "welfare_council_office", ("isolation",)): 2,
    (2013, 4, "community_center", ("housing",)): 3,
    (2013, 9, "comprehensive_support_center", ("child_rearing", "elderly_care")): 2,
    (2013, 3, "welfare_council_office", ("work",)): 1,
}


def service(name: str, tmp: Path, bootstrap: str, database_url: str | None = None) -> tuple[Process, httpx.AsyncClient]:
    port = free_port()
    folder = tmp / name
    folder.mkdir()
    env = {
        "PORT": str(port),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url or f"sqlite:///{folder / f'{name}.db'}",
        "TSUNAGU_VAR_DIR": str(folder),
        "TSUNAGU_TOKEN_SIGNING_KEY": KEY,
        "LOG_LEVEL": "WARNING",
    }
    process = Process([sys.executable, "-m", f"tsunagu_{name}", "serve"], tmp, f"{name}-{port}", env=env)
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=HEADERS, timeout=30)
    return process, client


async def ready(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/health/ready")).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
async def services(tmp_path: Path, kafka_bootstrap: str) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    intake, intake_client = service("intake", tmp_path, kafka_bootstrap)
    reporting, reporting_client = service("reporting", tmp_path, kafka_bootstrap)
    intake.start()
    reporting.start()
    try:
        await eventually(lambda: ready(intake_client), timeout=60, what=f"intake ready\n{intake.output()[-2000:]}")
        await eventually(
            lambda: ready(reporting_client), timeout=60, what=f"reporting ready\n{reporting.output()[-2000:]}"
        )
        yield intake_client, reporting_client
    finally:
        await intake_client.aclose()
        await reporting_client.aclose()
        reporting.stop()
        intake.stop()


async def test_consultations_entered_at_intake_reach_the_tables(
    services: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    intake, reporting = services
    first_expanded: str | None = None
    for (fy, month, window_type, categories), count in PLAN.items():
        year = fy if month >= 4 else fy + 1
        for i in range(count):
            at = datetime(year, month, 3 + i, 10, 0, tzinfo=JST)
            response = await intake.post(
                "/consultations",
                json={
                    "window_id": f"{['ikejiri', 'kitazawa', 'okusawa'][i % 3]}.{window_type}",
                    "received_at": (at + timedelta(minutes=i)).isoformat(),
                    "channel": "walk_in",
                    "consulted_by": "person",
                    "categories": list(categories),
                    "outcome": "information_given",
                },
            )
            assert response.status_code == 201, response.text
            if response.json()["expanded"] and first_expanded is None:
                first_expanded = response.json()["id"]
    # A correction: the first expanded one was in fact elderly care.
    assert first_expanded is not None
    corrected = await intake.post(
        f"/consultations/{first_expanded}/reclassification", json={"categories": ["elderly_care"]}
    )
    assert corrected.status_code == 200, corrected.text

    expected = {
        "community_center": {"2012": 4, "2013": 3},
        "comprehensive_support_center": {"2012": 5, "2013": 2},
        "expanded_consultation": {"2012": 1, "2013": 2},
        "welfare_council": {"2012": 2, "2013": 1},
    }
    body: dict[str, Any] = {}

    async def matches() -> bool:
        nonlocal body
        response = await reporting.get("/reports/consultations", params={"fiscal_years": [2012, 2013]})
        body = response.json()
        return {r["item"]: r["values"] for r in body["rows"]} == expected

    await eventually(matches, timeout=60, what=f"reporting to count intake's consultations; last {body}")
    years = {y["fiscal_year"]: y for y in body["fiscal_years"]}
    assert years[2012]["label_ja"] == "平成24年度"
    assert years[2012]["note_ja"] == "平成24年度は10月からの6か月分"
    assert not years[2013]["partial"]
