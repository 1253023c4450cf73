"""Pure logic: facts from events, partial years, redaction, case state, chain verification."""

from __future__ import annotations

from datetime import UTC, date, datetime

from tsunagu_events.contracts.common import fiscal_year_label_ja
from tsunagu_reporting.audit import Located, verify_published
from tsunagu_reporting.domain.facts import (
    Fact,
    consultation_facts,
    consultation_state,
    correction_facts,
    day_text,
    fact_key,
)
from tsunagu_reporting.domain.tables import year_column
from tsunagu_reporting.domain.timeline import fold_case, redact
from tsunagu_reporting.scenario.generator import Scenario
from tsunagu_reporting.scenario.writer import forged_copy

RECEIVED = {
    "consultation_id": "consultation-1",
    "received_at": "2021-07-01T01:00:00Z",
    "fiscal_year": 2021,
    "district_id": "ikejiri",
    "area_id": "setagaya",
    "expanded": False,
    "compound_need": True,
}


def test_a_consultation_counts_in_its_column_and_flags() -> None:
    facts = consultation_facts(consultation_state(RECEIVED, "comprehensive_support_center"))
    assert {(f.metric, f.dimension, f.value) for f in facts} == {
        ("consultation", "comprehensive_support_center", 1),
        ("compound_need", "", 1),
    }


def test_a_correction_moves_only_what_changed() -> None:
    before = consultation_state(RECEIVED, "comprehensive_support_center")
    after = consultation_state({**RECEIVED, "expanded": True, "compound_need": False}, "comprehensive_support_center")
    assert {(f.metric, f.value) for f in correction_facts(before, after)} == {
        ("consultation_expanded", 1),
        ("compound_need", -1),
    }


def test_year_labels_and_partial_years() -> None:
    assert fiscal_year_label_ja(2019) == "令和元年度"
    partial = year_column(2016, date(2016, 7, 1), date(2024, 1, 1))
    assert partial.partial
    assert partial.months == 9
    assert partial.note_ja == "平成28年度は7月からの9か月分"
    assert not year_column(2021, date(2021, 4, 1), date(2024, 1, 1)).partial
    running = year_column(2023, date(2023, 4, 3), date(2023, 9, 15))
    assert running.partial
    assert running.months == 6


def test_sealed_values_become_protected_markers() -> None:
    data = {"note": {"kid": "intake/p/1", "nonce": "AAAAAAAAAAAAAAAA", "ct": "eA=="}, "goals": [], "kind": "call"}
    out = redact(data, "intake")
    assert out["note"]["label_ja"] == "保護された情報"
    assert out["kind"] == "call"


def test_case_state_folds_the_entries() -> None:
    entries = [
        ("tsunagu.intake.CaseOpened", {"person_id": "p", "lead_agency_id": "a", "approach": "both"}),
        ("tsunagu.intake.LeadAgencyHandedOver", {"to_agency_id": "b"}),
        ("tsunagu.referral.ReferralRequested", {"referral_id": "r1"}),
        ("tsunagu.intake.CaseClosed", {}),
    ]
    state = fold_case("c", entries)
    assert (state.status, state.lead_agency_id, state.open_referrals) == ("closed", "b", ["r1"])


def test_a_forged_copy_and_a_broken_link_are_located() -> None:
    s = Scenario()
    _person, case = s.case_story(8, datetime(2022, 5, 1, tzinfo=UTC))
    located = [Located(p.envelope, p.topic, 0, i) for i, p in enumerate(s.writer.out)]
    assert verify_published(located)[1] == []
    target = next(x for x in located if x.envelope.streamid == case and x.envelope.streamversion == 3)
    forged = Located(forged_copy(target.envelope, {"kind": "home_visit"}), target.topic, 0, 999)
    streams, breaks = verify_published([*located, forged])
    assert streams == len({x.envelope.streamid for x in located})
    assert [(b.stream_id, b.version, b.offset) for b in breaks] == [(case, 3, 999)]
    # Altered in place (the service's database changed, then republished): the chain itself breaks.
    altered = [forged if x is target else x for x in located]
    breaks = verify_published(altered)[1]
    assert [(b.stream_id, b.version, b.reason) for b in breaks] == [(case, 3, "content does not match its chainhash")]


def test_the_day_of_an_instant_is_its_japan_time_day_whatever_its_spelling() -> None:
    assert day_text("2021-06-01T14:59:59.999999Z") == "2021-06-01"
    assert day_text("2021-06-01T15:00:00Z") == "2021-06-02"  # midnight in Japan
    assert day_text("2021-06-01T15:00:00+00:00") == "2021-06-02"
    assert day_text("2021-06-02") == "2021-06-02"
    assert day_text(datetime(2022, 3, 31, 15, 0, tzinfo=UTC)) == "2022-04-01"


def test_facts_kept_apart_only_by_what_a_question_can_tell_apart() -> None:
    consultation = Fact(2021, "consultation", "community_center", "ikejiri", "setagaya", 1, "2021-06-01", "c-1")
    other_day = consultation._replace(occurred_on="2021-06-02", subject="c-2")
    assert fact_key(consultation) == fact_key(other_day)  # summed; the earliest day is kept
    subscribers = Fact(2021, "subscribers", "", "ikejiri", "setagaya", 3, "2021-06-01")
    assert fact_key(subscribers) != fact_key(subscribers._replace(occurred_on="2021-06-02"))
    person = Fact(2021, "participation_started", "", "ikejiri", "setagaya", 1, "2021-06-01", "person-1")
    assert fact_key(person) != fact_key(person._replace(subject="person-2"))
