"""docker-compose.yml and docker-compose.cluster.yml, validated offline.

Three layers: the compose binary itself (`config -q`: parsing, interpolation, its own schema), the
compose-spec JSON schema vendored in deploy/schemas (check-jsonschema), and this project's rules over
the fully resolved model (`config --format json`): health-gated dependencies have healthchecks,
builds point at existing Dockerfiles, Kafka keeps its data on a named volume, producers are
idempotent, replication settings match the number of brokers. Each layer is also shown to fail on a
deliberately broken file.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
MAIN = REPO_ROOT / "docker-compose.yml"
CLUSTER = REPO_ROOT / "docker-compose.cluster.yml"
SCHEMA = REPO_ROOT / "deploy" / "schemas" / "compose-spec.json"
ENV_EXAMPLE = REPO_ROOT / "deploy" / "compose" / "env.example"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what a containerised service must bind, not a binding made here

VARIANTS = {"single-broker": [MAIN], "three-brokers": [MAIN, CLUSTER]}
APP_SERVICES = {"intake": 8001, "referral": 8002, "resources": 8003, "reporting": 8004}
CONTRACT_ENV = (
    "DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_IDEMPOTENCE",
    "TSUNAGU_TENANT",
    "TSUNAGU_TOKEN_SIGNING_KEY",
    "LOG_LEVEL",
    "PORT",
)


@pytest.fixture(scope="module")
def empty_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # An operator's own .env at the repository root must not change what the tests see.
    path = tmp_path_factory.mktemp("compose-env") / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def compose(compose_binary: Path, compose_env: dict[str, str], empty_env_file: Path, run_tool):
    def _compose(files: list[Path], *args: str, env: dict[str, str] | None = None):
        cmd: list[Any] = [compose_binary, "--project-directory", REPO_ROOT, "--env-file", empty_env_file]
        for f in files:
            cmd += ["-f", f]
        return run_tool([*cmd, *args], env={**compose_env, **(env or {})})

    return _compose


@pytest.fixture(scope="module")
def resolved(compose) -> dict[str, dict[str, Any]]:
    models = {}
    for variant, files in VARIANTS.items():
        result = compose(files, "config", "--format", "json")
        assert result.returncode == 0, result.stderr
        models[variant] = json.loads(result.stdout)
    return models


# --------------------------------------------------------------------------------------------------
# The project's rules over a resolved compose model. Each returns the list of what is wrong.


def image_problems(service: str, image: str | None) -> list[str]:
    if not image:
        return [f"{service}: no image"]
    last = image.rsplit("/", 1)[-1]
    if "@sha256:" in image:
        return []
    if ":" not in last:
        return [f"{service}: image {image} has no tag (pin a version)"]
    if last.endswith(":latest"):
        return [f"{service}: image {image} uses the tag latest (pin a version)"]
    return []


def kafka_services(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in model["services"].items() if (s.get("image") or "").startswith("apache/kafka:")}


def sealing_services() -> set[str]:
    """The services whose code seals personal data or keeps person keys (runtime.keys), read from the code:
    a new one fails these checks until its deployment gets a key store and a master key."""
    uses = re.compile(r"\.keys\.(seal|open|prepare|erase)\(|erase_keys_on_person_erased\(")
    return {
        service
        for service in APP_SERVICES
        if any(uses.search(f.read_text()) for f in (REPO_ROOT / "services" / service / "src").rglob("*.py"))
    }


SEALING = sealing_services()


def keystore_problems(name: str, services: dict[str, dict[str, Any]]) -> list[str]:
    """A sealing service and its migrate job: their own key store database and a master key from .env."""
    problems = []
    urls = set()
    for where in (name, f"{name}-migrate"):
        env = (services.get(where) or {}).get("environment") or {}
        url = str(env.get("TSUNAGU_KEYSTORE_URL", ""))
        urls.add(url)
        if not url.startswith("postgresql://"):
            problems.append(f"{where}: TSUNAGU_KEYSTORE_URL must point at its key store database")
        if not env.get("TSUNAGU_KEYSTORE_MASTER_KEY"):
            problems.append(f"{where}: TSUNAGU_KEYSTORE_MASTER_KEY must be set (else a key file in the container)")
    own = {url.rsplit("/", 1)[-1] for url in urls}
    if len(urls) != 1 or own & {name, *APP_SERVICES}:
        problems.append(f"{name}: key store must be one database of its own, apart from the events ({sorted(urls)})")
    return problems


def compose_problems(model: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    services: dict[str, dict[str, Any]] = model["services"]

    for name, svc in services.items():
        problems += image_problems(name, svc.get("image"))

        for dep, spec in (svc.get("depends_on") or {}).items():
            target = services.get(dep)
            if target is None:
                problems.append(f"{name}: depends on undefined service {dep}")
                continue
            condition = spec.get("condition")
            if condition == "service_healthy":
                check = target.get("healthcheck") or {}
                test = check.get("test") or []
                if check.get("disable") or not test or test[0] == "NONE":
                    problems.append(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
            elif condition == "service_completed_successfully" and target.get("restart") not in (None, "no"):
                problems.append(f"{name}: waits for one-shot {dep} to complete, but {dep} restarts")

        build = svc.get("build")
        if build and svc.get("pull_policy") != "build":
            problems.append(f"{name}: an image built here must have pull_policy: build (else `pull` asks Docker Hub)")
        if build:
            context = Path(build["context"])
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not context.is_dir():
                problems.append(f"{name}: build context {context} does not exist")
            if not dockerfile.is_file():
                problems.append(f"{name}: Dockerfile {dockerfile} does not exist")

        env = svc.get("environment") or {}
        if "KAFKA_IDEMPOTENCE" in env and env["KAFKA_IDEMPOTENCE"] != "true":
            problems.append(f"{name}: KAFKA_IDEMPOTENCE must be true on Apache Kafka, is {env['KAFKA_IDEMPOTENCE']!r}")

        for volume in svc.get("volumes") or []:
            if volume.get("type") == "bind" and not Path(volume["source"]).exists():
                problems.append(f"{name}: bind mount source {volume['source']} does not exist")

    # `docker compose up --wait` treats a one-shot container's exit as success only when a long-running
    # service waits for it with service_completed_successfully.
    adopted = {
        dep
        for svc in services.values()
        for dep, spec in (svc.get("depends_on") or {}).items()
        if spec.get("condition") == "service_completed_successfully"
    }
    for name, svc in services.items():
        if svc.get("restart") == "no" and name not in adopted:
            problems.append(f"{name}: one-shot job no service waits for (`up --wait` would fail)")

    # The four services: contract environment, health-gated start, their own migration first.
    for name, port in APP_SERVICES.items():
        svc = services.get(name)
        if svc is None:
            problems.append(f"service {name} is missing")
            continue
        env = svc.get("environment") or {}
        for key in CONTRACT_ENV:
            if key not in env:
                problems.append(f"{name}: environment lacks {key}")
        if env.get("KAFKA_IDEMPOTENCE") != "true":
            problems.append(f"{name}: KAFKA_IDEMPOTENCE must be 'true'")
        if env.get("HOST") != ALL_INTERFACES:
            problems.append(f"{name}: HOST must be 0.0.0.0 (the services bind 127.0.0.1 by default)")
        if env.get("PORT") != str(port):
            problems.append(f"{name}: PORT must be {port}")
        if not str(env.get("DATABASE_URL", "")).startswith("postgresql://"):
            problems.append(f"{name}: DATABASE_URL must point at PostgreSQL")
        if name == "intake" and not str(env.get("TSUNAGU_KEYSTORE_URL", "")).startswith("postgresql://"):
            problems.append("intake: TSUNAGU_KEYSTORE_URL must point at the key store database")
        if name in SEALING:
            problems += keystore_problems(name, services)
        deps = svc.get("depends_on") or {}
        migrate = deps.get(f"{name}-migrate", {})
        if migrate.get("condition") != "service_completed_successfully":
            problems.append(f"{name}: must wait for {name}-migrate to complete")
        elif services.get(f"{name}-migrate", {}).get("command") != ["migrate"]:
            problems.append(f"{name}-migrate: must run `migrate`")
        if deps.get("topics", {}).get("condition") != "service_completed_successfully":
            problems.append(f"{name}: must wait for the topic job to complete")
        for broker in kafka_services(model):
            if deps.get(broker, {}).get("condition") != "service_healthy":
                problems.append(f"{name}: must wait for broker {broker} to be healthy")
        for published in svc.get("ports") or []:
            if published.get("host_ip") not in ("127.0.0.1", "::1"):
                problems.append(f"{name}: port {published.get('published')} is published beyond loopback by default")

    # Kafka: KRaft, data on a named volume (never /tmp), explicit topics, replication fit for the
    # number of brokers.
    brokers = kafka_services(model)
    if not brokers:
        problems.append("no apache/kafka service")
    n = len(brokers)
    expected_rf = str(min(n, 3))
    expected_isr = "1" if n == 1 else "2"
    voters = set()
    cluster_ids = set()
    for name, svc in brokers.items():
        env = svc.get("environment") or {}
        tag = svc["image"].rsplit(":", 1)[-1]
        if not tag.startswith("4."):
            problems.append(f"{name}: apache/kafka must be pinned to a 4.x release, is {tag}")
        if "controller" not in env.get("KAFKA_PROCESS_ROLES", ""):
            problems.append(f"{name}: not a KRaft controller (KAFKA_PROCESS_ROLES)")
        voters.add(env.get("KAFKA_CONTROLLER_QUORUM_VOTERS"))
        cluster_ids.add(env.get("CLUSTER_ID"))
        log_dirs = env.get("KAFKA_LOG_DIRS")
        if not log_dirs:
            problems.append(f"{name}: KAFKA_LOG_DIRS unset (the image's sample config writes to /tmp)")
        else:
            for d in log_dirs.split(","):
                if d == "/tmp" or d.startswith("/tmp/"):
                    problems.append(f"{name}: Kafka data in {d} (/tmp)")
                mounts = [v for v in svc.get("volumes") or [] if v.get("target") == d]
                if not mounts or mounts[0].get("type") != "volume":
                    problems.append(f"{name}: Kafka data dir {d} is not on a named volume")
        for v in svc.get("volumes") or []:
            if v.get("type") == "tmpfs" or str(v.get("target", "")).startswith("/tmp"):
                problems.append(f"{name}: volume on /tmp or tmpfs ({v.get('target')})")
        if svc.get("tmpfs"):
            problems.append(f"{name}: tmpfs mounts on a broker")
        if env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") != "false":
            problems.append(f"{name}: auto topic creation must be off")
        if env.get("KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE") != "false":
            problems.append(f"{name}: unclean leader election must be off")
        for key in (
            "KAFKA_DEFAULT_REPLICATION_FACTOR",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        ):
            if env.get(key) != expected_rf:
                problems.append(f"{name}: {key} must be {expected_rf} with {n} broker(s), is {env.get(key)}")
        for key in ("KAFKA_MIN_INSYNC_REPLICAS", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
            if env.get(key) != expected_isr:
                problems.append(f"{name}: {key} must be {expected_isr} with {n} broker(s), is {env.get(key)}")
        if not svc.get("healthcheck", {}).get("test"):
            problems.append(f"{name}: broker without healthcheck")
    if len(voters) > 1:
        problems.append(f"brokers disagree on the controller quorum: {voters}")
    if len(cluster_ids) > 1:
        problems.append(f"brokers disagree on CLUSTER_ID: {cluster_ids}")
    if brokers and voters != {None}:
        voter_hosts = {v.split("@", 1)[1].split(":", 1)[0] for v in next(iter(voters)).split(",")}
        if voter_hosts != set(brokers):
            problems.append(f"quorum voters {sorted(voter_hosts)} are not the brokers {sorted(brokers)}")

    for name, svc in services.items():
        bootstrap = (svc.get("environment") or {}).get("KAFKA_BOOTSTRAP_SERVERS")
        if bootstrap:
            hosts = {h.rsplit(":", 1)[0] for h in bootstrap.split(",")}
            if not hosts <= set(brokers):
                problems.append(f"{name}: KAFKA_BOOTSTRAP_SERVERS names unknown hosts {sorted(hosts - set(brokers))}")

    topics = services.get("topics")
    if topics is None:
        problems.append("no one-shot `topics` job")
    else:
        argv = (topics.get("entrypoint") or []) + (topics.get("command") or [])
        if argv[:3] != ["tsunagu-ops", "topics", "create"]:
            problems.append(f"topics job must run `tsunagu-ops topics create`, runs {argv}")
        flags = dict(zip(argv[3::2], argv[4::2], strict=False))
        if flags.get("--replication-factor") != expected_rf:
            problems.append(f"topics job: --replication-factor must be {expected_rf} with {n} broker(s)")
        if not flags.get("--partitions", "0").isdigit() or int(flags["--partitions"]) < 1:
            problems.append("topics job: --partitions must be a positive number")
    return problems


# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_compose_config_is_valid(compose, variant: str) -> None:
    result = compose(VARIANTS[variant], "config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_files_match_the_compose_spec_schema(run_tool, python_exe: str) -> None:
    result = run_tool([python_exe, "-m", "check_jsonschema", "--schemafile", SCHEMA, MAIN, CLUSTER])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variant", VARIANTS)
def test_compose_model_follows_the_project_rules(resolved: dict[str, dict[str, Any]], variant: str) -> None:
    assert compose_problems(resolved[variant]) == []


def test_cluster_override_is_three_brokers_rf3_isr2(resolved: dict[str, dict[str, Any]]) -> None:
    brokers = kafka_services(resolved["three-brokers"])
    assert sorted(brokers) == ["kafka", "kafka-2", "kafka-3"]
    for svc in brokers.values():
        env = svc["environment"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
    node_ids = {svc["environment"]["KAFKA_NODE_ID"] for svc in brokers.values()}
    assert node_ids == {"1", "2", "3"}
    # Every broker has a data volume of its own.
    data = {svc["volumes"][0]["source"] for svc in brokers.values()}
    assert len(data) == 3


def test_every_required_variable_is_in_env_example() -> None:
    required = set()
    for f in (MAIN, CLUSTER):
        required |= set(re.findall(r"\$\{([A-Z0-9_]+):\?", f.read_text()))
    documented = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    }
    assert required, "the compose files require no variable: the secrets would have silent defaults"
    assert required <= documented, f"missing from {ENV_EXAMPLE.name}: {sorted(required - documented)}"


def test_missing_secret_fails_config(compose) -> None:
    result = compose([MAIN], "config", "-q", env={"TSUNAGU_TOKEN_SIGNING_KEY": ""})
    assert result.returncode != 0
    assert "TSUNAGU_TOKEN_SIGNING_KEY" in result.stderr


# --------------------------------------------------------------------------------------------------
# Negative tests: deliberately broken compose files make each layer fail.


def test_broken_compose_file_fails_config_and_schema(compose, run_tool, python_exe: str, tmp_path: Path) -> None:
    broken = yaml.safe_load(MAIN.read_text())
    # A misspelt key, as a hand edit would produce it.
    broken["services"]["kafka"]["healthchek"] = broken["services"]["kafka"].pop("healthcheck")
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken, sort_keys=False))

    result = compose([path], "config", "-q")
    assert result.returncode != 0
    assert "healthchek" in result.stderr

    schema = run_tool([python_exe, "-m", "check_jsonschema", "--schemafile", SCHEMA, path])
    assert schema.returncode != 0
    assert "healthchek" in schema.stdout


BROKEN_OVERRIDES = {
    "healthcheck-disabled": ({"kafka": {"healthcheck": {"disable": True}}}, "has no healthcheck"),
    "kafka-on-tmp": ({"kafka": {"environment": {"KAFKA_LOG_DIRS": "/tmp/kraft-combined-logs"}}}, "/tmp"),
    "idempotence-off": ({"intake": {"environment": {"KAFKA_IDEMPOTENCE": "false"}}}, "KAFKA_IDEMPOTENCE"),
    "missing-dockerfile": (
        {"referral": {"build": {"context": ".", "dockerfile": "services/referral/Dockerfile.missing"}}},
        "Dockerfile",
    ),
    "unpinned-image": ({"postgres": {"image": "postgres:latest"}}, "latest"),
    "auto-create-topics": ({"kafka": {"environment": {"KAFKA_AUTO_CREATE_TOPICS_ENABLE": "true"}}}, "auto topic"),
    "referral-keys-in-its-container": (
        {"referral-migrate": {"environment": {"TSUNAGU_KEYSTORE_URL": "sqlite:///var/referral-keys.db"}}},
        "referral-migrate: TSUNAGU_KEYSTORE_URL must point at its key store database",
    ),
    "key-store-in-the-event-database": (
        {
            name: {"environment": {"TSUNAGU_KEYSTORE_URL": "postgresql://referral:x@postgres:5432/referral"}}
            for name in ("referral", "referral-migrate")
        },
        "referral: key store must be one database of its own",
    ),
    "no-master-key": (
        {"intake": {"environment": {"TSUNAGU_KEYSTORE_MASTER_KEY": ""}}},
        "intake: TSUNAGU_KEYSTORE_MASTER_KEY must be set",
    ),
}


@pytest.mark.parametrize("case", BROKEN_OVERRIDES)
def test_project_rules_catch_broken_compose(compose, tmp_path: Path, case: str) -> None:
    override, expected = BROKEN_OVERRIDES[case]
    path = tmp_path / "broken.override.yml"
    path.write_text(yaml.safe_dump({"services": override}))
    result = compose([MAIN, path], "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    problems = compose_problems(json.loads(result.stdout))
    assert any(expected in p for p in problems), problems


def test_every_service_that_seals_gets_its_own_key_store_and_master_key(resolved: dict[str, dict[str, Any]]) -> None:
    assert {"intake", "referral"} <= SEALING, "the scan of the services' code finds the sealing services"
    for variant, model in resolved.items():
        problems = [p for name in sorted(SEALING) for p in keystore_problems(name, model["services"])]
        assert problems == [], variant
        urls = {model["services"][name]["environment"]["TSUNAGU_KEYSTORE_URL"] for name in SEALING}
        keys = {model["services"][name]["environment"]["TSUNAGU_KEYSTORE_MASTER_KEY"] for name in SEALING}
        assert len(urls) == len(SEALING), "no two services share a key store (their person ids would collide)"
        assert len(keys) == len(SEALING), "each service has its own master key"


def test_a_sealing_service_without_master_key_fails_config(compose) -> None:
    result = compose([MAIN], "config", "-q", env={"REFERRAL_KEYSTORE_MASTER_KEY": ""})
    assert result.returncode != 0
    assert "REFERRAL_KEYSTORE_MASTER_KEY" in result.stderr


def test_postgres_init_script_creates_one_database_per_service() -> None:
    script = REPO_ROOT / "deploy" / "compose" / "postgres-init" / "10-tsunagu-databases.sh"
    text = script.read_text()
    assert script.stat().st_mode & 0o111, "the init script must be executable (docker-entrypoint runs it)"
    created = re.findall(r"^create_database (\w+) ", text, flags=re.M)
    assert created == ["intake", "referral", "resources", "reporting", "referral_keystore", "keystore"]
    # Shell syntax only; it runs for real inside the postgres image.
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0


def _postgres_bindir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.insert(0, Path(found).resolve().parent)
    return next((c for c in candidates if (c / "initdb").exists() and (c / "pg_ctl").exists()), None)


def test_postgres_init_script_really_isolates_the_databases() -> None:
    """Run the init script against a throwaway PostgreSQL server, as the postgres image would."""
    bindir = _postgres_bindir()
    psql = shutil.which("psql")
    if bindir is None or psql is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) or psql are not installed here")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        runuser = shutil.which("runuser")
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            runuser = None
        if runuser is None:
            pytest.skip("running as root without a `postgres` user and runuser to start a server as")
        as_user = [runuser, "-u", "postgres", "--"]
    # Not under pytest's tmp_path: its parents are private to the test user, and the server may run as
    # `postgres`. A short path also keeps the socket under the 107-byte limit.
    root = Path(tempfile.mkdtemp(prefix="tsunagu-pg-"))
    sock = root / "sock"
    sock.mkdir()
    script = root / "init.sh"
    shutil.copy(REPO_ROOT / "deploy" / "compose" / "postgres-init" / "10-tsunagu-databases.sh", script)
    if as_user:
        for path in [root, sock, script]:
            shutil.chown(path, "postgres")
    port = "55439"
    env = {**os.environ, "PGHOST": str(sock), "PGPORT": port, "POSTGRES_USER": "postgres"}
    passwords = {
        "INTAKE_DB_PASSWORD": "a",
        "REFERRAL_DB_PASSWORD": "b",
        "RESOURCES_DB_PASSWORD": "c",
        "REPORTING_DB_PASSWORD": "it's",
        "KEYSTORE_DB_PASSWORD": "e",
        "REFERRAL_KEYSTORE_DB_PASSWORD": "f",
    }

    def run(*args: str, user: list[str] = as_user, extra: dict[str, str] | None = None):
        return subprocess.run(
            [*user, *args],
            env={**env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=root,
        )

    try:
        initdb = run(str(bindir / "initdb"), "-D", str(root / "data"), "-U", "postgres", "--auth=trust")
        assert initdb.returncode == 0, initdb.stderr
        start = run(
            str(bindir / "pg_ctl"),
            "-D",
            str(root / "data"),
            "-l",
            str(root / "log"),
            "-w",
            "-o",
            f"-p {port} -k {sock} -c listen_addresses=''",
            "start",
        )
        assert start.returncode == 0, start.stderr
        init = run("bash", str(script), extra=passwords)
        assert init.returncode == 0, init.stderr

        def query(user: str, db: str, sql: str):
            return run(psql, "-U", user, "-d", db, "-tAc", sql, user=[])

        owners = query("postgres", "postgres", "select datname || '=' || pg_get_userbyid(datdba) from pg_database")
        for db in ("intake", "referral", "resources", "reporting", "referral_keystore", "keystore"):
            assert f"{db}={db}" in owners.stdout.split()
        assert query("intake", "intake", "create table t (x int)").returncode == 0
        denied = query("intake", "referral", "select 1")
        assert denied.returncode != 0
        assert "CONNECT privilege" in denied.stderr
        # A missing password stops the script instead of creating a role without one.
        again = run("bash", str(script), extra={**passwords, "INTAKE_DB_PASSWORD": ""})
        assert again.returncode != 0
        assert "no password for database 'intake'" in again.stderr
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
