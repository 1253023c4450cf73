"""What every service process runs besides its own logic: database, store, relay,
consumers, projections and the broker connection, started and stopped in order.

A service builds one `ServiceRuntime` in `create_app(settings)`, registers its
consumers and projections on it, and hands it to `service_app`. Nothing connects
before `start()`, so importing a service never touches the network.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import structlog
from faststream.kafka import KafkaBroker
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tsunagu_events import EventEnvelope, EventRegistry, registry
from tsunagu_events.topics import dlq_topic, events_topic

from tsunagu_platform.consumer import DeadLetters, EventConsumer, Handler, ReceivedEvent
from tsunagu_platform.crypto import KeyStore, MasterKey
from tsunagu_platform.db import create_engine
from tsunagu_platform.group_commit import command_transactions
from tsunagu_platform.kafka import AiokafkaPublisher, FaststreamPublisher, Publisher, ensure_topics, faststream_broker
from tsunagu_platform.metrics import EVENTS_APPENDED
from tsunagu_platform.projection import Projection, ProjectionManager
from tsunagu_platform.relay import OutboxRelay
from tsunagu_platform.settings import ServiceSettings
from tsunagu_platform.store import ConcurrencyConflict, EventContext, EventStore, NewEvent, StreamAppend
from tsunagu_platform.subscription import subscribe
from tsunagu_platform.tables import add_missing_columns
from tsunagu_platform.tables import metadata as platform_metadata

log = structlog.get_logger("tsunagu.runtime")

PERSON_ERASED = "tsunagu.intake.PersonErased"


@dataclass
class ServiceRuntime:
    settings: ServiceSettings
    metadata: MetaData = field(default_factory=MetaData)
    reg: EventRegistry = registry
    engine: AsyncEngine = field(init=False)
    reader: AsyncEngine = field(init=False)
    broker: KafkaBroker = field(init=False)
    publisher: Publisher = field(init=False)
    store: EventStore = field(init=False)
    keys: KeyStore = field(init=False)
    relay: OutboxRelay = field(init=False)
    _transaction: Callable[[], AbstractAsyncContextManager[AsyncConnection]] = field(init=False)
    consumers: list[EventConsumer] = field(default_factory=list, init=False)
    projections: list[ProjectionManager] = field(default_factory=list, init=False)
    subscribed_topics: set[str] = field(default_factory=set, init=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False)
    _background: list[Callable[[asyncio.Event], Awaitable[None]]] = field(default_factory=list, init=False)
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    started: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.engine = create_engine(s.db_url)
        self.reader = create_engine(s.db_url, for_writes=False)
        self.broker = faststream_broker(s.kafka_bootstrap_servers, idempotence=s.kafka_idempotence)
        if s.broker_mode == "memory":
            self.publisher = FaststreamPublisher(self.broker)
        else:
            self.publisher = AiokafkaPublisher(
                s.kafka_bootstrap_servers, idempotence=s.kafka_idempotence, client_id=f"tsunagu-{s.service}"
            )
        self.store = EventStore(self.engine, topic=self.events_topic)
        self._transaction = command_transactions(self.engine, service=s.service)
        self.keys_engine = create_engine(s.keys_url)
        master_file = s.var_dir / f"{s.service}-master.key"
        self.keys = KeyStore(self.keys_engine, MasterKey(s.keystore_master_key, master_file), keyring=s.service)
        self.relay = OutboxRelay(self.engine, self.publisher, service=s.service)

    @property
    def events_topic(self) -> str:
        return events_topic(self.settings.service)

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """The write transaction of one command: load, decide, append and project on this connection.

        On SQLite, commands waiting at the same moment share one transaction, each in its own
        savepoint (group_commit.py); on PostgreSQL each has its own. Either way the block returns
        only once the command is committed, and a command that raises leaves nothing behind.
        """
        return self._transaction()

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        new_events: Sequence[NewEvent],
        context: EventContext,
        *,
        conn: AsyncConnection | None = None,
    ) -> list[EventEnvelope]:
        """Append to the store and wake the relay once the caller's transaction is done."""
        stored = await self.store.append(stream_id, expected_version, new_events, context, conn=conn)
        EVENTS_APPENDED.labels(self.settings.service).inc(len(stored))
        self.relay.notify()
        return stored

    async def append_many(
        self, conn: AsyncConnection, appends: Sequence[StreamAppend]
    ) -> list[list[EventEnvelope] | ConcurrencyConflict]:
        """Many streams at once in the caller's transaction (EventStore.append_many), then wake the relay."""
        results = await self.store.append_many(conn, appends)
        EVENTS_APPENDED.labels(self.settings.service).inc(sum(len(r) for r in results if isinstance(r, list)))
        self.relay.notify()
        return results

    def consume(
        self,
        name: str,
        topics: Sequence[str],
        handler: Handler,
        *,
        handles: Sequence[str] | None = None,
        check_versions: bool = True,
        strict_types: bool = False,
    ) -> EventConsumer:
        """Register an idempotent consumer; its group id is `<service>.<name>` (see EventConsumer for the options)."""
        full_name = f"{self.settings.service}.{name}"
        consumer = EventConsumer(
            full_name,
            self.engine,
            handler,
            DeadLetters(self.publisher, full_name),
            reg=self.reg,
            handles=handles,
            check_versions=check_versions,
            tenant=self.settings.tenant,
            strict_types=strict_types,
            stall_after=self.settings.consumer_stall_seconds,
        )
        subscribe(
            self.broker,
            consumer,
            topics,
            group_id=full_name,
            max_records=self.settings.consumer_batch,
            fetch_max_wait_ms=self.settings.consumer_fetch_max_wait_ms,
        )
        self.consumers.append(consumer)
        self.subscribed_topics.update(topics)
        return consumer

    def erase_keys_on_person_erased(self) -> EventConsumer:
        """Destroy this service's keys of a person when intake announces the erasure."""

        async def erase(_conn: AsyncConnection, event: ReceivedEvent) -> None:
            person_id = event.envelope.data.get("person_id")
            if isinstance(person_id, str):
                await self.keys.erase(person_id)

        return self.consume(
            "person-erasure", [events_topic("intake")], erase, handles=[PERSON_ERASED], check_versions=False
        )

    def project(self, projection: Projection, *, max_records: int = 2000) -> ProjectionManager:
        """Keep a rebuildable read model up to date in this process (see projection.py)."""
        manager = ProjectionManager(
            self.engine,
            projection,
            self.settings.kafka_bootstrap_servers,
            reg=self.reg,
            max_records=max_records,
            reader=self.reader,
        )
        self.projections.append(manager)
        self.subscribed_topics.update(projection.topics)
        return manager

    def background(self, job: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        """Run `job(stop)` for the life of the service (e.g. a scheduled clock); `stop` is set on shutdown."""
        self._background.append(job)

    def owned_topics(self) -> list[str]:
        topics = {self.events_topic, *self.subscribed_topics}
        return sorted(topics | {dlq_topic(t) for t in topics})

    async def migrate(self) -> None:
        """Create the backbone's and the service's tables; safe to run again."""
        async with self.engine.begin() as conn:
            await conn.run_sync(platform_metadata.create_all)
            await conn.run_sync(add_missing_columns)
            await conn.run_sync(self.metadata.create_all)
        await self.keys.migrate()

    async def start(self) -> None:
        await self.migrate()
        if self.settings.broker_mode == "kafka":
            if self.settings.create_topics:
                await ensure_topics(
                    self.settings.kafka_bootstrap_servers,
                    self.owned_topics(),
                    partitions=self.settings.topic_partitions,
                    replication_factor=self.settings.topic_replication_factor,
                )
            assert isinstance(self.publisher, AiokafkaPublisher)
            await self.publisher.start()
            await self.broker.start()
            for manager in self.projections:
                self._spawn(manager.follow(self._stop))
        self._spawn(self.relay.run())
        for job in self._background:
            self._spawn(job(self._stop))
        self.started = True
        log.info("service.started", port=self.settings.port, topics=self.owned_topics())

    def _spawn(self, coroutine: Any) -> None:
        self._tasks.append(asyncio.create_task(coroutine))

    async def stop(self) -> None:
        self._stop.set()
        self.relay.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.settings.broker_mode == "kafka":
            with contextlib.suppress(Exception):
                await self.broker.stop()
            if isinstance(self.publisher, AiokafkaPublisher):
                with contextlib.suppress(Exception):
                    await self.publisher.stop()
        await self.engine.dispose()
        await self.reader.dispose()
        await self.keys_engine.dispose()
        self.started = False

    async def readiness(self) -> dict[str, str]:
        """Each dependency and whether it answers; the service is ready when all say ok."""
        checks: dict[str, str] = {}
        try:
            async with self.reader.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as error:
            checks["database"] = f"unreachable: {type(error).__name__}"
        if self.settings.broker_mode == "memory":
            checks["broker"] = "ok"
        else:
            try:
                ok = await asyncio.wait_for(self.broker.ping(timeout=2.0), timeout=3.0)
                checks["broker"] = "ok" if ok else "unreachable"
            except Exception as error:
                checks["broker"] = f"unreachable: {type(error).__name__}"
        if not self.started:
            checks["runtime"] = "starting"
        stalled = [c.name for c in self.consumers if c.stalled()]
        if stalled:
            # A consumer that cannot advance (a batch failing over and over, a database gone) is not ready:
            # events pile up behind it, and an orchestrator should know rather than see 200.
            checks["consumers"] = "stalled: " + ", ".join(stalled)
        return checks
