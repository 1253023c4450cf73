"""Who may do what in intake: the one place every command and query asks (issue 14).

An agency *serves* a person when it is the person's registering window or the lead
agency of one of the person's open cases; it serves a consultation when it is the
window that received it or serves the consultation's person. Every command on a
person, consultation or case is allowed only to an agency that already serves it,
or to an administrator, so no agency can grant itself access: recording a consent,
opening a case with another lead or handing a case over all need the caller to serve
the person first. A consent lets the agencies it names *read* (never write), and only
a consent recorded by another agency counts, so a consent an agency recorded naming
itself grants it nothing.

Reads of personal text (details, consultation summaries, case notes, consent lists)
are written to the access log, granted or denied. Auditors read ids, categories and
states for oversight but never decrypted text. Listings show staff only their own
agency's records and those of the persons it serves.

Routes call one method per command or query; each returns the `Actor` (or the basis
of a read) or raises `AccessDenied` (403), `UnknownAggregate` (404, an unknown id in
the path) or `InvalidReference` (422, an unknown id in the body).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection
from tsunagu_events import Actor
from tsunagu_platform.auth import Principal, Role

from tsunagu_intake.application import IntakeService
from tsunagu_intake.domain.errors import InvalidReference, UnknownAggregate
from tsunagu_intake.tables import cases, consents, consultations, persons

NOT_SERVING = "この方を支援している機関のみ操作できます (only an agency serving this person may do this)"
NOT_SERVING_READ = "この方の情報を見る根拠がありません (your agency does not serve this person)"
NOT_OWN_WINDOW = (
    "自機関の窓口の相談のみ受け付けられます (you may record consultations only at your own agency's window)"
)
NOT_OWN_AGENCY = "自機関としてのみ操作できます (an agency system acts only for its own agency)"
ADMINISTRATORS_ONLY = "管理者のみ操作できます (administrators only)"

Q = TypeVar("Q", bound="Select[*tuple[Any, ...]]")  # a SELECT of any row shape


class AccessDenied(Exception):
    """The caller may not do this (HTTP 403); the message is the Japanese title with English in parentheses."""

    def __init__(self, title: str) -> None:
        super().__init__(title)
        self.title = title


@dataclass(frozen=True)
class Read:
    """A granted read: why (the access-log basis), or None when only non-personal fields are shown."""

    basis: str | None


def role_denied(principal: Principal) -> AccessDenied:
    return AccessDenied(f"この操作の権限がありません (role {principal.role.value} may not do this)")


class IntakePolicy:
    """Decides every HTTP command and query of intake from the caller and the read models."""

    def __init__(self, service: IntakeService) -> None:
        self.service = service

    # -- the rule --------------------------------------------------------------------------

    async def serving(self, conn: AsyncConnection, person_id: str, agency: str) -> tuple[bool, str | None]:
        """(the person exists, why `agency` serves them or None)."""
        registered_by = await conn.scalar(
            select(persons.c.registered_by_agency).where(persons.c.person_id == person_id)
        )
        if registered_by is None:
            return False, None
        if registered_by == agency:
            return True, "registering_window"
        lead = await conn.scalar(
            select(cases.c.case_id)
            .where(cases.c.person_id == person_id, cases.c.lead_agency_id == agency, cases.c.status == "open")
            .limit(1)
        )
        return True, ("lead_agency" if lead is not None else None)

    async def read_basis(self, conn: AsyncConnection, person_id: str, principal: Principal) -> str | None:
        """Why the caller may read the person's personal text, or None."""
        if principal.is_admin:
            return "administrator"
        if principal.role not in (Role.STAFF, Role.AGENCY_SYSTEM):
            return None
        _exists, basis = await self.serving(conn, person_id, principal.agency)
        if basis is not None:
            return basis
        return await self._consent_basis(conn, person_id, principal.agency)

    async def _consent_basis(self, conn: AsyncConnection, person_id: str, agency: str) -> str | None:
        today = self.service.clock().date()
        district = self.service.refs.agency_district(agency)
        rows = await conn.execute(
            select(consents.c.scope, consents.c.district_id, consents.c.agency_ids).where(
                consents.c.person_id == person_id,
                consents.c.withdrawn_at.is_(None),
                or_(consents.c.expires_on.is_(None), consents.c.expires_on >= today),
                # Never trust a consent the caller's own agency recorded: it could name itself.
                consents.c.recorded_by_agency != agency,
            )
        )
        for scope, consent_district, agency_ids in rows:
            if scope == "four_windows" and district is not None and consent_district == district:
                return "consent"
            if agency in (agency_ids or []):
                return "consent"
        return None

    # -- commands --------------------------------------------------------------------------

    def writer(self, principal: Principal) -> Actor:
        if principal.role not in (Role.ADMIN, Role.STAFF, Role.AGENCY_SYSTEM):
            raise role_denied(principal)
        return Actor(agency=principal.agency[:64], staff=principal.staff[:64])

    def administrator(self, principal: Principal) -> Actor:
        if not principal.is_admin:
            raise AccessDenied(ADMINISTRATORS_ONLY)
        return self.writer(principal)

    def register_person(self, principal: Principal) -> Actor:
        """Anyone who writes may register a person; their agency becomes the registering window."""
        return self.writer(principal)

    async def receive_consultation(self, principal: Principal, window_id: str, person_id: str | None) -> Actor:
        actor = self.writer(principal)
        self.service.refs.window(window_id)  # an unknown window is a 422 naming the field, for everyone
        if principal.is_admin:
            return actor
        if window_id != principal.agency:
            raise AccessDenied(NOT_OWN_WINDOW)
        if person_id is not None:
            await self._require_serving(principal, [person_id], body_field="person_id")
        return actor

    async def on_person(self, principal: Principal, person_id: str) -> Actor:
        """Correct, consent, withdraw, statutory sharing: the caller serves the person (404 when unknown)."""
        actor = self.writer(principal)
        if principal.is_admin:
            await self._require_exists(person_id)
            return actor
        await self._require_serving(principal, [person_id], body_field=None)
        return actor

    async def on_persons(self, principal: Principal, person_ids: Sequence[str], field: str) -> Actor:
        """A command naming persons in its body (household, case): the caller serves each (422 when unknown)."""
        actor = self.writer(principal)
        if not principal.is_admin:
            await self._require_serving(principal, person_ids, body_field=field)
        return actor

    async def on_consultation(self, principal: Principal, consultation_id: str) -> Actor:
        actor = self.writer(principal)
        async with self.service.runtime.reader.connect() as conn:
            row = await self._consultation(conn, consultation_id)
            if principal.is_admin or row["window_id"] == principal.agency:
                return actor
            if row["person_id"] is not None and (await self.serving(conn, str(row["person_id"]), principal.agency))[1]:
                return actor
        raise AccessDenied(NOT_SERVING)

    async def on_case(self, principal: Principal, case_id: str) -> Actor:
        """Every case command (handover, plans, contacts, reviews, closure, reopening): the caller serves its person."""
        actor = self.writer(principal)
        async with self.service.runtime.reader.connect() as conn:
            person_id = await self._person_of_case(conn, case_id)
            if principal.is_admin or (await self.serving(conn, person_id, principal.agency))[1]:
                return actor
        raise AccessDenied(NOT_SERVING)

    def acting_agency(self, principal: Principal, agency_id: str | None) -> str:
        """The agency a command names for the caller (e.g. who made a contact): an agency system only its own."""
        if agency_id is None or agency_id == principal.agency:
            return principal.agency
        if principal.role == Role.AGENCY_SYSTEM:
            raise AccessDenied(NOT_OWN_AGENCY)
        return agency_id

    # -- queries ---------------------------------------------------------------------------

    def reader(self, principal: Principal) -> None:
        """Every role may call the queries; what each answer shows is decided below."""

    def auditor_or_admin(self, principal: Principal) -> None:
        if principal.role not in (Role.AUDITOR, Role.ADMIN):
            raise role_denied(principal)

    async def read_person(self, principal: Principal, person_id: str, what: str) -> str:
        """Personal text of a person (details, consent lists): logged; 403 without a basis.

        Auditors may read a consent list (what was agreed, no personal text) but never details."""
        async with self.service.runtime.reader.connect() as conn:
            await self._require_exists(person_id, conn)
            basis = await self.read_basis(conn, person_id, principal)
        if basis is None and principal.role == Role.AUDITOR and what == "person.consents":
            basis = "auditor"
        await self.log(principal, person_id, what, basis)
        if basis is None:
            raise AccessDenied(NOT_SERVING_READ)
        return basis

    async def read_consultation(self, principal: Principal, row: dict[str, object]) -> Read:
        """One consultation: staff need a basis (403 otherwise); auditors see it without its summary.

        The summary read is logged under its person, or under the consultation when it has none."""
        person_id = row["person_id"]
        consultation_id = str(row["consultation_id"])
        basis: str | None
        async with self.service.runtime.reader.connect() as conn:
            if principal.is_admin:
                basis = "administrator"
            elif principal.role == Role.AUDITOR:
                basis = None
            elif row["window_id"] == principal.agency:
                basis = "receiving_window"
            elif person_id is not None:
                basis = await self.read_basis(conn, str(person_id), principal)
            else:
                basis = None
        await self.log(principal, str(person_id or consultation_id), "consultation.summary", basis)
        if basis is None and principal.role != Role.AUDITOR:
            raise AccessDenied(NOT_SERVING_READ)
        return Read(basis)

    async def read_case(self, principal: Principal, person_id: str, what: str | None) -> Read:
        """A case (and with `what`, its notes, logged): staff need a basis; auditors see no notes."""
        async with self.service.runtime.reader.connect() as conn:
            basis = await self.read_basis(conn, person_id, principal)
        if what is not None:
            await self.log(principal, person_id, what, basis)
        if basis is None and principal.role != Role.AUDITOR:
            raise AccessDenied(NOT_SERVING_READ)
        return Read(basis)

    def visible_consultations(self, principal: Principal, query: Q) -> Q:
        """Staff list their own window's consultations and those of the persons their agency serves."""
        return query.where(self._consultation_scope(principal))

    def visible_cases(self, principal: Principal, query: Q) -> Q:
        """Staff list the cases they lead and those of the persons their agency serves."""
        if principal.role in (Role.ADMIN, Role.AUDITOR):
            return query
        return query.where(
            or_(cases.c.lead_agency_id == principal.agency, cases.c.person_id.in_(self._served(principal)))
        )

    def _consultation_scope(self, principal: Principal) -> ColumnElement[bool]:
        if principal.role in (Role.ADMIN, Role.AUDITOR):
            return true()
        return or_(
            consultations.c.window_id == principal.agency, consultations.c.person_id.in_(self._served(principal))
        )

    def _served(self, principal: Principal) -> Select[tuple[str]]:
        registered = select(persons.c.person_id).where(persons.c.registered_by_agency == principal.agency)
        leading = select(cases.c.person_id).where(cases.c.lead_agency_id == principal.agency, cases.c.status == "open")
        return registered.union(leading)  # type: ignore[return-value]

    # -- plumbing --------------------------------------------------------------------------

    async def log(self, principal: Principal, subject: str, what: str, basis: str | None) -> None:
        await self.service.record_access(
            subject, staff=principal.staff, agency=principal.agency, role=principal.role.value, what=what, basis=basis
        )

    async def _require_exists(self, person_id: str, conn: AsyncConnection | None = None) -> None:
        if conn is None:
            async with self.service.runtime.reader.connect() as own:
                return await self._require_exists(person_id, own)
        if await conn.scalar(select(persons.c.person_id).where(persons.c.person_id == person_id)) is None:
            raise UnknownAggregate(f"unknown person {person_id}")
        return None

    async def _require_serving(self, principal: Principal, person_ids: Sequence[str], body_field: str | None) -> None:
        async with self.service.runtime.reader.connect() as conn:
            for index, person_id in enumerate(person_ids):
                exists, basis = await self.serving(conn, person_id, principal.agency)
                if not exists:
                    if body_field is None:
                        raise UnknownAggregate(f"unknown person {person_id}")
                    field = body_field if len(person_ids) == 1 else f"{body_field}.{index}"
                    raise InvalidReference(f"unknown person {person_id}", field=field)
                if basis is None:
                    raise AccessDenied(NOT_SERVING)

    async def _consultation(self, conn: AsyncConnection, consultation_id: str) -> dict[str, object]:
        row = (
            (
                await conn.execute(
                    select(consultations.c.window_id, consultations.c.person_id).where(
                        consultations.c.consultation_id == consultation_id
                    )
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            raise UnknownAggregate(f"unknown consultation {consultation_id}")
        return dict(row)

    async def _person_of_case(self, conn: AsyncConnection, case_id: str) -> str:
        person_id = await conn.scalar(select(cases.c.person_id).where(cases.c.case_id == case_id))
        if person_id is None:
            raise UnknownAggregate(f"unknown case {case_id}")
        return str(person_id)
