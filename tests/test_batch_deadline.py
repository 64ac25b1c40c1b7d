"""A batch ends by its deadline whatever one photo source does, and a failed fetch records
the time it really took."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from modq.domain.events import ListingEvent
from modq.errors import PhotoFetchError
from modq.pipeline.moderate import moderate
from modq.pipeline.runtime import Runtime
from modq.settings import Settings
from tests.photokit import colour_jpeg


def test_slow_photo_is_cut_off_at_the_batch_deadline(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    hat = colour_jpeg("fashion.hat")
    release = threading.Event()

    def read(ref: str) -> bytes:
        if ref == "slow":  # a host that never answers (until the test ends)
            release.wait(30)
        if ref == "refused":
            time.sleep(0.2)
            raise PhotoFetchError("connection refused")
        return hat

    settings = make_settings(batch_deadline_s=1.0, visibility_timeout_s=10, detectors=[])
    rt = Runtime.build(settings, read=read, detectors=[])
    try:
        events = [
            ListingEvent(listing_id="d1", declared_category="fashion.hat", images=["ok", "slow"]),
            ListingEvent(listing_id="d2", declared_category="fashion.hat", images=["refused"]),
        ]
        started = time.monotonic()
        verdicts = moderate(events, rt)
        elapsed = time.monotonic() - started
    finally:
        release.set()
        rt.close()
    assert elapsed < 3, elapsed
    ok, slow = verdicts[0].photos
    assert ok.ok and not slow.ok
    assert slow.error is not None and "batch deadline" in slow.error
    refused = verdicts[1].photos[0]
    assert refused.error_code == "image_unreadable"
    assert refused.fetch_ms >= 150, refused  # the real time, not 0


def test_visibility_timeout_must_cover_two_batch_deadlines() -> None:
    with pytest.raises(ValidationError, match="must exceed two batch deadlines"):
        Settings(batch_deadline_s=30, visibility_timeout_s=60)
    assert Settings().visibility_timeout_s == 60  # the defaults satisfy it
