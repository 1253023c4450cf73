"""Meetings' free text after the person's erasure (issue 14, section 2): a name, an address and a
diagnosis written in an agenda item, the minutes, a decision and action items are sealed, so
once intake announces the erasure they are in no file of referral and on no published event."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tsunagu_events.contracts.referral import AgendaItemAdded, MeetingDecisionMade, MeetingHeld

from .conftest import IKEJIRI_CC, POVERTY, Harness, new_person, token

NAME = "田中花子"
SECRET = f"{NAME}さん（池尻三丁目の団地在住、統合失調症で通院中）"


async def eventually(check: object, what: str, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():  # type: ignore[operator]
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def names_in(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir()]


def files_containing(folder: Path, needle: bytes) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes())


async def test_meeting_text_about_a_person_is_readable_nowhere_after_the_erasure(
    harness: Harness, tmp_path: Path
) -> None:
    person = new_person()
    await harness.register(person, IKEJIRI_CC)
    members = [IKEJIRI_CC, POVERTY]
    created = await harness.client.post(
        "/meetings",
        json={"kind": "support_meeting", "scheduled_for": "2026-04-20T10:00:00+09:00", "member_agency_ids": members},
        headers=token(IKEJIRI_CC),
    )
    mid = created.json()["meeting_id"]
    cc = token(IKEJIRI_CC)
    item = await harness.client.post(
        f"/meetings/{mid}/agenda-items", json={"kind": "case", "title": SECRET, "person_id": person}, headers=cc
    )
    assert item.status_code == 201, item.text
    item_id = item.json()["created_id"]
    hold = {
        "attendee_agency_ids": members,
        "person_ids": [person],
        "confidentiality_acknowledged": True,
        "minutes_summary": f"{SECRET}について協議",
    }
    assert (await harness.client.post(f"/meetings/{mid}/held", json=hold, headers=cc)).status_code == 200
    decided = await harness.client.post(
        f"/meetings/{mid}/decisions", json={"kind": "keep_watching", "title": SECRET, "item_id": item_id}, headers=cc
    )
    assert decided.status_code == 201, decided.text
    for extra in ({"item_id": item_id}, {}):
        action = {"agency_id": POVERTY, "title": SECRET, "due_on": "2026-05-31", **extra}
        assert (await harness.client.post(f"/meetings/{mid}/action-items", json=action, headers=cc)).status_code == 201
    before = (await harness.client.get(f"/meetings/{mid}", headers=token(POVERTY))).json()
    assert before["agenda"][0]["title"] == SECRET
    assert before["minutes_summary"] == f"{SECRET}について協議"
    assert [a["title"] for a in before["action_items"]] == [SECRET, SECRET]
    for event_type in (AgendaItemAdded.event_type, MeetingHeld.event_type, MeetingDecisionMade.event_type):
        assert await harness.events_of(event_type, 1)

    await harness.erase(person)
    keys = harness.app.state.runtime.keys

    async def erased() -> bool:
        return bool(await keys.is_erased(person) and await keys.is_erased(mid))

    await eventually(erased, "the person's and the meeting's keys erased")

    after = (await harness.client.get(f"/meetings/{mid}", headers=token(POVERTY))).json()
    assert [i["title"] for i in after["agenda"]] == [None]
    assert after["minutes_summary"] is None
    assert [a["title"] for a in after["action_items"]] == [None, None]
    assert NAME not in json.dumps(after, ensure_ascii=False)
    inbox = await harness.client.get("/inbox/action-items", headers=token(POVERTY))
    assert NAME not in inbox.text
    published = [json.dumps(e.data, ensure_ascii=False) for e in harness.published]
    assert published
    assert not [p for p in published if NAME in p]
    assert {"referral.db", "referral-keys.db"} <= set(names_in(tmp_path))
    assert files_containing(tmp_path, NAME.encode("utf-8")) == []


async def test_an_item_naming_only_a_case_is_sealed_for_the_cases_person(harness: Harness) -> None:
    person = new_person()
    await harness.register(person, IKEJIRI_CC)
    case_id = await harness.open_case(person, IKEJIRI_CC)
    created = await harness.client.post(
        "/meetings",
        json={"kind": "support_meeting", "scheduled_for": "2026-04-20T10:00:00+09:00", "member_agency_ids": [POVERTY]},
        headers=token(IKEJIRI_CC),
    )
    mid = created.json()["meeting_id"]
    item = {"kind": "case", "title": SECRET, "case_id": case_id}
    added = await harness.client.post(f"/meetings/{mid}/agenda-items", json=item, headers=token(IKEJIRI_CC))
    assert added.status_code == 201, added.text
    other_case = {"kind": "case", "title": "x", "case_id": case_id}
    refused = await harness.client.post(f"/meetings/{mid}/agenda-items", json=other_case, headers=token(POVERTY))
    assert refused.status_code == 403

    await harness.erase(person)
    keys = harness.app.state.runtime.keys

    async def erased() -> bool:
        return bool(await keys.is_erased(person))

    await eventually(erased, "the person's key erased")
    after = (await harness.client.get(f"/meetings/{mid}", headers=token(POVERTY))).json()
    assert [i["title"] for i in after["agenda"]] == [None]
    hold = {"attendee_agency_ids": [POVERTY], "person_ids": [person], "confidentiality_acknowledged": True}
    held = await harness.client.post(f"/meetings/{mid}/held", json=hold, headers=token(IKEJIRI_CC))
    assert held.status_code == 409
    assert held.json()["reason"] == "person_erased"
