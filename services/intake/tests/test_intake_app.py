"""The intake service starts, answers its health endpoints and stops, on the in-memory broker."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from tsunagu_intake.app import create_app
from tsunagu_intake.settings import IntakeSettings


def test_intake_answers_live_ready_and_metrics(tmp_path: Path) -> None:
    settings = IntakeSettings(broker_mode="memory", var_dir=tmp_path)
    app = create_app(settings)

    with TestClient(app) as client:
        assert client.get("/health/live").json() == {"status": "ok", "service": "intake"}
        ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["database"] == "ok"
        assert "tsunagu_relay_published_total" in client.get("/metrics").text
    assert (tmp_path / "intake.db").exists()


def test_intake_default_port_is_8001() -> None:
    assert IntakeSettings().port == 8001


def test_intake_openapi_lists_health_endpoints(tmp_path: Path) -> None:
    app = create_app(IntakeSettings(broker_mode="memory", var_dir=tmp_path))
    paths = app.openapi()["paths"]
    assert {"/health/live", "/health/ready", "/metrics"} <= set(paths)
