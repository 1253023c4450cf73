"""Who may do what in resources: the one rule every route asks before it acts.

- A person's data (participation support: starting, reading, attendance, ending) is
  for an agency that already serves the person (the registering window or the lead
  agency of an open case, learnt from intake's events, see tsunagu_platform.serving)
  and for administrators. The person's consent is checked as well, by the domain;
  a consent never makes an agency serve a person. Auditors do not read it: it is per
  person, not an aggregate.
- District-level data (resources, visits, places, district issues, initiatives,
  publicity) is read by every caller, as before, and written only for the caller's own
  district: a district's windows write its data, a branch office the data of the
  districts of its area; specialist agencies and agencies the tenant's reference data
  does not know write none. An `agency_system` token is bound exactly like its agency's staff.
- Auditors never write; administrators do everything.

A refusal is HTTP 403 with a stable `code` and the reason in Japanese and English.
"""

from __future__ import annotations

from sqlalchemy import select
from tsunagu_events.reference import Ward
from tsunagu_platform.auth import Principal, Role
from tsunagu_platform.runtime import ServiceRuntime
from tsunagu_platform.serving import serves

from tsunagu_resources import tables
from tsunagu_resources.domain.errors import NotPermitted
from tsunagu_resources.domain.issues import Initiative
from tsunagu_resources.domain.surveys import Place
from tsunagu_resources.streams import load

READ_ONLY = NotPermitted(
    "read_only", "監査担当は記録できません (auditors have read-only access)", "Auditors have read-only access."
)


def _not_serving() -> NotPermitted:
    return NotPermitted(
        "not_serving",
        "この方を担当している機関（登録した窓口、支援中のケースの主担当機関）のみ扱えます (not serving this person)",
        "Only an agency serving the person (the registering window or the lead agency of an open case) may do this.",
    )


def _other_district() -> NotPermitted:
    return NotPermitted(
        "other_district",
        "自機関の地区のデータのみ記録できます (another district's data)",
        "An agency records only its own district's data (a branch office: its area's districts).",
    )


class ResourcesPolicy:
    def __init__(self, runtime: ServiceRuntime, ward: Ward) -> None:
        self.runtime = runtime
        self.ward = ward
        self._districts = {d.id: d for d in ward.districts}  # asked once per visit of a survey round

    # ---- district-level data ------------------------------------------------------------

    def read_district_data(self, principal: Principal) -> None:
        """Directory, visits, places, issues, initiatives, publicity and trainings: every caller reads them."""
        _ = principal

    def write(self, principal: Principal) -> None:
        """A write that belongs to no district (a training session): anyone but an auditor."""
        if principal.role == Role.AUDITOR:
            raise READ_ONLY

    def write_in_district(self, principal: Principal, district_id: str) -> None:
        self.write(principal)
        if principal.role == Role.ADMIN:
            return
        agency = self.ward.agency(principal.agency)
        district = self._districts.get(district_id)
        if agency is None or district is None:
            # An unknown district is the command's own 422 (UnknownDistrict); an unknown agency writes nothing.
            if agency is None:
                raise _other_district()
            return
        if agency.kind == "window" and agency.district == district_id:
            return
        if agency.kind == "branch_office" and agency.area == district.area:
            return
        raise _other_district()

    async def write_resource(self, principal: Principal, resource_id: str) -> None:
        self.write(principal)
        t = tables.resources
        async with self.runtime.engine.connect() as conn:
            district = await conn.scalar(select(t.c.district_id).where(t.c.resource_id == resource_id))
        if district is not None:  # an unknown resource is the command's own 404 / 422
            self.write_in_district(principal, str(district))

    async def write_issue(self, principal: Principal, issue_id: str) -> None:
        self.write(principal)
        t = tables.issues
        async with self.runtime.engine.connect() as conn:
            district = await conn.scalar(select(t.c.district_id).where(t.c.issue_id == issue_id))
        if district is not None:
            self.write_in_district(principal, str(district))

    async def write_place(self, principal: Principal, place_id: str) -> None:
        self.write(principal)
        async with self.runtime.engine.connect() as conn:
            place = await load(conn, self.runtime.reg, Place, place_id)
        if place.exists:
            self.write_in_district(principal, place.district_id)

    async def write_initiative(self, principal: Principal, initiative_id: str) -> None:
        self.write(principal)
        async with self.runtime.engine.connect() as conn:
            initiative = await load(conn, self.runtime.reg, Initiative, initiative_id)
        if initiative.exists:
            self.write_in_district(principal, initiative.district_id)

    # ---- a person's data ----------------------------------------------------------------

    async def for_person(self, principal: Principal, person_id: str) -> None:
        """Any command or query on this person's data."""
        if principal.role == Role.ADMIN:
            return
        if principal.role not in (Role.STAFF, Role.AGENCY_SYSTEM):
            raise _not_serving()
        async with self.runtime.engine.connect() as conn:
            if not await serves(conn, tables.serving, principal.agency, person_id):
                raise _not_serving()

    async def for_participation(self, principal: Principal, participation_id: str, *, writing: bool) -> None:
        """A participation is its person's data: read or changed only by whoever serves the person."""
        if writing:
            self.write(principal)
        t = tables.participations
        async with self.runtime.engine.connect() as conn:
            person = await conn.scalar(select(t.c.person_id).where(t.c.participation_id == participation_id))
        if person is None:
            # Unknown: a 404 for whoever may read participations at all, the same refusal otherwise.
            if principal.role not in (Role.ADMIN, Role.STAFF, Role.AGENCY_SYSTEM):
                raise _not_serving()
            return
        await self.for_person(principal, str(person))
