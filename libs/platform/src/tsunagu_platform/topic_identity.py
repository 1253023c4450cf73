"""Which topic a name stands for: the broker's topic id and the topic's partitions.

A projection keeps its own offset checkpoints (projection.py). Offsets mean something only
in the log they were taken from: after a broker or cluster was lost and the topics were
recreated and refilled from the outboxes, the same name stands for another log, and an old
checkpoint would skip whatever the new log holds before it (issue 14 §7: 2 and 477 of 3,000
consultations missing from the tables, silently). Kafka names each topic with a UUID that a
recreated topic does not keep (KIP-516, Metadata v10 and later); Tansu returns it too.

aiokafka (0.14) speaks Metadata up to v5 only, which carries no topic id, so the v10
request and response are defined here on aiokafka's own protocol types and sent on the
consumer's client. A broker that does not speak v10 gives no ids (`TopicIdentity.topic_id`
is None) and the projection falls back on offsets: a checkpoint beyond the end of the log.
"""

from __future__ import annotations

import uuid
from io import BytesIO
from typing import Any, NamedTuple

from aiokafka.errors import IncompatibleBrokerVersion
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Boolean, CompactArray, CompactString, Int16, Int32, Schema, TaggedFields

NO_TOPIC_ID = "00000000-0000-0000-0000-000000000000"


class _Uuid:
    """Kafka's UUID type: 16 bytes, big-endian."""

    @classmethod
    def encode(cls, value: bytes) -> bytes:
        return value

    @classmethod
    def decode(cls, data: BytesIO) -> bytes:
        value = data.read(16)
        if len(value) != 16:
            raise ValueError("Buffer underrun decoding UUID")
        return value


def _string() -> CompactString:
    return CompactString("utf-8")


class MetadataResponse_v10(Response):  # type: ignore[misc]  # noqa: N801 - aiokafka names versions so
    API_KEY = 3
    API_VERSION = 10
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            CompactArray(
                ("node_id", Int32), ("host", _string()), ("port", Int32), ("rack", _string()), ("tags", TaggedFields)
            ),
        ),
        ("cluster_id", _string()),
        ("controller_id", Int32),
        (
            "topics",
            CompactArray(
                ("error_code", Int16),
                ("name", _string()),
                ("topic_id", _Uuid),
                ("is_internal", Boolean),
                (
                    "partitions",
                    CompactArray(
                        ("error_code", Int16),
                        ("partition_index", Int32),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("replica_nodes", CompactArray(Int32)),
                        ("isr_nodes", CompactArray(Int32)),
                        ("offline_replicas", CompactArray(Int32)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("topic_authorized_operations", Int32),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_authorized_operations", Int32),
        ("tags", TaggedFields),
    )


class MetadataRequest_v10(RequestStruct):  # type: ignore[misc]  # noqa: N801
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 10
    RESPONSE_TYPE = MetadataResponse_v10
    SCHEMA = Schema(
        ("topics", CompactArray(("topic_id", _Uuid), ("name", _string()), ("tags", TaggedFields))),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class TopicMetadataRequest(Request[MetadataRequest_v10]):  # type: ignore[misc]
    """Metadata of some topics, with their ids; never creates a topic."""

    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics

    def build(self, request_struct_class: type[MetadataRequest_v10]) -> MetadataRequest_v10:
        no_id = bytes(16)
        return request_struct_class([(no_id, t, {}) for t in self.topics], False, False, False, {})


class TopicIdentity(NamedTuple):
    """What the broker says a topic name stands for now: its id (None when the broker gives none)
    and its partitions (empty when the topic does not exist)."""

    topic_id: str | None
    partitions: frozenset[int]


async def describe_topics(client: Any, topics: list[str]) -> dict[str, TopicIdentity]:
    """Each topic's id and partitions, asked of one broker through an aiokafka client.

    Brokers without Metadata v10 answer through aiokafka's own metadata (no ids). Raises
    the client's errors when no broker answers: the caller decides what not knowing means.
    """
    node = client.get_random_node()
    if node is None:
        await client.force_metadata_update()
        node = client.get_random_node()
    try:
        response = await client.send(node, TopicMetadataRequest(topics))
    except (IncompatibleBrokerVersion, NotImplementedError):
        await client.force_metadata_update()
        return {t: TopicIdentity(None, frozenset(client.cluster.partitions_for_topic(t) or ())) for t in topics}
    found: dict[str, TopicIdentity] = {}
    for error_code, name, topic_id, _internal, partitions, _ops, _tags in response.topics:
        if error_code != 0 or name is None:
            continue  # unknown topic (3): not there, so no id and no partitions
        text = str(uuid.UUID(bytes=topic_id))
        found[name] = TopicIdentity(None if text == NO_TOPIC_ID else text, frozenset(int(p[1]) for p in partitions))
    return {t: found.get(t, TopicIdentity(None, frozenset())) for t in topics}
