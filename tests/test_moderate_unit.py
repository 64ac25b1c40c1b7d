"""The pipeline's batch (parse → moderate → store) on the in-memory stores of tests/fakes.py:
real ONNX Runtime on the tiny model and real JPEG files in tmp_path, no database, no broker.

tests/test_pipeline.py runs the same pipeline on PostgreSQL; this is the fast check a change
to moderate(), the policy or the photo loading meets first.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from modq.detectors.hashing import pdq_hash
from modq.domain.events import ListingEvent
from modq.domain.reasons import Reason
from modq.pipeline.moderate import handle_messages, moderate
from modq.pipeline.runtime import Runtime
from modq.settings import Settings
from modq.store.interface import BankEntry
from tests.fakes import MemoryBankStore, MemoryVerdictStore, memory_stores
from tests.photokit import colour_jpeg


@pytest.fixture
def runtime(tiny_model: Path, photo_root: Path, tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(
        model_path=tiny_model,
        classifier_precision="fp32",  # the tiny model has no int8 copy
        data_dir=tmp_path / "data",
        image_roots=[str(photo_root)],
        detectors=["banks"],  # PDQ banks and duplicates: no detector model to load
    )
    rt = Runtime.build(settings, stores=memory_stores())
    yield rt
    rt.close()


def photo(root: Path, name: str, label: str, size: tuple[int, int] = (320, 240)) -> str:
    path = root / name
    path.write_bytes(colour_jpeg(label, size))
    return str(path)


def stores(rt: Runtime) -> tuple[MemoryVerdictStore, MemoryBankStore]:
    assert isinstance(rt.verdict_store, MemoryVerdictStore)
    assert rt.banks is not None and isinstance(rt.banks.store, MemoryBankStore)
    return rt.verdict_store, rt.banks.store


def codes(reasons: Sequence[Any]) -> list[str]:
    return [Reason.read(r).code for r in reasons]


def test_a_batch_is_moderated_and_stored_once(runtime: Runtime, photo_root: Path) -> None:
    shoes = photo(photo_root, "shoes.jpg", "fashion.shoes")
    laptop = photo(photo_root, "laptop.jpg", "electronics.laptop")
    events = [
        ListingEvent(listing_id="a", declared_category="fashion.shoes", images=[shoes]),
        ListingEvent(listing_id="b", declared_category="fashion.dress", images=[laptop]),
    ]
    bodies = [e.to_message() for e in events] + [{"not": "an event"}]
    outcome = handle_messages(bodies, runtime, "new")
    a, b = outcome.verdicts
    assert a.decision == "approve" and a.suggested[0][0] == "fashion.shoes"
    assert b.decision == "reject" and codes(b.reasons) == ["category_mismatch"]
    assert len(outcome.rejected) == 1 and outcome.rejected[0].stage == "worker"

    verdicts, _ = stores(runtime)
    assert verdicts.batches == 1
    assert {v.listing_id for v in verdicts.verdicts.values()} == {"a", "b"}
    assert verdicts.rejected == outcome.rejected
    # The same messages again (a redelivery): the same rows, nothing added.
    handle_messages(bodies[:2], runtime, "new")
    assert len(verdicts.verdicts) == 2


def test_only_the_newest_version_of_a_listing_in_a_batch_is_moderated(
    runtime: Runtime, photo_root: Path
) -> None:
    fruit = photo(photo_root, "fruit.jpg", "food.fruit")
    old = ListingEvent(listing_id="x", listing_version=1, declared_category="food.fruit",
                       images=[fruit])  # fmt: skip
    new = old.model_copy(update={"listing_version": 2})
    (only,) = handle_messages([new.to_message(), old.to_message()], runtime, "new").verdicts
    assert only.listing_version == 2


def test_a_missing_photo_is_a_reason_and_the_others_still_count(
    runtime: Runtime, photo_root: Path
) -> None:
    hat = photo(photo_root, "hat.jpg", "fashion.hat")
    event = ListingEvent(
        listing_id="m", declared_category="fashion.hat", images=[str(photo_root / "gone.jpg"), hat]
    )
    (verdict,) = moderate([event], runtime)
    assert verdict.decision == "review"
    assert codes(verdict.reasons) == ["image_unreadable"]
    assert Reason.read(verdict.reasons[0]).photo == 0
    assert verdict.photos[0].error_code == "image_unreadable" and verdict.photos[1].ok
    assert verdict.suggested[0][0] == "fashion.hat"


def test_a_photo_in_an_image_bank_is_rejected_with_the_bank_named(
    runtime: Runtime, photo_root: Path
) -> None:
    # A textured photo (a flat one has too low a PDQ quality to be banked).
    blocks = np.random.default_rng(7).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    img = Image.fromarray(blocks).resize((640, 480), Image.Resampling.NEAREST)
    flyer = photo_root / "flyer.jpg"
    img.save(flyer, "JPEG", quality=90)
    found = pdq_hash(Image.open(flyer))
    assert found.quality >= 50
    _, banks = stores(runtime)
    banks.add_to_bank(
        "TVEC", [BankEntry(bytes.fromhex(found.hex), found.quality, content_id="tv-1")]
    )
    event = ListingEvent(listing_id="f", declared_category="electronics.phone", images=[str(flyer)])
    (verdict,) = moderate([event], runtime)
    assert verdict.decision == "reject"
    banned = [Reason.read(r) for r in verdict.reasons if Reason.read(r).code == "banned_image"]
    assert [(r.photo, r.label) for r in banned] == [(0, "banks.TVEC")]
    assert "tv-1" in banned[0].text()
    # The photo's hash was kept for the duplicate check.
    assert banks.photo_counter() == 1
