"""0010_structured_reasons on a database holding verdicts written before it: every legacy
reason string becomes the object the policy writes today, the code filter finds the converted
rows, and a downgrade gives the sentences back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from modq.domain.reasons import Reason
from modq.store.database import downgrade, migrate
from modq.store.queries import reason_code_condition
from modq.store.schema import verdicts
from tests.conftest import create_database, drop_database

# What the policy wrote before 0010, one verdict per list (the last one: no reasons at all).
OLD_ROWS = [
    ["nudity: photo 0: nudity.nsfw 0.910 >= reject threshold 0.9"],
    [
        "image_unreadable: photo 1: not an image: cannot identify image file",
        "category_mismatch: predicted electronics.phone (0.93), declared fashion.dress (0.01)",
    ],
    [
        "banned_image: bank CSAI: photo 0: PDQ distance 12 <= 31 (score 0.953 >= reject 0.88): "
        "content 42 (note: seen 2026-11)",
        "duplicate_photo: photo 2: duplicate.other_seller 1.000 >= review threshold 0.5",
    ],
    ["no_readable_photos: nothing to classify"],
    [],
]


@pytest.fixture(params=["postgresql", "sqlite"])
def old_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    url = create_database("modq_test_reasons")
    yield url
    drop_database(url)


def _insert_old_rows(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for i, reasons in enumerate(OLD_ROWS):
            listing = f"L{i}"
            conn.execute(
                sa.text(
                    "INSERT INTO listings (listing_id, listing_version, declared_category, "
                    "images, created_at) VALUES (:id, 1, 'fashion.dress', '[]', :now)"
                ),
                {"id": listing, "now": "2026-12-01T00:00:00+00:00"},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO verdicts (listing_id, listing_version, model_version, "
                    "policy_version, declared_category, decision, reasons, suggested, scores, "
                    "photos, timings) VALUES (:id, 1, 'm', 'p', 'fashion.dress', 'review', "
                    ":reasons, '[]', '{}', '[]', '{}')"
                ),
                {"id": listing, "reasons": json.dumps(reasons)},
            )


def _stored(engine: sa.Engine) -> list[list[object]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(verdicts.c.reasons).order_by(verdicts.c.listing_id))
        return [list(r[0]) for r in rows]


def _with_code(engine: sa.Engine, code: str) -> list[str]:
    query = sa.select(verdicts.c.listing_id).where(reason_code_condition(code))
    with engine.connect() as conn:
        return sorted(r[0] for r in conn.execute(query.order_by(verdicts.c.listing_id)))


def test_old_reason_strings_become_objects_and_back(old_url: str) -> None:
    migrate(old_url, "0009_hash_watermarks")
    engine = sa.create_engine(old_url)
    try:
        _insert_old_rows(engine)
        migrate(old_url)
        stored = _stored(engine)
        assert all(isinstance(r, dict) for rows in stored for r in rows), stored
        assert stored[0] == [
            {"code": "nudity", "photo": 0, "label": "nudity.nsfw", "score": 0.91,
             "threshold": 0.9, "action": "reject"}
        ]  # fmt: skip
        assert stored[1][1] == {
            "code": "category_mismatch",
            "label": "electronics.phone",
            "score": 0.93,
            "detail": "declared fashion.dress (0.01)",
        }
        bank = Reason.read(stored[2][0])
        assert (bank.code, bank.photo, bank.label, bank.score, bank.action, bank.threshold) == (
            "banned_image", 0, "banks.CSAI", 0.953, "reject", 0.88
        )  # fmt: skip
        assert bank.detail == "PDQ distance 12 <= 31: content 42 (note: seen 2026-11)"
        assert stored[4] == []
        # The same sentences, read from the objects (category and detector reasons unchanged).
        for old, new in zip(OLD_ROWS[:2] + OLD_ROWS[3:], stored[:2] + stored[3:], strict=True):
            assert [Reason.read(r).text() for r in new] == old

        assert _with_code(engine, "nudity") == ["L0"]
        assert _with_code(engine, "duplicate_photo") == ["L2"]
        assert _with_code(engine, "image_unreadable") == ["L1"]
        assert _with_code(engine, "contact_details") == []

        downgrade(old_url, "0009_hash_watermarks")
        back = _stored(engine)
        assert back[0] == OLD_ROWS[0] and back[1] == OLD_ROWS[1] and back[3] == OLD_ROWS[3]
        assert all(isinstance(r, str) for rows in back for r in rows)
    finally:
        engine.dispose()
