"""The referral aggregate: given events, when a command, then events or a domain error."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from tsunagu_events.contracts.common import ConsultationCategory, LegalBasis, Sealed
from tsunagu_events.contracts.referral import (
    ReferralAccepted,
    ReferralCompleted,
    ReferralDeclined,
    ReferralOutcome,
    ReferralOverdue,
    ReferralRequested,
    ReferralWithdrawn,
)
from tsunagu_referral.domain.errors import ConsentRequired, InvalidCommand, InvalidTransition
from tsunagu_referral.domain.referral import (
    AcceptReferral,
    CompleteReferral,
    DeclineReferral,
    MarkOverdue,
    Referral,
    ReferralState,
    RequestReferral,
    WithdrawReferral,
)

AT = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
RID = "referral-1"


def request(**overrides: object) -> RequestReferral:
    values: dict[str, object] = {
        "referral_id": RID,
        "person_id": "person-1",
        "from_agency_id": "ikejiri.community_center",
        "to_agency_id": "specialist.poverty_support",
        "categories": [ConsultationCategory.POVERTY],
        "due_on": date(2026, 4, 10),
        "legal_basis": LegalBasis.CONSENT,
        "requested_at": AT,
        "case_id": "case-1",
        "handover_lead": True,
        "consent_id": "consent-1",
    }
    values.update(overrides)
    return RequestReferral(**values)  # type: ignore[arg-type]


def requested() -> list[object]:
    return list(Referral(RID).request(request()))


def given(*events: object) -> Referral:
    return Referral.from_events(RID, events)  # type: ignore[arg-type]


def test_request_with_consent_emits_referral_requested() -> None:
    [event] = Referral(RID).request(request())
    assert isinstance(event, ReferralRequested)
    assert event.consent_id == "consent-1"
    assert event.legal_basis is LegalBasis.CONSENT


def test_request_without_consent_is_refused() -> None:
    with pytest.raises(ConsentRequired) as refused:
        Referral(RID).request(request(consent_id=None))
    assert "同意" in refused.value.message_ja


def test_statutory_basis_needs_no_consent_but_a_support_meeting() -> None:
    [event] = Referral(RID).request(
        request(
            consent_id=None,
            legal_basis=LegalBasis.SUPPORT_MEETING_STATUTORY,
            meeting_id="meeting-1",
            statutory_meeting_known=True,
        )
    )
    assert isinstance(event, ReferralRequested)
    assert event.meeting_id == "meeting-1"
    assert event.consent_id is None
    with pytest.raises(InvalidCommand):
        Referral(RID).request(request(legal_basis=LegalBasis.SUPPORT_MEETING_STATUTORY, meeting_id="meeting-x"))
    with pytest.raises(InvalidCommand):
        Referral(RID).request(request(legal_basis=LegalBasis.SUPPORT_MEETING_STATUTORY, meeting_id=None))


def test_request_refuses_self_referral_and_past_due_dates() -> None:
    with pytest.raises(InvalidCommand):
        Referral(RID).request(request(to_agency_id="ikejiri.community_center"))
    with pytest.raises(InvalidCommand):
        Referral(RID).request(request(due_on=date(2026, 3, 1)))


def test_accept_carries_the_lead_handover() -> None:
    [event] = given(*requested()).accept(AcceptReferral(AT))
    assert isinstance(event, ReferralAccepted)
    assert event.handover_lead is True
    assert event.case_id == "case-1"


def test_accepting_twice_is_an_invalid_transition_naming_the_state() -> None:
    referral = given(*requested())
    referral.apply(referral.accept(AcceptReferral(AT))[0])
    with pytest.raises(InvalidTransition) as refused:
        referral.accept(AcceptReferral(AT))
    assert refused.value.facts["current_state"] == "accepted"
    assert refused.value.facts["version"] == 2


def test_completing_a_declined_referral_is_invalid() -> None:
    referral = given(*requested())
    [declined] = referral.decline(DeclineReferral("no_capacity", AT))
    assert isinstance(declined, ReferralDeclined)
    referral.apply(declined)
    with pytest.raises(InvalidTransition) as refused:
        referral.complete(CompleteReferral(ReferralOutcome.GOT_HELP, AT))
    assert refused.value.facts["current_state"] == "declined"


def test_complete_after_accept_closes_the_loop_with_sealed_feedback() -> None:
    sealed = Sealed(kid="referral/person-1/1", nonce="A" * 16, ct="xyz")
    referral = given(*requested())
    referral.apply(referral.accept(AcceptReferral(AT))[0])
    [event] = referral.complete(CompleteReferral(ReferralOutcome.GOT_HELP, AT, sealed))
    assert isinstance(event, ReferralCompleted)
    assert event.feedback == sealed
    referral.apply(event)
    assert referral.state is ReferralState.COMPLETED


def test_withdraw_from_requested_or_accepted_only() -> None:
    referral = given(*requested())
    [event] = referral.withdraw(WithdrawReferral(AT))
    assert isinstance(event, ReferralWithdrawn)
    referral.apply(event)
    with pytest.raises(InvalidTransition):
        referral.withdraw(WithdrawReferral(AT))


def test_decline_needs_a_known_reason() -> None:
    with pytest.raises(InvalidCommand):
        given(*requested()).decline(DeclineReferral("bored", AT))


def test_overdue_once_after_the_due_date_only() -> None:
    referral = given(*requested())
    assert referral.mark_overdue(MarkOverdue(date(2026, 4, 10), AT)) == []
    [event] = referral.mark_overdue(MarkOverdue(date(2026, 4, 11), AT))
    assert isinstance(event, ReferralOverdue)
    assert event.due_on == date(2026, 4, 10)
    referral.apply(event)
    assert referral.mark_overdue(MarkOverdue(date(2026, 4, 20), AT)) == []
    # Overdue is a flag, not a state: a late answer is still accepted.
    assert isinstance(referral.accept(AcceptReferral(AT))[0], ReferralAccepted)


def test_answered_referrals_never_become_overdue() -> None:
    referral = given(*requested())
    referral.apply(referral.accept(AcceptReferral(AT))[0])
    assert referral.mark_overdue(MarkOverdue(date(2026, 5, 1), AT)) == []
