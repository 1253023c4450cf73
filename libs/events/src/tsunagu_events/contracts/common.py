"""Value types shared by several services' contracts.

Enumerations carry English identifiers (what code and agencies send); Japanese
labels for staff-facing output live beside them in `LABELS_JA`.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

JST = ZoneInfo("Asia/Tokyo")

PersonId = str
"""Pseudonymous person id minted by intake (`person-<uuid>`); never derived from personal data."""


class Sealed(BaseModel):
    """Personal data encrypted with a key of one person (AES-256-GCM).

    Each service keeps its own per-person keys apart from its events; when a person
    is erased, the keys are destroyed and every copy of this value, in any store,
    topic or backup, becomes unreadable while the event itself keeps its shape.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kid: str = Field(min_length=1, max_length=200, description="Key id: keyring/person id/key number.")
    nonce: str = Field(min_length=16, max_length=24, description="Base64 96-bit AES-GCM nonce.")
    ct: str = Field(min_length=1, max_length=200_000, description="Base64 ciphertext with the GCM tag.")


class ConsultationCategory(StrEnum):
    ELDERLY_CARE = "elderly_care"
    DISABILITY = "disability"
    CHILD_REARING = "child_rearing"
    POVERTY = "poverty"
    HEALTH = "health"
    HOUSING = "housing"
    WORK = "work"
    WITHDRAWAL = "withdrawal"
    EIGHT_ZERO_FIVE_ZERO = "8050"
    DOUBLE_CARE = "double_care"
    ISOLATION = "isolation"
    DEMENTIA = "dementia"
    ABUSE_CONCERN = "abuse_concern"
    OTHER = "other"


CATEGORY_LABELS_JA: dict[ConsultationCategory, str] = {
    ConsultationCategory.ELDERLY_CARE: "高齢者介護",
    ConsultationCategory.DISABILITY: "障害",
    ConsultationCategory.CHILD_REARING: "子育て",
    ConsultationCategory.POVERTY: "生活困窮",
    ConsultationCategory.HEALTH: "健康",
    ConsultationCategory.HOUSING: "住まい",
    ConsultationCategory.WORK: "就労",
    ConsultationCategory.WITHDRAWAL: "ひきこもり",
    ConsultationCategory.EIGHT_ZERO_FIVE_ZERO: "8050",
    ConsultationCategory.DOUBLE_CARE: "ダブルケア",
    ConsultationCategory.ISOLATION: "社会的孤立",
    ConsultationCategory.DEMENTIA: "認知症",
    ConsultationCategory.ABUSE_CONCERN: "虐待の疑い",
    ConsultationCategory.OTHER: "その他",
}


class LegalBasis(StrEnum):
    """Why information about a person may be shared."""

    CONSENT = "consent"
    SUPPORT_MEETING_STATUTORY = "support_meeting_statutory"
    """支援会議 (社会福祉法第106条の6): members share under a duty of confidentiality, without consent."""


LEGAL_BASIS_LABELS_JA = {
    LegalBasis.CONSENT: "本人同意",
    LegalBasis.SUPPORT_MEETING_STATUTORY: "支援会議（社会福祉法第106条の6・守秘義務）",
}


def fiscal_year_of(moment: datetime | date) -> int:
    """Japanese fiscal year (1 April – 31 March), judged in Japan time."""
    day = moment.astimezone(JST).date() if isinstance(moment, datetime) else moment
    return day.year if day.month >= 4 else day.year - 1


def fiscal_year_label_ja(year: int) -> str:
    """令和3年度, 平成28年度; fiscal 2019 is 令和元年度 (the era changed on 1 May 2019)."""
    if year >= 2019:
        n = year - 2018
        return f"令和{'元' if n == 1 else n}年度"
    if year >= 1989:
        n = year - 1988
        return f"平成{'元' if n == 1 else n}年度"
    n = year - 1925
    return f"昭和{'元' if n == 1 else n}年度"
