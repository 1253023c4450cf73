"""Meeting events stored as v1 (plaintext titles and minutes) still read, as v2: their text moves
to the `legacy_*` fields, which v2 writers never set, and the meeting shows it to members only."""

from __future__ import annotations

from datetime import UTC, datetime

from tsunagu_events import registry
from tsunagu_events.contracts.common import LegalBasis
from tsunagu_events.contracts.referral import (
    ActionItemAssigned,
    ActionItemAssignedV1,
    AgendaItemAdded,
    AgendaItemAddedV1,
    AgendaItemKind,
    DecisionKind,
    MeetingDecisionMade,
    MeetingDecisionMadeV1,
    MeetingHeld,
    MeetingHeldV1,
    MeetingKind,
)
from tsunagu_referral.domain.meeting import Meeting

AT = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)


def test_v1_meeting_text_reads_as_v2_legacy_fields() -> None:
    item = AgendaItemAddedV1(
        meeting_id="meeting-1", item_id="item-1", kind=AgendaItemKind.CASE, raised_by_agency_id="a", title="旧議題"
    )
    held = MeetingHeldV1(
        meeting_id="meeting-1",
        kind=MeetingKind.SUPPORT_MEETING,
        held_at=AT,
        attendee_agency_ids=["a"],
        legal_basis=LegalBasis.SUPPORT_MEETING_STATUTORY,
        confidentiality_acknowledged=True,
        minutes_summary="旧議事録",
    )
    decision = MeetingDecisionMadeV1(
        meeting_id="meeting-1", decision_id="d-1", kind=DecisionKind.KEEP_WATCHING, title="旧決定", decided_at=AT
    )
    action = ActionItemAssignedV1(
        meeting_id="meeting-1", action_id="x-1", agency_id="a", title="旧課題", due_on=AT.date()
    )

    read = [registry.decode_data(e.event_type, 1, e.to_data()) for e in (item, held, decision, action)]

    assert isinstance(read[0], AgendaItemAdded)
    assert read[0].title is None
    assert read[0].legacy_title == "旧議題"
    assert isinstance(read[1], MeetingHeld)
    assert read[1].minutes_summary is None
    assert read[1].legacy_minutes_summary == "旧議事録"
    assert isinstance(read[2], MeetingDecisionMade)
    assert read[2].title == "旧決定"
    assert read[2].sealed_title is None
    assert isinstance(read[3], ActionItemAssigned)
    assert read[3].title is None
    assert read[3].legacy_title == "旧課題"
    meeting = Meeting.from_events("meeting-1", [registry.decode_data(AgendaItemAdded.event_type, 1, item.to_data())])
    assert meeting.agenda["item-1"].legacy_title == "旧議題"
