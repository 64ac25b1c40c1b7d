"""The review console in a real browser (Debian's chromium driven by Playwright) against the
real app (uvicorn) on a real migrated PostgreSQL database, with real photos."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from modq.store.schema import listing_decisions, reviews
from tests.console_server import PASSWORD, LiveConsole, live_console
from tests.consolekit import review_listing

playwright_sync = pytest.importorskip("playwright.sync_api")
Browser = playwright_sync.Browser
Page = playwright_sync.Page
expect = playwright_sync.expect

CHROMIUM = os.environ.get("MODQ_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NUDITY = "nudity: photo 0: nudity.nsfw 0.712 >= review threshold 0.5"
# Navigation-safe: the element may not exist yet while the next page loads.
LOADED = (
    "id => { const e = document.querySelector(`[data-testid=${id}]`); "
    "return !!e && e.naturalWidth > 0 }"
)
MISMATCH = "category_mismatch: declared fashion.dress, model says electronics.laptop 0.70"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium (see .ci/run)")
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def live(datasets_dir: Path, tmp_path: Path) -> Iterator[LiveConsole]:
    # Metrics computed per request: the pages and screenshots show what the test just did.
    with live_console(datasets_dir, tmp_path, console_metrics_cache_s=0) as console:
        yield console


@pytest.fixture(scope="module")
def photos(datasets_dir: Path) -> list[Path]:
    return sorted((datasets_dir / "listings-v1" / "train" / "fashion.dress").glob("*.jpg"))[:8]


def login(browser: Browser, live: LiveConsole, name: str) -> Page:
    page = browser.new_context(base_url=live.url).new_page()
    page.goto("/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_test_id("who")).to_contain_text(name)
    return page


def test_logged_out_access_is_refused(browser: Browser, live: LiveConsole, photos: list[Path]):
    review_listing(live.engine, "L1", [NUDITY], photos[:1])
    page = browser.new_context(base_url=live.url).new_page()
    for path in ("/", "/queues/banned", "/jobs/L1", "/search?seller_id=seller-1", "/metrics"):
        page.goto(path)
        expect(page).to_have_url(f"{live.url}/login?next={path.split('?')[0]}")
    for path in ("/listings/L1/photos/0", "/api/queues"):
        assert page.request.get(path).status == 401
    response = page.request.post("/jobs/L1/decide", form={"decision": "approve"})
    assert response.status in (401, 403)
    page.context.close()


def test_review_a_queue_end_to_end(browser: Browser, live: LiveConsole, photos: list[Path]):
    for i in range(3):
        review_listing(live.engine, f"C{i}", [MISMATCH], photos[2 * i : 2 * i + 2])
    page = login(browser, live, "mia")
    expect(page.get_by_test_id("pending-category")).to_have_text("3")
    page.get_by_test_id("start-category").click()
    seen = []
    for decision in ("recategorise", "approve", "reject"):
        expect(page.get_by_test_id("decide")).to_be_visible()
        listing = page.get_by_test_id("listing-id").inner_text()
        assert listing not in seen
        seen.append(listing)
        expect(page.get_by_test_id("declared")).to_have_text("fashion.dress")
        expect(page.get_by_test_id("top3")).to_contain_text("electronics.laptop")
        expect(page.get_by_test_id("reasons")).to_contain_text("category_mismatch")
        assert "blurred" not in (page.get_by_test_id("photo-0").get_attribute("class") or "")
        if decision == "recategorise":
            page.get_by_test_id("category").fill("electronics.phone")
        if decision == "reject":
            page.get_by_test_id("reason").select_option("misleading_listing")
        page.get_by_test_id(decision).click()
        expect(
            page.get_by_test_id("listing-id").or_(page.get_by_test_id("flash")).first
        ).to_be_visible()
    expect(page.get_by_test_id("flash")).to_contain_text("nothing left to review")
    expect(page.get_by_test_id("pending-category")).to_have_text("0")
    assert sorted(seen) == ["C0", "C1", "C2"]
    with live.engine.connect() as conn:
        finals = {
            r.listing_id: (r.final_decision, r.final_category, r.decided_by)
            for r in conn.execute(sa.select(listing_decisions))
        }
        audit = conn.execute(sa.select(reviews.c.listing_id, reviews.c.decision)).all()
    assert finals[seen[0]] == ("recategorise", "electronics.phone", "mia")
    assert finals[seen[1]] == ("approve", "fashion.dress", "mia")
    assert finals[seen[2]] == ("reject", "fashion.dress", "mia")
    assert len(audit) == 3
    page.context.close()


def test_two_moderators_never_get_the_same_job(
    browser: Browser, live: LiveConsole, photos: list[Path]
):
    for i in range(4):
        review_listing(live.engine, f"B{i}", [NUDITY], photos[i : i + 1])
    mia, max_ = login(browser, live, "mia"), login(browser, live, "max")
    mia.get_by_test_id("start-banned").click()
    max_.get_by_test_id("start-banned").click()
    expect(mia.get_by_test_id("decide")).to_be_visible()
    expect(max_.get_by_test_id("decide")).to_be_visible()
    a = mia.get_by_test_id("listing-id").inner_text()
    b = max_.get_by_test_id("listing-id").inner_text()
    assert a != b
    # Max looking at Mia's job sees it read-only.
    max_.goto(f"/jobs/{a}")
    expect(max_.get_by_test_id("not-yours")).to_contain_text("mia")
    expect(max_.get_by_test_id("decide")).to_have_count(0)
    # After a decision each gets a job the other does not hold.
    mia.get_by_test_id("approve").click()
    expect(mia.get_by_test_id("decide")).to_be_visible()
    c = mia.get_by_test_id("listing-id").inner_text()
    assert c not in (a, b)
    mia.context.close()
    max_.context.close()


def test_banned_photos_blurred_until_clicked(
    browser: Browser, live: LiveConsole, photos: list[Path]
):
    review_listing(live.engine, "N1", [NUDITY], photos[:2])
    page = login(browser, live, "mia")
    page.get_by_test_id("start-banned").click()
    photo = page.get_by_test_id("photo-0")
    expect(photo).to_have_class("photo blurred")
    page.wait_for_function("() => document.querySelector('[data-testid=photo-0]').naturalWidth > 0")
    assert "blur" in photo.evaluate("el => getComputedStyle(el).filter")
    photo.click()
    expect(photo).to_have_class("photo")
    # The un-blur is a short CSS transition: wait for it to finish.
    page.wait_for_function(
        "() => getComputedStyle(document.querySelector('[data-testid=photo-0]')).filter == 'none'"
    )
    expect(page.get_by_test_id("photo-1")).to_have_class("photo blurred")
    page.context.close()


def test_post_without_csrf_token_is_refused(
    browser: Browser, live: LiveConsole, photos: list[Path]
):
    review_listing(live.engine, "X1", [NUDITY], photos[:1])
    page = login(browser, live, "mia")
    assert page.request.post("/queues/banned/start", form={}).status == 403
    assert page.request.post("/queues/banned/start", form={"csrf": "forged"}).status == 403
    # The real form with its token field removed.
    page.evaluate("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")
    page.get_by_test_id("start-banned").click()
    expect(page.get_by_test_id("error")).to_contain_text("CSRF")
    page.goto("/")
    expect(page.get_by_test_id("pending-banned")).to_have_text("1")
    page.context.close()


def test_moderator_refused_lead_actions(browser: Browser, live: LiveConsole, photos: list[Path]):
    review_listing(live.engine, "E1", [NUDITY], photos[:1])
    page = login(browser, live, "mia")
    page.get_by_test_id("start-banned").click()
    expect(page.get_by_test_id("bank-0")).to_have_count(0)
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    response = page.request.post("/listings/E1/photos/0/bank", form={"csrf": token, "bank": "b"})
    assert response.status == 403
    expect(page.get_by_test_id("move")).to_have_count(0)
    response = page.request.post("/jobs/E1/move", form={"csrf": token, "queue": "other"})
    assert response.status == 403
    page.get_by_test_id("reason").select_option("nudity")
    page.get_by_test_id("escalate").click()
    expect(page.get_by_test_id("flash")).to_be_visible()
    page.goto("/queues/escalated")
    expect(page.get_by_test_id("error")).to_contain_text("lead")
    # A lead takes the escalated job and adds its photo to an image bank.
    lead = login(browser, live, "lea")
    lead.get_by_test_id("start-escalated").click()
    expect(lead.get_by_test_id("listing-id")).to_have_text("E1")
    lead.fill("input[name=bank]", "console-test")
    lead.get_by_test_id("bank-0").click()
    expect(lead.get_by_test_id("flash")).to_contain_text("added to the bank")
    page.context.close()
    lead.context.close()


def test_lockout_after_five_failures(browser: Browser, live: LiveConsole):
    page = browser.new_context(base_url=live.url).new_page()
    for attempt in range(6):
        page.goto("/login")
        page.fill("input[name=name]", "max")
        page.fill("input[name=password]", PASSWORD if attempt == 5 else "wrong password")
        page.click("button[type=submit]")
        expect(page.get_by_test_id("login-error")).to_be_visible()
    expect(page.get_by_test_id("login-error")).to_contain_text("too many attempts")
    page.context.close()


def test_main_pages_render_for_screenshots(
    browser: Browser, live: LiveConsole, photos: list[Path], tmp_path: Path
):
    """Every main page renders; with MODQ_SCREENSHOT_DIR=docs/img their screenshots are kept
    for docs/console.md."""
    out = Path(os.environ.get("MODQ_SCREENSHOT_DIR", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    review_listing(live.engine, "demo-007", [NUDITY], photos[:2], seller="seller-12")
    review_listing(
        live.engine, "demo-011", [MISMATCH], photos[2:4], seller="seller-12",
        top=[("electronics.phone", 0.81), ("electronics.laptop", 0.12), ("fashion.dress", 0.03)],
    )  # fmt: skip
    review_listing(
        live.engine, "demo-015", ["image_unreadable: photo 1: no such file"], photos[4:6]
    )
    review_listing(live.engine, "demo-021", [], photos[6:7], decision="approve", seller="seller-12")
    page = login(browser, live, "lea")
    page.set_viewport_size({"width": 1280, "height": 860})
    page.get_by_test_id("start-category").click()
    page.get_by_test_id("category").fill("electronics.phone")
    page.get_by_test_id("recategorise").click()
    page.goto("/")
    page.screenshot(path=str(out / "console-queues.png"), full_page=True)
    page.get_by_test_id("start-banned").click()
    page.wait_for_function(LOADED, arg="photo-1")
    page.screenshot(path=str(out / "console-job-blurred.png"), full_page=True)
    page.goto("/search?seller_id=seller-12")
    expect(page.get_by_test_id("results")).to_contain_text("demo-011")
    page.screenshot(path=str(out / "console-search.png"), full_page=True)
    page.goto("/metrics")
    expect(page.locator("svg.chart").first).to_be_visible()
    page.screenshot(path=str(out / "console-metrics.png"), full_page=True)
    page.context.close()
    assert len(list(out.glob("console-*.png"))) >= 4
