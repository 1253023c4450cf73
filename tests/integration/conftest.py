"""The integration suite runs on both brokers: the embedded Tansu and Apache Kafka 4.1 (as compose deploys).

Every test that reaches the broker through `kafka_bootstrap` (directly or through a fixture)
runs once per broker; the Apache Kafka runs carry the `apache_kafka` marker
(`-m apache_kafka` / `-m "not apache_kafka"`). On Apache Kafka the service processes and
ops commands run with idempotent producers, as compose and Kubernetes set them
(KAFKA_IDEMPOTENCE=true; Tansu refuses InitProducerId). KAFKA_BOOTSTRAP_SERVERS, when set,
replaces both with that one broker (its KAFKA_IDEMPOTENCE as the caller set it).
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest
from tsunagu_platform.testing import apache_kafka_logs

from .processes import APACHE_KAFKA, EXTERNAL, TANSU, broker_of


def _brokers() -> list[object]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return [pytest.param(EXTERNAL, id="external-broker")]
    return [
        pytest.param(TANSU, id="tansu"),
        pytest.param(APACHE_KAFKA, id="apache_kafka", marks=pytest.mark.apache_kafka),
    ]


@pytest.fixture(scope="session", params=_brokers())
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """The broker of this variant: a Tansu process, or the run's Apache Kafka (shared by workers)."""
    if request.param == EXTERNAL:
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    name = "tansu_bootstrap" if request.param == TANSU else "apache_kafka_bootstrap"
    bootstrap: str = request.getfixturevalue(name)
    return bootstrap


@pytest.fixture(autouse=True)
def _producer_idempotence(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """KAFKA_IDEMPOTENCE for the processes a test starts (processes.Process and run() pass os.environ on)."""
    broker = broker_of(request)
    if broker == APACHE_KAFKA:
        monkeypatch.setenv("KAFKA_IDEMPOTENCE", "true")
    elif broker == TANSU:
        monkeypatch.setenv("KAFKA_IDEMPOTENCE", "false")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test on Apache Kafka shows where the broker's log is and how it ends."""
    report = yield
    if report.failed and broker_of(item) == APACHE_KAFKA:
        factory: pytest.TempPathFactory = item.config._tmp_path_factory  # type: ignore[attr-defined]
        for log in apache_kafka_logs(factory):
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            report.sections.append((f"Apache Kafka log {log}", tail))
    return report
