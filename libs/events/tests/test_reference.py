"""The shipped Setagaya reference data matches the seed: 5 areas, 28 districts, four windows each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from tsunagu_events.reference import WARDS_FOLDER, load_ward, ward_for


def test_setagaya_has_five_areas_and_twenty_eight_districts_with_four_windows() -> None:
    ward = ward_for("131121")
    assert [a.label_ja for a in ward.areas] == ["世田谷", "北沢", "玉川", "砧", "烏山"]
    assert len(ward.districts) == 28
    by_area = {a.id: sum(1 for d in ward.districts if d.area == a.id) for a in ward.areas}
    assert by_area == {"setagaya": 7, "kitazawa": 6, "tamagawa": 7, "kinuta": 5, "karasuyama": 3}
    windows = [a for a in ward.agencies() if a.kind == "window"]
    assert len(windows) == 28 * 4
    ikejiri = ward.agency("ikejiri.community_center")
    assert ikejiri is not None
    assert ikejiri.label_ja == "池尻地区 まちづくりセンター"
    assert ward.agency("kitazawa.branch_office") is not None
    assert ward.agency("nowhere.community_center") is None


def test_a_district_naming_an_unknown_area_is_refused(tmp_path: Path) -> None:
    doc = json.loads((WARDS_FOLDER / "131121.json").read_text(encoding="utf-8"))
    doc["districts"][0]["area"] = "atlantis"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ValidationError, match="unknown area"):
        load_ward(bad)


def test_unknown_municipality_is_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        ward_for("999999")
