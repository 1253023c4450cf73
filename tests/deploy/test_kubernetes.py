"""deploy/k8s, validated offline: every overlay renders, and what it renders is valid and coherent.

- `kubectl kustomize` renders each overlay (the base is only ever applied through one);
- `kubernetes-validate --strict` checks the core kinds against the Kubernetes OpenAPI schemas it
  bundles, for the oldest Kubernetes release the manifests support and for the newest it knows;
- the Strimzi, CloudNativePG and KEDA resources are checked against the CRD schemas vendored in
  deploy/crds, with unknown fields rejected as the API server does;
- the project's rules: probes, pinned images, Secrets that exist, consumers never scaled past the
  partition count, NetworkPolicies that let a service reach only Kafka, DNS and its own database,
  event topics kept forever.

Each check is also shown to fail on a deliberately broken manifest.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from tsunagu_events.topics import retention_ms

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S = REPO_ROOT / "deploy" / "k8s"
CRDS = REPO_ROOT / "deploy" / "crds"
OVERLAYS = {"dev": K8S / "overlays" / "dev", "production": K8S / "overlays" / "production"}
NAMESPACES = {"dev": "tsunagu-dev", "production": "tsunagu"}

# The oldest Kubernetes release the manifests are written for (policy/v1 PDBs, matchLabelKeys-free
# spread constraints, restricted Pod Security); kubernetes-validate also checks the newest it bundles.
MIN_KUBERNETES = "1.30.0"

SERVICES = {"intake": 8001, "referral": 8002, "resources": 8003, "reporting": 8004}
CONTRACT_ENV = {
    "DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_IDEMPOTENCE",
    "TSUNAGU_TENANT",
    "TSUNAGU_TOKEN_SIGNING_KEY",
    "LOG_LEVEL",
    "PORT",
    "HOST",
}
TOPICS = {f"tsunagu.{s}.events" for s in SERVICES} | {"tsunagu.intake.inbound"}
ALL_TOPICS = TOPICS | {f"{t}.dlq" for t in TOPICS}
# Secrets production creates out of band (docs/operations.md); everything else must be rendered or
# written by CloudNativePG.
EXTERNAL_SECRETS = {
    "production": {
        "tsunagu-token-signing",
        "tsunagu-keystore-credentials",
        "tsunagu-referral-keystore-credentials",
        "tsunagu-intake-keystore-master",
        "tsunagu-referral-keystore-master",
    },
    "dev": set(),
}
CR_GROUPS = {"kafka.strimzi.io", "postgresql.cnpg.io", "keda.sh"}
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what a containerised service must bind, not a binding made here


def group_of(doc: dict[str, Any]) -> str:
    api = doc["apiVersion"]
    return api.split("/", 1)[0] if "/" in api else ""


def is_custom(doc: dict[str, Any]) -> bool:
    return group_of(doc) in CR_GROUPS


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def by_name(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in of_kind(docs, kind)}


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector against a label set (an empty selector matches everything)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# --------------------------------------------------------------------------------------------------
# CRD schemas → JSON Schema


def structural_to_jsonschema(node: Any) -> Any:
    """A CRD structural schema as JSON Schema, with the API server's treatment of unknown fields.

    Objects that declare `properties` reject other fields unless marked
    x-kubernetes-preserve-unknown-fields (kubectl applies with strict field validation);
    x-kubernetes-int-or-string accepts both; CEL rules are not evaluated offline.
    """
    if isinstance(node, list):
        return [structural_to_jsonschema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "x-kubernetes-validations":
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {name: structural_to_jsonschema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = structural_to_jsonschema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [structural_to_jsonschema(x) for x in value]
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in node
    ):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def crd_validators() -> dict[tuple[str, str, str], jsonschema.protocols.Validator]:
    validators = {}
    for path in sorted(CRDS.rglob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        assert crd["kind"] == "CustomResourceDefinition", path
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = structural_to_jsonschema(version["schema"]["openAPIV3Schema"])
            jsonschema.Draft7Validator.check_schema(schema)
            validators[(group, version["name"], kind)] = jsonschema.Draft7Validator(schema)
    return validators


def crd_errors(validators: dict[tuple[str, str, str], Any], doc: dict[str, Any]) -> list[str]:
    group, version = doc["apiVersion"].split("/", 1)
    validator = validators.get((group, version, doc["kind"]))
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    if validator is None:
        return [f"{name}: no vendored CRD schema for {doc['apiVersion']} {doc['kind']}"]
    return [
        f"{name}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))
    ]


# --------------------------------------------------------------------------------------------------
# Rendering and the core-kind validator


@pytest.fixture(scope="module")
def rendered(kubectl: str, run_tool) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for overlay, path in OVERLAYS.items():
        result = run_tool([kubectl, "kustomize", path])
        assert result.returncode == 0, f"kubectl kustomize {path}:\n{result.stderr}"
        out[overlay] = [d for d in yaml.safe_load_all(result.stdout) if d]
    return out


@pytest.fixture(scope="module")
def kubernetes_versions() -> list[str]:
    from kubernetes_validate import utils

    latest = utils.latest_version()
    known = utils.all_versions()
    assert MIN_KUBERNETES in known, f"kubernetes-validate {known[0]}..{latest} lacks {MIN_KUBERNETES}"
    return sorted({MIN_KUBERNETES, latest})


def validate_core(run_tool, python_exe: str, docs: list[dict[str, Any]], version: str, tmp: Path):
    path = tmp / f"core-{version}.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    # The CLI picks the bundled schema set with -k (offline); --strict rejects unknown fields.
    return run_tool([python_exe, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", version, path])


# --------------------------------------------------------------------------------------------------
# The project's rules over a rendered overlay


def env_names(container: dict[str, Any], configmaps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every variable a container gets: from envFrom ConfigMaps, then env (which wins)."""
    names: dict[str, Any] = {}
    for source in container.get("envFrom") or []:
        ref = (source.get("configMapRef") or {}).get("name")
        if ref in configmaps:
            names.update(configmaps[ref].get("data") or {})
    for var in container.get("env") or []:
        names[var["name"]] = var.get("value", var.get("valueFrom"))
    return names


def secret_refs(pod_spec: dict[str, Any]) -> set[str]:
    refs = set()
    for container in (pod_spec.get("initContainers") or []) + pod_spec["containers"]:
        for var in container.get("env") or []:
            ref = ((var.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
            if ref:
                refs.add(ref)
        for source in container.get("envFrom") or []:
            ref = (source.get("secretRef") or {}).get("name")
            if ref:
                refs.add(ref)
    return refs


def image_problem(where: str, image: str) -> str | None:
    host = image.split("/", 1)[0] if "/" in image else ""
    if not ("." in host or ":" in host or host == "localhost"):
        # `tsunagu/intake` means docker.io/tsunagu/intake: anyone could publish an image of that name.
        return f"{where}: image {image} names no registry (it would be pulled from Docker Hub)"
    last = image.rsplit("/", 1)[-1]
    if "@sha256:" in image:
        return None
    if ":" not in last:
        return f"{where}: image {image} has no tag"
    if last.endswith(":latest"):
        return f"{where}: image {image} uses latest"
    return None


def own_databases(pod_spec: dict[str, Any], clusters: set[str]) -> set[str]:
    """The CloudNativePG clusters a pod is configured to use: <cluster>-app Secrets and -rw hosts."""
    used = {ref[: -len("-app")] for ref in secret_refs(pod_spec) if ref.endswith("-app")}
    for container in pod_spec["containers"]:
        for var in container.get("env") or []:
            for host in re.findall(r"@([a-z0-9-]+)-rw[.:]", str(var.get("value", ""))):
                used.add(host)
    return used & clusters


def sealing_services() -> set[str]:
    """The services whose code seals personal data or keeps person keys (runtime.keys), read from the code:
    a new one fails these checks until its Deployment gets a key store and a master key."""
    uses = re.compile(r"\.keys\.(seal|open|prepare|erase)\(|erase_keys_on_person_erased\(")
    return {
        service
        for service in SERVICES
        if any(uses.search(f.read_text()) for f in (REPO_ROOT / "services" / service / "src").rglob("*.py"))
    }


SEALING = sealing_services()


def keystore_problems(service: str, pod_spec: dict[str, Any], clusters: set[str]) -> list[str]:
    """migrate and serve of a sealing service: a key store Cluster of its own and the master key from a Secret."""
    problems = []
    containers = [
        c for c in (pod_spec.get("initContainers") or []) + pod_spec["containers"] if c.get("name") != "wait-for-topics"
    ]
    for container in containers:
        where = f"Deployment/{service}/{container['name']}"
        env = {v["name"]: v for v in container.get("env") or []}
        hosts = set(re.findall(r"@([a-z0-9-]+)-rw[.:]", str(env.get("TSUNAGU_KEYSTORE_URL", {}).get("value", ""))))
        if not hosts & clusters or f"pg-{service}" in hosts:
            problems.append(f"{where}: TSUNAGU_KEYSTORE_URL must name a key store Cluster of its own")
        master = env.get("TSUNAGU_KEYSTORE_MASTER_KEY") or {}
        if "value" in master or not ((master.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name"):
            problems.append(f"{where}: TSUNAGU_KEYSTORE_MASTER_KEY must come from a Secret (secretKeyRef)")
    return problems


def manifest_problems(docs: list[dict[str, Any]], overlay: str) -> list[str]:
    problems: list[str] = []
    namespace = NAMESPACES[overlay]
    configmaps = by_name(docs, "ConfigMap")
    secrets = by_name(docs, "Secret")
    clusters = by_name(docs, "Cluster")
    deployments = by_name(docs, "Deployment")
    topics = {d["spec"].get("topicName", d["metadata"]["name"]): d for d in of_kind(docs, "KafkaTopic")}
    kafkas = by_name(docs, "Kafka")
    pools = of_kind(docs, "KafkaNodePool")
    scaled = by_name(docs, "ScaledObject")
    policies = of_kind(docs, "NetworkPolicy")
    config = (configmaps.get("tsunagu-config") or {}).get("data") or {}

    # Namespaces: everything in the overlay's namespace, which the overlay creates.
    if namespace not in by_name(docs, "Namespace"):
        problems.append(f"the overlay does not create namespace {namespace}")
    for d in docs:
        if d["kind"] != "Namespace" and d["metadata"].get("namespace") != namespace:
            problems.append(f"{d['kind']}/{d['metadata']['name']} is not in namespace {namespace}")

    # Secrets: rendered, written by CloudNativePG, or created out of band (production only).
    if overlay == "production" and secrets:
        problems.append(f"production renders Secrets {sorted(secrets)}: secrets must not live in git")
    available = set(secrets) | {f"{c}-app" for c in clusters} | EXTERNAL_SECRETS[overlay]
    for name, cluster in clusters.items():
        ref = (((cluster["spec"].get("bootstrap") or {}).get("initdb") or {}).get("secret") or {}).get("name")
        if ref and ref not in available:
            problems.append(f"Cluster/{name}: bootstrap secret {ref} does not exist")
        problem = image_problem(f"Cluster/{name}", cluster["spec"].get("imageName", ""))
        if problem:
            problems.append(problem)

    if config.get("KAFKA_IDEMPOTENCE") != "true":
        problems.append("tsunagu-config: KAFKA_IDEMPOTENCE must be 'true' on Apache Kafka")
    if config.get("HOST") != ALL_INTERFACES:
        problems.append("tsunagu-config: HOST must be 0.0.0.0 (the services bind 127.0.0.1 by default)")

    # The four services.
    for service, port in SERVICES.items():
        dep = deployments.get(service)
        if dep is None:
            problems.append(f"Deployment/{service} is missing")
            continue
        pod = dep["spec"]["template"]
        spec = pod["spec"]
        labels = pod["metadata"].get("labels") or {}
        if not selector_matches(dep["spec"]["selector"], labels):
            problems.append(f"Deployment/{service}: selector does not match its pod labels")
        if not (spec.get("securityContext") or {}).get("runAsNonRoot"):
            problems.append(f"Deployment/{service}: pods must run as non-root")
        for ref in secret_refs(spec) - available:
            problems.append(f"Deployment/{service}: Secret {ref} does not exist")
        for container in (spec.get("initContainers") or []) + spec["containers"]:
            where = f"Deployment/{service}/{container['name']}"
            problem = image_problem(where, container["image"])
            if problem:
                problems.append(problem)
            if not (container.get("resources") or {}).get("limits", {}).get("memory"):
                problems.append(f"{where}: no memory limit")
            if not (container.get("securityContext") or {}).get("readOnlyRootFilesystem"):
                problems.append(f"{where}: root filesystem must be read-only")
        main = next((c for c in spec["containers"] if c["name"] == service), None)
        if main is None:
            problems.append(f"Deployment/{service}: no container named {service}")
            continue
        if main.get("args") != ["serve"]:
            problems.append(f"Deployment/{service}: the container must run `serve`")
        migrate = [c for c in spec.get("initContainers") or [] if c.get("args") == ["migrate"]]
        if not migrate or migrate[0]["image"] != main["image"]:
            problems.append(f"Deployment/{service}: needs a `migrate` init container with the service image")
        waits = [c for c in spec.get("initContainers") or [] if c["name"] == "wait-for-topics"]
        required = {v["name"]: v.get("value", "") for v in (waits[0].get("env") or [])} if waits else {}
        if set(required.get("TSUNAGU_REQUIRED_TOPICS", "").split(",")) != ALL_TOPICS:
            problems.append(f"Deployment/{service}: must wait for every topic before starting (wait-for-topics)")
        ports = {p["containerPort"] for p in main.get("ports") or []}
        if ports != {port}:
            problems.append(f"Deployment/{service}: container port must be {port}, is {sorted(ports)}")
        env = env_names(main, configmaps)
        missing = CONTRACT_ENV - set(env)
        if service == "intake":
            missing |= {"TSUNAGU_KEYSTORE_URL"} - set(env)
        if service in SEALING:
            problems += keystore_problems(service, spec, set(clusters))
        for container in (spec.get("initContainers") or []) + spec["containers"]:
            if container["name"] == "wait-for-topics":
                continue
            has_url = any(v["name"] == "TSUNAGU_KEYSTORE_URL" for v in container.get("env") or [])
            var = any(
                m["mountPath"] == "/app/var" and not m.get("readOnly") for m in container.get("volumeMounts") or []
            )
            if not has_url and not var:
                problems.append(
                    f"Deployment/{service}/{container['name']}: its key store falls back to /app/var on a "
                    "read-only root (set TSUNAGU_KEYSTORE_URL or mount /app/var)"
                )
        if missing:
            problems.append(f"Deployment/{service}: environment lacks {sorted(missing)}")
        if str(env.get("PORT")) != str(port):
            problems.append(f"Deployment/{service}: PORT must be {port}")
        ready = ((main.get("readinessProbe") or {}).get("httpGet") or {}).get("path")
        live = ((main.get("livenessProbe") or {}).get("httpGet") or {}).get("path")
        if ready != "/health/ready":
            problems.append(f"Deployment/{service}: readiness must probe /health/ready (database and broker)")
        if live != "/health/live":
            problems.append(f"Deployment/{service}: liveness must probe /health/live (process only)")
        for kind in ("PodDisruptionBudget", "Service"):
            if not any(
                selector_matches(
                    d["spec"].get("selector")
                    if kind == "PodDisruptionBudget"
                    else {"matchLabels": d["spec"].get("selector")},
                    labels,
                )
                for d in of_kind(docs, kind)
            ):
                problems.append(f"Deployment/{service}: no {kind} selects its pods")
        if service in scaled and "replicas" in dep["spec"]:
            problems.append(f"Deployment/{service}: KEDA owns the replica count; remove spec.replicas")

        # NetworkPolicies: only Kafka, DNS and its own database(s) are reachable.
        applying = [p for p in policies if selector_matches(p["spec"]["podSelector"], labels)]
        if not any("Egress" in p["spec"].get("policyTypes", []) for p in applying):
            problems.append(f"Deployment/{service}: no NetworkPolicy restricts its egress")
        allowed_dbs = own_databases(spec, set(clusters))
        reached: set[str] = set()
        for policy in applying:
            if "Egress" not in policy["spec"].get("policyTypes", []):
                continue
            for rule in policy["spec"].get("egress") or []:
                peers = rule.get("to") or []
                if not peers:
                    problems.append(f"NetworkPolicy/{policy['metadata']['name']}: egress to anywhere")
                for peer in peers:
                    pod_labels = (peer.get("podSelector") or {}).get("matchLabels") or {}
                    ns_labels = (peer.get("namespaceSelector") or {}).get("matchLabels") or {}
                    if "ipBlock" in peer:
                        problems.append(f"NetworkPolicy/{policy['metadata']['name']}: ipBlock egress")
                    elif (
                        ns_labels.get("kubernetes.io/metadata.name") == "kube-system"
                        and pod_labels.get("k8s-app") == "kube-dns"
                    ):
                        continue
                    elif "namespaceSelector" in peer:
                        problems.append(f"NetworkPolicy/{policy['metadata']['name']}: egress to another namespace")
                    elif (
                        pod_labels.get("strimzi.io/cluster") in kafkas and pod_labels.get("strimzi.io/kind") == "Kafka"
                    ):
                        continue
                    elif pod_labels.get("cnpg.io/cluster") in clusters:
                        reached.add(pod_labels["cnpg.io/cluster"])
                    else:
                        problems.append(f"NetworkPolicy/{policy['metadata']['name']}: egress to {peer}")
        if reached != allowed_dbs:
            problems.append(
                f"Deployment/{service}: may reach databases {sorted(reached)}, "
                f"should reach exactly {sorted(allowed_dbs)}"
            )

    # Each database accepts only its own service (plus its instances and the operator).
    for name in clusters:
        guarding = [
            p
            for p in policies
            if selector_matches(p["spec"]["podSelector"], {"cnpg.io/cluster": name})
            and "Ingress" in p["spec"].get("policyTypes", [])
        ]
        if not guarding:
            problems.append(f"Cluster/{name}: no NetworkPolicy restricts who connects")
        for policy in guarding:
            for rule in policy["spec"].get("ingress") or []:
                for peer in rule.get("from") or [{}]:
                    app = ((peer.get("podSelector") or {}).get("matchLabels") or {}).get("app.kubernetes.io/name")
                    if app in SERVICES and name not in own_databases(
                        deployments[app]["spec"]["template"]["spec"], set(clusters)
                    ):
                        problems.append(f"Cluster/{name}: admits {app}, which does not own it")
                if not rule.get("from"):
                    problems.append(f"NetworkPolicy/{policy['metadata']['name']}: ingress from anywhere")

    # Kafka: KRaft node pools, brokers enough for the replication factors, explicit topics.
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"].get("roles", []))
    for name, kafka in kafkas.items():
        cfg = kafka["spec"]["kafka"].get("config") or {}
        if not str(kafka["spec"]["kafka"].get("version", "")).startswith("4."):
            problems.append(f"Kafka/{name}: pin a 4.x Kafka version")
        if cfg.get("auto.create.topics.enable") is not False:
            problems.append(f"Kafka/{name}: auto.create.topics.enable must be false")
        if cfg.get("unclean.leader.election.enable") is not False:
            problems.append(f"Kafka/{name}: unclean.leader.election.enable must be false")
        rf = cfg.get("default.replication.factor", 1)
        if rf > brokers or cfg.get("min.insync.replicas", 1) > rf:
            problems.append(
                f"Kafka/{name}: replication {rf}/min ISR {cfg.get('min.insync.replicas')} with {brokers} broker(s)"
            )
    for pool in pools:
        if pool["metadata"].get("labels", {}).get("strimzi.io/cluster") not in kafkas:
            problems.append(f"KafkaNodePool/{pool['metadata']['name']}: not attached to a Kafka")
    if set(topics) != ALL_TOPICS:
        problems.append(
            f"topics differ from the contract: extra {sorted(set(topics) - ALL_TOPICS)}, "
            f"missing {sorted(ALL_TOPICS - set(topics))}"
        )
    for name, topic in topics.items():
        spec = topic["spec"]
        cfg = spec.get("config") or {}
        if topic["metadata"].get("labels", {}).get("strimzi.io/cluster") not in kafkas:
            problems.append(f"KafkaTopic/{name}: not attached to a Kafka")
        replicas = spec.get("replicas", 1)
        isr = int(cfg.get("min.insync.replicas", 1))
        if replicas > brokers:
            problems.append(f"KafkaTopic/{name}: {replicas} replicas on {brokers} broker(s)")
        if isr > replicas or (replicas >= 3 and isr < 2):
            problems.append(f"KafkaTopic/{name}: min.insync.replicas {isr} with {replicas} replicas")
        topic_name = spec.get("topicName", name)
        if int(cfg.get("retention.ms", 0)) != retention_ms(topic_name):
            problems.append(
                f"KafkaTopic/{name}: retention.ms must be {retention_ms(topic_name)} "
                "(tsunagu_events.topics.retention_ms; events are the replayable history)"
            )
        if not name.endswith(".dlq") and cfg.get("cleanup.policy", "delete") != "delete":
            problems.append(f"KafkaTopic/{name}: must not be compacted")

    # KEDA: targets exist, consumers never outnumber partitions, one bootstrap address.
    for name, so in scaled.items():
        spec = so["spec"]
        target = spec["scaleTargetRef"]["name"]
        if target not in deployments:
            problems.append(f"ScaledObject/{name}: target Deployment {target} does not exist")
        maximum = spec.get("maxReplicaCount", 100)
        if spec.get("minReplicaCount", 0) < 1:
            problems.append(f"ScaledObject/{name}: the service answers HTTP, never scale to zero")
        if spec.get("minReplicaCount", 0) > maximum:
            problems.append(f"ScaledObject/{name}: minReplicaCount above maxReplicaCount")
        for trigger in spec["triggers"]:
            meta = trigger.get("metadata") or {}
            if trigger["type"] != "kafka":
                continue
            topic = meta.get("topic")
            if topic not in topics:
                problems.append(f"ScaledObject/{name}: trigger topic {topic} is not a KafkaTopic")
            elif maximum > topics[topic]["spec"]["partitions"]:
                problems.append(
                    f"ScaledObject/{name}: maxReplicaCount {maximum} exceeds the "
                    f"{topics[topic]['spec']['partitions']} partitions of {topic}"
                )
            if meta.get("bootstrapServers") != config.get("KAFKA_BOOTSTRAP_SERVERS"):
                problems.append(f"ScaledObject/{name}: bootstrapServers differs from tsunagu-config")
            if f".{namespace}." not in str(meta.get("bootstrapServers")):
                problems.append(f"ScaledObject/{name}: KEDA needs the namespace-qualified bootstrap address")
            if meta.get("allowIdleConsumers") != "false":
                problems.append(f"ScaledObject/{name}: allowIdleConsumers must be false")
            if not meta.get("consumerGroup"):
                problems.append(f"ScaledObject/{name}: trigger without consumerGroup")
    return problems


# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    kinds = {d["kind"] for d in rendered[overlay]}
    assert {
        "Deployment",
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "Cluster",
        "ScaledObject",
        "PodDisruptionBudget",
        "NetworkPolicy",
    } <= kinds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_kinds_pass_kubernetes_validate_strict(
    rendered, overlay: str, kubernetes_versions: list[str], run_tool, python_exe: str, tmp_path: Path
) -> None:
    core = [d for d in rendered[overlay] if not is_custom(d)]
    assert core
    for version in kubernetes_versions:
        result = validate_core(run_tool, python_exe, core, version, tmp_path)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        # A core kind without a bundled schema is only a warning for the tool; not for us.
        assert "WARN" not in output, output


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_match_their_crd_schemas(rendered, overlay: str, crd_validators) -> None:
    custom = [d for d in rendered[overlay] if is_custom(d)]
    assert {d["kind"] for d in custom} == {"Kafka", "KafkaNodePool", "KafkaTopic", "Cluster", "ScaledObject"}
    errors = [e for d in custom for e in crd_errors(crd_validators, d)]
    assert errors == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_follows_the_project_rules(rendered, overlay: str) -> None:
    assert manifest_problems(rendered[overlay], overlay) == []


def test_every_rendered_kind_is_validated(rendered) -> None:
    """Nothing slips through: a kind is either core (kubernetes-validate) or has a vendored CRD."""
    from kubernetes_validate import utils

    vendored = {(yaml.safe_load(p.read_text())["spec"]["names"]["kind"]) for p in CRDS.rglob("*.yaml")}
    for docs in rendered.values():
        for d in docs:
            if is_custom(d):
                assert d["kind"] in vendored, d["kind"]
            else:
                utils.validate(d, MIN_KUBERNETES, strict=True)  # raises when no schema exists


def test_production_differs_from_dev_where_it_matters(rendered) -> None:
    prod, dev = rendered["production"], rendered["dev"]
    assert all(c["spec"]["instances"] >= 3 for c in of_kind(prod, "Cluster"))
    assert sum(p["spec"]["replicas"] for p in of_kind(prod, "KafkaNodePool")) >= 3
    assert all(t["spec"]["replicas"] == 3 for t in of_kind(prod, "KafkaTopic"))
    assert all(int(t["spec"]["config"]["min.insync.replicas"]) == 2 for t in of_kind(prod, "KafkaTopic"))
    assert all(so["spec"]["minReplicaCount"] >= 2 for so in of_kind(prod, "ScaledObject"))
    assert of_kind(dev, "Secret"), "dev generates its development secrets"


# --------------------------------------------------------------------------------------------------
# Negative tests: deliberately broken manifests make each check fail.


def first(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    return copy.deepcopy(next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)))


def test_broken_core_manifest_fails_kubernetes_validate(rendered, run_tool, python_exe: str, tmp_path: Path) -> None:
    deployment = first(rendered["production"], "Deployment", "intake")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbes"] = container.pop("livenessProbe")  # a typo kubectl --validate=strict refuses
    pdb = first(rendered["production"], "PodDisruptionBudget")
    pdb["spec"]["maxUnavailable"] = [1]  # wrong type
    result = validate_core(run_tool, python_exe, [deployment, pdb], MIN_KUBERNETES, tmp_path)
    assert result.returncode != 0
    assert "livenessProbes" in result.stdout
    assert "poddisruptionbudget/intake" in result.stdout


BROKEN_CUSTOM = {
    "topic-zero-partitions": ("KafkaTopic", lambda d: d["spec"].update(partitions=0), "partitions"),
    "listener-typo": ("Kafka", lambda d: d["spec"]["kafka"]["listeners"][0].update(tlss=True), "tlss"),
    "listener-missing-tls": ("Kafka", lambda d: d["spec"]["kafka"]["listeners"][0].pop("tls"), "'tls' is a required"),
    "nodepool-bad-role": ("KafkaNodePool", lambda d: d["spec"].update(roles=["broker", "zookeeper"]), "roles"),
    "cluster-instances-string": ("Cluster", lambda d: d["spec"].update(instances="3"), "instances"),
    "cluster-unknown-field": ("Cluster", lambda d: d["spec"].update(instance=3), "instance"),
    "scaledobject-without-triggers": ("ScaledObject", lambda d: d["spec"].pop("triggers"), "triggers"),
}


@pytest.mark.parametrize("case", BROKEN_CUSTOM)
def test_broken_custom_resource_fails_crd_schema(rendered, crd_validators, case: str) -> None:
    kind, breaker, expected = BROKEN_CUSTOM[case]
    doc = first(rendered["production"], kind)
    assert crd_errors(crd_validators, doc) == []
    breaker(doc)
    errors = crd_errors(crd_validators, doc)
    assert any(expected in e for e in errors), errors


def _scale_past_partitions(docs: list[dict[str, Any]]) -> None:
    next(d for d in docs if d["kind"] == "ScaledObject")["spec"]["maxReplicaCount"] = 12


def _egress_to_other_database(docs: list[dict[str, Any]]) -> None:
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "referral")
    policy["spec"]["egress"][0]["to"].append({"podSelector": {"matchLabels": {"cnpg.io/cluster": "pg-intake"}}})


def _no_readiness(docs: list[dict[str, Any]]) -> None:
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "resources")
    del dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]


def _event_topic_expires(docs: list[dict[str, Any]]) -> None:
    topic = next(d for d in docs if d["kind"] == "KafkaTopic" and d["metadata"]["name"] == "tsunagu.intake.events")
    topic["spec"]["config"]["retention.ms"] = 604800000


def _secret_in_git(docs: list[dict[str, Any]]) -> None:
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "tsunagu-token-signing", "namespace": "tsunagu"},
            "stringData": {"signing-key": "oops"},
        }
    )


def _latest_image(docs: list[dict[str, Any]]) -> None:
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "intake")
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.invalid/tsunagu/intake:latest"


def _docker_hub_image(docs: list[dict[str, Any]]) -> None:
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "intake")
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "tsunagu/intake:0.1.0"


def _master_key_literal(docs: list[dict[str, Any]]) -> None:
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "referral")
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    var = next(v for v in env if v["name"] == "TSUNAGU_KEYSTORE_MASTER_KEY")
    var.pop("valueFrom")
    var["value"] = "c2VjcmV0LWluLWdpdC1zZWNyZXQtaW4tZ2l0LXNlY3JldA=="


def _migrate_without_key_store(docs: list[dict[str, Any]]) -> None:
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "referral")
    migrate = dep["spec"]["template"]["spec"]["initContainers"][0]
    migrate["env"] = [v for v in migrate["env"] if v["name"] != "TSUNAGU_KEYSTORE_URL"]


def _no_var_for_the_default_key_store(docs: list[dict[str, Any]]) -> None:
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "reporting")
    migrate = dep["spec"]["template"]["spec"]["initContainers"][0]
    migrate["volumeMounts"] = [m for m in migrate["volumeMounts"] if m["mountPath"] != "/app/var"]


BROKEN_RULES = {
    "read-only-default-key-store": (_no_var_for_the_default_key_store, "reporting/migrate: its key store falls back"),
    "master-key-literal": (_master_key_literal, "TSUNAGU_KEYSTORE_MASTER_KEY must come from a Secret"),
    "migrate-without-key-store": (_migrate_without_key_store, "referral/migrate: TSUNAGU_KEYSTORE_URL must name"),
    "keda-past-partitions": (_scale_past_partitions, "exceeds the 6 partitions"),
    "egress-to-another-database": (
        _egress_to_other_database,
        "should reach exactly ['pg-referral', 'pg-referral-keystore']",
    ),
    "no-readiness-probe": (_no_readiness, "readiness must probe"),
    "event-topic-expires": (_event_topic_expires, "retention.ms must be -1"),
    "secret-in-production": (_secret_in_git, "must not live in git"),
    "latest-image": (_latest_image, "uses latest"),
    "docker-hub-image": (_docker_hub_image, "names no registry"),
}


@pytest.mark.parametrize("case", BROKEN_RULES)
def test_project_rules_catch_broken_manifests(rendered, case: str) -> None:
    breaker, expected = BROKEN_RULES[case]
    docs = copy.deepcopy(rendered["production"])
    breaker(docs)
    problems = manifest_problems(docs, "production")
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_that_seals_gets_its_own_key_store_and_master_key_secret(rendered, overlay: str) -> None:
    assert {"intake", "referral"} <= SEALING, "the scan of the services' code finds the sealing services"
    docs = rendered[overlay]
    clusters = set(by_name(docs, "Cluster"))
    deployments = by_name(docs, "Deployment")
    stores, master_secrets = set(), set()
    for service in sorted(SEALING):
        spec = deployments[service]["spec"]["template"]["spec"]
        assert keystore_problems(service, spec, clusters) == []
        main = next(c for c in spec["containers"] if c["name"] == service)
        env = {v["name"]: v for v in main["env"]}
        stores |= set(re.findall(r"@([a-z0-9-]+)-rw[.:]", env["TSUNAGU_KEYSTORE_URL"]["value"]))
        master_secrets.add(env["TSUNAGU_KEYSTORE_MASTER_KEY"]["valueFrom"]["secretKeyRef"]["name"])
    assert len(stores) == len(SEALING), "no two services share a key store (their person ids would collide)"
    assert len(master_secrets) == len(SEALING), "each service has its own master key"


def test_broken_kustomization_fails_to_render(kubectl: str, run_tool, tmp_path: Path) -> None:
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    kustomization = tree / "overlays" / "dev" / "kustomization.yaml"
    kustomization.write_text(
        kustomization.read_text().replace("path: patches/kafka.yaml", "path: patches/kafka-missing.yaml")
    )
    result = run_tool([kubectl, "kustomize", tree / "overlays" / "dev"])
    assert result.returncode != 0
    assert "kafka-missing.yaml" in result.stderr


def test_patch_typo_that_renders_is_caught_by_the_crd_schema(
    kubectl: str, run_tool, crd_validators, tmp_path: Path
) -> None:
    """kustomize applies a JSON-patch `replace` of a missing field without complaint; the schema does not."""
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    patch = tree / "overlays" / "dev" / "patches" / "topics.yaml"
    patch.write_text(patch.read_text().replace("path: /spec/replicas", "path: /spec/replica"))
    result = run_tool([kubectl, "kustomize", tree / "overlays" / "dev"])
    assert result.returncode == 0, result.stderr
    topics = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "KafkaTopic"]
    errors = [e for d in topics for e in crd_errors(crd_validators, d)]
    assert any("'replica' was unexpected" in e for e in errors), errors
