"""Schemathesis against /openapi.json: whatever the input, the intake API never answers 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from tsunagu_intake.app import create_app
from tsunagu_platform.auth import Role

from .helpers import WINDOW, settings_for, token

VAR = Path(tempfile.mkdtemp(prefix="intake-schemathesis-"))
app = create_app(settings_for(VAR))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_as_admin(case: Case) -> None:
    response = case.call(headers=token(Role.ADMIN, agency=WINDOW))
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"


@schema.include(method="POST").parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_as_window_staff(case: Case) -> None:
    response = case.call(headers=token(Role.STAFF, agency=WINDOW))
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
