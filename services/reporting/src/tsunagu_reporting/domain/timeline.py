"""The companion-support timeline (伴走記録): what an event says about a person or case.

Reporting holds no keys. A `Sealed` value can be opened only by the service that
sealed it, so the timeline keeps the event's shape and replaces each sealed field
with a protected marker naming where it can be read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PROTECTED_LABEL_JA = "保護された情報"
SEALED_KEYS = frozenset({"kid", "nonce", "ct"})

EVENT_LABELS_JA: dict[str, str] = {
    "ConsultationReceived": "相談受付",
    "ConsultationReclassified": "相談分類の訂正",
    "ConsultationOutcomeChanged": "相談結果の変更",
    "GapNeedMarked": "狭間のニーズ",
    "PersonRegistered": "本人登録",
    "PersonDetailsCorrected": "本人情報の訂正",
    "PersonErased": "本人情報の消去",
    "HouseholdLinked": "世帯の関連付け",
    "ConsentGiven": "同意",
    "ConsentWithdrawn": "同意の撤回",
    "SharingBasisRecorded": "情報共有の根拠",
    "CaseOpened": "伴走支援の開始",
    "LeadAgencyHandedOver": "主担当機関の交代",
    "ApproachChanged": "支援アプローチの変更",
    "SupportPlanAdopted": "支援プラン",
    "ContactRecorded": "関わりの記録",
    "CaseReviewed": "ケースの見直し",
    "CaseClosed": "支援の終結",
    "CaseReopened": "支援の再開",
    "ReferralRequested": "つなぎの依頼",
    "ReferralAccepted": "つなぎの受理",
    "ReferralDeclined": "つなぎの辞退",
    "ReferralWithdrawn": "つなぎの取下げ",
    "ReferralCompleted": "つなぎの完了",
    "ReferralOverdue": "つなぎの期限超過",
    "AgendaItemAdded": "会議の議題",
    "MeetingHeld": "会議の開催",
    "SupportPlanDecided": "会議によるプラン決定",
    "SupportDecided": "会議による支援の開始・終了",
    "ParticipationStarted": "参加支援の開始",
    "AttendanceRecorded": "参加の記録",
    "ParticipationEnded": "参加支援の終了",
}


def service_of(event_type: str) -> str:
    """tsunagu.intake.CaseOpened → intake."""
    parts = event_type.split(".")
    return parts[1] if len(parts) >= 3 else "unknown"


def short_type(event_type: str) -> str:
    return event_type.rsplit(".", 1)[-1]


def protected_marker(service: str) -> dict[str, Any]:
    return {
        "protected": True,
        "label_ja": PROTECTED_LABEL_JA,
        "readable_at": service,
        "how_to_read": f"{service} サービスで閲覧権限のある職員のみ閲覧できます"
        f" (readable only in the {service} service)",
    }


def redact(value: Any, service: str) -> Any:
    """The event's data with every sealed value replaced by a protected marker."""
    if isinstance(value, Mapping):
        if set(value) >= SEALED_KEYS and len(value) == len(SEALED_KEYS):
            return protected_marker(service)
        return {k: redact(v, service) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, service) for v in value]
    return value


MEETING_TEXT_EVENTS = frozenset({"AgendaItemAdded", "MeetingHeld", "MeetingDecisionMade", "ActionItemAssigned"})
MEETING_TEXT_FIELDS = ("title", "legacy_title", "sealed_title", "minutes_summary", "legacy_minutes_summary")


def without_meeting_text(event_type: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A meeting event's data with its free text (titles, minutes) replaced by a protected marker.

    Staff write names, addresses and diagnoses in it; events published before it was sealed
    carry it in plaintext, and even a public decision title is not reporting's to keep. The
    timeline keeps the event's kind, agencies and ids; the text is read in referral by members.
    """
    if not event_type.startswith("tsunagu.referral.") or short_type(event_type) not in MEETING_TEXT_EVENTS:
        return dict(data)
    return {k: (protected_marker("referral") if k in MEETING_TEXT_FIELDS and v else v) for k, v in data.items()}


AGENCY_FIELDS = (
    "agency_id",
    "window_id",
    "lead_agency_id",
    "to_agency_id",
    "recorded_by_agency",
    "from_agency_id",
    "raised_by_agency_id",
)


def agency_of(data: Mapping[str, Any], actor_agency: str | None) -> str | None:
    """The agency that did it: the envelope's actor, else the payload's own agency field."""
    if actor_agency:
        return actor_agency
    for name in AGENCY_FIELDS:
        if isinstance(data.get(name), str):
            return str(data[name])
    return None


def persons_in(data: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    if isinstance(data.get("person_id"), str):
        found.append(str(data["person_id"]))
    for person in data.get("person_ids") or []:
        if isinstance(person, str) and person not in found:
            found.append(person)
    return found


@dataclass(frozen=True)
class Grant:
    """An agency may read a person's timeline: because it served them, or by consent."""

    agency_id: str
    basis: str
    reference: str


def grants_of(event_type: str, data: Mapping[str, Any], district_windows: Sequence[str]) -> list[Grant]:
    """Which agencies this event entitles to the person's timeline.

    Serving the person (the window consulted, the lead agency, referral parties,
    contacts, statutory support-meeting attendees) grants it; consent grants it to
    the agencies consented to until withdrawn (handled by the caller via the reference).
    """
    kind = short_type(event_type)
    agencies: list[tuple[str, str]] = []
    if kind == "ConsultationReceived":
        agencies = [(str(data["window_id"]), "served")]
    elif kind == "CaseOpened":
        agencies = [(str(data["lead_agency_id"]), "served")]
    elif kind == "LeadAgencyHandedOver":
        agencies = [(str(data["to_agency_id"]), "served")]
    elif kind == "ContactRecorded":
        agencies = [(str(data["agency_id"]), "served")]
    elif kind == "ReferralRequested":
        agencies = [(str(data["from_agency_id"]), "served"), (str(data["to_agency_id"]), "served")]
    elif kind == "ReferralAccepted":
        agencies = [(str(data["to_agency_id"]), "served")]
    elif kind == "MeetingHeld" and data.get("legal_basis") == "support_meeting_statutory":
        agencies = [(str(a), "support_meeting") for a in data.get("attendee_agency_ids") or []]
    elif kind == "SharingBasisRecorded":
        agencies = [(str(a), "statutory") for a in data.get("agency_ids") or []]
    elif kind == "ConsentGiven":
        named = [str(a) for a in data.get("agency_ids") or []]
        if data.get("scope") == "four_windows":
            named += list(district_windows)
        agencies = [(a, "consent") for a in named]
    reference = str(data.get("consent_id") or data.get("referral_id") or data.get("meeting_id") or "")
    return [Grant(a, basis, reference if basis == "consent" else "") for a, basis in agencies]


@dataclass(frozen=True)
class CaseState:
    case_id: str
    person_id: str | None
    status: str
    lead_agency_id: str | None
    approach: str | None
    plan_version: int
    next_review_due: str | None
    contacts: int
    open_referrals: list[str]
    events: int


STATUS_LABELS_JA = {"none": "記録なし", "open": "支援中", "closed": "終結"}


def fold_case(case_id: str, entries: Sequence[tuple[str, Mapping[str, Any]]]) -> CaseState:
    """The case as the given (type, data) entries, in order, leave it."""
    person: str | None = None
    status = "none"
    lead: str | None = None
    approach: str | None = None
    plan = 0
    review: str | None = None
    contacts = 0
    referrals: dict[str, bool] = {}
    for event_type, data in entries:
        kind = short_type(event_type)
        if kind == "CaseOpened":
            status, lead, approach = "open", data.get("lead_agency_id"), data.get("approach")
            person = data.get("person_id")
        elif kind == "LeadAgencyHandedOver":
            lead = data.get("to_agency_id")
        elif kind == "ApproachChanged":
            approach = data.get("approach")
        elif kind == "SupportPlanAdopted":
            plan = max(plan, int(data.get("plan_version") or 0))
            review = data.get("review_due")
        elif kind == "SupportPlanDecided":
            review = data.get("review_due")
        elif kind == "CaseReviewed":
            review = data.get("next_review_due")
        elif kind == "ContactRecorded":
            contacts += 1
        elif kind == "CaseClosed":
            status = "closed"
        elif kind == "CaseReopened":
            status = "open"
        elif kind == "ReferralRequested":
            referrals[str(data["referral_id"])] = True
        elif kind in {"ReferralCompleted", "ReferralDeclined", "ReferralWithdrawn"}:
            referrals[str(data["referral_id"])] = False
    return CaseState(
        case_id,
        person,
        status,
        lead,
        approach,
        plan,
        review,
        contacts,
        sorted(r for r, still_open in referrals.items() if still_open),
        len(entries),
    )
