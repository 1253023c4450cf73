"""Who may read what in reporting: the one rule every route asks before it answers.

- The ward's tables and indicators are aggregates: every caller reads them.
- A person's or a case's timeline (伴走記録) is per person: an administrator; an auditor (reporting
  holds no keys, so what it shows is the event record with every sealed field replaced by a
  marker — never decrypted text); staff or an agency system of an agency that serves the person
  now (registering window, lead agency of an open case, as intake's events say), or that holds a
  statutory basis, or a consent in force recorded by an agency that serves the person. Filing a
  consultation, a contact or a referral about someone, or recording a consent for oneself, grants
  nothing. Every timeline read is logged, granted or refused (service.log_read).
- The read log and chain verification are for administrators and auditors; a rebuild for
  administrators. Projection status carries no personal data and is open to every caller.

A refusal is a 403 problem with the reason in Japanese and English in parentheses.
"""

from __future__ import annotations

from fastapi.responses import Response
from tsunagu_platform.auth import Principal, Role
from tsunagu_platform.http import problem

from tsunagu_reporting import queries
from tsunagu_reporting.service import Reporting


class ReportingPolicy:
    def __init__(self, reporting: Reporting) -> None:
        self.reporting = reporting

    def aggregates(self, principal: Principal) -> None:
        """Annual tables, indicators, projection status: every authenticated caller."""
        _ = principal

    async def timeline_basis(self, principal: Principal, person_id: str | None) -> str | None:
        """On what ground the caller may read this person's timeline (None: refused, to be logged as such)."""
        if principal.role in (Role.ADMIN, Role.AUDITOR):
            return principal.role.value
        if principal.role not in (Role.STAFF, Role.AGENCY_SYSTEM) or person_id is None:
            return None
        tables = await self.reporting.timelines.tables()
        return await queries.granted(self.reporting.runtime.reader, tables, person_id, principal.agency)

    def audit(self, principal: Principal, action_ja: str = "閲覧") -> Response | None:
        """The refusal for anyone but administrators and auditors, else None."""
        if principal.role in (Role.ADMIN, Role.AUDITOR):
            return None
        return problem(403, f"監査担当者のみ{action_ja}できます (admins and auditors only)")

    def administer(self, principal: Principal) -> Response | None:
        """The refusal for anyone but administrators, else None."""
        if principal.role == Role.ADMIN:
            return None
        return problem(403, "管理者のみ実行できます (admins only)")
