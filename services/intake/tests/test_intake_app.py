"""The intake service starts, answers its health endpoints and stops, on the in-memory broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tsunagu_events.contracts.common import Sealed
from tsunagu_intake.__main__ import main
from tsunagu_intake.app import build_intake, create_app
from tsunagu_intake.settings import IntakeSettings
from tsunagu_intake.use_cases import PlainDetails


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


def test_erase_command_destroys_the_keys_and_appends_person_erased(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TSUNAGU_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    settings = IntakeSettings(broker_mode="memory", var_dir=tmp_path)

    async def register() -> tuple[str, Sealed]:
        intake = build_intake(settings)
        await intake.runtime.migrate()
        done = await intake.register_person(PlainDetails(name="消去 太郎"), "ikejiri", None)
        await intake.runtime.stop()
        return done.stream_id, Sealed(**done.events[0].data["name"])

    async def state(person_id: str, name: Sealed) -> tuple[list[str], str | None]:
        intake = build_intake(settings)
        stored = [e.type for e in await intake.runtime.store.read(person_id)]
        opened = await intake.runtime.keys.open(person_id, name)
        await intake.runtime.stop()
        return stored, opened

    person_id, name = asyncio.run(register())
    assert asyncio.run(state(person_id, name))[1] == "消去 太郎"
    assert main(["erase", "--person", person_id]) == 0
    assert "erased" in capsys.readouterr().out
    stored, opened = asyncio.run(state(person_id, name))
    assert stored == ["tsunagu.intake.PersonRegistered", "tsunagu.intake.PersonErased"]
    assert opened is None
    assert main(["erase", "--person", person_id]) == 2
    assert main(["erase", "--person", "person-unknown"]) == 2
