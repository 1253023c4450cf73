"""KEDA scales on the lag of consumer groups that really exist.

A ScaledObject naming a group no service uses reads the whole topic as lag and
scales to the maximum; this ties the manifests to the services' own registrations.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "referral", "resources", "reporting")


def registered_groups(service: str, var_dir: Path) -> tuple[set[str], set[str]]:
    app_module = importlib.import_module(f"tsunagu_{service}.app")
    settings_module = importlib.import_module(f"tsunagu_{service}.settings")
    settings_class = next(
        getattr(settings_module, name)
        for name in dir(settings_module)
        if name.endswith("Settings") and name != "ServiceSettings"
    )
    app = app_module.create_app(settings_class(broker_mode="memory", var_dir=var_dir))
    runtime = app.state.runtime
    return {c.name for c in runtime.consumers}, set(runtime.subscribed_topics)


def scaled_triggers(service: str) -> list[dict[str, str]]:
    path = ROOT / "deploy" / "k8s" / "base" / f"{service}.yaml"
    triggers = []
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "ScaledObject":
            triggers += [t["metadata"] for t in doc["spec"]["triggers"] if t["type"] == "kafka"]
    return triggers


@pytest.mark.parametrize("service", SERVICES)
def test_every_keda_trigger_names_a_registered_consumer_group_and_its_topic(service: str, tmp_path: Path) -> None:
    groups, topics = registered_groups(service, tmp_path)
    for trigger in scaled_triggers(service):
        assert trigger["consumerGroup"] in groups, f"{service}: KEDA scales on unknown group {trigger['consumerGroup']}"
        assert trigger["topic"] in topics, (
            f"{service}: group {trigger['consumerGroup']} does not read {trigger['topic']}"
        )
