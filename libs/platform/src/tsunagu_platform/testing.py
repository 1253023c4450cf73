"""pytest fixtures shared by every package's tests (registered in the root conftest).

Tests run on the real Tansu broker process and on both databases. PostgreSQL comes
from TSUNAGU_TEST_POSTGRES_URL (default: the local server); when it cannot be
reached the PostgreSQL variants skip with the reason, unless
TSUNAGU_REQUIRE_POSTGRES=1 (set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

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
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The broker for the session: KAFKA_BOOTSTRAP_SERVERS when set, else a Tansu process."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with TansuBroker(log_path=log) as broker:
        yield broker.bootstrap_servers


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
