"""What agency systems publish to Tsunagu on `tsunagu.intake.inbound`.

Agency systems (a hospital, the poverty support center, a care manager's system)
report consultations and contacts as CloudEvents, binary or structured mode. They
hold no Tsunagu keys, so personal fields arrive in plain text over the encrypted
broker connection; intake seals them on arrival and the inbound topic keeps them
only for a short retention. Duplicates by (source, id) are ignored. Envelope
attributes an agency need not know (streamid, streamversion, correlationid,
dataversion) may be left out; see `EventEnvelope` for the defaults.
"""

from __future__ import annotations

from datetime import date

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tsunagu_events.contracts.common import ConsultationCategory
from tsunagu_events.contracts.intake import Channel, ConsultedBy, ContactKind, Outcome
from tsunagu_events.registry import EventPayload, registry

PREFIX = "tsunagu.agency."


class ReportedPerson(BaseModel):
    """Who the report is about: a known Tsunagu person id, or details to register."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    person_id: str | None = Field(
        default=None, max_length=64, description="Tsunagu person id, when the agency knows it."
    )
    name: str | None = Field(default=None, max_length=200, description="Name (personal data).")
    kana: str | None = Field(default=None, max_length=200, description="Name in kana (personal data).")
    birth_date: date | None = Field(default=None, description="Birth date (personal data).")
    address: str | None = Field(default=None, max_length=500, description="Address (personal data).")
    phone: str | None = Field(default=None, max_length=40, description="Phone number (personal data).")


@registry.event(PREFIX + "ConsultationReported", 1)
class ConsultationReported(EventPayload):
    """A consultation an agency took, to be counted and followed like one at a window."""

    window_id: str = Field(max_length=100, description="The window (agency id) where it was received.")
    received_at: AwareDatetime = Field(
        description="When it was received, with its UTC offset (a time without one is a schema violation)."
    )
    channel: Channel = Field(description="How it came in.")
    consulted_by: ConsultedBy = Field(description="Who consulted.")
    categories: list[ConsultationCategory] = Field(min_length=1, max_length=14, description="Topics raised.")
    outcome: Outcome = Field(description="What came of it.")
    summary: str | None = Field(default=None, max_length=4000, description="Free text (personal data).")
    person: ReportedPerson | None = Field(default=None, description="Who it is about, if known.")


@registry.event(PREFIX + "ContactReported", 1)
class ContactReported(EventPayload):
    """A contact made in an open companion-support case."""

    case_id: str = Field(max_length=64, description="Tsunagu case id.")
    kind: ContactKind = Field(description="What kind of contact.")
    at: AwareDatetime = Field(description="When, with its UTC offset (a time without one is a schema violation).")
    agency_id: str = Field(max_length=100, description="Agency that made the contact.")
    note: str | None = Field(default=None, max_length=4000, description="Note (personal data).")
