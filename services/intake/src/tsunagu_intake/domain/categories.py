"""Which domain (制度の分野) each consultation category belongs to.

The two derived flags of a consultation follow from it and are never typed by
staff: *expanded consultation* (相談拡充) is a comprehensive support center taking
a topic outside elderly care, and *compound need* (複合化) is a consultation whose
topics span two or more domains. 8050 and double care are compound by definition
(two generations' needs at once). "other" names no domain, so it never makes a
need compound on its own.
"""

from __future__ import annotations

from collections.abc import Iterable

from tsunagu_events.contracts.common import ConsultationCategory as C

COMPREHENSIVE_SUPPORT_CENTER = "comprehensive_support_center"

ELDERLY = frozenset({C.ELDERLY_CARE, C.DEMENTIA})
COMPOUND_BY_DEFINITION = frozenset({C.EIGHT_ZERO_FIVE_ZERO, C.DOUBLE_CARE})

DOMAIN_OF: dict[C, str | None] = {
    C.ELDERLY_CARE: "elderly",
    C.DEMENTIA: "elderly",
    C.DISABILITY: "disability",
    C.CHILD_REARING: "children",
    C.POVERTY: "livelihood",
    C.WORK: "livelihood",
    C.HOUSING: "housing",
    C.HEALTH: "health",
    C.WITHDRAWAL: "social_participation",
    C.ISOLATION: "social_participation",
    C.ABUSE_CONCERN: "safeguarding",
    C.EIGHT_ZERO_FIVE_ZERO: "multi_generation",
    C.DOUBLE_CARE: "multi_generation",
    C.OTHER: None,
}


def domains(categories: Iterable[C]) -> set[str]:
    return {d for c in categories if (d := DOMAIN_OF[c]) is not None}


def is_expanded(window_type: str, categories: Iterable[C]) -> bool:
    return window_type == COMPREHENSIVE_SUPPORT_CENTER and any(c not in ELDERLY for c in categories)


def is_compound(categories: Iterable[C]) -> bool:
    items = set(categories)
    return bool(items & COMPOUND_BY_DEFINITION) or len(domains(items)) >= 2
