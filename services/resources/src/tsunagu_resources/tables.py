"""Read models the API lists from, written in the same transaction as the events they reflect.

They are conveniences: every figure can be recomputed from the event store, and
"active on date D" is answered from the events themselves (see `history.py`).
Consents, erasures and who serves a person are what this service learnt from intake's events.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Date, Index, Integer, MetaData, String, Table, Text
from tsunagu_platform.serving import serving_tables

metadata = MetaData()

resources = Table(
    "res_resources",
    metadata,
    Column("resource_id", String(64), primary_key=True),
    Column("district_id", String(64), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("organization_name", String(200), nullable=False),
    Column("service_name", String(200), nullable=False),
    Column("status", String(32), nullable=False),
    Column("status_since", Date, nullable=False),
    Column("last_verified_on", Date),
    Column("last_verified_by", String(64)),
    Column("details", Text, nullable=False),
    Column("version", Integer, nullable=False),
)

visits = Table(
    "res_visits",
    metadata,
    Column("visit_id", String(64), primary_key=True),
    Column("district_id", String(64), nullable=False),
    Column("category", String(32), nullable=False),
    Column("resource_id", String(64)),
    Column("visited_on", Date, nullable=False),
    Column("fiscal_year", Integer, nullable=False),
    Index("ix_res_visits_district_year", "district_id", "fiscal_year"),
)

issues = Table(
    "res_issues",
    metadata,
    Column("issue_id", String(64), primary_key=True),
    Column("district_id", String(64), nullable=False, index=True),
    Column("title", String(200), nullable=False),
    Column("source", String(32), nullable=False),
    Column("decision_id", Text, unique=True),
    Column("meeting_id", Text),
    Column("state", String(16), nullable=False),
    Column("raised_on", Date, nullable=False),
    Column("version", Integer, nullable=False),
)

participations = Table(
    "res_participations",
    metadata,
    Column("participation_id", String(64), primary_key=True),
    Column("person_id", Text, nullable=False, index=True),
    Column("consent_id", Text, nullable=False, index=True),
    Column("resource_id", String(64), nullable=False),
    Column("district_id", String(64), nullable=False),
    Column("state", String(16), nullable=False),
)

consents = Table(
    "res_consents",
    metadata,
    Column("consent_id", Text, primary_key=True),
    Column("person_id", Text, nullable=False, index=True),
    Column("scope", String(32), nullable=False),
    Column("district_id", String(64)),
    Column("agency_ids", Text, nullable=False),
    Column("expires_on", Date),
    Column("withdrawn", Boolean, nullable=False),
)

erased_persons = Table(
    "res_erased_persons",
    metadata,
    Column("person_id", Text, primary_key=True),
)

serving = serving_tables(metadata, "res_serving")
"""Who serves each person (registering window, lead agency of an open case): see policy.py."""
