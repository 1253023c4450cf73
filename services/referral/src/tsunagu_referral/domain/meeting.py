"""Coordination meetings: 四者連携会議, 支援会議 and 重層的支援会議, one aggregate per meeting.

The three kinds differ in what they may share and decide:
- four_party: a district's four windows share cases and district issues (gap needs
  included) and decide to develop a resource, escalate to the branch office, refer or
  keep watching; persons are discussed only with consent.
- support_meeting (社会福祉法第106条の6): may discuss a person without consent because
  every member is bound to confidentiality; attendance and the statutory basis are
  recorded, and it can be the basis of a referral.
- multi_layered: needs the consent of every person discussed; adopts or revises the
  support plan and decides to start or end support.
Facts from outside the meeting (who has consent, whether a case already has a plan)
are passed in by the application as plain values.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from tsunagu_events.contracts.common import ConsultationCategory, LegalBasis, Sealed
from tsunagu_events.contracts.referral import (
    ActionItemAssigned,
    ActionItemDone,
    AgendaItemAdded,
    AgendaItemKind,
    DecisionKind,
    MeetingDecisionMade,
    MeetingHeld,
    MeetingKind,
    MeetingScheduled,
    SupportDecided,
    SupportPlanDecided,
)
from tsunagu_events.registry import EventPayload

from tsunagu_referral.domain.errors import ConsentRequired, InvalidCommand, InvalidTransition, NotFound


class MeetingState(StrEnum):
    NEW = "new"
    SCHEDULED = "scheduled"
    HELD = "held"


KIND_LABELS_JA: dict[MeetingKind, str] = {
    MeetingKind.FOUR_PARTY: "四者連携会議",
    MeetingKind.SUPPORT_MEETING: "支援会議",
    MeetingKind.MULTI_LAYERED: "重層的支援会議",
}

DECISION_LABELS_JA: dict[DecisionKind, str] = {
    DecisionKind.DEVELOP_RESOURCE: "地域資源の開発",
    DecisionKind.ESCALATE_TO_BRANCH_OFFICE: "総合支所へ提起",
    DecisionKind.REFER: "専門機関へつなぐ",
    DecisionKind.KEEP_WATCHING: "見守り継続",
}

STATE_LABELS_JA: dict[MeetingState, str] = {
    MeetingState.NEW: "未作成",
    MeetingState.SCHEDULED: "開催予定",
    MeetingState.HELD: "開催済み",
}

# Minutes and titles travel to other services and into reports: they name cases by id, never
# by contact details. A phone number, postal code or e-mail address in them is refused.
PERSONAL_PATTERNS = (
    re.compile(r"(?<![A-Za-z0-9-])0\d{1,4}[-‐ー−(（ ]?\d{1,4}[-‐ー−)） ]?\d{3,4}"),
    re.compile(r"(?<![A-Za-z0-9-])〒?\s?\d{3}[-‐ー−]\d{4}(?![0-9])"),
    re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"),
)


def refuse_personal_data(field: str, text: str | None) -> None:
    """Refuse text that carries contact details (it must not leave the person's sealed records)."""
    if text and any(p.search(text) for p in PERSONAL_PATTERNS):
        raise InvalidCommand(
            field,
            "電話番号・郵便番号・メールアドレスなどの個人情報は記載できません",
            "no personal data here (phone numbers, postal codes, e-mail addresses)",
        )


REQUIRED_BASIS: dict[MeetingKind, LegalBasis] = {
    MeetingKind.FOUR_PARTY: LegalBasis.CONSENT,
    MeetingKind.SUPPORT_MEETING: LegalBasis.SUPPORT_MEETING_STATUTORY,
    MeetingKind.MULTI_LAYERED: LegalBasis.CONSENT,
}


@dataclass(frozen=True)
class ScheduleMeeting:
    meeting_id: str
    kind: MeetingKind
    scheduled_for: datetime
    member_agency_ids: Sequence[str]
    district_id: str | None = None


@dataclass(frozen=True)
class AddAgendaItem:
    item_id: str
    kind: AgendaItemKind
    raised_by_agency_id: str
    title: str
    raised_by_district_window: bool
    """The raising agency is one of the meeting district's windows (checked against reference data)."""
    categories: Sequence[ConsultationCategory] = ()
    gap_need: bool = False
    case_id: str | None = None
    person_id: str | None = None
    consultation_id: str | None = None
    person_has_consent: bool = False
    """For a case item naming a person: whether the consent view holds their consent."""
    sealed_title: Sealed | None = None
    """The title as it travels: sealed by the application (the person's key or the meeting's)."""


@dataclass(frozen=True)
class HoldMeeting:
    held_at: datetime
    attendee_agency_ids: Sequence[str]
    confidentiality_acknowledged: bool
    person_ids: Sequence[str] = ()
    minutes_summary: str | None = None
    persons_with_consent: Collection[str] = ()
    """Of the persons discussed, those whose consent the consent view holds."""
    sealed_minutes: Sealed | None = None
    """The minutes as they travel, sealed with the meeting's key."""


@dataclass(frozen=True)
class RecordDecision:
    decision_id: str
    kind: DecisionKind
    title: str
    decided_at: datetime
    item_id: str | None = None
    categories: Sequence[ConsultationCategory] = ()
    gap_need: bool = False
    branch_office_id: str | None = None
    referral_id: str | None = None
    sealed_title: Sealed | None = None
    """The text as it travels, sealed (see `Meeting.decision_title_is_public`)."""


@dataclass(frozen=True)
class AssignActionItem:
    action_id: str
    agency_id: str
    title: str
    due_on: date
    item_id: str | None = None
    sealed_title: Sealed | None = None
    assignee_is_member: bool = True
    """The agency is one of the meeting's member agencies (an action item is the meeting's own)."""


@dataclass(frozen=True)
class MarkActionItemDone:
    action_id: str
    done_at: datetime


@dataclass(frozen=True)
class DecideSupportPlan:
    case_id: str
    person_id: str
    revision: bool
    review_due: date
    decided_at: datetime
    plan_exists: bool
    """Whether the case already has a plan decided by a multi-layered support meeting."""
    goals: Sequence[Sealed] = ()


@dataclass(frozen=True)
class DecideSupport:
    case_id: str
    person_id: str
    decision: str
    decided_at: datetime


@dataclass
class AgendaItem:
    item_id: str
    kind: AgendaItemKind
    title: Sealed | None
    gap_need: bool
    categories: list[ConsultationCategory]
    person_id: str | None = None
    legacy_title: str | None = None
    """The plaintext title of an item recorded before titles were sealed (v1 events)."""


@dataclass
class ActionItem:
    action_id: str
    agency_id: str
    title: Sealed | None
    due_on: date
    done: bool = False
    legacy_title: str | None = None
    item_id: str | None = None


@dataclass
class Meeting:
    meeting_id: str
    state: MeetingState = MeetingState.NEW
    version: int = 0
    kind: MeetingKind | None = None
    district_id: str | None = None
    member_agency_ids: list[str] = field(default_factory=list)
    attendee_agency_ids: list[str] = field(default_factory=list)
    person_ids: list[str] = field(default_factory=list)
    legal_basis: LegalBasis | None = None
    agenda: dict[str, AgendaItem] = field(default_factory=dict)
    actions: dict[str, ActionItem] = field(default_factory=dict)
    decisions: list[str] = field(default_factory=list)
    minutes_summary: Sealed | None = None
    legacy_minutes_summary: str | None = None

    @classmethod
    def from_events(cls, meeting_id: str, events: Iterable[EventPayload]) -> Meeting:
        meeting = cls(meeting_id)
        for event in events:
            meeting.apply(event)
        return meeting

    # -- deciding -----------------------------------------------------------------

    def schedule(self, command: ScheduleMeeting) -> list[EventPayload]:
        if self.state is not MeetingState.NEW:
            raise self._refuse("schedule")
        if command.kind is MeetingKind.FOUR_PARTY and not command.district_id:
            raise InvalidCommand(
                "district_id", "四者連携会議には地区が必要です", "a four-party meeting needs a district"
            )
        return [
            MeetingScheduled(
                meeting_id=command.meeting_id,
                kind=command.kind,
                district_id=command.district_id,
                scheduled_for=command.scheduled_for,
                member_agency_ids=list(dict.fromkeys(command.member_agency_ids)),
            )
        ]

    def add_agenda_item(self, command: AddAgendaItem) -> list[EventPayload]:
        self._require_exists()
        if command.item_id in self.agenda:
            raise InvalidTransition(
                "この議題は登録済みです", "agenda item already added", current_state=self.state.value
            )
        if self.kind is MeetingKind.FOUR_PARTY and not command.raised_by_district_window:
            raise InvalidCommand(
                "raised_by_agency_id",
                "四者連携会議の議題は地区の4つの窓口から提起します",
                "four-party agenda items are raised by one of the district's four windows",
            )
        refuse_personal_data("title", command.title)
        assert self.kind is not None
        if command.person_id and REQUIRED_BASIS[self.kind] is LegalBasis.CONSENT and not command.person_has_consent:
            raise ConsentRequired(
                f"{KIND_LABELS_JA[self.kind]}で本人の同意なく個人を扱うことはできません",
                f"a {self.kind.value} meeting may discuss a person only with their consent",
                person_ids=[command.person_id],
            )
        if command.kind is AgendaItemKind.CASE and not (command.case_id or command.person_id):
            raise InvalidCommand(
                "case_id", "ケースの議題には case_id か person_id が必要です", "a case item names a case or person"
            )
        return [
            AgendaItemAdded(
                meeting_id=self.meeting_id,
                item_id=command.item_id,
                kind=command.kind,
                raised_by_agency_id=command.raised_by_agency_id,
                title=command.sealed_title,
                categories=list(command.categories),
                gap_need=command.gap_need,
                case_id=command.case_id,
                person_id=command.person_id,
                consultation_id=command.consultation_id,
            )
        ]

    def hold(self, command: HoldMeeting) -> list[EventPayload]:
        if self.state is not MeetingState.SCHEDULED:
            raise self._refuse("hold")
        assert self.kind is not None
        basis = REQUIRED_BASIS[self.kind]
        if self.kind is MeetingKind.SUPPORT_MEETING and not command.confidentiality_acknowledged:
            raise InvalidCommand(
                "confidentiality_acknowledged",
                "支援会議の構成員は守秘義務の確認が必要です",
                "support-meeting members must acknowledge their duty of confidentiality",
            )
        refuse_personal_data("minutes_summary", command.minutes_summary)
        persons = list(dict.fromkeys([*command.person_ids, *self.persons_on_agenda()]))
        if basis is LegalBasis.CONSENT:
            missing = [p for p in persons if p not in command.persons_with_consent]
            if missing:
                raise ConsentRequired(
                    f"{KIND_LABELS_JA[self.kind]}で本人の同意なく個人を扱うことはできません",
                    f"a {self.kind.value} meeting may discuss a person only with their consent",
                    person_ids=missing,
                )
        return [
            MeetingHeld(
                meeting_id=self.meeting_id,
                kind=self.kind,
                held_at=command.held_at,
                attendee_agency_ids=list(dict.fromkeys(command.attendee_agency_ids)),
                legal_basis=basis,
                confidentiality_acknowledged=command.confidentiality_acknowledged,
                person_ids=persons,
                minutes_summary=command.sealed_minutes,
            )
        ]

    def record_decision(self, command: RecordDecision) -> list[EventPayload]:
        if self.state is not MeetingState.HELD:
            raise self._refuse("decide")
        if command.decision_id in self.decisions:
            raise InvalidTransition(
                "この決定は記録済みです", "decision already recorded", current_state=self.state.value
            )
        refuse_personal_data("title", command.title)
        item = None
        if command.item_id is not None:
            item = self.agenda.get(command.item_id)
            if item is None:
                raise NotFound("議題が見つかりません", "no such agenda item", item_id=command.item_id)
        if command.kind is DecisionKind.ESCALATE_TO_BRANCH_OFFICE and not command.branch_office_id:
            raise InvalidCommand(
                "branch_office_id", "提起先の総合支所が必要です", "an escalation names the branch office"
            )
        if command.kind is DecisionKind.DEVELOP_RESOURCE and not self.district_id:
            raise InvalidCommand(
                "kind",
                "地域資源の開発は地区の会議で決定します",
                "resource development is decided by a district meeting",
            )
        categories = list(command.categories) or (item.categories if item else [])
        return [
            MeetingDecisionMade(
                meeting_id=self.meeting_id,
                decision_id=command.decision_id,
                item_id=command.item_id,
                kind=command.kind,
                district_id=self.district_id,
                title=command.title if self.decision_title_is_public(command.kind, command.item_id) else None,
                sealed_title=command.sealed_title,
                categories=categories,
                gap_need=command.gap_need or (item.gap_need if item else False),
                branch_office_id=command.branch_office_id,
                referral_id=command.referral_id,
                decided_at=command.decided_at,
            )
        ]

    def assign_action_item(self, command: AssignActionItem) -> list[EventPayload]:
        self._require_exists()
        refuse_personal_data("title", command.title)
        if command.action_id in self.actions:
            raise InvalidTransition(
                "この課題は登録済みです", "action item already assigned", current_state=self.state.value
            )
        if not command.assignee_is_member:
            raise InvalidCommand(
                "agency_id", "アクション項目は会議の参加機関に割り当てます", "assign action items to member agencies"
            )
        if command.item_id is not None and command.item_id not in self.agenda:
            raise NotFound("議題が見つかりません", "no such agenda item", item_id=command.item_id)
        return [
            ActionItemAssigned(
                meeting_id=self.meeting_id,
                action_id=command.action_id,
                agency_id=command.agency_id,
                item_id=command.item_id,
                title=command.sealed_title,
                due_on=command.due_on,
            )
        ]

    def mark_action_item_done(self, command: MarkActionItemDone) -> list[EventPayload]:
        action = self.actions.get(command.action_id)
        if action is None:
            raise NotFound("アクション項目が見つかりません", "no such action item", action_id=command.action_id)
        if action.done:
            raise InvalidTransition(
                "このアクション項目は完了済みです",
                "action item is already done",
                current_state="done",
                version=self.version,
            )
        return [ActionItemDone(meeting_id=self.meeting_id, action_id=command.action_id, done_at=command.done_at)]

    def decide_support_plan(self, command: DecideSupportPlan) -> list[EventPayload]:
        self._require_held_multi_layered(command.person_id)
        if command.revision and not command.plan_exists:
            raise InvalidTransition(
                "支援プランがまだないため見直しできません",
                "no plan to revise yet; adopt one first",
                current_state="no_plan",
            )
        if not command.revision and command.plan_exists:
            raise InvalidTransition(
                "支援プランは採択済みです（見直しとして決定してください）",
                "the case already has a plan; decide a revision",
                current_state="plan_adopted",
            )
        return [
            SupportPlanDecided(
                meeting_id=self.meeting_id,
                case_id=command.case_id,
                person_id=command.person_id,
                revision=command.revision,
                goals=list(command.goals),
                review_due=command.review_due,
                decided_at=command.decided_at,
            )
        ]

    def decide_support(self, command: DecideSupport) -> list[EventPayload]:
        self._require_held_multi_layered(command.person_id)
        if command.decision not in ("start", "end"):
            raise InvalidCommand("decision", "start か end を指定してください", "decision is start or end")
        return [
            SupportDecided(
                meeting_id=self.meeting_id,
                case_id=command.case_id,
                person_id=command.person_id,
                decision=command.decision,
                decided_at=command.decided_at,
            )
        ]

    def persons_on_agenda(self) -> list[str]:
        return [i.person_id for i in self.agenda.values() if i.person_id]

    def person_of_item(self, item_id: str | None) -> str | None:
        """The person an agenda item is about (whose key seals text about it), if any."""
        item = self.agenda.get(item_id) if item_id else None
        return item.person_id if item else None

    def members(self) -> list[str]:
        """Invited agencies and those a member recorded as attending."""
        return list(dict.fromkeys([*self.member_agency_ids, *self.attendee_agency_ids]))

    def decision_title_is_public(self, kind: DecisionKind, item_id: str | None) -> bool:
        """Only a district's develop_resource decision about no person keeps a public title:
        resources turns it into a district issue. Every other decision's text is sealed."""
        return kind is DecisionKind.DEVELOP_RESOURCE and self.person_of_item(item_id) is None

    def _require_held_multi_layered(self, person_id: str) -> None:
        if self.kind is not MeetingKind.MULTI_LAYERED:
            raise InvalidTransition(
                "支援プランと支援の開始・終了は重層的支援会議で決定します",
                "only a multi-layered support meeting decides plans and support",
                current_state=self.state.value,
                kind=self.kind.value if self.kind else None,
            )
        if self.state is not MeetingState.HELD:
            raise self._refuse("decide")
        if person_id not in self.person_ids:
            raise ConsentRequired(
                "同意を得て会議で扱った本人についてのみ決定できます",
                "decide only for a person discussed at the meeting with their consent",
                person_id=person_id,
            )

    def _require_exists(self) -> None:
        if self.state is MeetingState.NEW:
            raise NotFound("会議が見つかりません", "no such meeting", meeting_id=self.meeting_id)

    def _refuse(self, action: str) -> InvalidTransition:
        return InvalidTransition(
            f"この会議は「{STATE_LABELS_JA[self.state]}」のため、この操作はできません",
            f"cannot {action} a meeting that is {self.state.value}",
            current_state=self.state.value,
            version=self.version,
        )

    # -- applying -----------------------------------------------------------------

    def apply(self, event: EventPayload) -> None:
        self.version += 1
        if isinstance(event, MeetingScheduled):
            self.state = MeetingState.SCHEDULED
            self.kind = event.kind
            self.district_id = event.district_id
            self.member_agency_ids = list(event.member_agency_ids)
        elif isinstance(event, AgendaItemAdded):
            self.agenda[event.item_id] = AgendaItem(
                event.item_id,
                event.kind,
                event.title,
                event.gap_need,
                list(event.categories),
                event.person_id,
                event.legacy_title,
            )
        elif isinstance(event, MeetingHeld):
            self.state = MeetingState.HELD
            self.attendee_agency_ids = list(event.attendee_agency_ids)
            self.person_ids = list(event.person_ids)
            self.legal_basis = event.legal_basis
            self.minutes_summary = event.minutes_summary
            self.legacy_minutes_summary = event.legacy_minutes_summary
        elif isinstance(event, MeetingDecisionMade):
            self.decisions.append(event.decision_id)
        elif isinstance(event, ActionItemAssigned):
            self.actions[event.action_id] = ActionItem(
                event.action_id,
                event.agency_id,
                event.title,
                event.due_on,
                legacy_title=event.legacy_title,
                item_id=event.item_id,
            )
        elif isinstance(event, ActionItemDone) and event.action_id in self.actions:
            self.actions[event.action_id].done = True
