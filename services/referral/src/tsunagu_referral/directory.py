"""The ward's reference data with its agencies indexed once (every command and view looks them up)."""

from __future__ import annotations

from tsunagu_events.reference import Agency, Area, District, Ward


class Directory:
    def __init__(self, ward: Ward) -> None:
        self.ward = ward
        self._agencies = {a.id: a for a in ward.agencies()}

    def agency(self, agency_id: str) -> Agency | None:
        return self._agencies.get(agency_id)

    def district(self, district_id: str) -> District | None:
        return self.ward.district(district_id)

    def area(self, area_id: str) -> Area | None:
        return self.ward.area(area_id)

    def window_id(self, district: str, window_type: str) -> str:
        return self.ward.window_id(district, window_type)
