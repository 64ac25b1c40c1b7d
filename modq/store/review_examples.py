"""The policy page's example photos, in SQL: a lead marks a photo of a decided listing as an
example of a reason; the page shows the latest few per reason (append-only rows: choosing
another example adds one, the older ones drop off the page but stay in the table)."""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modq.domain.reasons import CODES
from modq.errors import ReviewError
from modq.store.database import unavailable
from modq.store.schema import listing_decisions, listings, policy_examples

PER_REASON = 4


def choose_example(
    engine: Engine, lead: str, listing_id: str, photo_index: int, reason_code: str
) -> None:
    if reason_code not in CODES:
        raise ReviewError(f"no reason {reason_code!r}")
    query = (
        sa.select(listings.c.images)
        .join(listing_decisions, listing_decisions.c.listing_id == listings.c.listing_id)
        .where(listings.c.listing_id == listing_id)
    )
    with unavailable("choosing a policy example"), engine.begin() as conn:
        images = conn.execute(query).scalar()
        if images is None:
            raise ReviewError("only a photo of a decided listing can be an example")
        if not 0 <= photo_index < len(images):
            raise ReviewError("no such photo")
        conn.execute(
            sa.insert(policy_examples).values(
                reason_code=reason_code,
                listing_id=listing_id,
                photo_index=photo_index,
                chosen_by=lead,
            )
        )


def examples_by_reason(
    engine: Engine, per_reason: int = PER_REASON
) -> dict[str, list[tuple[str, int]]]:
    """Per reason code, the latest `per_reason` examples as (listing id, photo index)."""
    e = policy_examples.c
    # A photo chosen again for the same reason shows once, at its latest choice.
    latest = (
        sa.select(e.reason_code, e.listing_id, e.photo_index, sa.func.max(e.id).label("last"))
        .group_by(e.reason_code, e.listing_id, e.photo_index)
        .subquery()
    )
    rank = sa.func.row_number().over(
        partition_by=latest.c.reason_code, order_by=latest.c.last.desc()
    )
    inner = sa.select(latest, rank.label("rank")).subquery()
    query = (
        sa.select(inner.c.reason_code, inner.c.listing_id, inner.c.photo_index)
        .where(inner.c.rank <= per_reason)
        .order_by(inner.c.reason_code, inner.c.rank)
    )
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    with unavailable("reading policy examples"), engine.connect() as conn:
        for code, listing_id, index in conn.execute(query):
            out[code].append((listing_id, int(index)))
    return dict(out)
