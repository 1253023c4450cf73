"""The Kubernetes init container `wait-for-topics` (deploy/k8s/base/config.yaml), run for real.

It keeps a service from starting before the Strimzi topic operator has created the topics (a
service creates missing topics itself, with replication factor 1). Here it runs against the test
broker: it must wait while a topic is missing and finish once all exist.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import yaml
from tsunagu_platform.kafka import ensure_topics

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base" / "config.yaml"


def script_text() -> str:
    docs = [d for d in yaml.safe_load_all(CONFIG.read_text()) if d]
    scripts = next(d for d in docs if d["metadata"]["name"] == "tsunagu-scripts")
    return str(scripts["data"]["wait_for_topics.py"])


def test_script_compiles() -> None:
    compile(script_text(), "wait_for_topics.py", "exec")


def test_waits_for_missing_topics_and_finishes_when_they_exist(kafka_bootstrap: str, tmp_path: Path) -> None:
    script = tmp_path / "wait_for_topics.py"
    script.write_text(script_text())
    topics = [f"test.{uuid.uuid4().hex[:10]}.events", f"test.{uuid.uuid4().hex[:10]}.events.dlq"]
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "TSUNAGU_REQUIRED_TOPICS": ",".join(topics)}

    waiting = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        waiting.wait(timeout=4)
        raise AssertionError(f"exited while topics were missing: {waiting.stdout.read() if waiting.stdout else ''}")
    except subprocess.TimeoutExpired:
        pass
    finally:
        waiting.kill()
        output = waiting.communicate()[0]
    assert "waiting for topics" in output, output

    asyncio.run(ensure_topics(kafka_bootstrap, topics, partitions=1))
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all 2 topics exist" in done.stdout
