"""The overdue clock under a fake clock: one ReferralOverdue per late referral, never two,
across runs and across a restart of the service on the same database."""

from __future__ import annotations

from pathlib import Path

from tsunagu_events.contracts.referral import ReferralOverdue
from tsunagu_platform.auth import Role
from tsunagu_referral.overdue import run_once

from .conftest import IKEJIRI_CC, POVERTY, FakeClock, new_person, start_harness, token


async def test_one_overdue_per_referral_across_runs_and_restarts(tmp_path: Path, clock: FakeClock) -> None:
    async for harness in start_harness(tmp_path, clock):
        late, answered = new_person(), new_person()
        ids = []
        for person in (late, answered):
            await harness.register(person)
            await harness.give_consent(person)
            response = await harness.client.post(
                "/referrals",
                json={"person_id": person, "to_agency_id": POVERTY, "categories": ["poverty"], "due_on": "2026-04-03"},
                headers=token(IKEJIRI_CC),
            )
            assert response.status_code == 201, response.text
            ids.append(response.json()["referral_id"])
        await harness.client.post(f"/referrals/{ids[1]}/accept", headers=token(POVERTY))
        assert await run_once(harness.app.state.referrals) == 0  # not yet due
        clock.advance(2)  # 3 April (JST) is the due date itself: not overdue yet
        assert await run_once(harness.app.state.referrals) == 0
        clock.advance(1)
        assert await run_once(harness.app.state.referrals) == 1
        assert await run_once(harness.app.state.referrals) == 0
        admin = token("setagaya.branch_office", Role.ADMIN)
        assert (await harness.client.post("/overdue/run", headers=admin)).json() == {"emitted": 0}
        assert (await harness.client.post("/overdue/run", headers=token(IKEJIRI_CC))).status_code == 403
        overdue = await harness.client.get("/inbox/overdue", headers=token(IKEJIRI_CC))
        assert [r["referral_id"] for r in overdue.json()] == [ids[0]]
        events = await harness.events_of(ReferralOverdue.event_type, 1)
        assert [e.streamid for e in events] == [ids[0]]

    clock.advance(5)
    async for restarted in start_harness(tmp_path, clock):
        assert await run_once(restarted.app.state.referrals) == 0
        stored = await restarted.app.state.runtime.store.read(ids[0])
        assert [e.type for e in stored].count(ReferralOverdue.event_type) == 1
