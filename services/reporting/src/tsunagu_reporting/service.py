"""What the HTTP layer works with: the two projection managers, the ward's reference data,
the read log, and the rebuilds running in the background."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Column, Integer, MetaData, String, Table, insert
from tsunagu_events.envelope import format_time
from tsunagu_events.reference import Ward, ward_for
from tsunagu_platform.auth import Principal
from tsunagu_platform.projection import BatchProjection, Progress, ProjectionManager
from tsunagu_platform.runtime import ServiceRuntime

from tsunagu_reporting.projections import AnnualFacts, Timelines, source_topics

reporting_metadata = MetaData()

timeline_reads = Table(
    "reporting_timeline_reads",
    reporting_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("read_at", String(32), nullable=False),
    Column("staff", String(64), nullable=False),
    Column("agency_id", String(64), nullable=False),
    Column("role", String(32), nullable=False),
    Column("subject_kind", String(16), nullable=False),
    Column("subject_id", String(128), nullable=False),
    Column("as_of", String(32)),
    Column("basis", String(32), nullable=False),
    Column("entries", Integer, nullable=False),
)
"""Every timeline read, granted or refused: who, what, when, on what basis."""


BATCH = 5000
"""Records per projection transaction."""


@dataclass
class RebuildJob:
    projection: str
    state: str = "running"
    started_at: str = field(default_factory=lambda: format_time(datetime.now(UTC)))
    finished_at: str | None = None
    progress: Progress | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = None
    started_monotonic: float = field(default_factory=time.monotonic)


class Reporting:
    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self.ward: Ward = ward_for(runtime.settings.tenant)
        suffix = getattr(runtime.settings, "source_topic_suffix", "")
        self.topics = source_topics(suffix)
        self.annual = self._project(AnnualFacts(runtime.settings.tenant, suffix))
        self.timelines = self._project(Timelines(runtime.settings.tenant, suffix))
        self.rebuilds: dict[str, RebuildJob] = {}

    def _project(self, projection: BatchProjection) -> ProjectionManager:
        # Batches of 5,000: reporting's projections write each batch with a few bulk statements.
        return self.runtime.project(projection, max_records=BATCH)

    @property
    def managers(self) -> dict[str, ProjectionManager]:
        return {m.projection.name: m for m in (self.annual, self.timelines)}

    def start_rebuild(self, name: str) -> RebuildJob:
        current = self.rebuilds.get(name)
        if current is not None and current.state == "running":
            return current
        manager = self.managers[name]
        job = RebuildJob(name)

        def show(progress: Progress) -> None:
            job.progress = progress

        async def run() -> None:
            try:
                job.progress = await manager.rebuild(progress=show, report_every=0.5)
                job.state = "done"
            except Exception as error:  # a failed rebuild leaves the live generation answering
                job.state = "failed"
                job.error = type(error).__name__
            finally:
                job.finished_at = format_time(datetime.now(UTC))

        job.task = asyncio.create_task(run())
        self.rebuilds[name] = job
        return job

    async def stop(self) -> None:
        for job in self.rebuilds.values():
            if job.task is not None and not job.task.done():
                job.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await job.task

    async def log_read(
        self, principal: Principal, kind: str, subject: str, as_of: datetime | None, basis: str, entries: int
    ) -> None:
        async with self.runtime.engine.begin() as conn:
            await conn.execute(
                insert(timeline_reads).values(
                    read_at=format_time(datetime.now(UTC)),
                    staff=principal.staff,
                    agency_id=principal.agency,
                    role=principal.role.value,
                    subject_kind=kind,
                    subject_id=subject,
                    as_of=format_time(as_of) if as_of else None,
                    basis=basis,
                    entries=entries,
                )
            )
