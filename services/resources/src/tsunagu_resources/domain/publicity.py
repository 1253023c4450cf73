"""Publicity (広報・啓発) per district and community social work training (スキルアップ研修).

A district's mail magazine numbers its issues itself (1, 2, 3… with no gaps) and
keeps a subscriber total that can never go below zero; both live in one stream per
district so these rules hold under concurrent edits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from tsunagu_events.aggregate import Aggregate
from tsunagu_events.contracts.common import fiscal_year_of
from tsunagu_events.contracts.resources import (
    GroupIntroduced,
    NewsletterIssueSent,
    SubscribersChanged,
    TrainingSessionHeld,
)
from tsunagu_events.registry import EventPayload

from tsunagu_resources.domain.errors import InvalidCommand, InvalidTransition

ORGANISERS = ("council", "metropolis", "ward", "other")
ORGANISER_LABELS_JA = {"council": "社会福祉協議会", "metropolis": "東京都", "ward": "区", "other": "その他"}


def publicity_stream(district_id: str) -> str:
    return f"publicity-{district_id}"


@dataclass(frozen=True)
class SendNewsletterIssue:
    sent_on: date


@dataclass(frozen=True)
class ChangeSubscribers:
    delta: int
    on: date


@dataclass(frozen=True)
class IntroduceGroup:
    group_id: str
    group_name: str
    introduced_on: date


@dataclass
class Publicity(Aggregate):
    district_id: str = ""
    issues_sent: int = 0
    subscribers: int = 0
    groups: list[GroupIntroduced] = field(default_factory=list)

    def __post_init__(self) -> None:
        Aggregate.__init__(self)

    @classmethod
    def of(cls, district_id: str, history: list[EventPayload]) -> Publicity:
        publicity = cls.replay(history)
        publicity.district_id = district_id
        return publicity

    def send_issue(self, command: SendNewsletterIssue) -> None:
        self._trigger(
            NewsletterIssueSent(
                district_id=self.district_id,
                issue_number=self.issues_sent + 1,
                sent_on=command.sent_on,
                fiscal_year=fiscal_year_of(command.sent_on),
            )
        )

    def change_subscribers(self, command: ChangeSubscribers) -> None:
        if command.delta == 0:
            raise InvalidCommand("増減がありません。", "delta must not be zero.")
        total = self.subscribers + command.delta
        if total < 0:
            raise InvalidCommand(
                "登録者数が0未満になります。",
                f"There are only {self.subscribers} subscribers.",
                subscribers=self.subscribers,
            )
        self._trigger(SubscribersChanged(district_id=self.district_id, delta=command.delta, total=total, on=command.on))

    def introduce_group(self, command: IntroduceGroup) -> None:
        if any(g.group_id == command.group_id for g in self.groups):
            raise InvalidTransition("この団体紹介は既に記録されています。", "This introduction is already recorded.")
        self._trigger(
            GroupIntroduced(
                district_id=self.district_id,
                group_id=command.group_id,
                group_name=command.group_name,
                introduced_on=command.introduced_on,
                fiscal_year=fiscal_year_of(command.introduced_on),
            )
        )

    def apply(self, event: EventPayload) -> None:
        if isinstance(event, NewsletterIssueSent):
            self.issues_sent = event.issue_number
        elif isinstance(event, SubscribersChanged):
            self.subscribers = event.total
        elif isinstance(event, GroupIntroduced):
            self.groups.append(event)


@dataclass(frozen=True)
class HoldTrainingSession:
    session_id: str
    title: str
    held_on: date
    participants: int
    organiser: str


@dataclass
class TrainingSession(Aggregate):
    session_id: str = ""
    title: str = ""
    held_on: date = date.min
    participants: int = 0
    organiser: str = ""

    def __post_init__(self) -> None:
        Aggregate.__init__(self)

    def hold(self, command: HoldTrainingSession) -> None:
        if self.exists:
            raise InvalidTransition("この研修は既に記録されています。", "The session is already recorded.")
        if command.organiser not in ORGANISERS:
            raise InvalidCommand("主催者が不正です。", f"organiser must be one of {', '.join(ORGANISERS)}.")
        self._trigger(
            TrainingSessionHeld(
                session_id=command.session_id,
                title=command.title,
                held_on=command.held_on,
                fiscal_year=fiscal_year_of(command.held_on),
                participants=command.participants,
                organiser=command.organiser,
            )
        )

    def apply(self, event: EventPayload) -> None:
        if isinstance(event, TrainingSessionHeld):
            self.session_id = event.session_id
            self.title = event.title
            self.held_on = event.held_on
            self.participants = event.participants
            self.organiser = event.organiser
