"""`make run` (tsunagu-dev): the broker and the four services start, answer health, stop on Ctrl-C, keep data."""

from __future__ import annotations

import signal
import sqlite3
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tsunagu_platform.devrun import PORTS, port_free
from tsunagu_platform.tansu import free_port

from .processes import Process

pytestmark = pytest.mark.integration


def answers(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status)
    except OSError:
        return 0


def wait_all_ready(process: Process, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.popen is not None
        assert process.popen.poll() is None, process.output()
        if all(answers(port, "/health/ready") == 200 for port in PORTS.values()):
            return
        time.sleep(0.3)
    raise AssertionError(f"not all services ready:\n{process.output()[-3000:]}")


def test_make_run_starts_everything_stops_on_ctrl_c_and_keeps_data(tmp_path: Path) -> None:
    if not all(port_free(p) for p in PORTS.values()):
        pytest.skip("ports 8001-8004 are taken by something else on this machine")
    var = tmp_path / "var"
    args = [
        sys.executable,
        "-m",
        "tsunagu_platform.devrun",
        "run",
        "--var-dir",
        str(var),
        "--kafka-port",
        str(free_port()),
    ]
    env = {"KAFKA_BOOTSTRAP_SERVERS": ""}
    first = Process(args, tmp_path, "run-1", env=env).start()
    try:
        wait_all_ready(first)
        for port in PORTS.values():
            assert answers(port, "/health/live") == 200
            assert answers(port, "/metrics") == 200
    finally:
        assert first.popen is not None
        first.popen.send_signal(signal.SIGINT)
        assert first.wait(timeout=60) == 0, first.output()
    assert "stopped; data kept" in first.output()
    assert all(port_free(p) for p in PORTS.values()), "a service outlived Ctrl-C"
    for service in PORTS:
        assert (var / f"{service}.db").exists()
    with sqlite3.connect(var / "intake.db") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kept_marker (x INTEGER)")
        conn.execute("INSERT INTO kept_marker VALUES (42)")

    second = Process(args, tmp_path, "run-2", env=env).start()
    try:
        wait_all_ready(second)
    finally:
        assert second.popen is not None
        second.popen.send_signal(signal.SIGINT)
        assert second.wait(timeout=60) == 0, second.output()
    with sqlite3.connect(var / "intake.db") as conn:
        assert conn.execute("SELECT x FROM kept_marker").fetchall() == [(42,)]
