"""`tsunagu-ops`: the operator's commands (see docs/operations.md).

Each command works on one service's own database and the broker, and prints what
it did; long ones print progress. Exit status 0 means done and healthy, 1 means
the command found a problem (e.g. a broken hash chain), 2 means bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from importlib.metadata import entry_points
from typing import Any

from sqlalchemy import update
from tsunagu_events.topics import DLQ_RETENTION_MS, INTAKE_INBOUND, SERVICES, dlq_topic, events_topic, retention_ms

from tsunagu_platform.db import create_engine, default_sqlite_url
from tsunagu_platform.dlq import replay_dlq
from tsunagu_platform.kafka import AiokafkaPublisher, ensure_topics
from tsunagu_platform.projection import Progress, ProjectionManager
from tsunagu_platform.store import EventStore
from tsunagu_platform.tables import metadata, outbox

PROJECTIONS_GROUP = "tsunagu.projections"


def all_topics() -> list[str]:
    base = [events_topic(s) for s in SERVICES] + [INTAKE_INBOUND]
    return base + [dlq_topic(t) for t in base]


def database_url(args: argparse.Namespace) -> str:
    if args.database_url:
        return str(args.database_url)
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    if not args.service:
        raise SystemExit("give --service or --database-url")
    return default_sqlite_url(args.service, args.var_dir)


def projections() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=PROJECTIONS_GROUP)}


async def cmd_topics(args: argparse.Namespace) -> int:
    dlq_retention = int(args.dlq_retention_ms)
    if not 0 < dlq_retention <= DLQ_RETENTION_MS:
        # DLQs hold agencies' raw messages, personal data included: their retention is always bounded.
        raise SystemExit(f"--dlq-retention-ms must be between 1 and {DLQ_RETENTION_MS} (90 days)")
    created = await ensure_topics(
        args.bootstrap,
        all_topics(),
        partitions=args.partitions,
        replication_factor=args.replication_factor,
        config={"min.insync.replicas": str(args.min_insync_replicas)} if args.replication_factor > 1 else None,
        retention=lambda topic: dlq_retention if topic.endswith(".dlq") else retention_ms(topic),
    )
    for topic in all_topics():
        print(f"{'created' if topic in created else 'exists '} {topic}")
    return 0


async def cmd_verify(args: argparse.Namespace) -> int:
    engine = create_engine(database_url(args), for_writes=False)
    try:
        store = EventStore(engine, topic="")
        streams = await store.stream_ids()
        broken = 0
        for index, stream in enumerate(streams, start=1):
            found = await store.verify(stream)
            if found is not None:
                broken += 1
                print(f"BROKEN stream={found.stream_id} version={found.version} event={found.event_id}: {found.reason}")
            if index % 1000 == 0:
                print(f"… {index}/{len(streams)} streams checked", file=sys.stderr)
        print(f"{len(streams)} streams checked, {broken} broken")
        return 1 if broken else 0
    finally:
        await engine.dispose()


async def cmd_republish(args: argparse.Namespace) -> int:
    """Mark every outbox row unpublished: the service's relay sends its whole history again, in order."""
    engine = create_engine(database_url(args))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            result = await conn.execute(update(outbox).values(published_at=None))
        print(f"{result.rowcount} events queued for republishing; the running service's relay sends them")
        return 0
    finally:
        await engine.dispose()


async def cmd_dlq_replay(args: argparse.Namespace) -> int:
    publisher = AiokafkaPublisher(args.bootstrap, idempotence=args.idempotence)
    await publisher.start()
    try:
        report = await replay_dlq(
            args.bootstrap,
            args.topic,
            publisher,
            reasons=set(args.reason) if args.reason else None,
            dry_run=args.dry_run,
            progress=lambda r: print(f"… {r.replayed} replayed, {r.skipped} skipped", file=sys.stderr),
        )
    finally:
        await publisher.stop()
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{verb} {report.replayed} ({dict(report.by_reason)}), skipped {report.skipped}")
    return 0


async def cmd_projection_rebuild(args: argparse.Namespace) -> int:
    known = projections()
    if args.projection not in known:
        print(f"unknown projection {args.projection!r}; known: {', '.join(sorted(known)) or 'none'}", file=sys.stderr)
        return 2
    projection = known[args.projection].load()()
    engine = create_engine(database_url(args))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        manager = ProjectionManager(engine, projection, args.bootstrap)

        def show(progress: Progress) -> None:
            print(progress.describe(), file=sys.stderr, flush=True)

        final = await manager.rebuild(progress=show)
        done = f"{final.events_done} events, {final.rate:,.0f}/s"
        print(f"rebuilt {final.projection} as generation {final.generation}: {done}")
        return 0
    finally:
        await engine.dispose()


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="tsunagu-ops", description=__doc__)
    root.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    root.add_argument(
        "--idempotence", action="store_true", default=os.environ.get("KAFKA_IDEMPOTENCE", "").lower() == "true"
    )
    sub = root.add_subparsers(dest="command", required=True)

    def with_database(p: argparse.ArgumentParser) -> None:
        p.add_argument("--service", choices=SERVICES)
        p.add_argument("--database-url")
        p.add_argument("--var-dir", default=os.environ.get("TSUNAGU_VAR_DIR", "var"))

    topics = sub.add_parser("topics", help="create every topic").add_subparsers(dest="action", required=True)
    create = topics.add_parser("create")
    create.add_argument("--partitions", type=int, default=3)
    create.add_argument("--replication-factor", type=int, default=1)
    create.add_argument("--min-insync-replicas", type=int, default=2)
    create.add_argument(
        "--dlq-retention-ms", type=int, default=DLQ_RETENTION_MS, help="retention of every .dlq topic (at most 90 days)"
    )
    create.set_defaults(run=cmd_topics)

    verify = sub.add_parser("verify", help="verify every stream's hash chain")
    with_database(verify)
    verify.set_defaults(run=cmd_verify)

    republish = sub.add_parser("republish", help="send a service's whole history to Kafka again")
    with_database(republish)
    republish.set_defaults(run=cmd_republish)

    dlq = sub.add_parser("dlq", help="dead-letter queues").add_subparsers(dest="action", required=True)
    replay = dlq.add_parser("replay")
    replay.add_argument("--topic", required=True, help="the DLQ topic, e.g. tsunagu.intake.inbound.dlq")
    replay.add_argument("--reason", action="append", help="only this reason (repeatable)")
    replay.add_argument("--dry-run", action="store_true")
    replay.set_defaults(run=cmd_dlq_replay)

    projection = sub.add_parser("projection", help="projections").add_subparsers(dest="action", required=True)
    rebuild = projection.add_parser("rebuild")
    with_database(rebuild)
    rebuild.add_argument("--projection", required=True)
    rebuild.set_defaults(run=cmd_projection_rebuild)
    listing = projection.add_parser("list")
    listing.set_defaults(run=cmd_projection_list)
    return root


async def cmd_projection_list(_args: argparse.Namespace) -> int:
    for name in sorted(projections()):
        print(name)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(asyncio.run(args.run(args)))


if __name__ == "__main__":
    raise SystemExit(main())
