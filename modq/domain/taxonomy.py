"""The category taxonomy: "macro.leaf" labels (e.g. "electronics.phone").

The model's labels are the taxonomy; a near miss is a wrong leaf within the right macro
category, which the policy treats more gently than a wrong macro category.
"""

from __future__ import annotations

from collections.abc import Sequence


def macro(category: str) -> str:
    """ "electronics.phone" → "electronics"; a label without a dot is its own macro category."""
    return category.split(".", 1)[0]


def macros(labels: Sequence[str]) -> list[str]:
    """The macro category of each label, in order."""
    return [macro(label) for label in labels]
