"""Schemathesis against /openapi.json: whatever the input, the reporting API never answers 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from reporting_support import KEY, token
from schemathesis import Case
from tsunagu_platform.auth import Role
from tsunagu_reporting.app import create_app
from tsunagu_reporting.settings import ReportingSettings

VAR = Path(tempfile.mkdtemp(prefix="reporting-schemathesis-"))
app = create_app(ReportingSettings(broker_mode="memory", var_dir=VAR, token_signing_key=KEY))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
NEEDS_BROKER = (
    "/audit/chains/verify",
    "/projections/reporting.annual/rebuild",
    "/projections/reporting.timelines/rebuild",
)


def acceptable(case: Case, status: int) -> bool:
    """No 5xx, except the documented 503 of the two operations that read the topics, on the in-memory broker."""
    return status < 500 or (status == 503 and case.method == "POST" and case.formatted_path in NEEDS_BROKER)


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_as_admin(case: Case) -> None:
    response = case.call(headers=token(Role.ADMIN))
    assert acceptable(case, response.status_code), (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    )


@schema.include(path_regex="^/timelines").parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_as_window_staff(case: Case) -> None:
    response = case.call(headers=token(Role.STAFF, agency="ikejiri.community_center"))
    assert acceptable(case, response.status_code), (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    )
