"""Human review vocabulary: queues, routing of review verdicts by reason, decisions.

Pure data and functions (no SQLAlchemy, no web framework): the store uses them to file a
`review` verdict into a queue with a severity, the console to label queues and decisions,
and the label export to know which decisions become training labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from modq.domain.reasons import CODES, Reason, info

HumanDecision = Literal["approve", "reject", "recategorise", "escalate", "skip"]
HUMAN_DECISIONS: tuple[str, ...] = ("approve", "reject", "recategorise", "escalate", "skip")
# Decisions that settle a listing (escalate and skip leave it in a queue).
FINAL_DECISIONS: tuple[str, ...] = ("approve", "reject", "recategorise")
ROLES: tuple[str, ...] = ("moderator", "lead", "admin")

# Queue name -> title, in the order the home page lists them.
QUEUES: dict[str, str] = {
    "banned": "Banned content",
    "category": "Category mismatch",
    "unreadable": "Unreadable photos",
    "duplicates": "Duplicates",
    "other": "Other",
    "escalated": "Escalated (leads)",
}
# Only leads and admins may claim from these queues.
LEAD_QUEUES: frozenset[str] = frozenset({"escalated"})

# The banned-content codes (the console blurs their photos), from the one list of codes.
BANNED_CODES: frozenset[str] = frozenset(c for c, i in CODES.items() if i.queue == "banned")
# What a moderator may give as the reason of a reject.
REJECT_REASONS: tuple[str, ...] = tuple(c for c, i in CODES.items() if i.rejectable)

AnyReason = str | Mapping[str, Any] | Reason


def route(code: str) -> tuple[str, int]:
    """(queue, severity) for one reason code; unknown codes go to "other" at severity 5."""
    found = info(code)
    return found.queue, found.severity


def route_reasons(reasons: Sequence[AnyReason]) -> tuple[str, int]:
    """(queue, severity) of a review verdict: the most severe of its reasons."""
    routes = [route(Reason.read(r).code) for r in reasons] or [route("")]
    return max(routes, key=lambda qs: qs[1])


def has_banned_content(reasons: Sequence[AnyReason]) -> bool:
    """Whether the console should blur the photos until the moderator reveals them."""
    return any(Reason.read(r).code in BANNED_CODES for r in reasons)


def is_overturn(decision: str) -> bool:
    """A human approve of a listing the machine flagged overturns the machine."""
    return decision == "approve"
