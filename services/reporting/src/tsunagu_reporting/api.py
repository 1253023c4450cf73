"""The reporting HTTP API: annual tables (JSON, CSV, XLSX), indicators, timelines with
access checks and a read log, audit replay and chain verification, and rebuilds."""

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from tsunagu_events.contracts.common import JST, fiscal_year_label_ja, fiscal_year_of
from tsunagu_platform.auth import Principal, principal_dependency
from tsunagu_platform.http import problem

from tsunagu_reporting import queries
from tsunagu_reporting.audit import verify_topics
from tsunagu_reporting.domain.tables import (
    CONSULTATION_ITEMS,
    Row,
    YearColumn,
    consultation_rows,
    parenthesised,
    publicity_rows,
    resource_rows,
    year_column,
)
from tsunagu_reporting.domain.timeline import (
    EVENT_LABELS_JA,
    PROTECTED_LABEL_JA,
    STATUS_LABELS_JA,
    fold_case,
    service_of,
    short_type,
)
from tsunagu_reporting.exports import matrix, to_csv, to_xlsx
from tsunagu_reporting.policy import ReportingPolicy
from tsunagu_reporting.projections import SOURCE_TOPICS
from tsunagu_reporting.service import Reporting, timeline_reads

By = Literal["ward", "area", "district"]
Format = Literal["json", "csv", "xlsx"]
BY_LABELS_JA = {"ward": "区", "area": "地域", "district": "地区"}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOWNLOADS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}, XLSX: {}}, "description": "The table (JSON, CSV or XLSX)."}
}


class YearOut(BaseModel):
    fiscal_year: int = Field(description="Fiscal year (April–March).")
    label_ja: str = Field(description="e.g. 令和3年度.")
    partial: bool = Field(description="The year covers less than twelve months.")
    months: int = Field(description="Months covered.")
    note_ja: str | None = Field(description="Why it is partial, in Japanese.")


class RowOut(BaseModel):
    group_id: str = Field(description="ward, an area id or a district id.")
    group_label_ja: str = Field(description="Japanese name of the group.")
    item: str = Field(description="Row identifier.")
    label_ja: str = Field(description="Japanese row label.")
    indent: bool = Field(description="An 'of which' (内) row.")
    values: dict[str, int] = Field(description="Fiscal year → value.")
    previous: dict[str, int] = Field(description="Previous fiscal year → value (resource development).")
    display: dict[str, str] = Field(description="Fiscal year → the seed's spelling, e.g. 2,409 (2,482).")


class TableOut(BaseModel):
    title_ja: str = Field(description="Table title.")
    by: By = Field(description="Grouping.")
    as_of: date | None = Field(description="Facts recorded up to the end of this day (Japan time) only.")
    fiscal_years: list[YearOut] = Field(description="Columns.")
    rows: list[RowOut] = Field(description="Rows.")
    notes_ja: list[str] = Field(description="Notes shown under the table.")


def _year_out(column: YearColumn) -> YearOut:
    return YearOut(
        fiscal_year=column.fiscal_year,
        label_ja=column.label_ja,
        partial=column.partial,
        months=column.months,
        note_ja=column.note_ja,
    )


def _row_out(row: Row) -> RowOut:
    display = {}
    for year, value in row.values.items():
        prior = row.previous.get(year - 1)
        display[str(year)] = parenthesised(value, prior) if prior is not None else f"{value:,}"
    return RowOut(
        group_id=row.group.id,
        group_label_ja=row.group.label_ja,
        item=row.item,
        label_ja=row.label_ja,
        indent=row.indent,
        values={str(y): v for y, v in row.values.items()},
        previous={str(y): v for y, v in row.previous.items()},
        display=display,
    )


def _render(table: TableOut, fmt: Format, filename: str) -> Response:
    if fmt == "json":
        return JSONResponse(table.model_dump(mode="json"))
    headers = [BY_LABELS_JA[table.by], "項目", *[y.label_ja for y in table.fiscal_years]]
    has_previous = any(r.previous for r in table.rows)
    if has_previous:
        headers.append(f"（前年度 {fiscal_year_label_ja(table.fiscal_years[0].fiscal_year - 1)}）")
    body: list[list[str | int]] = []
    for r in table.rows:
        line: list[str | int] = [r.group_label_ja, ("　内、" if r.indent else "") + r.label_ja.removeprefix("内、")]
        line += [r.values.get(str(y.fiscal_year), 0) for y in table.fiscal_years]
        if has_previous:
            line += list(r.previous.values())[:1] or [""]
        body.append(line)
    notes = list(table.notes_ja)
    if table.as_of:
        notes.append(f"{table.as_of.isoformat()} 時点で記録されていた内容")
    data = matrix(headers, body, notes)
    if fmt == "csv":
        return Response(
            to_csv(data),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
        )
    return Response(
        to_xlsx(data, table.title_ja),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{filename}.xlsx"'},
    )


class ProgressOut(BaseModel):
    projection: str = Field(description="Projection name.")
    state: str = Field(description="running, done or failed.")
    generation: int | None = Field(description="The generation being built.")
    events_done: int = Field(description="Events applied so far.")
    remaining: int = Field(description="Records left to the end of the topics.")
    rate: float = Field(description="Events per second.")
    eta_seconds: float | None = Field(description="Estimated seconds left.")
    started_at: str = Field(description="When the rebuild started.")
    finished_at: str | None = Field(description="When it ended.")
    error: str | None = Field(description="Why it failed.")


class EntryOut(BaseModel):
    event_id: str = Field(description="CloudEvents id.")
    event_type: str = Field(description="Event type.")
    label_ja: str = Field(description="What happened, in Japanese.")
    service: str = Field(description="Service that published it.")
    stream_id: str = Field(description="Stream of the event.")
    stream_version: int = Field(description="Version in its stream.")
    recorded_at: str = Field(description="When the service recorded it (envelope time).")
    received_at: str = Field(description="When reporting received it.")
    agency_id: str | None = Field(description="Agency that did it.")
    agency_label_ja: str | None = Field(description="Agency name.")
    actor_staff: str | None = Field(description="Staff pseudonym.")
    person_id: str | None = Field(description="Pseudonymous person id.")
    case_id: str | None = Field(description="Case id.")
    data: dict[str, Any] = Field(description="The payload; sealed personal fields shown as 保護された情報.")


class CaseStateOut(BaseModel):
    case_id: str = Field(description="Case id.")
    person_id: str | None = Field(description="Person supported.")
    status: str = Field(description="none, open or closed.")
    status_label_ja: str = Field(description="Status in Japanese.")
    lead_agency_id: str | None = Field(description="Lead agency.")
    approach: str | None = Field(description="Support approach.")
    plan_version: int = Field(description="Latest support plan version.")
    next_review_due: str | None = Field(description="Next review date.")
    contacts: int = Field(description="Contacts recorded.")
    open_referrals: list[str] = Field(description="Referrals still open.")
    events: int = Field(description="Events so far.")


class TimelineOut(BaseModel):
    subject_kind: str = Field(description="person or case.")
    subject_id: str = Field(description="The person or case id.")
    as_of: datetime | None = Field(description="As it stood at this moment, when given.")
    basis: str = Field(description="On what ground the reader may see it.")
    protected_note_ja: str = Field(description="Where protected fields can be read.")
    entries: list[EntryOut] = Field(description="Events in time order.")
    state: CaseStateOut | None = Field(default=None, description="For a case: its state at as_of.")


class ReadOut(BaseModel):
    read_at: str = Field(description="When.")
    staff: str = Field(description="Reader's staff pseudonym.")
    agency_id: str = Field(description="Reader's agency.")
    role: str = Field(description="Reader's role.")
    subject_kind: str = Field(description="person or case.")
    subject_id: str = Field(description="Whose timeline.")
    as_of: str | None = Field(description="As-of moment asked for.")
    basis: str = Field(description="Ground of access, or 'refused'.")
    entries: int = Field(description="Entries returned.")


class VerifyIn(BaseModel):
    topics: list[Literal["tsunagu.intake.events", "tsunagu.referral.events", "tsunagu.resources.events"]] | None = (
        Field(default=None, description="Topics to verify (default: all three).")
    )
    stream_ids: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None, max_length=1000, description="Only these streams."
    )


class BreakOut(BaseModel):
    stream_id: str = Field(description="Stream.")
    version: int = Field(description="First version that does not hold.")
    event_id: str = Field(description="Its event id.")
    reason: str = Field(description="Why.")
    topic: str = Field(description="Where it was published.")
    partition: int = Field(description="Partition.")
    offset: int = Field(description="Offset.")


class VerifyOut(BaseModel):
    topics: list[str] = Field(description="Topics read.")
    records: int = Field(description="Records read.")
    streams: int = Field(description="Streams checked.")
    undecodable: int = Field(description="Records that were not CloudEvents.")
    intact: bool = Field(description="No break found.")
    breaks: list[BreakOut] = Field(description="First break of each broken stream.")


YearsQ = Annotated[
    list[Annotated[int, Field(ge=2000, le=2100)]],
    Query(min_length=1, max_length=10, description="Fiscal years side by side, e.g. 2016 and 2021."),
]
YearQ = Annotated[int, Query(ge=2000, le=2100, description="Fiscal year (April–March).")]
ByQ = Annotated[By, Query(description="ward, area or district.")]
AsOfQ = Annotated[date | None, Query(description="As recorded by the end of this day (Japan time).")]
FormatQ = Annotated[Format, Query(description="json, csv or xlsx.")]
AsOfT = Annotated[datetime | None, Query(description="As it stood at this moment (timezone required).")]
BasisQ = Annotated[
    Literal["recorded", "received"],
    Query(description="recorded: by the services' recording time; received: by when reporting received it."),
]
IdPath = Annotated[str, Path(min_length=1, max_length=128, description="Pseudonymous id.")]
ProjectionPath = Annotated[Literal["reporting.annual", "reporting.timelines"], Path(description="Projection name.")]


def router(reporting: Reporting) -> APIRouter:
    api = APIRouter()
    current = cast(Any, principal_dependency(reporting.runtime.settings))
    Caller = Annotated[Principal, Depends(current)]  # noqa: N806  (a type alias bound to this app's settings)
    engine = reporting.runtime.reader
    ward = reporting.ward
    policy = ReportingPolicy(reporting)

    def today() -> date:
        return datetime.now(JST).date()

    @api.get(
        "/reports/consultations",
        tags=["reports"],
        summary="Consultations by window type",
        responses=DOWNLOADS,
        response_model=TableOut,
    )
    async def consultations(
        caller: Caller, fiscal_years: YearsQ, by: ByQ = "ward", as_of: AsOfQ = None, format: FormatQ = "json"
    ) -> Response:
        policy.aggregates(caller)
        years = sorted(set(fiscal_years))
        tables = await reporting.annual.tables()
        sums = await queries.fact_sums(
            engine, tables, years, sorted({m for _, m, _, _ in CONSULTATION_ITEMS}), by, as_of
        )
        firsts = await queries.first_days(engine, tables, years)
        columns = [year_column(y, firsts.get(y), as_of or today()) for y in years]
        rows = consultation_rows(queries.groups_of(ward, by), years, sums)
        table = TableOut(
            title_ja="相談件数",
            by=by,
            as_of=as_of,
            fiscal_years=[_year_out(c) for c in columns],
            rows=[_row_out(r) for r in rows],
            notes_ja=[c.note_ja for c in columns if c.note_ja],
        )
        return _render(table, format, "consultations")

    @api.get(
        "/reports/resource-development",
        tags=["reports"],
        summary="Resource development with the previous year",
        responses=DOWNLOADS,
        response_model=TableOut,
    )
    async def resource_development(
        caller: Caller, fiscal_year: YearQ, by: ByQ = "ward", as_of: AsOfQ = None, format: FormatQ = "json"
    ) -> Response:
        policy.aggregates(caller)
        tables = await reporting.annual.tables()
        metrics = ["visit", "resource_identified", "usable_place", "place_use"]
        sums = await queries.fact_sums(engine, tables, [fiscal_year, fiscal_year - 1], metrics, by, as_of)
        rows = resource_rows(queries.groups_of(ward, by), fiscal_year, sums)
        column = year_column(fiscal_year, None, as_of or today())
        notes = [f"（　）内は{fiscal_year_label_ja(fiscal_year - 1)}の実績"]
        table = TableOut(
            title_ja="地域資源開発",
            by=by,
            as_of=as_of,
            fiscal_years=[_year_out(column)],
            rows=[_row_out(r) for r in rows],
            notes_ja=notes + ([column.note_ja] if column.note_ja else []),
        )
        return _render(table, format, "resource-development")

    @api.get(
        "/reports/publicity",
        tags=["reports"],
        summary="Publicity: newsletter and groups introduced",
        responses=DOWNLOADS,
        response_model=TableOut,
    )
    async def publicity(
        caller: Caller, fiscal_year: YearQ, by: ByQ = "ward", as_of: AsOfQ = None, format: FormatQ = "json"
    ) -> Response:
        policy.aggregates(caller)
        tables = await reporting.annual.tables()
        sums = await queries.fact_sums(
            engine, tables, [fiscal_year], ["newsletter_issue", "group_introduced"], by, as_of
        )
        subscribers = await queries.subscribers_at_end(engine, tables, fiscal_year, by, as_of)
        rows = publicity_rows(queries.groups_of(ward, by), fiscal_year, sums, subscribers)
        column = year_column(fiscal_year, None, as_of or today())
        table = TableOut(
            title_ja="広報・啓発",
            by=by,
            as_of=as_of,
            fiscal_years=[_year_out(column)],
            rows=[_row_out(r) for r in rows],
            notes_ja=["登録者数は年度末時点"] + ([column.note_ja] if column.note_ja else []),
        )
        return _render(table, format, "publicity")

    @api.get("/indicators", tags=["reports"], summary="Indicators of the national comprehensive support system")
    async def indicators(caller: Caller, fiscal_year: YearQ, as_of: AsOfQ = None) -> dict[str, Any]:
        policy.aggregates(caller)
        tables = await reporting.annual.tables()
        metrics = [
            "consultation",
            "consultation_expanded",
            "compound_need",
            "gap_need",
            "referral_requested",
            "referral_accepted",
            "referral_completed",
            "referral_overdue",
            "plan_by_meeting",
            "meeting_held",
            "participation_started",
            "usable_place",
            "place_use",
            "place_participants",
            "initiative_launched",
            "district_issue",
            "case_opened",
        ]
        sums = await queries.fact_sums(engine, tables, [fiscal_year], metrics, "ward", as_of)

        def total(metric: str) -> int:
            return sum(v for (g, y, m, _d), v in sums.items() if m == metric)

        turnaround = await queries.referral_turnaround(engine, tables, fiscal_year, today())
        persons = await queries.distinct_subjects(engine, tables, fiscal_year, "participation_started", as_of)
        resources = await queries.distinct_subjects(engine, tables, fiscal_year, "participation_resource", as_of)
        return {
            "fiscal_year": fiscal_year,
            "label_ja": fiscal_year_label_ja(fiscal_year),
            "as_of": as_of.isoformat() if as_of else None,
            "consultation_support": {
                "label_ja": "相談支援",
                "consultations": total("consultation"),
                "expanded_consultations": total("consultation_expanded"),
                "companion_support_cases_opened": total("case_opened"),
            },
            "multi_agency_collaboration": {
                "label_ja": "多機関協働",
                "referrals_requested": total("referral_requested"),
                "referrals_accepted": total("referral_accepted"),
                "referrals_completed": total("referral_completed"),
                "completion_rate": round(total("referral_completed") / total("referral_requested"), 4)
                if total("referral_requested")
                else None,
                "meetings_held": total("meeting_held"),
                "plans_decided_by_meetings": total("plan_by_meeting"),
                "median_hours_to_accept": turnaround.median_hours_to_accept,
                "median_hours_to_complete": turnaround.median_hours_to_complete,
                "referrals_marked_overdue": total("referral_overdue"),
                "open_referrals_past_due": turnaround.open_overdue,
            },
            "participation_support": {
                "label_ja": "参加支援",
                "participations_started": total("participation_started"),
                "persons_supported": persons,
                "cooperating_resources": resources,
            },
            "community_building": {
                "label_ja": "地域づくりに向けた支援",
                "usable_places": total("usable_place"),
                "place_uses": total("place_use"),
                "participants": total("place_participants"),
                "initiatives_launched": total("initiative_launched"),
                "district_issues_raised": total("district_issue"),
            },
        }

    @api.get(
        "/indicators/needs-by-district",
        tags=["reports"],
        summary="Compound and gap needs by district",
        responses=DOWNLOADS,
        response_model=TableOut,
    )
    async def needs_by_district(
        caller: Caller, fiscal_year: YearQ, as_of: AsOfQ = None, format: FormatQ = "json"
    ) -> Response:
        policy.aggregates(caller)
        tables = await reporting.annual.tables()
        sums = await queries.fact_sums(engine, tables, [fiscal_year], ["compound_need", "gap_need"], "district", as_of)
        rows = []
        for group in queries.groups_of(ward, "district"):
            for item, label in (("compound_need", "複合化したニーズ"), ("gap_need", "狭間のニーズ")):
                value = int(sums.get((group.id, fiscal_year, item, ""), 0))
                rows.append(_row_out(Row(group, item, label, {fiscal_year: value})))
        column = year_column(fiscal_year, None, as_of or today())
        table = TableOut(
            title_ja="複合・狭間のニーズ（地区別）",
            by="district",
            as_of=as_of,
            fiscal_years=[_year_out(column)],
            rows=rows,
            notes_ja=[],
        )
        return _render(table, format, "needs-by-district")

    def _entry(e: queries.Entry) -> EntryOut:
        agency = ward.agency(e.agency_id) if e.agency_id else None
        return EntryOut(
            event_id=e.event_id,
            event_type=e.event_type,
            label_ja=EVENT_LABELS_JA.get(short_type(e.event_type), short_type(e.event_type)),
            service=service_of(e.event_type),
            stream_id=e.stream_id,
            stream_version=e.stream_version,
            recorded_at=e.recorded_at,
            received_at=e.received_at,
            agency_id=e.agency_id,
            agency_label_ja=agency.label_ja if agency else None,
            actor_staff=e.actor_staff,
            person_id=e.person_id,
            case_id=e.case_id,
            data=e.data,
        )

    protected_note = f"{PROTECTED_LABEL_JA}は、記録したサービス（readable_at）でのみ閲覧できます。"

    def _aware(as_of: datetime | None) -> datetime | None:
        if as_of is None:
            return None
        return as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)

    @api.get(
        "/timelines/persons/{person_id}",
        tags=["timelines"],
        summary="伴走記録 of a person",
        response_model=TimelineOut,
        responses={403: {"description": "Not entitled"}, 404: {"description": "Unknown"}},
    )
    async def person_timeline(
        caller: Caller, person_id: IdPath, as_of: AsOfT = None, basis: BasisQ = "recorded"
    ) -> Response:
        moment = _aware(as_of)
        ground = await policy.timeline_basis(caller, person_id)
        if ground is None:
            await reporting.log_read(caller, "person", person_id, moment, "refused", 0)
            return problem(403, "この方の伴走記録を閲覧する権限がありません (not entitled)")
        tables = await reporting.timelines.tables()
        entries = await queries.timeline(engine, tables, person_id=person_id, as_of=moment, basis=basis)
        await reporting.log_read(caller, "person", person_id, moment, ground, len(entries))
        if not entries and moment is None:
            return problem(404, "記録がありません (unknown person)")
        out = TimelineOut(
            subject_kind="person",
            subject_id=person_id,
            as_of=moment,
            basis=ground,
            protected_note_ja=protected_note,
            entries=[_entry(e) for e in entries],
        )
        return JSONResponse(out.model_dump(mode="json"))

    @api.get(
        "/timelines/cases/{case_id}",
        tags=["timelines"],
        summary="伴走記録 and state of a case",
        response_model=TimelineOut,
        responses={403: {"description": "Not entitled"}, 404: {"description": "Unknown"}},
    )
    async def case_timeline(
        caller: Caller, case_id: IdPath, as_of: AsOfT = None, basis: BasisQ = "recorded"
    ) -> Response:
        moment = _aware(as_of)
        tables = await reporting.timelines.tables()
        person = await queries.person_of_case(engine, tables, case_id)
        ground = await policy.timeline_basis(caller, person)
        if ground is None:
            await reporting.log_read(caller, "case", case_id, moment, "refused", 0)
            if person is None:
                return problem(404, "記録がありません (unknown case)")
            return problem(403, "このケースの伴走記録を閲覧する権限がありません (not entitled)")
        entries = await queries.timeline(engine, tables, case_id=case_id, as_of=moment, basis=basis)
        await reporting.log_read(caller, "case", case_id, moment, ground, len(entries))
        if not entries and person is None:
            return problem(404, "記録がありません (unknown case)")
        state = fold_case(case_id, [(e.event_type, e.data) for e in entries])
        out = TimelineOut(
            subject_kind="case",
            subject_id=case_id,
            as_of=moment,
            basis=ground,
            protected_note_ja=protected_note,
            entries=[_entry(e) for e in entries],
            state=CaseStateOut(**state.__dict__, status_label_ja=STATUS_LABELS_JA[state.status]),
        )
        return JSONResponse(out.model_dump(mode="json"))

    @api.get(
        "/audit/reads",
        tags=["audit"],
        summary="Who read which timeline, when",
        response_model=list[ReadOut],
        responses={403: {"description": "Admins and auditors only"}},
    )
    async def reads(
        caller: Caller,
        subject_id: Annotated[str | None, Query(max_length=128, description="Only reads of this subject.")] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="At most this many, newest first.")] = 100,
    ) -> Response:
        refused = policy.audit(caller)
        if refused is not None:
            return refused
        query = select(timeline_reads).order_by(timeline_reads.c.id.desc()).limit(limit)
        if subject_id:
            query = query.where(timeline_reads.c.subject_id == subject_id)
        async with engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        out = [ReadOut(**{k: v for k, v in r.items() if k != "id"}) for r in rows]
        return JSONResponse([o.model_dump(mode="json") for o in out])

    @api.post(
        "/audit/chains/verify",
        tags=["audit"],
        summary="Verify hash chains from the events as published",
        response_model=VerifyOut,
        responses={503: {"description": "No broker"}, 403: {"description": "Forbidden"}},
    )
    async def verify(caller: Caller, body: VerifyIn) -> Response:
        refused = policy.audit(caller, "実行")
        if refused is not None:
            return refused
        if reporting.runtime.settings.broker_mode != "kafka":
            return problem(503, "ブローカーに接続していません (verification reads the topics)")
        suffix = dict(zip(SOURCE_TOPICS, reporting.topics, strict=True))
        topics = [suffix[t] for t in (body.topics or SOURCE_TOPICS)]
        report = await verify_topics(
            reporting.runtime.settings.kafka_bootstrap_servers,
            topics,
            set(body.stream_ids) if body.stream_ids else None,
        )
        out = VerifyOut(
            topics=report.topics,
            records=report.records,
            streams=report.streams,
            undecodable=report.undecodable,
            intact=not report.breaks,
            breaks=[BreakOut(**b.__dict__) for b in report.breaks],
        )
        return JSONResponse(out.model_dump(mode="json"))

    def _progress(name: str) -> ProgressOut:
        job = reporting.rebuilds[name]
        p = job.progress
        return ProgressOut(
            projection=name,
            state=job.state,
            generation=p.generation if p else None,
            events_done=p.events_done if p else 0,
            remaining=p.remaining if p else 0,
            rate=p.rate if p else 0.0,
            eta_seconds=p.eta_seconds if p else None,
            started_at=job.started_at,
            finished_at=job.finished_at,
            error=job.error,
        )

    @api.post(
        "/projections/{name}/rebuild",
        tags=["projections"],
        summary="Rebuild a projection from the topics",
        status_code=202,
        response_model=ProgressOut,
        responses={403: {"description": "Admins only"}, 503: {"description": "No broker"}},
    )
    async def rebuild(caller: Caller, name: ProjectionPath) -> Response:
        refused = policy.administer(caller)
        if refused is not None:
            return refused
        if reporting.runtime.settings.broker_mode != "kafka":
            return problem(503, "ブローカーに接続していません (a rebuild reads the topics)")
        reporting.start_rebuild(name)
        return JSONResponse(_progress(name).model_dump(mode="json"), status_code=202)

    @api.get(
        "/projections/{name}/rebuild",
        tags=["projections"],
        summary="Progress of the latest rebuild",
        response_model=ProgressOut,
        responses={404: {"description": "No rebuild started"}},
    )
    async def rebuild_progress(caller: Caller, name: ProjectionPath) -> Response:
        policy.aggregates(caller)
        if name not in reporting.rebuilds:
            return problem(404, "再構築は開始されていません (no rebuild started)")
        return JSONResponse(_progress(name).model_dump(mode="json"))

    @api.get("/projections", tags=["projections"], summary="Projections and their live generations")
    async def projections(caller: Caller) -> list[dict[str, Any]]:
        policy.aggregates(caller)
        out = []
        for name, manager in reporting.managers.items():
            out.append(
                {
                    "projection": name,
                    "active_generation": await manager.active_generation(),
                    "topics": list(manager.projection.topics),
                }
            )
        return out

    _ = fiscal_year_of
    return api
