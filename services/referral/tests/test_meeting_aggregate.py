"""The meeting aggregate for the three kinds of meeting."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from tsunagu_events.contracts.common import ConsultationCategory, LegalBasis
from tsunagu_events.contracts.referral import (
    ActionItemDone,
    AgendaItemKind,
    DecisionKind,
    MeetingDecisionMade,
    MeetingHeld,
    MeetingKind,
    SupportDecided,
    SupportPlanDecided,
)
from tsunagu_referral.domain.errors import ConsentRequired, InvalidCommand, InvalidTransition, NotFound
from tsunagu_referral.domain.meeting import (
    AddAgendaItem,
    AssignActionItem,
    DecideSupport,
    DecideSupportPlan,
    HoldMeeting,
    MarkActionItemDone,
    Meeting,
    RecordDecision,
    ScheduleMeeting,
)

AT = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
WINDOWS = [f"ikejiri.{t}" for t in ("community_center", "comprehensive_support_center")]


def scheduled(kind: MeetingKind, district: str | None = "ikejiri") -> Meeting:
    meeting = Meeting("meeting-1")
    for event in meeting.schedule(ScheduleMeeting("meeting-1", kind, AT, WINDOWS, district)):
        meeting.apply(event)
    return meeting


def run(meeting: Meeting, events: list[object]) -> list[object]:
    for event in events:
        meeting.apply(event)  # type: ignore[arg-type]
    return events


def test_four_party_needs_a_district() -> None:
    with pytest.raises(InvalidCommand):
        Meeting("m").schedule(ScheduleMeeting("m", MeetingKind.FOUR_PARTY, AT, WINDOWS, None))


def test_four_party_items_come_from_the_district_windows_and_lead_to_a_develop_resource_decision() -> None:
    meeting = scheduled(MeetingKind.FOUR_PARTY)
    with pytest.raises(InvalidCommand):
        meeting.add_agenda_item(
            AddAgendaItem(
                "i0", AgendaItemKind.DISTRICT_ISSUE, "specialist.hospital", "x", raised_by_district_window=False
            )
        )
    run(
        meeting,
        meeting.add_agenda_item(
            AddAgendaItem(
                "i1",
                AgendaItemKind.DISTRICT_ISSUE,
                WINDOWS[0],
                "居場所がない",
                raised_by_district_window=True,
                categories=[ConsultationCategory.ISOLATION],
                gap_need=True,
            )
        ),
    )
    with pytest.raises(InvalidTransition):
        meeting.record_decision(RecordDecision("d1", DecisionKind.DEVELOP_RESOURCE, "居場所づくり", AT, "i1"))
    [held] = run(meeting, meeting.hold(HoldMeeting(AT, WINDOWS, confidentiality_acknowledged=False)))
    assert isinstance(held, MeetingHeld)
    assert held.legal_basis is LegalBasis.CONSENT
    [decision] = meeting.record_decision(RecordDecision("d1", DecisionKind.DEVELOP_RESOURCE, "居場所づくり", AT, "i1"))
    assert isinstance(decision, MeetingDecisionMade)
    assert decision.district_id == "ikejiri"
    assert decision.gap_need is True
    assert decision.categories == [ConsultationCategory.ISOLATION]


def test_four_party_discusses_persons_only_with_consent() -> None:
    meeting = scheduled(MeetingKind.FOUR_PARTY)
    with pytest.raises(ConsentRequired):
        meeting.hold(HoldMeeting(AT, WINDOWS, False, person_ids=["person-1"]))
    assert meeting.hold(HoldMeeting(AT, WINDOWS, False, ["person-1"], persons_with_consent={"person-1"}))


def test_support_meeting_needs_confidentiality_not_consent() -> None:
    meeting = scheduled(MeetingKind.SUPPORT_MEETING, None)
    with pytest.raises(InvalidCommand):
        meeting.hold(HoldMeeting(AT, WINDOWS, confidentiality_acknowledged=False, person_ids=["person-1"]))
    [held] = meeting.hold(HoldMeeting(AT, WINDOWS, confidentiality_acknowledged=True, person_ids=["person-1"]))
    assert isinstance(held, MeetingHeld)
    assert held.legal_basis is LegalBasis.SUPPORT_MEETING_STATUTORY
    assert held.person_ids == ["person-1"]


def test_multi_layered_adopts_then_revises_and_decides_support() -> None:
    meeting = scheduled(MeetingKind.MULTI_LAYERED, None)
    with pytest.raises(ConsentRequired):
        meeting.hold(HoldMeeting(AT, WINDOWS, True, ["person-1"]))
    run(meeting, meeting.hold(HoldMeeting(AT, WINDOWS, True, ["person-1"], persons_with_consent={"person-1"})))
    adopt = DecideSupportPlan("case-1", "person-1", False, date(2026, 7, 1), AT, plan_exists=False)
    [plan] = meeting.decide_support_plan(adopt)
    assert isinstance(plan, SupportPlanDecided)
    assert plan.revision is False
    with pytest.raises(InvalidTransition):
        meeting.decide_support_plan(DecideSupportPlan("case-1", "person-1", False, date(2026, 7, 1), AT, True))
    with pytest.raises(InvalidTransition):
        meeting.decide_support_plan(DecideSupportPlan("case-1", "person-1", True, date(2026, 7, 1), AT, False))
    with pytest.raises(ConsentRequired):
        meeting.decide_support_plan(DecideSupportPlan("case-2", "person-2", False, date(2026, 7, 1), AT, False))
    [support] = meeting.decide_support(DecideSupport("case-1", "person-1", "start", AT))
    assert isinstance(support, SupportDecided)


def test_plans_are_decided_only_by_multi_layered_meetings() -> None:
    meeting = scheduled(MeetingKind.SUPPORT_MEETING, None)
    run(meeting, meeting.hold(HoldMeeting(AT, WINDOWS, True, ["person-1"])))
    with pytest.raises(InvalidTransition):
        meeting.decide_support_plan(DecideSupportPlan("case-1", "person-1", False, date(2026, 7, 1), AT, False))


def test_action_items_are_assigned_and_done_once() -> None:
    meeting = scheduled(MeetingKind.FOUR_PARTY)
    run(meeting, meeting.assign_action_item(AssignActionItem("a1", WINDOWS[1], "見守り訪問", date(2026, 4, 30))))
    with pytest.raises(NotFound):
        meeting.mark_action_item_done(MarkActionItemDone("a2", AT))
    [done] = run(meeting, meeting.mark_action_item_done(MarkActionItemDone("a1", AT)))
    assert isinstance(done, ActionItemDone)
    with pytest.raises(InvalidTransition):
        meeting.mark_action_item_done(MarkActionItemDone("a1", AT))


def test_holding_twice_is_invalid() -> None:
    meeting = scheduled(MeetingKind.FOUR_PARTY)
    run(meeting, meeting.hold(HoldMeeting(AT, WINDOWS, False)))
    with pytest.raises(InvalidTransition) as refused:
        meeting.hold(HoldMeeting(AT, WINDOWS, False))
    assert refused.value.facts["current_state"] == "held"


@pytest.mark.parametrize("text", ["連絡先 03-1234-5678", "〒154-0001 の方", "mail: a.b@example.jp", "090 1234 5678"])
def test_minutes_and_titles_refuse_contact_details(text: str) -> None:
    meeting = scheduled(MeetingKind.FOUR_PARTY)
    with pytest.raises(InvalidCommand) as refused:
        meeting.hold(HoldMeeting(AT, WINDOWS, False, minutes_summary=text))
    assert refused.value.field == "minutes_summary"
    with pytest.raises(InvalidCommand):
        meeting.assign_action_item(AssignActionItem("a1", WINDOWS[0], text, date(2026, 4, 30)))


def test_minutes_naming_cases_by_id_and_dates_are_fine() -> None:
    meeting = scheduled(MeetingKind.FOUR_PARTY)
    minutes = "case-12 について 2026-04-15 に再協議。参加者4名、議題3件。"
    assert meeting.hold(HoldMeeting(AT, WINDOWS, False, minutes_summary=minutes))


def test_case_items_about_a_person_need_consent_except_at_a_support_meeting() -> None:
    item = AddAgendaItem("i1", AgendaItemKind.CASE, WINDOWS[0], "ケース共有", True, person_id="person-1")
    with pytest.raises(ConsentRequired):
        scheduled(MeetingKind.FOUR_PARTY).add_agenda_item(item)
    support = scheduled(MeetingKind.SUPPORT_MEETING, None)
    run(support, support.add_agenda_item(item))
    [held] = support.hold(HoldMeeting(AT, WINDOWS, confidentiality_acknowledged=True))
    assert isinstance(held, MeetingHeld)
    assert held.person_ids == ["person-1"]  # persons on the agenda are persons discussed


def test_consent_withdrawn_after_the_item_was_added_blocks_holding() -> None:
    meeting = scheduled(MeetingKind.MULTI_LAYERED, None)
    item = AddAgendaItem(
        "i1", AgendaItemKind.CASE, WINDOWS[0], "プラン検討", False, person_id="person-1", person_has_consent=True
    )
    run(meeting, meeting.add_agenda_item(item))
    with pytest.raises(ConsentRequired):
        meeting.hold(HoldMeeting(AT, WINDOWS, True))
