"""A ward's reference data: areas, districts, windows, branch offices and specialist agencies.

It is data, not code: each ward ships its own file (`wards/<municipality code>.json`,
or any path in TSUNAGU_REFERENCE_FILE), because another ward has other districts.
Every service validates ids against it, so an unknown district or window is a
clear error rather than a new row, and every label exists in Japanese and English.
"""

from __future__ import annotations

import os
from functools import cache, cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

WARDS_FOLDER = Path(__file__).with_name("wards")
AgencyKind = Literal["window", "branch_office", "specialist_agency"]


class Labelled(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_.]+$")
    label_ja: str = Field(min_length=1)
    label_en: str = Field(min_length=1)


class WindowType(Labelled):
    report_group: str = Field(description="Column of the annual consultation table this window type counts in.")


class BranchOffice(Labelled):
    pass


class Area(Labelled):
    branch_office: BranchOffice


class District(Labelled):
    area: str
    window_types: list[str]


class SpecialistAgency(Labelled):
    categories: list[str] = Field(default_factory=list, description="Consultation categories it typically takes.")


class Agency(BaseModel):
    """Anyone who can send or receive a referral or attend a meeting."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: AgencyKind
    label_ja: str
    label_en: str
    district: str | None = None
    area: str | None = None
    window_type: str | None = None


AGENCY_SOURCE_PREFIX = "/agency/"


class AgencySource(BaseModel):
    """A sending system registered with the agency it reports for (an agency may have several)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(min_length=1, max_length=256, description="CloudEvents source the system sends with.")
    agency: str = Field(description="Id of the agency its reports are for.")


class Municipality(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[0-9]{6}$")
    label_ja: str
    label_en: str


class Ward(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    municipality: Municipality
    window_types: list[WindowType]
    areas: list[Area]
    districts: list[District]
    specialist_agencies: list[SpecialistAgency]
    agency_sources: list[AgencySource] = Field(
        default_factory=list,
        description=(
            "Sending systems whose CloudEvents source does not follow the rule of `agency_of_source`, each "
            "registered with its agency."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> Ward:
        areas = {a.id for a in self.areas}
        types = {t.id for t in self.window_types}
        for district in self.districts:
            if district.area not in areas:
                raise ValueError(f"district {district.id} names unknown area {district.area}")
            unknown = set(district.window_types) - types
            if unknown:
                raise ValueError(f"district {district.id} names unknown window types {sorted(unknown)}")
        ids = [a.id for a in self.agencies()]
        if len(ids) != len(set(ids)):
            raise ValueError("agency ids must be unique")
        known = set(ids)
        sources = [s.source for s in self.agency_sources]
        if len(sources) != len(set(sources)):
            raise ValueError("a CloudEvents source is registered with one agency only")
        for registered in self.agency_sources:
            if registered.agency not in known:
                raise ValueError(f"source {registered.source} names unknown agency {registered.agency}")
        return self

    def agency_of_source(self, source: str) -> str | None:
        """The agency a CloudEvents source reports for, or None when it is registered with none.

        A source listed in `agency_sources` is that agency's; otherwise `/agency/<agency id>` and
        `/agency/<agency id>/<system>` belong to the agency of that id (the rule the AsyncAPI document
        gives sending systems). A report an agency's source sends about another window or agency is
        refused by the consumer (`unbound_source`)."""
        listed = self._source_index.get(source)
        if listed is not None:
            return listed
        if not source.startswith(AGENCY_SOURCE_PREFIX):
            return None
        agency_id = source[len(AGENCY_SOURCE_PREFIX) :].split("/", 1)[0]
        return agency_id if agency_id in self._agency_index else None

    def window_id(self, district: str, window_type: str) -> str:
        return f"{district}.{window_type}"

    def agencies(self) -> list[Agency]:
        out: list[Agency] = []
        labels = {t.id: t for t in self.window_types}
        for d in self.districts:
            for t in d.window_types:
                out.append(
                    Agency(
                        id=self.window_id(d.id, t),
                        kind="window",
                        label_ja=f"{d.label_ja} {labels[t].label_ja}",
                        label_en=f"{labels[t].label_en}, {d.label_en}",
                        district=d.id,
                        area=d.area,
                        window_type=t,
                    )
                )
        for a in self.areas:
            b = a.branch_office
            out.append(Agency(id=b.id, kind="branch_office", label_ja=b.label_ja, label_en=b.label_en, area=a.id))
        for s in self.specialist_agencies:
            out.append(Agency(id=s.id, kind="specialist_agency", label_ja=s.label_ja, label_en=s.label_en))
        return out

    def agency(self, agency_id: str) -> Agency | None:
        return self._agency_index.get(agency_id)

    def district(self, district_id: str) -> District | None:
        return next((d for d in self.districts if d.id == district_id), None)

    def area(self, area_id: str) -> Area | None:
        return next((a for a in self.areas if a.id == area_id), None)

    def window_type(self, type_id: str) -> WindowType | None:
        return next((t for t in self.window_types if t.id == type_id), None)

    @cached_property
    def _source_index(self) -> dict[str, str]:
        return {s.source: s.agency for s in self.agency_sources}

    @cached_property
    def _agency_index(self) -> dict[str, Agency]:
        # Frozen model: computed once per loaded ward.
        return {a.id: a for a in self.agencies()}


def load_ward(path: Path) -> Ward:
    return Ward.model_validate_json(path.read_text(encoding="utf-8"))


@cache
def ward_for(municipality_code: str) -> Ward:
    """The reference data of a tenant: TSUNAGU_REFERENCE_FILE if set, else the shipped file."""
    override = os.environ.get("TSUNAGU_REFERENCE_FILE")
    path = Path(override) if override else WARDS_FOLDER / f"{municipality_code}.json"
    if not path.exists():
        raise LookupError(f"no reference data for municipality {municipality_code} at {path}")
    ward = load_ward(path)
    if ward.municipality.code != municipality_code:
        raise LookupError(f"{path} describes {ward.municipality.code}, not {municipality_code}")
    return ward
