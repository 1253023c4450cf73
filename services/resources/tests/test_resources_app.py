"""The resources service starts, answers its health endpoints and stops, on the in-memory broker."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from tsunagu_resources.app import create_app
from tsunagu_resources.settings import ResourcesSettings


def test_resources_answers_live_ready_and_metrics(tmp_path: Path) -> None:
    settings = ResourcesSettings(broker_mode="memory", var_dir=tmp_path)
    app = create_app(settings)

    with TestClient(app) as client:
        assert client.get("/health/live").json() == {"status": "ok", "service": "resources"}
        ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["database"] == "ok"
        assert "tsunagu_relay_published_total" in client.get("/metrics").text
    assert (tmp_path / "resources.db").exists()


def test_resources_default_port_is_8003() -> None:
    assert ResourcesSettings().port == 8003


def test_resources_openapi_lists_health_endpoints(tmp_path: Path) -> None:
    app = create_app(ResourcesSettings(broker_mode="memory", var_dir=tmp_path))
    paths = app.openapi()["paths"]
    assert {"/health/live", "/health/ready", "/metrics"} <= set(paths)
