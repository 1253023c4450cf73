"""Ids minted by the services sort in the order they were minted (UUIDv7), and still never collide."""

from __future__ import annotations

import uuid

from tsunagu_events import new_event_id, new_stream_id


def test_event_ids_minted_later_sort_later() -> None:
    ids = [new_event_id() for _ in range(20_000)]  # many within one millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {uuid.UUID(i).version for i in ids} == {7}


def test_stream_ids_name_their_kind_and_sort_by_minting_time() -> None:
    ids = [new_stream_id("consultation") for _ in range(1_000)]
    assert ids == sorted(ids)
    assert all(i.startswith("consultation-") and uuid.UUID(i.removeprefix("consultation-")).version == 7 for i in ids)
