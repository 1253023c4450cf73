"""The referral service starts, answers its health endpoints and stops, on the in-memory broker."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from tsunagu_referral.app import create_app
from tsunagu_referral.settings import ReferralSettings


def test_referral_answers_live_ready_and_metrics(tmp_path: Path) -> None:
    settings = ReferralSettings(broker_mode="memory", var_dir=tmp_path)
    app = create_app(settings)

    with TestClient(app) as client:
        assert client.get("/health/live").json() == {"status": "ok", "service": "referral"}
        ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["database"] == "ok"
        assert "tsunagu_relay_published_total" in client.get("/metrics").text
    assert (tmp_path / "referral.db").exists()


def test_referral_default_port_is_8002() -> None:
    assert ReferralSettings().port == 8002


def test_referral_openapi_lists_health_endpoints(tmp_path: Path) -> None:
    app = create_app(ReferralSettings(broker_mode="memory", var_dir=tmp_path))
    paths = app.openapi()["paths"]
    assert {"/health/live", "/health/ready", "/metrics"} <= set(paths)


def test_the_serving_view_reads_intake_under_a_group_that_never_fed_its_tables(tmp_path: Path) -> None:
    # The platform's serving tables start empty: under the former group `referral.serving-view`
    # its committed offsets would skip intake's history, so persons registered before would be unknown.
    app = create_app(ReferralSettings(broker_mode="memory", var_dir=tmp_path))
    names = {consumer.name for consumer in app.state.referrals.runtime.consumers}
    assert "referral.serving" in names
    assert "referral.serving-view" not in names
