"""The CloudEvents 1.0 envelope every Tsunagu event travels in.

Agencies, auditors and the four services all read the same attributes, so the
envelope is the one place that says what an event is, who caused it and where it
sits in its stream. Extension names follow the CloudEvents naming rule (lower-case
letters and digits only) so that they survive every protocol binding unchanged.
Nothing here may carry personal data: the attributes become Kafka headers, which
are logged and indexed by tooling that knows nothing of encryption.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from uuid6 import uuid7

SPEC_VERSION = "1.0"
TENANT_PATTERN = r"^[0-9]{6}$"


def new_event_id() -> str:
    """A fresh event id: a UUIDv7 (RFC 9562), so ids minted later sort later.

    Ids are minted by agencies too and must not collide: a UUIDv7 keeps 74 random bits besides its
    millisecond clock. Its order is what matters to every table keyed by ids (inboxes, stores,
    read models): new keys land at the end of the b-tree instead of on a random page, so a
    transaction of many inserts dirties a few pages rather than the whole index. A projection
    rebuild commits tens of thousands of them at a time and wrote each commit's worth of random
    pages again and again (docs/benchmarks/reporting.md)."""
    return str(uuid7())


def new_stream_id(kind: str) -> str:
    """`<kind>-<uuid>` for a new stream (a consultation, a person, a visit…), time-ordered as
    `new_event_id` for the same reason: streams are the keys of stream positions and read models."""
    return f"{kind}-{uuid7()}"


def utc(moment: datetime) -> datetime:
    """Normalise to an aware UTC datetime; naive datetimes are refused, not guessed."""
    if moment.tzinfo is None:
        raise ValueError("time must carry a timezone offset")
    return moment.astimezone(UTC)


def format_time(moment: datetime) -> str:
    """RFC 3339 with microseconds and 'Z': one spelling, so hashes agree everywhere."""
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_AGENCY_DEFAULTED = frozenset({"streamid", "streamversion", "correlationid", "dataversion"})


class Actor(BaseModel):
    """Who caused an event: an agency id and a staff pseudonym, never a real name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agency: str = Field(min_length=1, max_length=64, description="Agency id from the ward's reference data.")
    staff: str = Field(min_length=1, max_length=64, description="Pseudonym of the staff member (never a real name).")


class EventEnvelope(BaseModel):
    """A stored or published event: CloudEvents attributes, Tsunagu extensions and the JSON data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=128, description="CloudEvents id; unique per source.")
    source: str = Field(min_length=1, max_length=256, description="CloudEvents source, e.g. /tsunagu/131121/intake.")
    type: str = Field(min_length=1, max_length=128, description="Event type, e.g. tsunagu.intake.ConsultationReceived.")
    specversion: Literal["1.0"] = Field(default="1.0", description="CloudEvents spec version.")
    time: datetime = Field(description="When the fact happened (UTC).")
    subject: str | None = Field(
        default=None, max_length=256, description="What the event is about (a pseudonymous id)."
    )
    datacontenttype: Literal["application/json"] = Field(
        default="application/json", description="Content type of data; always JSON."
    )
    dataschema: str | None = Field(default=None, max_length=256, description="URI of the payload schema.")
    tenant: str = Field(pattern=TENANT_PATTERN, description="Municipality code of the tenant, e.g. 131121.")
    streamid: str = Field(
        min_length=1, max_length=128, description="Id of the stream (aggregate) the event belongs to."
    )
    streamversion: int = Field(ge=1, description="Position of the event in its stream, from 1 without gaps.")
    correlationid: str = Field(
        min_length=1, max_length=128, description="Id shared by all events of one piece of work."
    )
    causationid: str | None = Field(
        default=None, max_length=128, description="Id of the event or command that caused this one."
    )
    actoragency: str | None = Field(default=None, max_length=64, description="Agency of the actor.")
    actorstaff: str | None = Field(default=None, max_length=64, description="Staff pseudonym of the actor.")
    dataversion: int = Field(ge=1, description="Schema version of data as stored.")
    prevhash: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="Chain hash of the previous event in the stream."
    )
    chainhash: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="sha256 over prevhash and this event's canonical form."
    )
    data: dict[str, Any] = Field(description="The payload as stored (schema version dataversion).")

    @model_validator(mode="before")
    @classmethod
    def _agency_defaults(cls, value: Any) -> Any:
        """Agency systems may leave out what only Tsunagu's own streams need."""
        if isinstance(value, dict) and "id" in value and not _AGENCY_DEFAULTED.issubset(value):
            value = dict(value)
            value.setdefault("streamid", value.get("subject") or value["id"])
            value.setdefault("streamversion", 1)
            value.setdefault("correlationid", value["id"])
            value.setdefault("dataversion", 1)
        return value

    @field_validator("time")
    @classmethod
    def _time_is_utc(cls, value: datetime) -> datetime:
        return utc(value)

    @property
    def actor(self) -> Actor | None:
        if self.actoragency is None or self.actorstaff is None:
            return None
        return Actor(agency=self.actoragency, staff=self.actorstaff)

    def attributes(self) -> dict[str, Any]:
        """Every attribute except data, as CloudEvents JSON spells them (absent ones left out)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            if name == "data":
                continue
            value = getattr(self, name)
            if value is None:
                continue
            out[name] = format_time(value) if name == "time" else value
        return out

    def to_structured(self) -> dict[str, Any]:
        """The structured-mode (application/cloudevents+json) form."""
        return {**self.attributes(), "data": self.data}


def now() -> datetime:
    return datetime.now(UTC)
