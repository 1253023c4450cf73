"""Which consents cover sharing with an agency (the consent view's policy)."""

from __future__ import annotations

from datetime import date

from tsunagu_referral.domain.consent import ConsentFact, covering_consent, has_any_consent

TODAY = date(2026, 4, 1)


def fact(scope: str, **extra: object) -> ConsentFact:
    values: dict[str, object] = {
        "consent_id": f"c-{scope}",
        "scope": scope,
        "district_id": None,
        "agency_ids": (),
        "referral_id": None,
        "expires_on": None,
    }
    values.update(extra)
    return ConsentFact(**values)  # type: ignore[arg-type]


def covers(facts: list[ConsentFact], to: str = "specialist.poverty_support", district: str | None = None) -> str | None:
    return covering_consent(facts, to_agency_id=to, to_agency_district=district, today=TODAY, referral_id="r-1")


def test_referral_consent_for_any_or_named_agency() -> None:
    assert covers([fact("referral")]) == "c-referral"
    assert covers([fact("referral", agency_ids=("specialist.hospital",))]) is None
    assert covers([fact("referral", referral_id="r-2")]) is None
    assert covers([fact("referral", referral_id="r-1")]) == "c-referral"


def test_named_agencies_and_four_windows() -> None:
    assert covers([fact("named_agencies", agency_ids=("specialist.poverty_support",))]) == "c-named_agencies"
    assert covers([fact("named_agencies")]) is None
    windows = [fact("four_windows", district_id="ikejiri")]
    assert covers(windows, "ikejiri.childrens_center", "ikejiri") == "c-four_windows"
    assert covers(windows, "taishido.childrens_center", "taishido") is None


def test_expired_and_participation_consents_do_not_count() -> None:
    assert covers([fact("referral", expires_on=date(2026, 3, 31))]) is None
    assert covers([fact("referral", expires_on=TODAY)]) == "c-referral"
    assert covers([fact("participation")]) is None
    assert not has_any_consent([fact("participation")], today=TODAY)
    assert has_any_consent([fact("four_windows", district_id="ikejiri")], today=TODAY)
