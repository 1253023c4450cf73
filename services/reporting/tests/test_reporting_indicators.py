"""Indicators of the national comprehensive support system, from referral, meeting, participation
and community-building events."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from reporting_support import Running, feed, token
from tsunagu_events.contracts.common import ConsultationCategory, LegalBasis
from tsunagu_events.contracts.referral import (
    MeetingHeld,
    MeetingKind,
    ReferralAccepted,
    ReferralCompleted,
    ReferralOutcome,
    ReferralOverdue,
    ReferralRequested,
    SupportPlanDecided,
)
from tsunagu_events.contracts.resources import InitiativeKind, InitiativeLaunched, ParticipationStarted, PlaceUsed
from tsunagu_reporting.scenario.generator import Scenario

AT = datetime(2021, 6, 1, 1, 0, tzinfo=UTC)
FROM, TO = "ikejiri.comprehensive_support_center", "specialist.poverty_support"


def referral(s: Scenario, n: int, *, accept_h: int | None, complete_h: int | None, overdue: bool = False) -> None:
    rid = f"referral-{n}"
    w = s.writer
    w.emit(
        "referral",
        rid,
        ReferralRequested(
            referral_id=rid,
            person_id=f"person-{n}",
            from_agency_id=FROM,
            to_agency_id=TO,
            categories=[ConsultationCategory.POVERTY],
            due_on=date(2021, 6, 8),
            legal_basis=LegalBasis.CONSENT,
            consent_id="c",
            requested_at=AT,
        ),
        AT,
    )
    if accept_h is not None:
        at = AT + timedelta(hours=accept_h)
        w.emit(
            "referral",
            rid,
            ReferralAccepted(
                referral_id=rid,
                person_id=f"person-{n}",
                from_agency_id=FROM,
                to_agency_id=TO,
                handover_lead=False,
                accepted_at=at,
            ),
            at,
        )
    if complete_h is not None:
        at = AT + timedelta(hours=complete_h)
        w.emit(
            "referral",
            rid,
            ReferralCompleted(
                referral_id=rid, person_id=f"person-{n}", outcome=ReferralOutcome.GOT_HELP, completed_at=at
            ),
            at,
        )
    if overdue:
        at = AT + timedelta(days=8)
        w.emit(
            "referral",
            rid,
            ReferralOverdue(
                referral_id=rid, from_agency_id=FROM, to_agency_id=TO, due_on=date(2021, 6, 8), detected_at=at
            ),
            at,
        )


async def test_indicators(running: Running) -> None:
    s = Scenario()
    referral(s, 1, accept_h=2, complete_h=48)
    referral(s, 2, accept_h=4, complete_h=None)
    referral(s, 3, accept_h=None, complete_h=None, overdue=True)
    s.writer.emit(
        "referral",
        "meeting-1",
        MeetingHeld(
            meeting_id="meeting-1",
            kind=MeetingKind.MULTI_LAYERED,
            held_at=AT,
            attendee_agency_ids=[FROM, TO],
            legal_basis=LegalBasis.CONSENT,
            confidentiality_acknowledged=True,
        ),
        AT,
    )
    s.writer.emit(
        "referral",
        "meeting-1",
        SupportPlanDecided(
            meeting_id="meeting-1",
            case_id="case-1",
            person_id="person-1",
            revision=False,
            review_due=date(2021, 9, 1),
            decided_at=AT,
        ),
        AT,
    )
    for n, (person, resource) in enumerate(
        [("person-1", "resource-a"), ("person-1", "resource-b"), ("person-2", "resource-a")]
    ):
        s.writer.emit(
            "resources",
            f"participation-{n}",
            ParticipationStarted(
                participation_id=f"participation-{n}",
                person_id=person,
                district_id="ikejiri",
                resource_id=resource,
                consent_id="c",
                started_on=date(2021, 7, 1),
                fiscal_year=2021,
            ),
            AT,
        )
    s.writer.emit(
        "resources",
        "place-1",
        PlaceUsed(
            place_id="place-1",
            use_id="u1",
            district_id="ikejiri",
            activity="サロン",
            used_on=date(2021, 7, 2),
            fiscal_year=2021,
            participants=12,
        ),
        AT,
    )
    s.writer.emit(
        "resources",
        "initiative-1",
        InitiativeLaunched(
            initiative_id="initiative-1",
            district_id="ikejiri",
            kind=InitiativeKind.DEMENTIA_CAFE,
            title="認知症カフェ",
            launched_on=date(2021, 8, 1),
            fiscal_year=2021,
        ),
        AT,
    )
    await feed(running.reporting.annual, s.writer.out)
    body = (await running.client.get("/indicators", params={"fiscal_year": 2021}, headers=token())).json()
    collaboration = body["multi_agency_collaboration"]
    assert body["label_ja"] == "令和3年度"
    assert collaboration["referrals_requested"] == 3
    assert collaboration["referrals_accepted"] == 2
    assert collaboration["referrals_completed"] == 1
    assert collaboration["median_hours_to_accept"] == 3.0
    assert collaboration["median_hours_to_complete"] == 48.0
    assert collaboration["referrals_marked_overdue"] == 1
    assert collaboration["open_referrals_past_due"] == 1
    assert collaboration["meetings_held"] == 1
    assert collaboration["plans_decided_by_meetings"] == 1
    participation = body["participation_support"]
    assert participation == {
        "label_ja": "参加支援",
        "participations_started": 3,
        "persons_supported": 2,
        "cooperating_resources": 2,
    }
    community = body["community_building"]
    assert community["place_uses"] == 1
    assert community["participants"] == 12
    assert community["initiatives_launched"] == 1
