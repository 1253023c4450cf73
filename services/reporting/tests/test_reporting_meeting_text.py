"""Reporting keeps no meeting free text (issue 14, section 2): agenda titles and minutes published
in plaintext by referral before they were sealed, and sealed ones, reach neither the timeline nor
reporting's database files; the meeting's kind and the persons discussed still do."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from reporting_support import Running, feed, token
from tsunagu_events.contracts.common import LegalBasis, Sealed
from tsunagu_events.contracts.referral import (
    AgendaItemAdded,
    AgendaItemAddedV1,
    AgendaItemKind,
    MeetingHeldV1,
    MeetingKind,
)
from tsunagu_reporting.scenario.generator import Scenario

AT = datetime(2022, 5, 9, 1, 0, tzinfo=UTC)
NAME = "田中花子"
TEXT = f"{NAME}さん（池尻三丁目、統合失調症で通院中）"


def files_containing(folder: Path, needle: bytes) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes())


async def test_meeting_titles_and_minutes_are_not_kept_by_reporting(running: Running, tmp_path: Path) -> None:
    s = Scenario()
    person = "person-meeting-text"
    meeting = "meeting-text-1"
    s.writer.emit(
        "referral",
        meeting,
        AgendaItemAddedV1(
            meeting_id=meeting,
            item_id="item-1",
            kind=AgendaItemKind.CASE,
            raised_by_agency_id="ikejiri.community_center",
            title=TEXT,
            person_id=person,
        ),
        AT,
        agency="ikejiri.community_center",
        staff="s1",
    )
    sealed = Sealed(kid=f"referral/{person}/1", nonce="AAAAAAAAAAAAAAAA", ct="c2VhbGVkLXRpdGxl")
    s.writer.emit(
        "referral",
        meeting,
        AgendaItemAdded(
            meeting_id=meeting,
            item_id="item-2",
            kind=AgendaItemKind.CASE,
            raised_by_agency_id="ikejiri.community_center",
            title=sealed,
            person_id=person,
        ),
        AT,
        agency="ikejiri.community_center",
        staff="s1",
    )
    s.writer.emit(
        "referral",
        meeting,
        MeetingHeldV1(
            meeting_id=meeting,
            kind=MeetingKind.SUPPORT_MEETING,
            held_at=AT,
            attendee_agency_ids=["ikejiri.community_center"],
            legal_basis=LegalBasis.SUPPORT_MEETING_STATUTORY,
            confidentiality_acknowledged=True,
            person_ids=[person],
            minutes_summary=f"{TEXT}について協議",
        ),
        AT,
        agency="ikejiri.community_center",
        staff="s1",
    )
    await feed(running.reporting.timelines, s.writer.out)
    response = await running.client.get(f"/timelines/persons/{person}", headers=token())
    assert response.status_code == 200, response.text
    entries = response.json()["entries"]
    assert [e["event_type"].rsplit(".", 1)[-1] for e in entries] == [
        "AgendaItemAdded",
        "AgendaItemAdded",
        "MeetingHeld",
    ]
    assert entries[2]["data"]["kind"] == "support_meeting"
    assert NAME not in response.text
    assert "c2VhbGVkLXRpdGxl" not in response.text
    assert files_containing(tmp_path, NAME.encode()) == []
