"""Every operation of reporting's OpenAPI document × every kind of caller, against the committed table
(authorization_matrix.json): a grant the table does not allow, or a refusal it does not expect, fails.

The seed person is registered by own_agency, which leads their open case; another window of the same
district (other_agency) filed a consultation about them at its own window, which grants it nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from reporting_support import Running, feed, token
from test_reporting_authorization import SEALED, filed, opened, registered
from tsunagu_events.contracts.common import ConsultationCategory
from tsunagu_platform.auth import Role
from tsunagu_platform.authz_matrix import Cells, assert_matrix, http_call, load_matrix
from tsunagu_reporting.scenario.writer import StreamWriter

MATRIX = Path(__file__).with_name("authorization_matrix.json")
OWN = "ikejiri.comprehensive_support_center"
OTHER = "ikejiri.community_center"
START = datetime(2022, 6, 1, 1, 0, tzinfo=UTC)

HEADERS = {
    "own_agency": token(Role.STAFF, agency=OWN),
    "other_agency": token(Role.STAFF, agency=OTHER),
    "other_district": token(Role.STAFF, agency="okusawa.community_center"),
    "auditor": token(Role.AUDITOR, agency=OWN),
    "agency_system": token(Role.AGENCY_SYSTEM, agency=OWN),
    "admin": token(Role.ADMIN),
}


async def test_every_operation_answers_each_kind_of_caller_as_the_committed_matrix_says(running: Running) -> None:
    w = StreamWriter()
    person = registered(w, START)
    case = opened(w, person, OWN, START + timedelta(minutes=1))
    filed(w, person, OTHER, ("ikejiri", "setagaya"), ConsultationCategory.POVERTY, START, "staff-o", SEALED)
    await feed(running.reporting.timelines, w.out)
    await feed(running.reporting.annual, w.out)
    ids = {
        "person_id": person,
        "case_id": case,
        "name": "reporting.timelines",
        "fiscal_years": "2022",
        "fiscal_year": "2022",
    }
    cells = Cells(headers=HEADERS, ids=ids, bodies={"POST /audit/chains/verify": dict})
    document = running.app.openapi()
    await assert_matrix(
        document,
        load_matrix(MATRIX),
        http_call(running.client, document, cells),
        deny_statuses=(403, 404),
        # Past the policy check these need a broker (503) or a rebuild to have been started (404).
        reached={
            "POST /audit/chains/verify": (503,),
            "POST /projections/{name}/rebuild": (503,),
            "GET /projections/{name}/rebuild": (404,),
        },
    )
