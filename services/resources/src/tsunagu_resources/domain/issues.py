"""District issues (地区課題) and the initiatives (取組み) launched for them.

An issue arrives from a four-party meeting's decision to develop a resource, or
from a district assessment; the tier-2 council (第2層協議体) takes it up and
launches initiatives that use local resources. A meeting decision must become
exactly one issue however often it is delivered, so its issue id is derived
from the decision id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date

from tsunagu_events.aggregate import Aggregate
from tsunagu_events.contracts.common import ConsultationCategory, fiscal_year_of
from tsunagu_events.contracts.resources import (
    DistrictIssueRaised,
    DistrictIssueTakenUp,
    InitiativeConcluded,
    InitiativeKind,
    InitiativeLaunched,
    InitiativeProgressed,
    IssueSource,
)
from tsunagu_events.registry import EventPayload

from tsunagu_resources.domain.errors import InvalidCommand, InvalidTransition

DECISION_NAMESPACE = uuid.UUID("6f1c9a52-3b7e-4d0a-9c55-2f7f1d7b8e01")

ISSUE_SOURCE_LABELS_JA = {
    IssueSource.FOUR_PARTY_MEETING: "四者連携会議",
    IssueSource.DISTRICT_ASSESSMENT: "地区アセスメント",
}

INITIATIVE_KIND_LABELS_JA = {
    InitiativeKind.SHOPPING_SUPPORT_MAP: "買物支援マップ",
    InitiativeKind.DEMENTIA_CAFE: "認知症カフェ",
    InitiativeKind.PLACE_TO_BELONG: "居場所",
    InitiativeKind.OUTREACH: "アウトリーチ",
    InitiativeKind.COURSE: "講座",
    InitiativeKind.OTHER: "その他",
}


def issue_id_for_decision(decision_id: str) -> str:
    """The one issue stream a meeting decision may create."""
    return f"issue-{uuid.uuid5(DECISION_NAMESPACE, decision_id)}"


@dataclass(frozen=True)
class RaiseDistrictIssue:
    issue_id: str
    district_id: str
    title: str
    source: IssueSource
    raised_on: date
    categories: tuple[ConsultationCategory, ...] = ()
    gap_need: bool = False
    meeting_id: str | None = None
    decision_id: str | None = None


@dataclass(frozen=True)
class TakeUpIssue:
    """The tier-2 council takes the issue up."""

    taken_up_on: date


@dataclass
class DistrictIssue(Aggregate):
    issue_id: str = ""
    district_id: str = ""
    title: str = ""
    source: IssueSource = IssueSource.DISTRICT_ASSESSMENT
    raised_on: date = date.min
    categories: list[ConsultationCategory] = field(default_factory=list)
    gap_need: bool = False
    meeting_id: str | None = None
    decision_id: str | None = None
    taken_up_on: date | None = None

    def __post_init__(self) -> None:
        Aggregate.__init__(self)

    @property
    def state(self) -> str:
        return "taken_up" if self.taken_up_on else "raised"

    def raise_issue(self, command: RaiseDistrictIssue) -> None:
        if self.exists:
            raise InvalidTransition("この地区課題は既に登録されています。", "The issue is already raised.")
        if command.source == IssueSource.FOUR_PARTY_MEETING and not command.decision_id:
            raise InvalidCommand(
                "四者連携会議からの課題には決定IDが必要です。", "An issue from a meeting needs its decision id."
            )
        self._trigger(
            DistrictIssueRaised(
                issue_id=command.issue_id,
                district_id=command.district_id,
                title=command.title,
                source=command.source,
                categories=list(dict.fromkeys(command.categories)),
                gap_need=command.gap_need,
                meeting_id=command.meeting_id,
                decision_id=command.decision_id,
                raised_on=command.raised_on,
            )
        )

    def take_up(self, command: TakeUpIssue) -> None:
        if not self.exists:
            raise InvalidTransition("地区課題がありません。", "The issue was never raised.")
        if self.taken_up_on is not None:
            raise InvalidTransition(
                "第2層協議体で既に取り上げられています。",
                "The tier-2 council already took the issue up.",
                state=self.state,
            )
        if command.taken_up_on < self.raised_on:
            raise InvalidCommand("取り上げ日が課題の発生日より前です。", "taken_up_on is before the issue was raised.")
        self._trigger(
            DistrictIssueTakenUp(issue_id=self.issue_id, district_id=self.district_id, taken_up_on=command.taken_up_on)
        )

    def apply(self, event: EventPayload) -> None:
        if isinstance(event, DistrictIssueRaised):
            self.issue_id = event.issue_id
            self.district_id = event.district_id
            self.title = event.title
            self.source = event.source
            self.raised_on = event.raised_on
            self.categories = list(event.categories)
            self.gap_need = event.gap_need
            self.meeting_id = event.meeting_id
            self.decision_id = event.decision_id
        elif isinstance(event, DistrictIssueTakenUp):
            self.taken_up_on = event.taken_up_on


@dataclass(frozen=True)
class LaunchInitiative:
    initiative_id: str
    district_id: str
    kind: InitiativeKind
    title: str
    launched_on: date
    issue_id: str | None = None
    resource_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecordProgress:
    note: str
    on: date
    participants: int | None = None


@dataclass(frozen=True)
class ConcludeInitiative:
    concluded_on: date
    outcome: str


def check_issue_allows_initiative(issue: DistrictIssue, district_id: str) -> None:
    """Initiatives answer an issue the tier-2 council took up, in the same district."""
    if not issue.exists:
        raise InvalidCommand("地区課題がありません。", "The district issue does not exist.", field="issue_id")
    if issue.district_id != district_id:
        raise InvalidCommand("地区課題と地区が一致しません。", "The issue belongs to another district.")
    if issue.taken_up_on is None:
        raise InvalidTransition(
            "地区課題がまだ第2層協議体で取り上げられていません。",
            "The tier-2 council has not taken the issue up yet.",
            state=issue.state,
        )


@dataclass
class Initiative(Aggregate):
    initiative_id: str = ""
    district_id: str = ""
    issue_id: str | None = None
    kind: InitiativeKind = InitiativeKind.OTHER
    title: str = ""
    resource_ids: list[str] = field(default_factory=list)
    launched_on: date = date.min
    progress: list[InitiativeProgressed] = field(default_factory=list)
    concluded_on: date | None = None
    outcome: str | None = None

    def __post_init__(self) -> None:
        Aggregate.__init__(self)

    @property
    def state(self) -> str:
        if self.concluded_on is not None:
            return "concluded"
        return "in_progress" if self.progress else "launched"

    def launch(self, command: LaunchInitiative) -> None:
        if self.exists:
            raise InvalidTransition("この取組みは既に始まっています。", "The initiative is already launched.")
        self._trigger(
            InitiativeLaunched(
                initiative_id=command.initiative_id,
                issue_id=command.issue_id,
                district_id=command.district_id,
                kind=command.kind,
                title=command.title,
                resource_ids=list(dict.fromkeys(command.resource_ids)),
                launched_on=command.launched_on,
                fiscal_year=fiscal_year_of(command.launched_on),
            )
        )

    def record_progress(self, command: RecordProgress) -> None:
        self._must_be_running()
        if command.on < self.launched_on:
            raise InvalidCommand("日付が取組みの開始日より前です。", "The date is before the initiative was launched.")
        self._trigger(
            InitiativeProgressed(
                initiative_id=self.initiative_id, note=command.note, participants=command.participants, on=command.on
            )
        )

    def conclude(self, command: ConcludeInitiative) -> None:
        self._must_be_running()
        if command.concluded_on < self.launched_on:
            raise InvalidCommand("終了日が取組みの開始日より前です。", "concluded_on is before the launch.")
        self._trigger(
            InitiativeConcluded(
                initiative_id=self.initiative_id, concluded_on=command.concluded_on, outcome=command.outcome
            )
        )

    def _must_be_running(self) -> None:
        if not self.exists:
            raise InvalidTransition("取組みがありません。", "The initiative was never launched.")
        if self.concluded_on is not None:
            raise InvalidTransition("取組みは終了しています。", "The initiative has concluded.", state=self.state)

    def apply(self, event: EventPayload) -> None:
        if isinstance(event, InitiativeLaunched):
            self.initiative_id = event.initiative_id
            self.district_id = event.district_id
            self.issue_id = event.issue_id
            self.kind = event.kind
            self.title = event.title
            self.resource_ids = list(event.resource_ids)
            self.launched_on = event.launched_on
        elif isinstance(event, InitiativeProgressed):
            self.progress.append(event)
        elif isinstance(event, InitiativeConcluded):
            self.concluded_on = event.concluded_on
            self.outcome = event.outcome
