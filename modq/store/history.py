"""Verdict history across versions: how decisions changed from one model or policy to another.

`modq verdicts diff` reads it after a backfill. The comparison runs in SQL over `verdicts`,
which keeps every row (the current one and the older ones kept for audit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modq.errors import UsageError
from modq.store.database import unavailable
from modq.store.schema import verdicts


@dataclass(frozen=True)
class Side:
    """The verdicts on one side of a comparison: made by this model and/or this policy."""

    model_version: str | None = None
    policy_version: str | None = None

    def where(self) -> list[sa.ColumnElement[bool]]:
        conds: list[sa.ColumnElement[bool]] = []
        if self.model_version is not None:
            conds.append(verdicts.c.model_version == self.model_version)
        if self.policy_version is not None:
            conds.append(verdicts.c.policy_version == self.policy_version)
        if not conds:
            raise UsageError("a side needs a model version, a policy version or both")
        return conds


def diff_verdicts(engine: Engine, old: Side, new: Side) -> list[dict[str, Any]]:
    """Decision transitions per declared category, for the listings with a verdict on both
    sides for the same listing version (the latest version they have in common; where a side
    holds several rows for it, its newest).

    Rows `{"category", "from", "to", "listings"}`, ordered by category, then decisions.
    """
    a = sa.select(*_columns()).where(*old.where()).cte("old_side")
    b = sa.select(*_columns()).where(*new.where()).cte("new_side")
    pairs = (
        sa.select(
            b.c.declared_category.label("category"),
            a.c.decision.label("from_decision"),
            b.c.decision.label("to_decision"),
            sa.func.row_number()
            .over(
                partition_by=a.c.listing_id,
                order_by=(a.c.listing_version.desc(), a.c.id.desc(), b.c.id.desc()),
            )
            .label("rank"),
        )
        .select_from(
            a.join(
                b,
                sa.and_(
                    a.c.listing_id == b.c.listing_id, a.c.listing_version == b.c.listing_version
                ),
            )
        )
        .subquery()
    )
    query = (
        sa.select(pairs.c.category, pairs.c.from_decision, pairs.c.to_decision, sa.func.count())
        .where(pairs.c.rank == 1)
        .group_by(pairs.c.category, pairs.c.from_decision, pairs.c.to_decision)
        .order_by(pairs.c.category, pairs.c.from_decision, pairs.c.to_decision)
    )
    with unavailable("comparing verdicts"), engine.connect() as conn:
        return [
            {"category": r[0], "from": r[1], "to": r[2], "listings": int(r[3])}
            for r in conn.execute(query)
        ]


def _columns() -> tuple[sa.ColumnElement[Any], ...]:
    return (
        verdicts.c.id,
        verdicts.c.listing_id,
        verdicts.c.listing_version,
        verdicts.c.declared_category,
        verdicts.c.decision,
    )
