"""The directory as Open Referral HSDS 3 (Human Services Data Specification) JSON.

Other directories and agencies' systems read HSDS; a resource here is one HSDS
organization (grouped by name within a district) with its service, location and
schedule. `assured_date` / `assurer_email` are HSDS's "someone checked this"
fields; we carry the verifying agency id in `x_verified_by_agency_id` instead of
an email address.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from tsunagu_events.reference import Ward

HSDS_VERSION = "3.0"
NAMESPACE = uuid.UUID("8d7b3c1e-5a0f-4c9e-9b7a-1f2e3d4c5b6a")
HSDS_STATUS = {
    "active": "active",
    "inactive": "inactive",
    "temporarily_closed": "temporarily closed",
    "defunct": "defunct",
}


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


def hsds_document(rows: Sequence[dict[str, Any]], ward: Ward) -> dict[str, Any]:
    """Rows of the resources read model (with `details` decoded) as an HSDS 3 document."""
    organizations: dict[str, dict[str, Any]] = {}
    for row in rows:
        details = row["details"]
        district = ward.district(row["district_id"])
        org_id = _uuid("organization", row["district_id"], row["organization_name"])
        organization = organizations.setdefault(
            org_id,
            {
                "id": org_id,
                "name": row["organization_name"],
                "description": None,
                "x_district_id": row["district_id"],
                "x_kind": row["kind"],
                "services": [],
                "locations": [],
            },
        )
        service_id = _uuid("service", row["resource_id"])
        location_id = _uuid("location", row["resource_id"])
        schedule = details.get("schedule")
        organization["services"].append(
            {
                "id": service_id,
                "organization_id": org_id,
                "name": row["service_name"],
                "description": details.get("description"),
                "status": HSDS_STATUS[row["status"]],
                "eligibility_description": details.get("eligibility"),
                "assured_date": row["last_verified_on"].isoformat() if row["last_verified_on"] else None,
                "x_verified_by_agency_id": row["last_verified_by"],
                "x_resource_id": row["resource_id"],
                "x_status_since": row["status_since"].isoformat(),
                "capacities": (
                    [
                        {
                            "id": _uuid("capacity", row["resource_id"]),
                            "maximum": details["capacity"],
                            "unit": {"name": "person"},
                        }
                    ]
                    if details.get("capacity") is not None
                    else []
                ),
                "schedules": (
                    [
                        {
                            "id": _uuid("schedule", row["resource_id"]),
                            "service_id": service_id,
                            "description": schedule["description"],
                            "byday": ",".join(schedule.get("byday", [])),
                        }
                    ]
                    if schedule
                    else []
                ),
                "service_at_locations": [{"id": _uuid("sal", row["resource_id"]), "location_id": location_id}],
            }
        )
        organization["locations"].append(
            {
                "id": location_id,
                "location_type": "physical",
                "name": row["service_name"],
                "addresses": (
                    [
                        {
                            "id": _uuid("address", row["resource_id"]),
                            "address_1": details["address"],
                            "city": ward.municipality.label_ja,
                            "region": district.label_ja if district else row["district_id"],
                            "state_province": "東京都",
                            "country": "JP",
                            "address_type": "physical",
                        }
                    ]
                    if details.get("address")
                    else []
                ),
            }
        )
    return {
        "hsds_version": HSDS_VERSION,
        "x_municipality": ward.municipality.code,
        "organizations": list(organizations.values()),
    }
