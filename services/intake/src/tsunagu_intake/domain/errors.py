"""Why a command was refused; the messages carry ids and states only, never personal data."""

from __future__ import annotations


class DomainError(Exception):
    """A command that the aggregate's rules refuse (HTTP 409, or the DLQ for agency events)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.public_detail = message
        self.field = field
        self.current_version: int | None = None


class InvalidReference(DomainError):
    """An id that the ward's reference data does not know (HTTP 422 naming the field)."""


class UnknownAggregate(DomainError):
    """The stream does not exist (HTTP 404)."""
