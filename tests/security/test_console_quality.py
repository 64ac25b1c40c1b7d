"""Quality checks and policy examples over HTTP on a live console: pages need a login, forms
need CSRF, lead-only actions refuse moderators, the second review is blind, and the results
reach the metrics and policy pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modq.store.reviews import claim_next, decide
from tests.console_server import LiveConsole, live_console
from tests.consolekit import review_listing
from tests.security.kit import client, logged_in, page_csrf

NUDITY = "nudity: photo 0: nudity.nsfw 0.712 >= review threshold 0.5"
LEAD_FORMS = {
    "/quality/sample": {"n": "5"},
    "/quality/golden": {"listing_id": "q0", "decision": "approve"},
    "/policy/examples": {"listing_id": "q0", "photo_index": "0", "reason_code": "nudity"},
}


@pytest.fixture
def live(datasets_dir: Path, tmp_path: Path) -> Iterator[LiveConsole]:
    # Metrics computed on every request: the page must show the answers just given.
    with live_console(datasets_dir, tmp_path, console_metrics_cache_s=0) as console:
        yield console


def test_quality_checks_are_blind_lead_only_and_reach_the_metrics(
    live: LiveConsole, photos: list[Path]
) -> None:
    review_listing(live.engine, "q0", [NUDITY], photos[:1])
    assert claim_next(live.engine, "mia", "banned") is not None
    decide(live.engine, "q0", "mia", "reject", reason_code="nudity", note="secret-first-note")
    anon = client(live)
    assert anon.get("/quality").headers["location"].startswith("/login")
    for path, form in LEAD_FORMS.items():
        assert anon.post(path, data=form).status_code in (401, 403)
    assert anon.post("/quality/1/answer", data={"decision": "approve"}).status_code in (401, 403)
    mia, max_, lea = (logged_in(live, n) for n in ("mia", "max", "lea"))
    lea_token, max_token = page_csrf(lea), page_csrf(max_)
    # Forged forms are refused; moderators may not sample, set golden checks or examples.
    for path, form in LEAD_FORMS.items():
        assert lea.post(path, data=form | {"csrf": "forged"}).status_code == 403
        refused = max_.post(path, data=form | {"csrf": max_token})
        assert refused.status_code == 403, path
    assert "lead-quality" not in max_.get("/quality").text
    assert lea.post("/quality/sample", data={"csrf": lea_token, "n": "5"}).status_code == 303
    # Mia is not asked to check her own decision; Max sees the listing, not Mia's decision.
    assert 'data-testid="no-check"' in mia.get("/quality").text
    page = max_.get("/quality").text
    assert "Check #1: listing q0" in page
    assert "secret-first-note" not in page and "mia" not in page
    assert (
        max_.post("/quality/1/answer", data={"csrf": "forged", "decision": "approve"}).status_code
        == 403
    )
    answered = max_.post("/quality/1/answer", data={"csrf": max_token, "decision": "approve"})
    assert answered.status_code == 303
    again = max_.post("/quality/1/answer", data={"csrf": max_token, "decision": "approve"})
    assert again.status_code == 409
    # Golden checks by a lead, answered blind by Max.
    golden = {"csrf": lea_token, "listing_id": "q0", "decision": "reject", "reason_code": "nudity"}
    assert lea.post("/quality/golden", data=golden).status_code == 303
    assert "Check #2: listing q0" in max_.get("/quality").text
    form = {"csrf": max_token, "decision": "reject", "reason_code": "nudity"}
    assert max_.post("/quality/2/answer", data=form).status_code == 303
    metrics = lea.get("/metrics").text
    quality = metrics[
        metrics.index('data-testid="quality"') : metrics.index('data-testid="golden"')
    ]
    assert "<td>mia</td><td>0/1</td>" in quality and "<code>nudity</code></td><td>0/1" in quality
    golden_part = metrics[metrics.index('data-testid="golden"') :]
    assert "<td>max</td><td>1/1</td><td>100%</td>" in golden_part
    # A lead picks a photo of the decided listing as an example: the policy page shows its
    # thumbnail through the confined photo route.
    example = {"csrf": lea_token, "listing_id": "q0", "photo_index": "0", "reason_code": "nudity"}
    assert lea.post("/policy/examples", data=example).status_code == 303
    policy = mia.get("/policy").text
    assert "/listings/q0/photos/0?size=thumb" in policy
    bad = example | {"photo_index": "9"}
    assert lea.post("/policy/examples", data=bad).status_code == 400
