"""Schemathesis against /openapi.json: whatever the input, the referral API never answers 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from tsunagu_platform.auth import Role
from tsunagu_referral.app import create_app
from tsunagu_referral.settings import ReferralSettings

from .conftest import IKEJIRI_CC, SIGNING_KEY, token

VAR = Path(tempfile.mkdtemp(prefix="referral-schemathesis-"))
app = create_app(
    ReferralSettings(broker_mode="memory", var_dir=VAR, token_signing_key=SIGNING_KEY, overdue_interval_seconds=0)
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_as_admin(case: Case) -> None:
    response = case.call(headers=token("setagaya.branch_office", Role.ADMIN))
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"


@schema.include(method="POST").parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_as_window_staff(case: Case) -> None:
    response = case.call(headers=token(IKEJIRI_CC))
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
