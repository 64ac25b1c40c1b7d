"""Human review vocabulary: queues, routing of review verdicts by reason, decisions.

Pure data and functions (no SQLAlchemy, no web framework): the store uses them to file a
`review` verdict into a queue with a severity, the console to label queues and decisions,
and the label export to know which decisions become training labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

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

# Reason code -> (queue, severity). A job's queue is that of its most severe reason.
_ROUTES: dict[str, tuple[str, int]] = {
    "prohibited_item": ("banned", 100),
    "banned_image": ("banned", 100),
    "nudity": ("banned", 90),
    "contact_details": ("banned", 60),
    "duplicate_photo": ("duplicates", 40),
    "category_mismatch": ("category", 30),
    "category_near_miss": ("category", 20),
    "image_unreadable": ("unreadable", 10),
    "no_readable_photos": ("unreadable", 15),
}
_UNREADABLE_PREFIXES = ("image_", "fetch_", "decode_", "photo_")
BANNED_CODES: frozenset[str] = frozenset(c for c, (q, _) in _ROUTES.items() if q == "banned")

# What a moderator may give as the reason of a reject (the policy's reason codes).
REJECT_REASONS: tuple[str, ...] = (
    "prohibited_item",
    "banned_image",
    "nudity",
    "contact_details",
    "duplicate_photo",
    "category_mismatch",
    "image_unreadable",
    "misleading_listing",
)


def reason_code(reason: str) -> str:
    """The machine-readable code at the head of a reason ("nudity: photo 0: ..." -> "nudity")."""
    return reason.split(":", 1)[0].strip()


def route(code: str) -> tuple[str, int]:
    """(queue, severity) for one reason code; unknown codes go to "other" at severity 5."""
    if code in _ROUTES:
        return _ROUTES[code]
    if code.startswith(_UNREADABLE_PREFIXES):
        return "unreadable", 10
    return "other", 5


def route_reasons(reasons: Sequence[str]) -> tuple[str, int]:
    """(queue, severity) of a review verdict: the most severe of its reasons."""
    routes = [route(reason_code(r)) for r in reasons] or [("other", 5)]
    return max(routes, key=lambda qs: qs[1])


def has_banned_content(reasons: Sequence[str]) -> bool:
    """Whether the console should blur the photos until the moderator reveals them."""
    return any(reason_code(r) in BANNED_CODES for r in reasons)


def is_overturn(decision: str) -> bool:
    """A human approve of a listing the machine flagged overturns the machine."""
    return decision == "approve"
