"""The pure domain: given events, when a command, then new events or a domain error."""

from __future__ import annotations

from datetime import date

import pytest
from tsunagu_events.aggregate import Aggregate
from tsunagu_events.contracts.intake import ConsentScope
from tsunagu_events.contracts.resources import (
    AttendanceRecorded,
    DistrictIssueRaised,
    DistrictIssueTakenUp,
    GroupIntroduced,
    InitiativeConcluded,
    InitiativeKind,
    InitiativeLaunched,
    InitiativeProgressed,
    IssueSource,
    NewsletterIssueSent,
    ParticipationEnded,
    ParticipationStarted,
    PlaceKind,
    PlaceUsed,
    ResourceDetailsChanged,
    ResourceIdentified,
    ResourceKind,
    ResourceRegistered,
    ResourceStatus,
    ResourceStatusChanged,
    ResourceVerified,
    ResourceVisited,
    SubscribersChanged,
    TrainingSessionHeld,
    UsablePlaceOffered,
    VisitCategory,
)
from tsunagu_events.registry import EventPayload
from tsunagu_resources.domain import directory, issues, participation, publicity, surveys
from tsunagu_resources.domain.errors import ConsentRequired, InvalidCommand, InvalidTransition

REGISTERED = ResourceRegistered(
    resource_id="resource-1",
    district_id="ikejiri",
    kind=ResourceKind.SALON,
    organization_name="池尻町会",
    service_name="サロン",
    effective_on=date(2021, 4, 1),
)


def then(aggregate: Aggregate) -> list[EventPayload]:
    return list(aggregate.pending)


# ---- directory ----------------------------------------------------------------------------


def test_register_emits_registered_with_the_status_and_its_date() -> None:
    resource = directory.Resource.replay([])
    resource.register(
        directory.RegisterResource(
            resource_id="resource-1",
            district_id="ikejiri",
            kind=ResourceKind.SALON,
            organization_name="池尻町会",
            service_name="サロン",
            effective_on=date(2021, 4, 1),
        )
    )
    assert then(resource) == [REGISTERED]


def test_register_twice_is_refused() -> None:
    resource = directory.Resource.replay([REGISTERED])
    with pytest.raises(InvalidTransition):
        resource.register(
            directory.RegisterResource("resource-1", "ikejiri", ResourceKind.SALON, "a", "b", date(2021, 4, 1))
        )


def test_status_change_carries_district_and_effective_date() -> None:
    resource = directory.Resource.replay([REGISTERED])
    resource.change_status(directory.ChangeResourceStatus(ResourceStatus.TEMPORARILY_CLOSED, date(2021, 8, 1)))
    assert then(resource) == [
        ResourceStatusChanged(
            resource_id="resource-1",
            district_id="ikejiri",
            status=ResourceStatus.TEMPORARILY_CLOSED,
            effective_on=date(2021, 8, 1),
        )
    ]


def test_same_status_and_backdated_change_are_refused() -> None:
    resource = directory.Resource.replay(
        [
            REGISTERED,
            ResourceStatusChanged(
                resource_id="resource-1",
                district_id="ikejiri",
                status=ResourceStatus.INACTIVE,
                effective_on=date(2021, 9, 1),
            ),
        ]
    )
    with pytest.raises(InvalidTransition):
        resource.change_status(directory.ChangeResourceStatus(ResourceStatus.INACTIVE, date(2021, 10, 1)))
    with pytest.raises(InvalidCommand):
        resource.change_status(directory.ChangeResourceStatus(ResourceStatus.ACTIVE, date(2021, 8, 1)))


def test_a_defunct_resource_cannot_change() -> None:
    resource = directory.Resource.replay(
        [
            REGISTERED,
            ResourceStatusChanged(
                resource_id="resource-1",
                district_id="ikejiri",
                status=ResourceStatus.DEFUNCT,
                effective_on=date(2021, 9, 1),
            ),
        ]
    )
    with pytest.raises(InvalidTransition):
        resource.change_details(directory.ChangeResourceDetails(capacity=3))
    resource.verify(directory.VerifyResource(date(2021, 10, 1), "ikejiri.welfare_council_office"))
    assert then(resource) == [
        ResourceVerified(
            resource_id="resource-1",
            verified_on=date(2021, 10, 1),
            verified_by_agency_id="ikejiri.welfare_council_office",
        )
    ]


def test_details_change_needs_something_to_change() -> None:
    resource = directory.Resource.replay([REGISTERED])
    with pytest.raises(InvalidCommand):
        resource.change_details(directory.ChangeResourceDetails())
    resource.change_details(directory.ChangeResourceDetails(capacity=15))
    assert then(resource) == [ResourceDetailsChanged(resource_id="resource-1", capacity=15)]
    assert resource.capacity == 15


def test_identified_carries_the_fiscal_year() -> None:
    resource = directory.Resource.replay([REGISTERED])
    resource.identify(directory.IdentifyResource(date(2022, 3, 31)))
    assert then(resource) == [
        ResourceIdentified(
            resource_id="resource-1", district_id="ikejiri", identified_on=date(2022, 3, 31), fiscal_year=2021
        )
    ]


def test_status_on_follows_effective_dates_across_changes() -> None:
    history = [
        (date(2021, 4, 1), ResourceStatus.ACTIVE),
        (date(2021, 8, 1), ResourceStatus.TEMPORARILY_CLOSED),
        (date(2021, 10, 1), ResourceStatus.ACTIVE),
        (date(2022, 4, 1), ResourceStatus.DEFUNCT),
    ]
    assert directory.status_on(history, date(2021, 3, 31)) is None
    assert directory.status_on(history, date(2021, 4, 1)) == ResourceStatus.ACTIVE
    assert directory.status_on(history, date(2021, 9, 1)) == ResourceStatus.TEMPORARILY_CLOSED
    assert directory.status_on(history, date(2021, 10, 1)) == ResourceStatus.ACTIVE
    assert directory.status_on(history, date(2023, 1, 1)) == ResourceStatus.DEFUNCT
    closed_later = [(date(2021, 4, 1), ResourceStatus.ACTIVE)]
    assert directory.active_on({"a": history, "b": closed_later}, date(2021, 9, 1)) == ["b"]
    assert directory.active_on({"a": history, "b": closed_later}, date(2021, 11, 1)) == ["a", "b"]


# ---- visits and places --------------------------------------------------------------------


def test_visit_records_findings_once_with_fiscal_year() -> None:
    visit = surveys.Visit.replay([])
    visit.record(
        surveys.RecordVisit(
            visit_id="visit-1",
            district_id="ikejiri",
            category=VisitCategory.SCHOOL_FACILITY_NURSERY,
            visited_on=date(2021, 4, 1),
            findings=("needs_venue", "needs_venue", "wants_volunteers"),
            follow_up="会場を紹介",
        )
    )
    assert then(visit) == [
        ResourceVisited(
            visit_id="visit-1",
            district_id="ikejiri",
            category=VisitCategory.SCHOOL_FACILITY_NURSERY,
            visited_on=date(2021, 4, 1),
            fiscal_year=2021,
            findings=["needs_venue", "wants_volunteers"],
            follow_up="会場を紹介",
        )
    ]
    with pytest.raises(InvalidTransition):
        visit.record(surveys.RecordVisit("visit-1", "ikejiri", VisitCategory.BUSINESS_NPO, date(2021, 4, 1)))


def test_visit_category_must_match_the_resource_kind() -> None:
    surveys.check_visit_category(ResourceKind.NURSERY, VisitCategory.SCHOOL_FACILITY_NURSERY)
    surveys.check_visit_category(ResourceKind.NEIGHBOURHOOD_ASSOCIATION, VisitCategory.BUSINESS_NPO)
    with pytest.raises(InvalidCommand):
        surveys.check_visit_category(ResourceKind.SALON, VisitCategory.BUSINESS_NPO)


OFFERED = UsablePlaceOffered(
    place_id="place-1",
    resource_id="resource-1",
    district_id="ikejiri",
    kind=PlaceKind.GARDEN,
    offered_on=date(2021, 5, 1),
    fiscal_year=2021,
)


def test_place_use_after_offer() -> None:
    place = surveys.Place.replay([OFFERED])
    place.use(surveys.UsePlace("use-1", "花壇づくり", date(2021, 6, 1), participants=7))
    assert then(place) == [
        PlaceUsed(
            place_id="place-1",
            use_id="use-1",
            district_id="ikejiri",
            activity="花壇づくり",
            used_on=date(2021, 6, 1),
            fiscal_year=2021,
            participants=7,
        )
    ]
    with pytest.raises(InvalidTransition):
        place.use(surveys.UsePlace("use-1", "again", date(2021, 6, 2)))
    with pytest.raises(InvalidCommand):
        place.use(surveys.UsePlace("use-2", "early", date(2021, 4, 2)))


def test_a_place_never_offered_cannot_be_used() -> None:
    with pytest.raises(InvalidTransition):
        surveys.Place.replay([]).use(surveys.UsePlace("use-1", "x", date(2021, 6, 1)))


# ---- issues and initiatives ---------------------------------------------------------------

RAISED = DistrictIssueRaised(
    issue_id="issue-1",
    district_id="ikejiri",
    title="買物が困難",
    source=IssueSource.FOUR_PARTY_MEETING,
    meeting_id="meeting-1",
    decision_id="decision-1",
    raised_on=date(2021, 6, 1),
)


def test_issue_id_is_derived_from_the_decision() -> None:
    assert issues.issue_id_for_decision("decision-1") == issues.issue_id_for_decision("decision-1")
    assert issues.issue_id_for_decision("decision-1") != issues.issue_id_for_decision("decision-2")


def test_a_meeting_issue_needs_its_decision() -> None:
    with pytest.raises(InvalidCommand):
        issues.DistrictIssue.replay([]).raise_issue(
            issues.RaiseDistrictIssue("issue-1", "ikejiri", "t", IssueSource.FOUR_PARTY_MEETING, date(2021, 6, 1))
        )


def test_issue_is_taken_up_once() -> None:
    issue = issues.DistrictIssue.replay([RAISED])
    issue.take_up(issues.TakeUpIssue(date(2021, 6, 20)))
    assert then(issue) == [
        DistrictIssueTakenUp(issue_id="issue-1", district_id="ikejiri", taken_up_on=date(2021, 6, 20))
    ]
    with pytest.raises(InvalidTransition):
        issue.take_up(issues.TakeUpIssue(date(2021, 6, 21)))


def test_initiative_needs_a_taken_up_issue_of_its_district() -> None:
    raised = issues.DistrictIssue.replay([RAISED])
    with pytest.raises(InvalidTransition):
        issues.check_issue_allows_initiative(raised, "ikejiri")
    taken = issues.DistrictIssue.replay(
        [RAISED, DistrictIssueTakenUp(issue_id="issue-1", district_id="ikejiri", taken_up_on=date(2021, 6, 20))]
    )
    issues.check_issue_allows_initiative(taken, "ikejiri")
    with pytest.raises(InvalidCommand):
        issues.check_issue_allows_initiative(taken, "taishido")


def test_initiative_launch_progress_conclude() -> None:
    initiative = issues.Initiative.replay([])
    initiative.launch(
        issues.LaunchInitiative(
            "initiative-1",
            "ikejiri",
            InitiativeKind.SHOPPING_SUPPORT_MAP,
            "買物支援マップ",
            date(2021, 7, 1),
            issue_id="issue-1",
            resource_ids=("resource-1", "resource-1"),
        )
    )
    initiative.record_progress(issues.RecordProgress("地図の試作", date(2021, 8, 1), participants=5))
    initiative.conclude(issues.ConcludeInitiative(date(2022, 2, 1), "地図を配布"))
    assert then(initiative) == [
        InitiativeLaunched(
            initiative_id="initiative-1",
            issue_id="issue-1",
            district_id="ikejiri",
            kind=InitiativeKind.SHOPPING_SUPPORT_MAP,
            title="買物支援マップ",
            resource_ids=["resource-1"],
            launched_on=date(2021, 7, 1),
            fiscal_year=2021,
        ),
        InitiativeProgressed(initiative_id="initiative-1", note="地図の試作", participants=5, on=date(2021, 8, 1)),
        InitiativeConcluded(initiative_id="initiative-1", concluded_on=date(2022, 2, 1), outcome="地図を配布"),
    ]
    assert initiative.state == "concluded"
    with pytest.raises(InvalidTransition):
        initiative.record_progress(issues.RecordProgress("more", date(2022, 3, 1)))


# ---- participation ------------------------------------------------------------------------

PERSON = "person-1"
WINDOW = participation.Requester("ikejiri.community_center", window_district_id="ikejiri")
NPO = participation.Requester("specialist.poverty_support")
START = participation.StartParticipation("participation-1", PERSON, "resource-1", "ikejiri", date(2021, 9, 1))


def test_participation_without_consent_is_refused_with_reasons_in_both_languages() -> None:
    with pytest.raises(ConsentRequired) as refused:
        participation.Participation.replay([]).start(START, [], WINDOW)
    assert "同意" in refused.value.message_ja
    assert "consent" in refused.value.message_en


@pytest.mark.parametrize(
    ("consent", "requester", "allowed"),
    [
        (participation.Consent("c", PERSON, ConsentScope.PARTICIPATION), NPO, True),
        (participation.Consent("c", PERSON, ConsentScope.PARTICIPATION, agency_ids=("x",)), NPO, False),
        (participation.Consent("c", PERSON, ConsentScope.FOUR_WINDOWS, district_id="ikejiri"), WINDOW, True),
        (participation.Consent("c", PERSON, ConsentScope.FOUR_WINDOWS, district_id="taishido"), WINDOW, False),
        (participation.Consent("c", PERSON, ConsentScope.FOUR_WINDOWS, district_id="ikejiri"), NPO, False),
        (participation.Consent("c", PERSON, ConsentScope.NAMED_AGENCIES, agency_ids=(NPO.agency_id,)), NPO, True),
        (participation.Consent("c", PERSON, ConsentScope.NAMED_AGENCIES, agency_ids=("x",)), NPO, False),
        (participation.Consent("c", PERSON, ConsentScope.REFERRAL, agency_ids=(NPO.agency_id,)), NPO, False),
        (participation.Consent("c", PERSON, ConsentScope.PARTICIPATION, withdrawn=True), NPO, False),
        (participation.Consent("c", PERSON, ConsentScope.PARTICIPATION, expires_on=date(2021, 8, 31)), NPO, False),
        (participation.Consent("c", "person-2", ConsentScope.PARTICIPATION), NPO, False),
    ],
)
def test_which_consents_allow_participation(
    consent: participation.Consent, requester: participation.Requester, allowed: bool
) -> None:
    aggregate = participation.Participation.replay([])
    if allowed:
        aggregate.start(START, [consent], requester)
        assert then(aggregate) == [
            ParticipationStarted(
                participation_id="participation-1",
                person_id=PERSON,
                district_id="ikejiri",
                resource_id="resource-1",
                consent_id="c",
                started_on=date(2021, 9, 1),
                fiscal_year=2021,
            )
        ]
    else:
        with pytest.raises(ConsentRequired):
            aggregate.start(START, [consent], requester)


def test_an_erased_person_cannot_start() -> None:
    consent = participation.Consent("c", PERSON, ConsentScope.PARTICIPATION)
    with pytest.raises(ConsentRequired) as refused:
        participation.Participation.replay([]).start(START, [consent], NPO, erased=True)
    assert refused.value.details["reason"] == "person_erased"


STARTED = ParticipationStarted(
    participation_id="participation-1",
    person_id=PERSON,
    district_id="ikejiri",
    resource_id="resource-1",
    consent_id="c",
    started_on=date(2021, 9, 1),
    fiscal_year=2021,
)


def test_attendance_then_end_with_reason() -> None:
    p = participation.Participation.replay([STARTED])
    p.record_attendance(participation.RecordAttendance(date(2021, 9, 8)))
    p.end(participation.EndParticipation(date(2021, 12, 1), "settled"))
    assert then(p) == [
        AttendanceRecorded(participation_id="participation-1", person_id=PERSON, attended_on=date(2021, 9, 8)),
        ParticipationEnded(
            participation_id="participation-1", person_id=PERSON, ended_on=date(2021, 12, 1), reason="settled"
        ),
    ]
    with pytest.raises(InvalidTransition):
        p.record_attendance(participation.RecordAttendance(date(2021, 12, 8)))


def test_attendance_rules() -> None:
    p = participation.Participation.replay(
        [
            STARTED,
            AttendanceRecorded(participation_id="participation-1", person_id=PERSON, attended_on=date(2021, 9, 8)),
        ]
    )
    with pytest.raises(InvalidTransition):
        p.record_attendance(participation.RecordAttendance(date(2021, 9, 8)))
    with pytest.raises(InvalidCommand):
        p.record_attendance(participation.RecordAttendance(date(2021, 8, 8)))
    with pytest.raises(InvalidCommand):
        p.end(participation.EndParticipation(date(2021, 12, 1), "bored"))


# ---- publicity and training ---------------------------------------------------------------


def test_newsletter_issues_are_numbered_and_subscribers_never_negative() -> None:
    p = publicity.Publicity.of(
        "ikejiri",
        [
            NewsletterIssueSent(district_id="ikejiri", issue_number=1, sent_on=date(2021, 4, 5), fiscal_year=2021),
            SubscribersChanged(district_id="ikejiri", delta=10, total=10, on=date(2021, 4, 5)),
        ],
    )
    p.send_issue(publicity.SendNewsletterIssue(date(2021, 5, 5)))
    p.change_subscribers(publicity.ChangeSubscribers(-3, date(2021, 5, 6)))
    p.introduce_group(publicity.IntroduceGroup("group-1", "体操の会", date(2021, 5, 7)))
    assert then(p) == [
        NewsletterIssueSent(district_id="ikejiri", issue_number=2, sent_on=date(2021, 5, 5), fiscal_year=2021),
        SubscribersChanged(district_id="ikejiri", delta=-3, total=7, on=date(2021, 5, 6)),
        GroupIntroduced(
            district_id="ikejiri",
            group_id="group-1",
            group_name="体操の会",
            introduced_on=date(2021, 5, 7),
            fiscal_year=2021,
        ),
    ]
    with pytest.raises(InvalidCommand):
        p.change_subscribers(publicity.ChangeSubscribers(-8, date(2021, 5, 8)))
    with pytest.raises(InvalidCommand):
        p.change_subscribers(publicity.ChangeSubscribers(0, date(2021, 5, 8)))


def test_training_session_held_once_by_a_known_organiser() -> None:
    session = publicity.TrainingSession.replay([])
    with pytest.raises(InvalidCommand):
        session.hold(publicity.HoldTrainingSession("training-1", "研修", date(2021, 6, 1), 10, "nobody"))
    session.hold(publicity.HoldTrainingSession("training-1", "研修", date(2021, 6, 1), 10, "council"))
    assert then(session) == [
        TrainingSessionHeld(
            session_id="training-1",
            title="研修",
            held_on=date(2021, 6, 1),
            fiscal_year=2021,
            participants=10,
            organiser="council",
        )
    ]
    with pytest.raises(InvalidTransition):
        session.hold(publicity.HoldTrainingSession("training-1", "研修", date(2021, 6, 1), 10, "council"))
