"""Apache Kafka as a real process for tests: the release compose deploys, without Docker.

Tansu (tansu.py) proves the code on a Kafka-compatible broker; users run Apache Kafka, which
has idempotent producers, replication and stricter topic configs. The broker's jars come from
Maven Central through the committed Maven project deploy/kafka-dist (once, into .tools/), and
each node runs KRaft in combined mode (broker + controller) on 127.0.0.1 with free ports.

Where Java or Maven is missing, or the jars cannot be resolved, `KafkaUnavailable` says why,
so that callers can skip (or fail, where Kafka is required).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from tsunagu_platform.tansu import free_port

KAFKA_VERSION = "4.1.0"
"""Same release as docker-compose.yml's `apache/kafka:4.1.0` (and deploy/kafka-dist/pom.xml)."""

JVM_OPTIONS = ["-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]
"""Small heap and cheap JIT: test machines have two cores shared with other work."""

LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class KafkaUnavailable(RuntimeError):
    """Apache Kafka cannot run here; the message says why (no Java, no Maven, resolution failed)."""


def repository_root() -> Path:
    """The checkout holding deploy/kafka-dist (this package is installed editable from it)."""
    for candidate in [*Path(__file__).resolve().parents, Path.cwd(), *Path.cwd().parents]:
        if (candidate / "deploy" / "kafka-dist" / "pom.xml").is_file():
            return candidate
    raise KafkaUnavailable("deploy/kafka-dist/pom.xml not found above this package or the working directory")


def distribution_dir(root: Path | None = None) -> Path:
    """Where the broker's jars live: TSUNAGU_KAFKA_HOME, else .tools/kafka-<version> of the checkout."""
    override = os.environ.get("TSUNAGU_KAFKA_HOME")
    if override:
        return Path(override)
    return (root or repository_root()) / ".tools" / f"kafka-{KAFKA_VERSION}"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock: concurrent pytest workers resolve or start things once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def resolve_distribution(root: Path | None = None) -> Path:
    """The directory of the broker's jars, resolved by Maven the first time (a marker makes re-runs no-ops)."""
    java = shutil.which("java")
    if java is None:
        raise KafkaUnavailable("no `java` on PATH (Apache Kafka needs Java 17)")
    home = distribution_dir(root)
    marker = home / ".resolved"
    if marker.is_file():
        return home
    if os.environ.get("TSUNAGU_KAFKA_HOME"):
        raise KafkaUnavailable(f"TSUNAGU_KAFKA_HOME={home} has no .resolved marker")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaUnavailable(f"no `mvn` on PATH to resolve org.apache.kafka:kafka_2.13:{KAFKA_VERSION} into {home}")
    root = root or repository_root()
    with file_lock(home.parent / f".kafka-{KAFKA_VERSION}.lock"):
        if marker.is_file():
            return home
        shutil.rmtree(home / "libs", ignore_errors=True)
        command = [
            mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(root / "deploy" / "kafka-dist" / "pom.xml"),
            f"-Dmaven.repo.local={root / '.tools' / 'm2'}",
            f"-DoutputDirectory={home / 'libs'}",
            "dependency:copy-dependencies",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if result.returncode != 0 or not any((home / "libs").glob("kafka_2.13-*.jar")):
            tail = (result.stdout + result.stderr)[-2000:]
            raise KafkaUnavailable(f"Maven could not resolve Apache Kafka {KAFKA_VERSION}: {tail}")
        marker.write_text(f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION}\n")
    return home


def random_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (as `kafka-storage random-uuid`).

    Like Kafka's own `Uuid.randomUuid`, never one that starts with "-": `kafka-storage format -t -x…` reads
    it as an option (one format in 64 failed, "argument --cluster-id/-t: expected one argument")."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaNode:
    """One KRaft node in combined mode (broker + controller), a process on 127.0.0.1."""

    def __init__(self, node_id: int, directory: Path, home: Path) -> None:
        self.node_id = node_id
        self.directory = directory
        self.home = home
        self.port = free_port()
        self.controller_port = free_port()
        self.log_path = directory / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def properties(self, voters: str, replicas: int, overrides: dict[str, str]) -> dict[str, str]:
        """The node's server.properties: compose's settings (docker-compose*.yml), loopback listeners."""
        return {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.directory / "data"),
            "auto.create.topics.enable": "false",
            "default.replication.factor": str(replicas),
            "min.insync.replicas": str(min(2, replicas)),
            "offsets.topic.replication.factor": str(replicas),
            "transaction.state.log.replication.factor": str(replicas),
            "transaction.state.log.min.isr": str(min(2, replicas)),
            "share.coordinator.state.topic.replication.factor": str(replicas),
            "share.coordinator.state.topic.min.isr": str(min(2, replicas)),
            "num.partitions": "3",
            "log.retention.ms": "-1",
            "unclean.leader.election.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            # Fewer threads than a production broker: two cores are shared by everything on the machine.
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            **overrides,
        }

    def java(self, main: str, *args: str) -> list[str]:
        return [
            "java", *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self.directory / 'log4j2.properties'}",
            "-cp", str(self.home / "libs" / "*"), main, *args,
        ]  # fmt: skip

    def format(self, cluster_id: str, config: dict[str, str]) -> None:
        """Write the node's config and format its KRaft storage (`kafka-storage format`)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "log4j2.properties").write_text(LOG4J2)
        (self.directory / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in config.items()))
        command = self.java(
            "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.directory / "server.properties")
        )
        result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"kafka-storage format failed for node {self.node_id}: {result.stdout}{result.stderr}")

    def start(self, owner_pid: int | None = None) -> None:
        """Start the broker under a watchdog that stops it once `owner_pid` (default: this process) is gone.

        Its own session (process group): kill() reaches the watchdog and the JVM at once."""
        owner = str(owner_pid or os.getpid())
        command = [
            sys.executable, "-m", "tsunagu_platform.apache_kafka", "watch", owner, "--",
            *self.java("kafka.Kafka", str(self.directory / "server.properties")),
        ]  # fmt: skip
        log = open(self.log_path, "ab")  # noqa: SIM115
        try:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        """SIGTERM: the broker's controlled shutdown (its watchdog passes it on)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM (controlled shutdown), then SIGKILL when it does not end in time."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def kill(self) -> None:
        """kill -9 of the JVM (and its watchdog): no controlled shutdown, as a crash or an OOM kill leaves it."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


async def brokers_answering(bootstrap_servers: str) -> int:
    """How many brokers a metadata request reports (0 when nothing answers)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), timeout=10)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout=10)
        return len(cluster["brokers"])
    except Exception:
        return 0
    finally:
        await admin.close()


class ApacheKafka:
    """A KRaft cluster of `nodes` combined nodes (1 by default); a context manager that stops it."""

    def __init__(
        self,
        directory: Path,
        *,
        nodes: int = 1,
        overrides: dict[str, str] | None = None,
        owner_pid: int | None = None,
        ready_timeout: float = 180,
    ) -> None:
        self.home = resolve_distribution()
        self.directory = directory
        self.cluster_id = random_cluster_id()
        self.nodes = [KafkaNode(i + 1, directory / f"node-{i + 1}", self.home) for i in range(nodes)]
        self.overrides = overrides or {}
        self.owner_pid = owner_pid
        self.ready_timeout = ready_timeout

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_server for node in self.nodes)

    def start(self) -> ApacheKafka:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        replicas = len(self.nodes)
        for node in self.nodes:
            node.format(self.cluster_id, node.properties(voters, replicas, self.overrides))
        for node in self.nodes:
            node.start(self.owner_pid)
        try:
            self.wait_until_ready(self.ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_until_ready(self, timeout: float, brokers: int | None = None) -> None:
        """Until a metadata request reports every broker (a JVM on a busy machine takes its time)."""
        wanted = len(self.nodes) if brokers is None else brokers
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n in self.nodes if n.process is not None and not n.running()]
            if dead:
                raise RuntimeError(f"Apache Kafka node {dead[0].node_id} exited:\n{dead[0].log_tail()}")
            if _run(brokers_answering(self.bootstrap_servers)) >= wanted:
                return
            time.sleep(0.5)
        logs = "\n".join(f"--- node {n.node_id} ({n.log_path}) ---\n{n.log_tail(2000)}" for n in self.nodes)
        raise TimeoutError(f"Apache Kafka did not answer within {timeout}s:\n{logs}")

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM to every node at once, then SIGKILL to those still running at the deadline.

        A single node stops in about a second. Of a whole cluster stopping, the last nodes wait in
        their shutdown for a controller quorum that has gone; their data is thrown away anyway."""
        for node in self.nodes:
            node.terminate()
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.stop(timeout=max(0.1, deadline - time.monotonic()))

    def __enter__(self) -> ApacheKafka:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _run(coroutine: asyncio.Future[int] | asyncio.Task[int] | object) -> int:
    """Run a coroutine to completion from synchronous code, also when an event loop runs in this thread."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        result: int = pool.submit(asyncio.run, coroutine).result()  # type: ignore[arg-type]
    return result


def _watch(owner_pid: int, command: list[str]) -> int:
    """Run `command` until it ends or `owner_pid` is gone; a SIGTERM to this watchdog is passed on.

    A broker shared by pytest workers is started by one worker but must outlive it (workers end
    early) and must not outlive the whole run, not even when pytest itself is killed."""
    child = subprocess.Popen(command)
    stopping = False

    def terminate(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    while child.poll() is None:
        try:
            os.kill(owner_pid, 0)
        except ProcessLookupError:
            stopping = True
        if stopping:
            child.terminate()
            try:
                return child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                return child.wait()
        time.sleep(0.5)
    return child.returncode


def main(argv: list[str] | None = None) -> int:
    """`resolve`: fetch the jars (make kafka); `watch PID -- CMD...`: the watchdog of a shared broker."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["resolve"]:
        try:
            print(resolve_distribution())
        except KafkaUnavailable as reason:
            print(f"Apache Kafka: {reason}", file=sys.stderr)
            return 1
        return 0
    if args[:1] == ["watch"] and len(args) > 3 and args[2] == "--":
        return _watch(int(args[1]), args[3:])
    print("usage: python -m tsunagu_platform.apache_kafka resolve | watch PID -- COMMAND...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
