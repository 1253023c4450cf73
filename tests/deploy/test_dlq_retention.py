"""The DLQs hold agencies' raw messages, personal data included: their retention is bounded and stated in every
deployment (compose's topics job, the Strimzi KafkaTopics) and in the runbook, which also says who may read them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tsunagu_events.topics import DLQ_RETENTION_MS
from tsunagu_platform.ops import cmd_topics, parser

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("compose_file", ["docker-compose.yml", "docker-compose.cluster.yml"])
def test_compose_topics_job_states_the_dlq_retention(compose_file: str) -> None:
    services = yaml.safe_load((REPO_ROOT / compose_file).read_text(encoding="utf-8"))["services"]
    command = services["topics"]["command"]
    assert "--dlq-retention-ms" in command, command
    assert int(command[command.index("--dlq-retention-ms") + 1]) == DLQ_RETENTION_MS


def test_every_kubernetes_dlq_topic_has_the_bounded_retention() -> None:
    docs = list(yaml.safe_load_all((REPO_ROOT / "deploy/k8s/base/topics.yaml").read_text(encoding="utf-8")))
    dlqs = [d for d in docs if d and d["spec"]["topicName"].endswith(".dlq")]
    assert {d["spec"]["topicName"] for d in dlqs} >= {"tsunagu.intake.inbound.dlq", "tsunagu.intake.events.dlq"}
    assert all(int(d["spec"]["config"]["retention.ms"]) == DLQ_RETENTION_MS for d in dlqs)


async def test_the_topics_job_refuses_an_unbounded_dlq_retention() -> None:
    for value in ("-1", str(DLQ_RETENTION_MS + 1)):
        args = parser().parse_args(["--bootstrap", "127.0.0.1:1", "topics", "create", "--dlq-retention-ms", value])
        with pytest.raises(SystemExit, match="dlq-retention-ms"):
            await cmd_topics(args)


def test_the_runbook_states_the_dlq_retention_and_who_may_read_it() -> None:
    runbook = (REPO_ROOT / "docs/operations.md").read_text(encoding="utf-8")
    section = runbook.split("## Dead letters and stalled consumers", 1)[1].split("\n## ", 1)[0]
    assert str(DLQ_RETENTION_MS) in section
    assert "may read" in section
    assert "dead_letter_backlog" in section
    assert "/health/ready" in section
