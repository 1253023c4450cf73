"""pytest fixtures shared by every package's tests (registered in the root conftest).

Tests run on the real Tansu broker process and on both databases. PostgreSQL comes
from TSUNAGU_TEST_POSTGRES_URL (default: the local server); when it cannot be
reached the PostgreSQL variants skip with the reason, unless
TSUNAGU_REQUIRE_POSTGRES=1 (set by CI), which turns the skip into a failure.

Apache Kafka (`apache_kafka_bootstrap`, used by tests/integration on both brokers) is
a real broker process from the jars deploy/kafka-dist resolves; where Java or Maven
is missing its tests skip with the reason, unless TSUNAGU_REQUIRE_KAFKA=1 (CI). Under
pytest-xdist one broker serves every worker of the run (a file lock and a state file
in the run's base temp); the run's main process stops it at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tsunagu_platform.apache_kafka import ApacheKafka, KafkaUnavailable, brokers_answering, file_lock
from tsunagu_platform.tansu import TansuBroker

DEFAULT_POSTGRES = "postgresql://postgres:tsunagu-test@127.0.0.1:5432/test"
"""The server `.ci/postgres` sets up (installed from Debian's packages when missing)."""


def postgres_admin_url() -> str:
    return os.environ.get("TSUNAGU_TEST_POSTGRES_URL", DEFAULT_POSTGRES)


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _postgres_reachable(url: str) -> str | None:
    import asyncpg

    try:
        conn = await asyncio.wait_for(asyncpg.connect(_asyncpg_dsn(url)), timeout=5)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    await conn.close()
    return None


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("TSUNAGU_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required here (TSUNAGU_REQUIRE_POSTGRES=1) but unusable: {reason}")
    pytest.skip(f"PostgreSQL not reachable at {postgres_admin_url()}: {reason}")


async def create_postgres_database() -> str:
    """A fresh, empty database; returns its URL."""
    import asyncpg

    admin = postgres_admin_url()
    problem = await _postgres_reachable(admin)
    if problem:
        _skip_or_fail(problem)
    name = f"tsunagu_t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(_asyncpg_dsn(admin))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin.rsplit("/", 1)[0] + f"/{name}"


async def drop_postgres_database(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(_asyncpg_dsn(postgres_admin_url()))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of each kind: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@pytest.fixture(scope="session")
def tansu_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Tansu broker process for the session (one per pytest worker: it starts in milliseconds)."""
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with TansuBroker(log_path=log) as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """The broker for the session: KAFKA_BOOTSTRAP_SERVERS when set, else a Tansu process.

    tests/integration overrides this with both brokers (Tansu and Apache Kafka)."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        return external
    bootstrap: str = request.getfixturevalue("tansu_bootstrap")
    return bootstrap


KAFKA_STATE = "apache-kafka.json"


def kafka_skip_or_fail(reason: str) -> None:
    if os.environ.get("TSUNAGU_REQUIRE_KAFKA") == "1":
        pytest.fail(f"Apache Kafka is required here (TSUNAGU_REQUIRE_KAFKA=1) but cannot run: {reason}")
    pytest.skip(f"Apache Kafka cannot run here: {reason}")


def _run_directory(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The directory every process of this pytest run shares, and the pid of the run's main process.

    An xdist worker's base temp is `<run's base temp>/popen-gwN` and its parent process is the run."""
    basetemp = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return basetemp.parent, os.getppid()
    return basetemp, os.getpid()


@pytest.fixture(scope="session")
def apache_kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Apache Kafka broker (KRaft, combined node) for the whole run, shared by xdist workers.

    The first worker that needs it starts it under the lock; the others find its state file and
    reuse it. It stops when the run's main process ends (`pytest_unconfigure`, and a watchdog
    should that process die without cleaning up)."""
    directory, owner = _run_directory(tmp_path_factory)
    state = directory / KAFKA_STATE
    kafka: ApacheKafka | None = None
    failed = directory / "apache-kafka.failed"
    with file_lock(directory / "apache-kafka.lock"):
        if failed.is_file():
            pytest.fail(f"Apache Kafka did not start for this run (another worker tried):\n{failed.read_text()}")
        if state.is_file():
            bootstrap = str(json.loads(state.read_text())["bootstrap"])
            if asyncio.run(brokers_answering(bootstrap)) < 1:
                pytest.fail(f"the run's Apache Kafka at {bootstrap} no longer answers; see {directory}/apache-kafka")
        else:
            try:
                kafka = ApacheKafka(directory / "apache-kafka", owner_pid=owner)
            except KafkaUnavailable as reason:
                kafka_skip_or_fail(str(reason))
                raise
            try:
                kafka.start()
            except Exception as error:
                failed.write_text(f"{type(error).__name__}: {error}")
                raise
            bootstrap = kafka.bootstrap_servers
            pids = [n.process.pid for n in kafka.nodes if n.process is not None]
            logs = [str(n.log_path) for n in kafka.nodes]
            state.write_text(json.dumps({"bootstrap": bootstrap, "pids": pids, "logs": logs}))
    yield bootstrap
    if kafka is not None and owner == os.getpid():
        kafka.stop()
        state.unlink(missing_ok=True)


def apache_kafka_logs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The server logs of the run's shared Apache Kafka (for failure reports)."""
    directory, _ = _run_directory(tmp_path_factory)
    state = directory / KAFKA_STATE
    if not state.is_file():
        return []
    return [Path(p) for p in json.loads(state.read_text())["logs"]]


def pytest_unconfigure(config: pytest.Config) -> None:
    """In the run's main process: stop the Apache Kafka that a worker started for the whole run."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    factory = getattr(config, "_tmp_path_factory", None)
    basetemp = getattr(factory, "_basetemp", None)
    if basetemp is None or not (Path(basetemp) / KAFKA_STATE).is_file():
        return
    state = Path(basetemp) / KAFKA_STATE
    pids = [int(p) for p in json.loads(state.read_text())["pids"]]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.2)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    state.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper (the watchdog's parent, a worker, has gone)."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@pytest.fixture
def unique_topic() -> str:
    return f"test.{uuid.uuid4().hex[:10]}.events"


def docker_engine_reason() -> str | None:
    """Why testcontainers cannot run here, or None when a Docker engine answers."""
    if shutil.which("docker") is None and not os.environ.get("DOCKER_HOST"):
        return "no docker client and no DOCKER_HOST"
    try:
        import docker

        docker.from_env().ping()
    except Exception as error:
        return f"no Docker engine reachable ({type(error).__name__})"
    return None
