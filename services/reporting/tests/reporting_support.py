"""Feeding published envelopes to the projections without a broker, and tokens for the API."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from tsunagu_events import to_kafka
from tsunagu_platform.auth import Role, mint
from tsunagu_platform.consumer import IncomingRecord
from tsunagu_platform.projection import ProjectionManager
from tsunagu_reporting.scenario.writer import Published
from tsunagu_reporting.service import Reporting

KEY = "reporting-test-signing-key-0123456789abcdef"


def records_of(items: Sequence[Published], start: int = 0) -> list[IncomingRecord]:
    out = []
    for offset, item in enumerate(items, start=start):
        key, headers, value = to_kafka(item.envelope)
        out.append(IncomingRecord(item.topic, 0, offset, key, value, tuple(headers)))
    return out


async def feed(manager: ProjectionManager, items: Sequence[Published], start: int = 0, batch: int = 2000) -> None:
    """Apply events to the live generation the way its runner would."""
    runner = manager.runner(await manager.active_generation())
    await runner.create_tables()
    records = records_of(items, start)
    for i in range(0, len(records), batch):
        await runner.apply_records(records[i : i + batch])


def token(role: Role = Role.ADMIN, agency: str = "setagaya.branch_office", staff: str = "staff-t") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(KEY, tenant='131121', agency=agency, role=role, staff=staff)}"}


@dataclass
class Running:
    """The app on the in-memory broker, its reporting service object and an HTTP client."""

    app: FastAPI
    reporting: Reporting
    client: httpx.AsyncClient
