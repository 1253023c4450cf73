"""HTTP figures of a service as operators run it: its own process, started the way `make run`
starts it (`python -m tsunagu_<service>`: uvicorn, the embedded SQLite file, the Tansu broker,
relay publishing meanwhile), driven from this process over keep-alive connections.

The client is deliberately thin (a request written, a response read, per connection) so that
the figure is the server's; each run also measures `GET /health/live` on the same server with
the same client as the baseline: the HTTP stack's own ceiling on this machine in this run.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Load:
    """What one run of requests gave: how many, in how long, and the statuses seen."""

    count: int
    seconds: float
    statuses: dict[int, int]

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def ok(self, expected: int) -> bool:
        return set(self.statuses) == {expected}


def request_bytes(method: str, path: str, token: str, body: Any | None = None) -> bytes:
    payload = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _connection(port: int, requests: Iterator[bytes], statuses: dict[int, int], bodies: list[bytes]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for raw in requests:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            statuses[status] = statuses.get(status, 0) + 1
            if status >= 400 and len(bodies) < 3:
                bodies.append(body)
    finally:
        writer.close()


async def drive(port: int, requests: Sequence[bytes], concurrency: int) -> Load:
    """Send every request over `concurrency` keep-alive connections; time from first to last."""
    shared = iter(requests)
    statuses: dict[int, int] = {}
    errors: list[bytes] = []
    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, shared, statuses, errors) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    if errors:
        print("   first error bodies:", [e[:300] for e in errors], flush=True)
    return Load(len(requests), elapsed, statuses)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """A running service process: where it listens and how much CPU it has used so far."""

    port: int
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU of the service process (from /proc), less sensitive to neighbours than wall time."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def service_process(module: str, var_dir: Path, bootstrap: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """The service as its own process on a free port, ready (its /health/ready says so) when entered."""
    port = free_port()
    var_dir.mkdir(parents=True, exist_ok=True)
    log = open(var_dir / "service.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", module],
        env={
            **os.environ,
            "PORT": str(port),
            "TSUNAGU_VAR_DIR": str(var_dir),
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "TOPIC_PARTITIONS": "1",
            "LOG_LEVEL": "WARNING",
            **(env or {}),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(port, process, var_dir / "service.log")
        yield Served(port, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_ready(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"service not ready within {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


def health_requests(n: int) -> list[bytes]:
    return [b"GET /health/live HTTP/1.1\r\nHost: bench\r\n\r\n"] * n


def repeat(items: Iterable[bytes], n: int) -> list[bytes]:
    pool = list(items)
    return [pool[i % len(pool)] for i in range(n)]
