"""structlog JSON lines that tie every line to its tenant, correlation, causation, event and stream.

Personal data must never reach a log line. Callers log ids (pseudonymous) and
categories only; as a second line of defence a processor drops any field whose name
says it is personal and replaces it with a marker, so a slip shows up in review
instead of in a log archive.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog
from tsunagu_events import EventEnvelope

PERSONAL_FIELDS = frozenset(
    {
        "name",
        "full_name",
        "kana",
        "name_kana",
        "birth_date",
        "date_of_birth",
        "address",
        "phone",
        "phone_number",
        "email",
        "summary",
        "note",
        "notes",
        "free_text",
        "body",
        "value",
        "payload",
        "data",
    }
)
REDACTED = "[redacted]"


def drop_personal_fields(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in PERSONAL_FIELDS:
            event_dict[key] = REDACTED
    return event_dict


class _Stdout:
    """The process's standard output as it is when a line is written, not when a logger was made.

    structlog caches each logger with the file it was given, and `sys.stdout` is replaced at times
    (pytest's capture closes the one of each test): a cached logger then wrote to a closed file and
    raised, inside a consumer's transaction."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def configure_logging(service: str, level: str = "INFO") -> None:
    """JSON lines on stdout; call once per process, from the service's entry point."""
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=getattr(logging, level.upper(), logging.INFO))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_event_context,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            drop_personal_fields,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(_Stdout()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


_current_event: ContextVar[EventEnvelope | None] = ContextVar("tsunagu_current_event", default=None)


def add_event_context(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Adds the ids of the event being handled; binding is one ContextVar set per event, so it is cheap."""
    envelope = _current_event.get()
    if envelope is not None:
        for key, value in event_context(envelope).items():
            event_dict.setdefault(key, value)
    return event_dict


def event_context(envelope: EventEnvelope) -> dict[str, Any]:
    return {
        "tenant": envelope.tenant,
        "correlation_id": envelope.correlationid,
        "causation_id": envelope.causationid,
        "event_id": envelope.id,
        "stream": envelope.streamid,
        "event_type": envelope.type,
    }


@contextmanager
def bound_to(envelope: EventEnvelope | None = None, **values: Any) -> Iterator[None]:
    """Bind an event's ids (and any extra values) to every log line inside the block."""
    token = _current_event.set(envelope) if envelope is not None else None
    try:
        if values:
            with structlog.contextvars.bound_contextvars(**values):
                yield
        else:
            yield
    finally:
        if token is not None:
            _current_event.reset(token)
