"""Log lines are JSON tied to tenant, correlation, causation, event and stream; personal fields never appear."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import structlog
from tsunagu_events import EventEnvelope
from tsunagu_platform.logging import REDACTED, bound_to, configure_logging


@pytest.fixture
def json_logging() -> Iterator[None]:
    configure_logging("intake", "INFO")
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.mark.usefixtures("json_logging")
def test_log_lines_carry_the_event_context_and_redact_personal_fields(capsys: pytest.CaptureFixture[str]) -> None:
    envelope = EventEnvelope(
        id="e-1",
        source="/tsunagu/131121/intake",
        type="tsunagu.intake.ConsultationReceived",
        time=datetime(2021, 4, 1, tzinfo=UTC),
        tenant="131121",
        streamid="consultation-1",
        streamversion=1,
        correlationid="corr-9",
        causationid="cmd-3",
        dataversion=1,
        data={},
    )
    with bound_to(envelope):
        structlog.get_logger("t").info("consultation.received", name="山田太郎", phone="090-1111-2222", count=2)
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["tenant"] == "131121"
    assert line["correlation_id"] == "corr-9"
    assert line["causation_id"] == "cmd-3"
    assert line["event_id"] == "e-1"
    assert line["stream"] == "consultation-1"
    assert line["service"] == "intake"
    assert line["name"] == REDACTED
    assert line["phone"] == REDACTED
    assert "山田" not in json.dumps(line, ensure_ascii=False)
    assert line["count"] == 2


def test_a_logger_made_while_stdout_was_another_stream_writes_to_stdout_as_it_is_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A service built inside one test configured logging on that test's captured stdout; a logger cached then
    raised 'I/O operation on closed file' in a later test (CI: a chain_break log line failed the consumer)."""
    import io

    earlier = io.StringIO()
    monkeypatch.setattr("sys.stdout", earlier)
    configure_logging("intake", "INFO")
    try:
        log = structlog.get_logger("tsunagu.test")
        log.info("first")
        earlier.close()
        now = io.StringIO()
        monkeypatch.setattr("sys.stdout", now)
        log.info("second")
        assert json.loads(now.getvalue())["event"] == "second"
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
