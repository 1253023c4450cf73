"""Envelopes exactly as a service's event store would publish them: per-stream versions,
the hash chain, actor and recording time, so reporting cannot tell them apart."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaProducer
from tsunagu_events import GENESIS_HASH, EventEnvelope, EventPayload, chain_hash, new_event_id, to_kafka
from tsunagu_events.registry import schema_id
from tsunagu_events.topics import events_topic

TENANT = "131121"


@dataclass(frozen=True)
class Published:
    topic: str
    envelope: EventEnvelope


@dataclass
class StreamWriter:
    """Chains events per stream, like `EventStore.append`."""

    heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    out: list[Published] = field(default_factory=list)

    def emit(
        self,
        service: str,
        stream_id: str,
        payload: EventPayload,
        at: datetime,
        *,
        agency: str | None = None,
        staff: str | None = None,
    ) -> EventEnvelope:
        version, previous = self.heads.get(stream_id, (0, GENESIS_HASH))
        draft = EventEnvelope(
            id=new_event_id(),
            source=f"/tsunagu/{TENANT}/{service}",
            type=payload.event_type,
            time=at,
            subject=stream_id,
            dataschema=schema_id(payload.event_type, payload.version),
            tenant=TENANT,
            streamid=stream_id,
            streamversion=version + 1,
            correlationid=new_event_id(),
            actoragency=agency,
            actorstaff=staff if agency else None,
            dataversion=payload.version,
            prevhash=previous,
            data=payload.to_data(),
        )
        digest = chain_hash(previous, draft)
        envelope = draft.model_copy(update={"chainhash": digest})
        self.heads[stream_id] = (version + 1, digest)
        self.out.append(Published(events_topic(service), envelope))
        return envelope


async def publish(bootstrap: str, items: Iterable[Published], *, topic_suffix: str = "") -> int:
    """Send envelopes in binary mode, keyed by stream, in order; returns how many."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1_000_000)
    await producer.start()
    count = 0
    try:
        pending = []
        for item in items:
            key, headers, value = to_kafka(item.envelope)
            pending.append(await producer.send(item.topic + topic_suffix, value, key=key, headers=headers))
            count += 1
            if len(pending) >= 5000:
                for future in pending:
                    await future
                pending.clear()
        for future in pending:
            await future
    finally:
        await producer.stop()
    return count


def forged_copy(envelope: EventEnvelope, data_changes: dict[str, object]) -> EventEnvelope:
    """The same event with its data altered but its hashes kept: what tampering looks like."""
    return envelope.model_copy(update={"data": {**envelope.data, **data_changes}})
