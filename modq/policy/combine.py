"""How the halves of the policy combine: the most severe decision wins."""

from __future__ import annotations

from modq.domain.verdicts import Decision

SEVERITY: dict[Decision, int] = {"approve": 0, "review": 1, "reject": 2}


def worst(a: Decision, b: Decision) -> Decision:
    return a if SEVERITY[a] >= SEVERITY[b] else b
