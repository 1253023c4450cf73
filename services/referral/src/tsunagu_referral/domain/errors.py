"""Why a command was refused; the HTTP edge turns these into problem details.

Messages name states and ids only, never personal data, so they are safe to log
and to show in a 409/422 body. Each carries a Japanese and an English text because
window staff read them.
"""

from __future__ import annotations


class DomainError(Exception):
    """A command the aggregate refuses."""

    code = "domain_error"
    public_detail: str

    def __init__(self, message_ja: str, message_en: str, **facts: object) -> None:
        super().__init__(message_en)
        self.message_ja = message_ja
        self.message_en = message_en
        self.facts = facts
        self.public_detail = message_en


class InvalidTransition(DomainError):
    """The aggregate is not in a state where this command makes sense (HTTP 409)."""

    code = "invalid_transition"


class ConsentRequired(DomainError):
    """Sharing the person's information needs their consent, and there is none (HTTP 409)."""

    code = "consent_required"


class InvalidCommand(DomainError):
    """The command contradicts itself or the aggregate's facts (HTTP 422)."""

    code = "invalid_command"

    def __init__(self, field: str, message_ja: str, message_en: str, **facts: object) -> None:
        super().__init__(message_ja, message_en, **facts)
        self.field = field


class NotFound(DomainError):
    """A part of the aggregate (an agenda item, an action item) does not exist (HTTP 404)."""

    code = "not_found"
