"""Why a command was refused, in words staff (Japanese) and agency systems (English) can act on."""

from __future__ import annotations


class DomainError(Exception):
    """A command the domain refuses; `code` is stable for clients, the messages are for people."""

    code = "domain_error"

    def __init__(self, message_ja: str, message_en: str, **details: object) -> None:
        super().__init__(message_en)
        self.message_ja = message_ja
        self.message_en = message_en
        self.details = details

    @property
    def public_detail(self) -> str:
        # Consumers may put this in DLQ headers: it never quotes personal data.
        return self.message_en


class NotFound(DomainError):
    code = "not_found"


class InvalidTransition(DomainError):
    """The aggregate is in a state where the command makes no sense (HTTP 409)."""

    code = "invalid_transition"


class InvalidCommand(DomainError):
    """The command contradicts itself or the aggregate's facts (HTTP 422)."""

    code = "invalid_command"


class ConsentRequired(DomainError):
    """Participation support needs the person's consent covering the requesting agency (HTTP 403)."""

    code = "consent_required"


class NotPermitted(DomainError):
    """The caller's agency or role may not do this here (HTTP 403); `code` says which rule refused it."""

    code = "not_permitted"

    def __init__(self, code: str, message_ja: str, message_en: str) -> None:
        super().__init__(message_ja, message_en)
        self.code = code
