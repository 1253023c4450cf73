"""Running the real processes (example relay and consumer, services, ops) from integration tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

TANSU = "tansu"
APACHE_KAFKA = "apache_kafka"
EXTERNAL = "external"
"""The broker variants of `kafka_bootstrap` (tests/integration/conftest.py)."""


def broker_of(node: pytest.Item | pytest.FixtureRequest) -> str | None:
    """Which broker variant a test runs on, or None when it does not use `kafka_bootstrap`."""
    item = node.node if isinstance(node, pytest.FixtureRequest) else node
    callspec = getattr(item, "callspec", None)
    return None if callspec is None else callspec.params.get("kafka_bootstrap")


class Process:
    """A child process with its output in a file, so a failing test can show what it said."""

    def __init__(self, args: list[str], log_dir: Path, name: str, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.popen = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait(self, timeout: float = 60) -> int:
        assert self.popen is not None
        return self.popen.wait(timeout=timeout)

    def kill(self) -> None:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait; a process that does not stop in time is killed and reported."""
        if self.popen is None:
            return 0
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
                raise AssertionError(f"{self.name} ignored SIGTERM for {timeout}s:\n{self.output()[-3000:]}") from None
        return self.popen.returncode


def example(command: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "tsunagu_platform.example", command, *args]


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, check=False
    )


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout}s")
