"""Human decisions as training labels, read in SQL for `modq reviews export`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modq.domain.reasons import read_all
from modq.store.database import unavailable
from modq.store.schema import listing_decisions, listings, reviews, verdicts


def settled_since(engine: Engine, since: datetime) -> list[dict[str, Any]]:
    """Each listing's final human decision made at or after `since` (the latest one not taken
    back: undo keeps `listing_decisions` so), with the moderator's note and the photos they
    marked as not showing the reason, the listing's photos and the verdict it answered,
    oldest first."""
    ld = listing_decisions.c
    query = (
        sa.select(
            ld.listing_id,
            ld.review_id,
            ld.final_decision,
            ld.final_category,
            ld.reason_code,
            reviews.c.note,
            reviews.c.not_showing,
            ld.decided_by,
            ld.decided_at,
            listings.c.declared_category,
            listings.c.images,
            verdicts.c.reasons,
            verdicts.c.model_version,
        )
        .join(listings, listings.c.listing_id == ld.listing_id)
        .join(reviews, reviews.c.id == ld.review_id)
        .join(verdicts, verdicts.c.id == reviews.c.verdict_id)
        .where(ld.decided_at >= since)
        .order_by(ld.decided_at, ld.listing_id)
    )
    with unavailable("reading human labels"), engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
    for row in rows:  # the export reads each reason's photo and label
        row["reasons"] = read_all(row["reasons"])
    return rows
