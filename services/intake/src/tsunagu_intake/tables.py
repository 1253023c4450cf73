"""Read models of the intake service, written in the same transaction as the events they reflect.

They hold ids, categories, dates and states only: personal data stays sealed in
the events and is opened on read, so erasing a person's keys leaves nothing
readable here while every count keeps its rows.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Date, DateTime, Index, Integer, MetaData, String, Table
from tsunagu_platform.db import BigId

metadata = MetaData()

consultations = Table(
    "intake_consultations",
    metadata,
    Column("consultation_id", String(64), primary_key=True),
    Column("window_id", String(100), nullable=False),
    Column("window_type", String(64), nullable=False),
    Column("district_id", String(64), nullable=False),
    Column("area_id", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("fiscal_year", Integer, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("consulted_by", String(32), nullable=False),
    Column("categories", JSON, nullable=False),
    Column("expanded", Boolean, nullable=False),
    Column("compound_need", Boolean, nullable=False),
    Column("gap_need", Boolean, nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("person_id", String(64), nullable=True),
    Column("via", String(32), nullable=False),
    Column("version", Integer, nullable=False),
)
Index("ix_intake_consultations_district", consultations.c.district_id, consultations.c.fiscal_year)

persons = Table(
    "intake_persons",
    metadata,
    Column("person_id", String(64), primary_key=True),
    Column("district_id", String(64), nullable=True),
    Column("registered_by_agency", String(100), nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("erased_at", DateTime(timezone=True), nullable=True),
    Column("version", Integer, nullable=False),
)

consents = Table(
    "intake_consents",
    metadata,
    Column("consent_id", String(64), primary_key=True),
    Column("person_id", String(64), nullable=False, index=True),
    Column("scope", String(32), nullable=False),
    Column("district_id", String(64), nullable=True),
    Column("agency_ids", JSON, nullable=False),
    Column("given_at", DateTime(timezone=True), nullable=False),
    Column("expires_on", Date, nullable=True),
    Column("withdrawn_at", DateTime(timezone=True), nullable=True),
    Column("recorded_by_agency", String(100), nullable=False),
)

households = Table(
    "intake_households",
    metadata,
    Column("household_id", String(64), primary_key=True),
    Column("person_ids", JSON, nullable=False),
    Column("situation", String(32), nullable=False),
)

cases = Table(
    "intake_cases",
    metadata,
    Column("case_id", String(64), primary_key=True),
    Column("person_id", String(64), nullable=False, index=True),
    Column("consultation_id", String(64), nullable=True),
    Column("lead_agency_id", String(100), nullable=False),
    Column("district_id", String(64), nullable=False),
    Column("approach", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("close_reason", String(32), nullable=True),
    Column("plan_version", Integer, nullable=False),
    Column("review_due", Date, nullable=True),
    Column("contacts", Integer, nullable=False),
    Column("last_contact_at", DateTime(timezone=True), nullable=True),
    Column("version", Integer, nullable=False),
)

access_log = Table(
    "intake_access_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("staff", String(64), nullable=False),
    Column("agency", String(100), nullable=False),
    Column("role", String(32), nullable=False),
    Column("person_id", String(64), nullable=False, index=True),
    Column("what", String(64), nullable=False),
    Column("granted", Boolean, nullable=False),
    Column("basis", String(64), nullable=False),
)
