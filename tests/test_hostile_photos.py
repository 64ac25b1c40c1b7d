"""Hostile photos and references through the real pipeline (issue 12): each costs its photo a
reason, or its event a recorded rejection, never the listing, the batch or `internal_error`."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from modq.domain.events import MAX_REF_CHARS, ListingEvent
from modq.pipeline.moderate import handle_messages, moderate
from modq.pipeline.runtime import Runtime
from modq.settings import Settings
from modq.store.database import make_engine
from modq.store.queries import list_rejected
from modq.store.stores import open_stores
from tests.photokit import colour_jpeg


@pytest.fixture
def runtime(make_settings: Callable[..., Settings], photo_root: Path) -> Iterator[Runtime]:
    settings = make_settings(image_roots=[str(photo_root)])
    rt = Runtime.build(settings, stores=open_stores(settings.database_url))
    yield rt
    rt.close()


def write(root: Path, name: str, data: bytes) -> str:
    (root / name).write_bytes(data)
    return str(root / name)


def lying_jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    struct.pack_into(">HH", data, data.find(b"\xff\xc0") + 5, height, width)
    return bytes(data)


def black_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (0, 0, 0)).save(buf, "JPEG")
    return buf.getvalue()


def test_hostile_photos_cost_only_themselves(runtime: Runtime, photo_root: Path) -> None:
    good = write(photo_root, "good.jpg", colour_jpeg("food.fruit"))
    cases = {
        "image_blank: photo 0: the photo is almost entirely black": write(
            photo_root, "black.jpg", black_jpeg()
        ),
        "image_unreadable: photo 0: corrupt or truncated image: ": write(
            photo_root, "lying.jpg", lying_jpeg(7000, 7000)
        ),
        "image_unreadable: photo 0: ": "x" * 300 + ".jpg",  # a path component over NAME_MAX
        "a path component is 304 bytes": str(photo_root / ("y" * 300 + ".jpg")),
    }
    events = [
        ListingEvent(listing_id=f"hostile-{i}", declared_category="food.fruit", images=[ref, good])
        for i, ref in enumerate(cases.values())
    ]
    blank = cases["image_blank: photo 0: the photo is almost entirely black"]
    events.append(ListingEvent(listing_id="blank", declared_category="food.fruit", images=[blank]))
    verdicts = moderate(events, runtime)
    for verdict, fragment in zip(verdicts, cases, strict=False):
        assert verdict.decision == "review", verdict
        assert fragment in verdict.reasons[0].text(), (fragment, verdict.reasons)
        assert verdict.photos[1].ok and verdict.best_photo == 1
    assert verdicts[0].photos[0].error_code == "image_blank"
    assert verdicts[-1].decision == "review"  # blank photos are never approved
    assert "no_readable_photos" in [r.code for r in verdicts[-1].reasons]


def test_absurd_references_are_rejected_at_parse_time(
    runtime: Runtime, photo_root: Path, pg_url: str
) -> None:
    good = write(photo_root, "ok.jpg", colour_jpeg("fashion.hat"))
    huge = "a" * (1 << 20)
    bodies = [
        {
            "event": {
                "listing_id": "mb-refs",
                "declared_category": "fashion.hat",
                "images": [huge] * 10,
            }
        },
        {
            "event": {
                "listing_id": "one-long",
                "declared_category": "fashion.hat",
                "images": [good, "http://cdn.example.com/" + "b" * MAX_REF_CHARS],
            }
        },
        {"event": {"listing_id": "fits", "declared_category": "fashion.hat", "images": [good]}},
    ]
    outcome = handle_messages(bodies, runtime, "new")
    assert [v.listing_id for v in outcome.verdicts] == ["fits"]
    assert [r.reason for r in outcome.rejected] == [
        f"images.0: image reference is {1 << 20} characters (at most {MAX_REF_CHARS})",
        f"images.1: image reference is {MAX_REF_CHARS + 23} characters (at most {MAX_REF_CHARS})",
    ]
    engine = make_engine(pg_url)
    try:
        stored = {r["listing_id"]: r for r in list_rejected(engine, limit=0)}
    finally:
        engine.dispose()
    assert "internal_error" not in stored["mb-refs"]["reason"]


def test_a_reference_at_the_limit_is_accepted() -> None:
    ref = "http://cdn.example.com/" + "c" * (MAX_REF_CHARS - 23)
    assert ListingEvent(listing_id="x", declared_category="y", images=[ref]).images == [ref]
    with pytest.raises(ValueError, match="at most 2048"):
        ListingEvent(listing_id="x", declared_category="y", images=[ref + "c"])
