"""`tsunagu-ops`: the operator's commands (see docs/operations.md).

Each command works on one service's own database and the broker, and prints what
it did; long ones print progress. Exit status 0 means done and healthy, 1 means
the command found a problem (e.g. a broken hash chain), 2 means bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from tsunagu_events.topics import DLQ_RETENTION_MS, INTAKE_INBOUND, SERVICES, dlq_topic, events_topic, retention_ms

from tsunagu_platform.crypto import KeyStore, MasterKeyError, decode_master_key, person_keys
from tsunagu_platform.db import create_engine, default_sqlite_url, normalise_url
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


NEW_MASTER_KEY_ENV = "TSUNAGU_KEYSTORE_NEW_MASTER_KEY"


def _key_from(file: str | None, env: str, fallback: Path | None = None) -> bytes | None:
    """A master key from a file, else the environment, else (local runs) the var/ file: never argv."""
    if file:
        return decode_master_key(Path(file).read_text())
    if os.environ.get(env):
        return decode_master_key(os.environ[env])
    if fallback is not None and fallback.exists():
        return decode_master_key(fallback.read_text())
    return None


def _keystore(args: argparse.Namespace, master: bytes) -> KeyStore | None:
    url = args.keystore_url or os.environ.get("TSUNAGU_KEYSTORE_URL")
    if not url:
        path = Path(args.var_dir) / f"{args.service}-keys.db"
        if not path.exists():
            print(f"no key store at {path} (give --keystore-url or TSUNAGU_KEYSTORE_URL)", file=sys.stderr)
            return None
        url = default_sqlite_url(f"{args.service}-keys", args.var_dir)
    return KeyStore(create_engine(normalise_url(url)), master, keyring=args.service)


async def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """Re-wrap every key of one service's key store under a new master key, in one transaction."""
    try:
        fallback = Path(args.var_dir) / f"{args.service}-master.key"
        old = _key_from(args.old_key_file, "TSUNAGU_KEYSTORE_MASTER_KEY", fallback)
        from_fallback = not args.old_key_file and not os.environ.get("TSUNAGU_KEYSTORE_MASTER_KEY")
        new = _key_from(args.new_key_file, NEW_MASTER_KEY_ENV)
    except (MasterKeyError, ValueError, OSError) as error:
        print(f"unusable master key: {error}", file=sys.stderr)
        return 2
    if old is None or new is None:
        print(
            "give the current master key (TSUNAGU_KEYSTORE_MASTER_KEY or --old-key-file) and the new one "
            f"({NEW_MASTER_KEY_ENV} or --new-key-file); keys are never taken from the command line",
            file=sys.stderr,
        )
        return 2
    if old == new:
        print("the new master key is the current one: nothing to rotate", file=sys.stderr)
        return 2
    store = _keystore(args, old)
    if store is None:
        return 2
    try:
        try:
            await store.migrate()  # refuses if the current key is not the one the store was wrapped with
            total = await store.rewrap(
                new, progress=lambda done, of: print(f"… {done}/{of} keys re-wrapped", file=sys.stderr, flush=True)
            )
        except MasterKeyError as error:
            print(f"{args.service}: {error}", file=sys.stderr)
            return 1
        async with store.engine.connect() as conn:
            erased = await conn.scalar(
                select(func.count()).select_from(person_keys).where(person_keys.c.wrapped_key.is_(None))
            )
        good, bad = await store.verify()
        print(
            f"{args.service}: {total} keys re-wrapped under the new master key in one transaction; "
            f"{erased} erased (nothing to re-wrap); {good} open with the new key, {bad} do not"
        )
        if bad:
            print("keys not under the new master key: was the service running? rotate again", file=sys.stderr)
            return 1
        if from_fallback:
            # Local runs read the key from this file: it must follow the store, else the next start refuses.
            staged = fallback.with_name(fallback.name + ".new")
            staged.write_text(base64.b64encode(new).decode("ascii"))
            staged.chmod(0o600)
            os.replace(staged, fallback)
            print(f"{fallback} now holds the new master key; back it up, then start the service")
        else:
            print("next: store the new master key where the service reads it, back it up, then start the service")
        return 0
    finally:
        await store.engine.dispose()


async def cmd_keys_verify(args: argparse.Namespace) -> int:
    """Unwrap every key with the configured master key (after a restore or a rotation)."""
    try:
        master = _key_from(
            args.key_file, "TSUNAGU_KEYSTORE_MASTER_KEY", Path(args.var_dir) / f"{args.service}-master.key"
        )
    except (MasterKeyError, ValueError, OSError) as error:
        print(f"unusable master key: {error}", file=sys.stderr)
        return 2
    if master is None:
        print("give the master key (TSUNAGU_KEYSTORE_MASTER_KEY or --key-file)", file=sys.stderr)
        return 2
    store = _keystore(args, master)
    if store is None:
        return 2
    try:
        good, bad = await store.verify()
    finally:
        await store.engine.dispose()
    print(f"{args.service}: {good} keys open with this master key, {bad} do not")
    return 1 if bad else 0


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

    def with_keystore(p: argparse.ArgumentParser) -> None:
        p.add_argument("--service", choices=SERVICES, required=True)
        p.add_argument("--keystore-url", help="default: TSUNAGU_KEYSTORE_URL, else var/<service>-keys.db")
        p.add_argument("--var-dir", default=os.environ.get("TSUNAGU_VAR_DIR", "var"))

    keys = sub.add_parser("keys", help="personal-data key stores").add_subparsers(dest="action", required=True)
    # No abbreviations: `--new-key <base64>` must be refused, not taken for --new-key-file.
    rotate = keys.add_parser(
        "rotate",
        allow_abbrev=False,
        help="re-wrap every person key under a new master key (current: TSUNAGU_KEYSTORE_MASTER_KEY, "
        f"new: {NEW_MASTER_KEY_ENV}; or files)",
    )
    with_keystore(rotate)
    rotate.add_argument("--old-key-file", help="file holding the current master key (base64)")
    rotate.add_argument("--new-key-file", help="file holding the new master key (base64)")
    rotate.set_defaults(run=cmd_keys_rotate)
    check = keys.add_parser("verify", help="check that the master key unwraps every key", allow_abbrev=False)
    with_keystore(check)
    check.add_argument("--key-file", help="file holding the master key (base64)")
    check.set_defaults(run=cmd_keys_verify)
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
