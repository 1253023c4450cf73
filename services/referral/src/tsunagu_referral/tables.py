"""The referral service's read models, written in the same transaction as the events.

`consents` is the consent view built from intake's events; the others answer the
inboxes and lists without replaying streams. Streams stay the truth: every command
decides on the aggregate loaded from the store, never on these rows.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Date, DateTime, Integer, MetaData, String, Table, Text
from tsunagu_platform.serving import serving_tables

metadata = MetaData()

consents = Table(
    "referral_consents",
    metadata,
    Column("consent_id", String(128), primary_key=True),
    Column("person_id", String(128), nullable=False, index=True),
    Column("scope", String(32), nullable=False),
    Column("district_id", String(64)),
    Column("agency_ids", Text, nullable=False, default="[]"),
    Column("referral_id", String(128)),
    Column("expires_on", Date),
    Column("withdrawn", Boolean, nullable=False, default=False),
    Column("given_at", DateTime(timezone=True)),
)

sharing_bases = Table(
    "referral_sharing_bases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("person_id", String(128), nullable=False, index=True),
    Column("basis", String(64), nullable=False),
    Column("meeting_id", String(128)),
    Column("recorded_at", DateTime(timezone=True)),
)

erased_persons = Table(
    "referral_erased_persons",
    metadata,
    Column("person_id", String(128), primary_key=True),
    Column("erased_at", DateTime(timezone=True)),
)

referrals = Table(
    "referral_referrals",
    metadata,
    Column("referral_id", String(128), primary_key=True),
    Column("person_id", String(128), nullable=False, index=True),
    Column("case_id", String(128)),
    Column("from_agency_id", String(64), nullable=False, index=True),
    Column("to_agency_id", String(64), nullable=False, index=True),
    Column("categories", Text, nullable=False),
    Column("legal_basis", String(64), nullable=False),
    Column("meeting_id", String(128)),
    Column("handover_lead", Boolean, nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("due_on", Date, nullable=False, index=True),
    Column("overdue", Boolean, nullable=False, default=False),
    Column("outcome", String(32)),
    Column("decline_reason", String(32)),
    Column("version", Integer, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

meetings = Table(
    "referral_meetings",
    metadata,
    Column("meeting_id", String(128), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("district_id", String(64)),
    Column("state", String(16), nullable=False),
    Column("scheduled_for", DateTime(timezone=True), nullable=False),
    Column("held_at", DateTime(timezone=True)),
    Column("version", Integer, nullable=False),
)

meeting_agencies = Table(
    "referral_meeting_agencies",
    metadata,
    Column("meeting_id", String(128), primary_key=True),
    Column("agency_id", String(64), primary_key=True, index=True),
)

# The action items' inbox. The title is kept as its sealed JSON (never in plaintext); the
# table of releases before meeting text was sealed (`referral_action_items`) is no longer used.
action_items = Table(
    "referral_meeting_action_items",
    metadata,
    Column("action_id", String(128), primary_key=True),
    Column("meeting_id", String(128), nullable=False, index=True),
    Column("agency_id", String(64), nullable=False, index=True),
    Column("title", Text),
    Column("due_on", Date, nullable=False),
    Column("done_at", DateTime(timezone=True)),
)

support_plans = Table(
    "referral_support_plans",
    metadata,
    Column("case_id", String(128), primary_key=True),
    Column("person_id", String(128), nullable=False),
    Column("decisions", Integer, nullable=False),
    Column("last_meeting_id", String(128), nullable=False),
)

# Which agencies serve a person, from intake's events (the registering window, the lead agency
# of each case and whether it is open): the platform's view, shared with resources and reporting.
# Tables `referral_serving_registrations` and `referral_serving_cases`, filled by the consumer
# `referral.serving`; the earlier `referral_person_agencies` and `referral_cases` are no longer used.
serving = serving_tables(metadata, "referral_serving")

# Every read of personal text (referral reasons and feedback, meeting minutes and titles),
# granted or denied; the shape of intake's access log, with the referral or meeting read.
access_log = Table(
    "referral_access_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("staff", String(64), nullable=False),
    Column("agency", String(100), nullable=False),
    Column("role", String(32), nullable=False),
    Column("person_id", String(128), index=True),
    Column("subject_id", String(128), nullable=False, index=True),
    Column("what", String(64), nullable=False),
    Column("granted", Boolean, nullable=False),
    Column("basis", String(64), nullable=False),
)

# Persons a meeting discussed (on its agenda or at its holding). A meeting's own text (minutes,
# text about no single person) is sealed with the meeting's key, and free text may mention any
# of them: when one of them is erased, the meeting's key is erased too.
meeting_persons = Table(
    "referral_meeting_persons",
    metadata,
    Column("meeting_id", String(128), primary_key=True),
    Column("person_id", String(128), primary_key=True, index=True),
)
