"""KRaft cluster ids the test brokers are formatted with."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from tsunagu_platform import apache_kafka


def test_a_cluster_id_never_starts_with_a_dash_that_kafka_storage_would_read_as_an_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 0xF8 encodes to "-" as the first URL-safe base64 character; the next draw is an ordinary one.
    draws: Iterator[uuid.UUID] = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x10" + bytes(15))])
    monkeypatch.setattr(apache_kafka.uuid, "uuid4", lambda: next(draws))
    cluster_id = apache_kafka.random_cluster_id()
    assert not cluster_id.startswith("-")
    assert len(cluster_id) == 22
