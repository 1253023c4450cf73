"""Whether a person's consent covers sharing with an agency (本人同意).

Intake owns consent; this service keeps a view of it built from intake's events and
asks this policy whether a consent held there covers a referral or a meeting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class ConsentFact:
    consent_id: str
    scope: str
    district_id: str | None
    agency_ids: tuple[str, ...]
    referral_id: str | None
    expires_on: date | None


def covering_consent(
    consents: Iterable[ConsentFact],
    *,
    to_agency_id: str,
    to_agency_district: str | None,
    today: date,
    referral_id: str | None = None,
) -> str | None:
    """The id of a live consent that allows sharing with `to_agency_id`, or None."""
    for consent in consents:
        if consent.expires_on is not None and consent.expires_on < today:
            continue
        if consent.scope == "referral":
            if consent.referral_id and referral_id and consent.referral_id != referral_id:
                continue
            if not consent.agency_ids or to_agency_id in consent.agency_ids:
                return consent.consent_id
        elif consent.scope == "named_agencies":
            if to_agency_id in consent.agency_ids:
                return consent.consent_id
        elif (
            consent.scope == "four_windows"
            and consent.district_id is not None
            and consent.district_id == to_agency_district
        ):
            return consent.consent_id
    return None


def has_any_consent(consents: Iterable[ConsentFact], *, today: date) -> bool:
    """For meetings: the person has a live consent to share among agencies."""
    return any(c.expires_on is None or c.expires_on >= today for c in consents if c.scope != "participation")
