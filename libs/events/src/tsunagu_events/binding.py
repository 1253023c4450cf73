"""CloudEvents Kafka protocol binding.

Services publish in binary mode: the attributes travel as `ce_*` headers and the
body is the JSON data, so brokers and tools can route on headers without parsing
bodies. Agency systems may also publish in structured mode
(`content-type: application/cloudevents+json`, the whole event in the body); both
decode to the same envelope. Decoding never trusts its input: any failure is an
`EventDecodeError` whose reason says which DLQ category it belongs to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

from pydantic import ValidationError
from pydantic_core import from_json

from tsunagu_events.envelope import SPEC_VERSION, EventEnvelope

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_CLOUDEVENTS_JSON = "application/cloudevents+json"
HEADER_PREFIX = "ce_"
MAX_MESSAGE_BYTES = 1_000_000

Reason = Literal[
    "undecodable",
    "unknown_type",
    "schema_violation",
    "handler_error",
    "oversized",
    "foreign_tenant",
    "unbound_source",
    "chain_break",
]
"""Why a record was dead-lettered (its `dlq_reason` header): the last three are an event of another tenant,
an agency's report about a window or agency its source is not registered for, and an event that does not
link to the last one applied of its stream (chain.py)."""

_INTEGER_ATTRIBUTES = {"streamversion", "dataversion"}

Headers = Sequence[tuple[str, bytes]]


class EventDecodeError(ValueError):
    """The message is not a Tsunagu CloudEvent; `reason` is the DLQ category."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason: Reason = reason
        self.detail = detail


class DecodedMessage(NamedTuple):
    """One per record a consumer reads: a named tuple is one allocation, a frozen dataclass two (the
    object and its `__dict__`) and an `object.__setattr__` call per field."""

    envelope: EventEnvelope
    mode: Literal["binary", "structured"]


def to_kafka(event: EventEnvelope) -> tuple[bytes, list[tuple[str, bytes]], bytes]:
    """Binary mode: (key, headers, value). The key is the stream id so a stream stays in one partition."""
    return structured_to_kafka(event.to_structured())


def structured_to_kafka(structured: Mapping[str, Any]) -> tuple[bytes, list[tuple[str, bytes]], bytes]:
    """Binary mode from the structured form, as the store keeps it (no re-validation on the relay's hot path)."""
    headers = [("content-type", CONTENT_TYPE_JSON.encode())]
    for name, value in structured.items():
        if name in ("data", "datacontenttype"):
            continue
        headers.append((HEADER_PREFIX + name, str(value).encode("utf-8")))
    value_bytes = json.dumps(structured["data"], separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return str(structured["streamid"]).encode("utf-8"), headers, value_bytes


def _header_map(headers: Headers) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, raw in headers:
        try:
            out[name.lower()] = raw.decode("utf-8") if raw is not None else ""
        except UnicodeDecodeError:
            raise EventDecodeError("undecodable", f"header {name!r} is not UTF-8") from None
    return out


def _load_json(value: bytes | None) -> Any:
    if value is None:
        raise EventDecodeError("undecodable", "message has no body")
    try:
        return json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EventDecodeError("undecodable", f"body is not JSON: {type(error).__name__}") from None


def _envelope(attributes: dict[str, Any]) -> EventEnvelope:
    try:
        return EventEnvelope.model_validate(attributes)
    except ValidationError as error:
        fields = ", ".join(sorted({".".join(str(p) for p in e["loc"]) or "<root>" for e in error.errors()}))
        raise EventDecodeError("undecodable", f"invalid CloudEvents attributes: {fields}") from None


_ATTRIBUTE_OF_HEADER = {HEADER_PREFIX + name: name for name in EventEnvelope.model_fields if name != "data"}
_FAST_NAMES = {**_ATTRIBUTE_OF_HEADER, "content-type": "content-type"}
_validate_envelope = EventEnvelope.__pydantic_validator__.validate_python
"""`EventEnvelope.model_validate` without its Python-level wrapper (keyword checks), once per event."""
_JSON = CONTENT_TYPE_JSON.encode()
_SPEC = SPEC_VERSION.encode()


def _from_kafka_fast(headers: Headers, value: bytes) -> DecodedMessage | None:
    """The common case — our own binary-mode events, lower-case headers, JSON body — in one pass.

    Returns None for anything unusual; `from_kafka` then takes the careful path, so errors and
    their DLQ reasons are exactly those of the careful path. The header values go to pydantic as
    they came, bytes: it reads UTF-8 text, numbers and times from bytes itself (lax mode), which
    spares a Python-level decode per header of every event (17 of them); only the literal
    `specversion` wants text. A value that is not valid UTF-8, or a number that is not one, fails
    validation here and gets the careful path's reason there.
    """
    try:
        attributes: dict[str, Any] = {_FAST_NAMES[name]: raw for name, raw in headers}
        if attributes.pop("content-type", _JSON) != _JSON or attributes.get("specversion") != _SPEC:
            return None
        attributes["specversion"] = SPEC_VERSION
        data = from_json(value)
        if type(data) is not dict:
            return None
        attributes["data"] = data
        envelope: EventEnvelope = _validate_envelope(attributes)
        return DecodedMessage(envelope, "binary")
    except Exception:  # anything at all (an unknown header name too): the careful path decides, and says why
        return None


def from_kafka(headers: Headers, value: bytes | None) -> DecodedMessage:
    """Decode a Kafka record in binary or structured mode into an envelope."""
    if value is not None and len(value) <= MAX_MESSAGE_BYTES:
        fast = _from_kafka_fast(headers, value)
        if fast is not None:
            return fast
    if value is not None and len(value) > MAX_MESSAGE_BYTES:
        raise EventDecodeError("oversized", f"body of {len(value)} bytes exceeds {MAX_MESSAGE_BYTES}")
    header_map = _header_map(headers)
    content_type = header_map.get("content-type", "")
    if content_type.startswith(CONTENT_TYPE_CLOUDEVENTS_JSON):
        body = _load_json(value)
        if not isinstance(body, dict):
            raise EventDecodeError("undecodable", "structured event is not a JSON object")
        if "data_base64" in body:
            raise EventDecodeError("undecodable", "data_base64 is not accepted; data must be JSON")
        return DecodedMessage(_envelope(body), "structured")
    if "ce_specversion" not in header_map:
        raise EventDecodeError("undecodable", "neither ce_* headers nor a structured CloudEvent")
    attributes: dict[str, Any] = {}
    for name, text in header_map.items():
        if not name.startswith(HEADER_PREFIX):
            continue
        attribute = name[len(HEADER_PREFIX) :]
        if attribute in _INTEGER_ATTRIBUTES:
            try:
                attributes[attribute] = int(text)
            except ValueError:
                raise EventDecodeError("undecodable", f"header {name} is not an integer") from None
        else:
            attributes[attribute] = text
    if content_type and not content_type.startswith(CONTENT_TYPE_JSON):
        raise EventDecodeError("undecodable", f"unsupported content-type {content_type!r}")
    attributes["data"] = _load_json(value)
    return DecodedMessage(_envelope(attributes), "binary")
