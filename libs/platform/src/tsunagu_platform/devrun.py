"""`make run`: the whole system on one machine — the embedded broker and the four services.

Data lives in SQLite files under ./var and survives restarts. The embedded Tansu
broker keeps topics in memory only, so at every start the services' outboxes are
marked for republishing: each relay sends its service's history again and the
consumers' inboxes ignore what they already applied. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

from tsunagu_events.topics import SERVICES

from tsunagu_platform.kafka import ensure_topics
from tsunagu_platform.ops import all_topics
from tsunagu_platform.tansu import TansuBroker, free_port

PORTS = {"intake": 8001, "referral": 8002, "resources": 8003, "reporting": 8004}
LABELS = {
    "intake": "受付・相談 intake",
    "referral": "つなぎ・会議 referral",
    "resources": "地域資源 resources",
    "reporting": "報告・監査 reporting",
}


def port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def republish_history(var_dir: Path) -> None:
    import sqlite3

    for service in SERVICES:
        path = var_dir / f"{service}.db"
        if not path.exists():
            continue
        with sqlite3.connect(path) as conn:
            try:
                count = conn.execute("UPDATE outbox SET published_at = NULL").rowcount
            except sqlite3.OperationalError:
                continue
        if count:
            print(f"  {service}: {count} events will be republished to the fresh in-memory broker")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tsunagu-dev", description=__doc__)
    parser.add_argument("command", choices=["run"], nargs="?", default="run")
    parser.add_argument("--var-dir", type=Path, default=Path(os.environ.get("TSUNAGU_VAR_DIR", "var")))
    parser.add_argument("--kafka-port", type=int, default=9092)
    args = parser.parse_args(argv)
    var_dir: Path = args.var_dir.resolve()
    (var_dir / "log").mkdir(parents=True, exist_ok=True)

    broker: TansuBroker | None = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None
    if bootstrap:
        print(f"broker: {bootstrap} (KAFKA_BOOTSTRAP_SERVERS)")
    else:
        port = args.kafka_port if port_free(args.kafka_port) else free_port()
        broker = TansuBroker(port, log_path=var_dir / "log" / "tansu.log").start()
        bootstrap = broker.bootstrap_servers
        print(f"broker: embedded Tansu on {bootstrap} (topics in memory; history republished from ./var)")
        republish_history(var_dir)
    asyncio.run(ensure_topics(bootstrap, all_topics(), partitions=3))

    busy = [f"{s}:{p}" for s, p in PORTS.items() if not port_free(p)]
    if busy:
        print(f"ports already in use: {', '.join(busy)} — is another `make run` still running?", file=sys.stderr)
        if broker:
            broker.stop()
        return 1

    children: dict[str, subprocess.Popen[bytes]] = {}
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "TSUNAGU_VAR_DIR": str(var_dir)}
    for service, port in PORTS.items():
        log = open(var_dir / "log" / f"{service}.log", "ab")  # noqa: SIM115 (owned by the child)
        children[service] = subprocess.Popen(
            [sys.executable, "-m", f"tsunagu_{service}", "serve"],
            env={**env, "PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    deadline = time.monotonic() + 90
    pending = set(PORTS)
    while pending and not stopping and time.monotonic() < deadline:
        for service in list(pending):
            if children[service].poll() is not None:
                print(f"{service} exited during start-up; see {var_dir / 'log' / f'{service}.log'}", file=sys.stderr)
                stopping = True
            elif ready(PORTS[service]):
                pending.discard(service)
        time.sleep(0.2)
    status = 0
    if pending and not stopping:
        print(f"not ready after 90 s: {', '.join(sorted(pending))}", file=sys.stderr)
        stopping, status = True, 1
    if not stopping:
        print("\nつなぐ Tsunagu is running — Ctrl-C で停止 (stops everything)")
        for service, port in PORTS.items():
            print(f"  {LABELS[service]:<24} http://127.0.0.1:{port}/docs   health: /health/ready")
        print(f"  logs: {var_dir / 'log'}")
    while not stopping:
        for service, child in children.items():
            if child.poll() is not None:
                print(f"{service} stopped unexpectedly (exit {child.returncode}); stopping everything", file=sys.stderr)
                stopping, status = True, 1
        time.sleep(0.5)

    print("\nstopping…")
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for service, child in children.items():
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            print(f"{service} did not stop in 20 s; killing it", file=sys.stderr)
            child.kill()
            child.wait()
    if broker:
        broker.stop()
    print("stopped; data kept in", var_dir)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
