"""The access policy's rule on plain facts: who may do what to a referral, a meeting or a person."""

from __future__ import annotations

import pytest
from tsunagu_platform.auth import Principal, Role
from tsunagu_referral.policy import Action, on_assigned_text, on_meeting, on_person, on_referral

SENDER, RECEIVER, OTHER = "ikejiri.community_center", "specialist.poverty_support", "okusawa.community_center"


def caller(agency: str, role: Role = Role.STAFF) -> Principal:
    return Principal(staff="s", agency=agency, role=role, tenant="131121")


@pytest.mark.parametrize("action", [Action.ACCEPT, Action.DECLINE, Action.COMPLETE])
def test_only_the_receiver_answers_a_referral(action: Action) -> None:
    assert on_referral(caller(RECEIVER), SENDER, RECEIVER, action).granted
    assert not on_referral(caller(SENDER), SENDER, RECEIVER, action).granted
    assert not on_referral(caller(OTHER), SENDER, RECEIVER, action).granted


def test_only_the_sender_withdraws_a_referral() -> None:
    assert on_referral(caller(SENDER), SENDER, RECEIVER, Action.WITHDRAW).granted
    assert not on_referral(caller(RECEIVER), SENDER, RECEIVER, Action.WITHDRAW).granted


def test_both_parties_read_a_referrals_text_and_no_one_else_but_an_admin() -> None:
    for agency in (SENDER, RECEIVER):
        assert on_referral(caller(agency), SENDER, RECEIVER, Action.READ_TEXT).granted
    assert not on_referral(caller(OTHER), SENDER, RECEIVER, Action.READ_TEXT).granted
    assert on_referral(caller(OTHER, Role.ADMIN), SENDER, RECEIVER, Action.READ_TEXT).basis == "admin"


def test_an_auditor_reads_records_but_never_their_personal_text_and_changes_nothing() -> None:
    auditor = caller(OTHER, Role.AUDITOR)
    assert on_referral(auditor, SENDER, RECEIVER, Action.READ).granted
    assert not on_referral(auditor, SENDER, RECEIVER, Action.READ_TEXT).granted
    assert not on_referral(auditor, SENDER, RECEIVER, Action.WITHDRAW).granted
    assert on_meeting(auditor, [SENDER], Action.READ).granted
    assert not on_meeting(auditor, [SENDER], Action.READ_TEXT).granted
    assert not on_meeting(auditor, [SENDER], Action.WRITE).granted
    assert not on_person(auditor, [OTHER]).granted
    assert not on_assigned_text(auditor).granted


def test_an_agency_system_acts_for_its_own_agency_only() -> None:
    system = caller(SENDER, Role.AGENCY_SYSTEM)
    assert on_referral(system, SENDER, RECEIVER, Action.WITHDRAW).granted
    assert not on_referral(system, SENDER, RECEIVER, Action.ACCEPT).granted
    assert on_person(system, [SENDER]).granted
    assert not on_person(system, [RECEIVER]).granted


def test_only_members_change_or_read_a_meeting() -> None:
    members = [SENDER, RECEIVER]
    assert on_meeting(caller(RECEIVER), members, Action.WRITE).granted
    assert not on_meeting(caller(OTHER), members, Action.WRITE).granted
    assert not on_meeting(caller(OTHER), members, Action.READ).granted


def test_only_an_agency_serving_a_person_brings_them_in() -> None:
    assert on_person(caller(SENDER), {SENDER}).granted
    assert not on_person(caller(OTHER), {SENDER}).granted
    assert on_person(caller(OTHER, Role.ADMIN), set()).granted
