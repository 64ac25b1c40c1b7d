"""Helpers for the console tests: review verdicts on real photos, saved through the store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import Engine

from modq.domain.events import ListingEvent
from modq.domain.verdicts import PhotoResult, Verdict
from modq.store.database import make_engine, migrate
from modq.store.verdicts import save_batch
from tests.conftest import create_database, drop_database

MODEL = "test-model-1"
POLICY = "test-policy-1"


def review_listing(
    engine: Engine,
    listing_id: str,
    reasons: list[str],
    photos: list[Path],
    *,
    seller: str = "seller-1",
    category: str = "fashion.dress",
    top: list[tuple[str, float]] | None = None,
    decision: str = "review",
) -> None:
    """Save one listing and its verdict (by default `review` with `reasons`)."""
    refs = [str(p) for p in photos]
    top = top or [("electronics.laptop", 0.7), ("fashion.dress", 0.2), ("home.chair", 0.1)]
    event = ListingEvent(
        listing_id=listing_id,
        declared_category=category,
        images=refs,
        seller_id=seller,
        title=f"listing {listing_id}",
    )
    verdict = Verdict(
        listing_id=listing_id,
        listing_version=1,
        declared_category=category,
        decision=decision,  # type: ignore[arg-type]
        reasons=reasons,
        suggested=top,
        best_photo=0,
        scores=dict(top),
        photos=[PhotoResult(index=i, ref=r, top=top) for i, r in enumerate(refs)],
        model_version=MODEL,
        policy_version=POLICY,
    )
    save_batch(engine, [event], [verdict])


@contextmanager
def migrated_engine(backend: str, folder: Path, prefix: str) -> Iterator[Engine]:
    """A migrated database of its own: PostgreSQL, or the SQLite file the demo falls back to."""
    sqlite = backend == "sqlite"
    url = f"sqlite:///{folder / f'{prefix}.db'}" if sqlite else create_database(prefix)
    migrate(url)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        if not sqlite:
            drop_database(url)
