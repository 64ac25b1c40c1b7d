"""A moderator's shift in a real browser (Debian's chromium, Playwright) against the real app:
every decision from the keyboard, no preselected reason, the help overlay, confirmation and
undo, photos at full size still blurred until revealed, the lease countdown and renewal."""

from __future__ import annotations

import os
import re
from pathlib import Path

import sqlalchemy as sa
from PIL import Image

from modq.store.review_quality import add_golden, answer, next_check, sample_second_reviews
from modq.store.schema import listing_decisions, reviews
from tests.console_server import LiveConsole
from tests.consolekit import review_listing
from tests.test_console_browser import (  # noqa: F401 (fixtures)
    MISMATCH,
    NUDITY,
    Browser,
    browser,
    expect,
    live,
    login,
    photos,
)

KEYS_ON = "html[data-keys=on]"  # console.js has attached its key handler
# The reject reasons in the console's order (1..8 on the keyboard).
MISLEADING, CATEGORY_MISMATCH = "8", "6"


def test_every_decision_from_the_keyboard_then_undo(
    browser: Browser,  # noqa: F811
    live: LiveConsole,  # noqa: F811
    photos: list[Path],  # noqa: F811 (the fixtures imported above)
) -> None:
    for i in range(5):
        review_listing(live.engine, f"K{i}", [MISMATCH], photos[i : i + 1])
    page = login(browser, live, "mia")
    page.wait_for_selector(KEYS_ON, state="attached")
    page.keyboard.press("?")
    expect(page.get_by_test_id("help")).to_be_visible()
    expect(page.get_by_test_id("help")).to_contain_text("undo my latest decision")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("help")).to_be_hidden()
    page.get_by_test_id("start-category").click()
    done: dict[str, str] = {}

    def job() -> str:
        expect(page.get_by_test_id("decide")).to_be_visible()
        page.wait_for_selector(KEYS_ON, state="attached")
        return page.get_by_test_id("listing-id").inner_text()

    # No reason preselected, although the machine gave one (shown as a suggestion).
    first = job()
    assert page.get_by_test_id("reason").input_value() == ""
    expect(page.get_by_test_id("suggested")).to_contain_text("category_mismatch")
    page.keyboard.press("r")
    expect(page.get_by_test_id("decide-error")).to_contain_text("pick a reason")
    assert job() == first
    page.keyboard.press(MISLEADING)
    page.keyboard.press("n")
    page.keyboard.type("seller reuses stock photos")
    page.keyboard.press("Enter")  # leaves the note; never submits
    assert job() == first
    page.keyboard.press("r")
    expect(page.get_by_test_id("flash")).to_contain_text("Recorded")
    expect(page.get_by_test_id("recent-0")).to_contain_text("reject misleading_listing")
    expect(page.get_by_test_id("recent-0")).to_contain_text("seller reuses stock photos")
    done[first] = "reject"

    second = job()
    page.keyboard.press("c")
    page.keyboard.type("electronics.phone")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("recent-0")).to_contain_text("recategorise electronics.phone")
    done[second] = "recategorise"

    third = job()
    page.keyboard.press("e")  # escalate asks for a reason too
    expect(page.get_by_test_id("decide-error")).to_contain_text("pick a reason")
    page.keyboard.press(CATEGORY_MISMATCH)
    page.keyboard.press("e")
    expect(page.get_by_test_id("recent-0")).to_contain_text("escalate category_mismatch")
    done[third] = "escalate"

    fourth = job()
    page.keyboard.press("s")
    fifth = job()
    assert fifth != fourth
    page.keyboard.press("a")
    expect(page.get_by_test_id("flash")).to_contain_text("nothing left to review")
    done[fifth] = "approve"

    # u: take back the latest decision; the job is Mia's again, to decide anew.
    page.wait_for_selector(KEYS_ON, state="attached")
    page.keyboard.press("u")
    expect(page.get_by_test_id("flash")).to_contain_text("Undone")
    assert job() == fifth
    expect(page.get_by_test_id("recent-1")).to_contain_text("(undone)")
    with live.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                reviews.c.listing_id, reviews.c.decision, reviews.c.note, reviews.c.undoes
            ).order_by(reviews.c.id)
        ).all()
        ld = listing_decisions.c
        finals = dict(conn.execute(sa.select(ld.listing_id, ld.final_decision)).all())
    assert [(r.listing_id, r.decision) for r in rows] == [
        (first, "reject"), (second, "recategorise"), (third, "escalate"), (fourth, "skip"),
        (fifth, "approve"), (fifth, "undo"),
    ]  # fmt: skip
    assert rows[0].note == "seller reuses stock photos" and rows[5].undoes is not None
    assert finals == {first: "reject", second: "recategorise"}

    # Max may not undo Mia's decision, whatever id he posts (no IDOR).
    max_ = login(browser, live, "max")
    token = max_.locator("input[name=csrf]").first.get_attribute("value")
    with live.engine.connect() as conn:
        mias = conn.execute(sa.select(reviews.c.id).where(reviews.c.listing_id == second)).scalar()
    refused = max_.request.post(f"/reviews/{mias}/undo", form={"csrf": token or ""})
    assert refused.status == 409 and "only the moderator" in refused.text()
    assert max_.request.post(f"/reviews/{mias}/undo", form={}).status == 403
    max_.context.close()
    page.context.close()


def test_full_size_photo_stays_blurred_until_revealed_and_the_lease_counts_down(
    browser: Browser,  # noqa: F811
    live: LiveConsole,  # noqa: F811
    photos: list[Path],  # noqa: F811 (the fixtures imported above)
) -> None:
    review_listing(live.engine, "N1", [NUDITY], photos[:2])
    width, height = Image.open(photos[0]).size
    page = login(browser, live, "mia")
    page.get_by_test_id("start-banned").click()
    page.wait_for_selector(KEYS_ON, state="attached")
    expect(page.get_by_test_id("lease")).to_have_text(re.compile(r"lease (9|10):\d\d"))
    expect(page.get_by_test_id("photo-0")).to_have_class("photo blurred")
    page.keyboard.press("f")
    zoom = page.get_by_test_id("zoom-img")
    expect(page.get_by_test_id("zoom")).to_be_visible()
    expect(zoom).to_have_class(re.compile("blurred"))
    page.wait_for_function(
        "() => document.querySelector('[data-testid=zoom-img]').naturalWidth > 0"
    )
    # Full resolution: every pixel of the upload, re-encoded (the job view serves less).
    assert zoom.evaluate("e => [e.naturalWidth, e.naturalHeight]") == [width, height]
    page.keyboard.press("v")
    expect(zoom).not_to_have_class(re.compile("blurred"))
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("zoom")).to_be_hidden()
    page.keyboard.press("j")
    page.keyboard.press("x")
    expect(page.get_by_test_id("not-showing-1")).to_be_checked()
    expect(page.get_by_test_id("not-showing-0")).not_to_be_checked()
    # The lease is renewed on request while the job is Mia's.
    token = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    renewed = page.request.post("/jobs/N1/renew", form={"csrf": token})
    assert renewed.status == 200 and "until" in renewed.json()
    # Thumbnails in the queue and the seller view, through the same confined loader.
    page.goto("/queues/banned")
    thumb = page.locator("img.thumb").first
    page.wait_for_function("() => document.querySelector('img.thumb').naturalWidth > 0")
    assert max(thumb.evaluate("e => [e.naturalWidth, e.naturalHeight]")) <= 160
    expect(thumb).to_have_class(re.compile("blurred"))  # banned content: blurred there too
    page.goto("/sellers/seller-1")
    expect(page.get_by_test_id("seller-listings")).to_contain_text("N1")
    expect(page.get_by_test_id("thumb-0")).to_have_class(re.compile("blurred"))
    page.context.close()


def test_metrics_page_lays_out_at_1280_and_1920_px(
    browser: Browser,  # noqa: F811
    live: LiveConsole,  # noqa: F811
    photos: list[Path],  # noqa: F811 (the fixtures imported above)
    tmp_path: Path,
) -> None:
    """No sideways scroll, no chart wider than its column; with MODQ_SCREENSHOT_DIR=docs/img
    the screenshots are kept for docs/console.md."""
    out = Path(os.environ.get("MODQ_SCREENSHOT_DIR", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        review_listing(live.engine, f"M{i}", [NUDITY], photos[i : i + 1], seller=f"s{i}")
    review_listing(live.engine, "M9", [MISMATCH], photos[3:4])
    page = login(browser, live, "lea")
    page.get_by_test_id("start-banned").click()
    expect(page.get_by_test_id("decide")).to_be_visible()
    page.wait_for_selector(KEYS_ON, state="attached")
    page.keyboard.press("a")
    expect(page.get_by_test_id("flash")).to_contain_text("Recorded")
    # A blind second review and a golden check, answered: the quality tables have rows.
    assert sample_second_reviews(live.engine, "lea", 1) == 1
    add_golden(live.engine, "lea", "M9", "approve", None)
    for _ in range(2):
        item = next_check(live.engine, "mia")
        assert item is not None
        answer(live.engine, item.id, "mia", "approve", None)
    for width in (1280, 1920):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto("/metrics")
        expect(page.locator("svg.chart").first).to_be_visible()
        assert page.evaluate("document.scrollingElement.scrollWidth") <= width
        overflowing = page.evaluate(
            "[...document.querySelectorAll('.metrics section')].filter("
            "s => s.scrollWidth > s.clientWidth + 1).length"
        )
        assert overflowing == 0
        page.screenshot(path=str(out / f"console-metrics-{width}.png"), full_page=True)
    page.context.close()
