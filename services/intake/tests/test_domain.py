"""Aggregates, given events → when command → then events (or a domain error)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from tsunagu_events.aggregate import Aggregate
from tsunagu_events.contracts.common import ConsultationCategory as C
from tsunagu_events.contracts.common import LegalBasis, Sealed
from tsunagu_events.contracts.intake import (
    Approach,
    ApproachChanged,
    CaseClosed,
    CaseOpened,
    CaseReopened,
    CaseReviewed,
    Channel,
    ConsentGiven,
    ConsentScope,
    ConsentWithdrawn,
    ConsultationOutcomeChanged,
    ConsultationReceived,
    ConsultationReclassified,
    ConsultedBy,
    ContactKind,
    ContactRecorded,
    GapNeedMarked,
    HouseholdLinked,
    HouseholdSituation,
    LeadAgencyHandedOver,
    Outcome,
    PersonDetailsCorrected,
    PersonErased,
    PersonRegistered,
    SharingBasisRecorded,
    SupportPlanAdopted,
)
from tsunagu_events.registry import EventPayload
from tsunagu_intake.domain.case import (
    AdoptPlan,
    Case,
    ChangeApproach,
    CloseCase,
    HandOverLead,
    OpenCase,
    RecordContact,
    ReopenCase,
    ReviewCase,
)
from tsunagu_intake.domain.categories import is_compound, is_expanded
from tsunagu_intake.domain.consultation import (
    ChangeOutcome,
    Consultation,
    MarkGapNeed,
    ReceiveConsultation,
    ReclassifyConsultation,
    Window,
)
from tsunagu_intake.domain.errors import DomainError
from tsunagu_intake.domain.household import Household, LinkHousehold
from tsunagu_intake.domain.person import (
    CorrectPersonDetails,
    ErasePerson,
    GiveConsent,
    Person,
    RecordStatutorySharing,
    RegisterPerson,
    SealedDetails,
    WithdrawConsent,
)

NOW = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)
CSC = Window("ikejiri.comprehensive_support_center", "comprehensive_support_center", "ikejiri", "setagaya")
CC = Window("ikejiri.community_center", "community_center", "ikejiri", "setagaya")
SEALED = Sealed(kid="intake/person-1/1", nonce="AAAAAAAAAAAAAAAA", ct="Y2lwaGVy")


def when(kind: type[Aggregate], given: list[EventPayload], command: object) -> list[EventPayload]:
    aggregate = kind.replay(given)
    method_name = {
        ReceiveConsultation: "receive",
        ReclassifyConsultation: "reclassify",
        ChangeOutcome: "change_outcome",
        MarkGapNeed: "mark_gap_need",
        RegisterPerson: "register",
        CorrectPersonDetails: "correct",
        ErasePerson: "erase",
        GiveConsent: "give_consent",
        WithdrawConsent: "withdraw_consent",
        RecordStatutorySharing: "record_statutory_sharing",
        LinkHousehold: "link",
        OpenCase: "open",
        HandOverLead: "hand_over_lead",
        ChangeApproach: "change_approach",
        AdoptPlan: "adopt_plan",
        RecordContact: "record_contact",
        ReviewCase: "review",
        CloseCase: "close",
        ReopenCase: "reopen",
    }[type(command)]
    getattr(aggregate, method_name)(command)
    return aggregate.collect()


def receive(window: Window = CC, categories: list[C] | None = None, **extra: object) -> ReceiveConsultation:
    return ReceiveConsultation(
        consultation_id="consultation-1",
        window=window,
        received_at=NOW,
        channel=Channel.WALK_IN,
        consulted_by=ConsultedBy.PERSON,
        categories=categories or [C.POVERTY],
        outcome=Outcome.INFORMATION_GIVEN,
        **extra,  # type: ignore[arg-type]
    )


def received(window: Window = CC, categories: list[C] | None = None) -> ConsultationReceived:
    event = when(Consultation, [], receive(window, categories))[0]
    assert isinstance(event, ConsultationReceived)
    return event


# -- derived flags ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window_type", "categories", "expanded"),
    [
        ("comprehensive_support_center", [C.ELDERLY_CARE], False),
        ("comprehensive_support_center", [C.DEMENTIA, C.ELDERLY_CARE], False),
        ("comprehensive_support_center", [C.ELDERLY_CARE, C.CHILD_REARING], True),
        ("comprehensive_support_center", [C.WITHDRAWAL], True),
        ("community_center", [C.WITHDRAWAL], False),
    ],
)
def test_expanded_consultation_is_a_csc_taking_a_non_elderly_topic(
    window_type: str, categories: list[C], expanded: bool
) -> None:
    assert is_expanded(window_type, categories) is expanded


@pytest.mark.parametrize(
    ("categories", "compound"),
    [
        ([C.POVERTY], False),
        ([C.POVERTY, C.WORK], False),  # one domain (livelihood)
        ([C.ELDERLY_CARE, C.DEMENTIA], False),
        ([C.POVERTY, C.HEALTH], True),
        ([C.EIGHT_ZERO_FIVE_ZERO], True),
        ([C.DOUBLE_CARE], True),
        ([C.OTHER, C.POVERTY], False),
    ],
)
def test_compound_need_spans_two_domains_and_8050_or_double_care_always(categories: list[C], compound: bool) -> None:
    assert is_compound(categories) is compound


# -- consultation -----------------------------------------------------------------------------


def test_receiving_records_fiscal_year_and_derived_flags() -> None:
    event = received(CSC, [C.ELDERLY_CARE, C.WITHDRAWAL, C.ELDERLY_CARE])
    assert event.categories == [C.ELDERLY_CARE, C.WITHDRAWAL]
    assert event.expanded
    assert event.compound_need
    assert event.fiscal_year == 2026
    assert event.district_id == "ikejiri"


def test_a_consultation_is_received_once() -> None:
    with pytest.raises(DomainError):
        when(Consultation, [received()], receive())


def test_reclassifying_recomputes_the_flags() -> None:
    events = when(Consultation, [received(CSC, [C.ELDERLY_CARE])], ReclassifyConsultation([C.ELDERLY_CARE, C.HOUSING]))
    assert events == [
        ConsultationReclassified(
            consultation_id="consultation-1", categories=[C.ELDERLY_CARE, C.HOUSING], expanded=True, compound_need=True
        )
    ]


def test_reclassifying_to_the_same_categories_changes_nothing() -> None:
    assert when(Consultation, [received()], ReclassifyConsultation([C.POVERTY])) == []


def test_outcome_change_and_gap_need() -> None:
    given = [received()]
    assert when(Consultation, given, ChangeOutcome(Outcome.REFERRED)) == [
        ConsultationOutcomeChanged(consultation_id="consultation-1", outcome=Outcome.REFERRED)
    ]
    assert when(Consultation, given, MarkGapNeed()) == [
        GapNeedMarked(consultation_id="consultation-1", district_id="ikejiri", categories=[C.POVERTY])
    ]
    marked = [*given, GapNeedMarked(consultation_id="consultation-1", district_id="ikejiri", categories=[C.POVERTY])]
    assert when(Consultation, marked, MarkGapNeed(True)) == []


def test_commands_on_an_unknown_consultation_are_refused() -> None:
    with pytest.raises(DomainError):
        when(Consultation, [], ChangeOutcome(Outcome.REFERRED))


# -- person and consent -----------------------------------------------------------------------

REGISTERED = PersonRegistered(person_id="person-1", district_id="ikejiri", name=SEALED)


def test_registering_needs_a_name() -> None:
    with pytest.raises(DomainError) as error:
        when(Person, [], RegisterPerson("person-1", SealedDetails()))
    assert error.value.field == "name"
    assert when(Person, [], RegisterPerson("person-1", SealedDetails(name=SEALED), "ikejiri")) == [REGISTERED]


def test_correcting_details() -> None:
    events = when(Person, [REGISTERED], CorrectPersonDetails(SealedDetails(phone=SEALED)))
    assert events == [PersonDetailsCorrected(person_id="person-1", phone=SEALED)]


def test_erasure_is_final() -> None:
    erased = PersonErased(person_id="person-1", erased_at=NOW)
    assert when(Person, [REGISTERED], ErasePerson(NOW)) == [erased]
    for command in (ErasePerson(NOW), CorrectPersonDetails(SealedDetails(name=SEALED))):
        with pytest.raises(DomainError):
            when(Person, [REGISTERED, erased], command)


def consent(scope: ConsentScope = ConsentScope.FOUR_WINDOWS, **extra: object) -> GiveConsent:
    values: dict[str, object] = {"district_id": "ikejiri"} | extra
    return GiveConsent("consent-1", scope, NOW, "ikejiri.community_center", **values)  # type: ignore[arg-type]


def test_consent_given_and_withdrawn() -> None:
    given = when(Person, [REGISTERED], consent())
    assert isinstance(given[0], ConsentGiven)
    assert given[0].scope == ConsentScope.FOUR_WINDOWS
    person = Person.replay([REGISTERED, *given])
    assert person.consents_agency("ikejiri.childrens_center", "ikejiri", NOW.date())
    assert not person.consents_agency("daizawa.community_center", "daizawa", NOW.date())
    withdrawn = when(Person, [REGISTERED, *given], WithdrawConsent("consent-1", NOW, "ikejiri.community_center"))
    assert withdrawn == [
        ConsentWithdrawn(
            consent_id="consent-1",
            person_id="person-1",
            withdrawn_at=NOW,
            recorded_by_agency="ikejiri.community_center",
        )
    ]
    assert not Person.replay([REGISTERED, *given, *withdrawn]).consents_agency(
        "ikejiri.childrens_center", "ikejiri", NOW.date()
    )
    with pytest.raises(DomainError):
        when(Person, [REGISTERED, *given, *withdrawn], WithdrawConsent("consent-1", NOW, "x"))


def test_consent_scope_needs_its_target() -> None:
    with pytest.raises(DomainError) as error:
        when(Person, [REGISTERED], consent(district_id=None))
    assert error.value.field == "district_id"
    with pytest.raises(DomainError):
        when(Person, [REGISTERED], consent(ConsentScope.NAMED_AGENCIES, district_id=None))


def test_expired_consent_no_longer_holds() -> None:
    given = when(Person, [REGISTERED], consent(expires_on=date(2026, 4, 30)))
    person = Person.replay([REGISTERED, *given])
    assert person.consents_agency("ikejiri.childrens_center", "ikejiri", date(2026, 4, 30))
    assert not person.consents_agency("ikejiri.childrens_center", "ikejiri", date(2026, 5, 1))


def test_statutory_support_meeting_sharing_is_its_own_basis() -> None:
    events = when(Person, [REGISTERED], RecordStatutorySharing(NOW, "meeting-1", ["specialist.hospital"]))
    assert events == [
        SharingBasisRecorded(
            person_id="person-1",
            basis=LegalBasis.SUPPORT_MEETING_STATUTORY,
            meeting_id="meeting-1",
            agency_ids=["specialist.hospital"],
            recorded_at=NOW,
        )
    ]


def test_household_links_two_different_people() -> None:
    events = when(
        Household, [], LinkHousehold("household-1", ["person-1", "person-2"], HouseholdSituation.EIGHT_ZERO_FIVE_ZERO)
    )
    assert isinstance(events[0], HouseholdLinked)
    with pytest.raises(DomainError):
        when(Household, [], LinkHousehold("household-1", ["person-1", "person-1"], HouseholdSituation.OTHER))


# -- case -------------------------------------------------------------------------------------

OPENED = CaseOpened(
    case_id="case-1",
    person_id="person-1",
    consultation_id="consultation-1",
    lead_agency_id="ikejiri.community_center",
    district_id="ikejiri",
    approach=Approach.STAYING_CONNECTED,
    opened_at=NOW,
)
CLOSED = CaseClosed(case_id="case-1", reason="moved_away", closed_at=NOW)


def test_case_opens_once() -> None:
    command = OpenCase(
        "case-1", "person-1", "ikejiri.community_center", "ikejiri", Approach.STAYING_CONNECTED, NOW, "consultation-1"
    )
    assert when(Case, [], command) == [OPENED]
    with pytest.raises(DomainError):
        when(Case, [OPENED], command)


def test_lead_handover() -> None:
    assert when(Case, [OPENED], HandOverLead("specialist.poverty_support", NOW, "referral-1")) == [
        LeadAgencyHandedOver(
            case_id="case-1",
            from_agency_id="ikejiri.community_center",
            to_agency_id="specialist.poverty_support",
            referral_id="referral-1",
            handed_over_at=NOW,
        )
    ]
    with pytest.raises(DomainError):
        when(Case, [OPENED], HandOverLead("ikejiri.community_center", NOW))


def test_plan_versions_count_up() -> None:
    first = when(Case, [OPENED], AdoptPlan([], date(2026, 7, 1), NOW))
    assert isinstance(first[0], SupportPlanAdopted)
    assert first[0].plan_version == 1
    second = when(Case, [OPENED, *first], AdoptPlan([], date(2026, 10, 1), NOW, "meeting-9"))
    assert isinstance(second[0], SupportPlanAdopted)
    assert (second[0].plan_version, second[0].meeting_id) == (2, "meeting-9")


def test_contacts_reviews_and_approach() -> None:
    contact = when(Case, [OPENED], RecordContact("contact-1", ContactKind.HOME_VISIT, NOW, "ikejiri.community_center"))
    assert isinstance(contact[0], ContactRecorded)
    assert when(Case, [OPENED, *contact], RecordContact("contact-1", ContactKind.CALL, NOW, "x")) == []
    assert when(Case, [OPENED], ReviewCase(NOW, date(2026, 5, 1))) == [
        CaseReviewed(case_id="case-1", reviewed_at=NOW, next_review_due=date(2026, 5, 1))
    ]
    assert when(Case, [OPENED], ChangeApproach(Approach.BOTH)) == [
        ApproachChanged(case_id="case-1", approach=Approach.BOTH)
    ]


def test_overdue_review_is_visible_on_open_cases_only() -> None:
    plan = SupportPlanAdopted(case_id="case-1", plan_version=1, review_due=date(2026, 5, 1), adopted_at=NOW)
    case = Case.replay([OPENED, plan])
    assert not case.review_overdue(date(2026, 5, 1))
    assert case.review_overdue(date(2026, 5, 2))
    assert not Case.replay([OPENED, plan, CLOSED]).review_overdue(date(2026, 5, 2))


def test_a_staying_connected_case_does_not_close_because_goals_were_met() -> None:
    with pytest.raises(DomainError) as error:
        when(Case, [OPENED], CloseCase("goals_met", NOW))
    assert error.value.field == "reason"
    assert when(Case, [OPENED], CloseCase("moved_away", NOW)) == [CLOSED]


def test_problem_solving_case_closes_when_goals_are_met() -> None:
    opened = OPENED.model_copy(update={"approach": Approach.PROBLEM_SOLVING})
    assert when(Case, [opened], CloseCase("goals_met", NOW))[0] == CaseClosed(
        case_id="case-1", reason="goals_met", closed_at=NOW
    )


def test_closed_case_refuses_work_until_reopened() -> None:
    with pytest.raises(DomainError):
        when(Case, [OPENED, CLOSED], RecordContact("c", ContactKind.CALL, NOW, "x"))
    with pytest.raises(DomainError):
        when(Case, [OPENED, CLOSED], CloseCase("other", NOW))
    assert when(Case, [OPENED, CLOSED], ReopenCase(NOW)) == [CaseReopened(case_id="case-1", reopened_at=NOW)]
    with pytest.raises(DomainError):
        when(Case, [OPENED], ReopenCase(NOW))
