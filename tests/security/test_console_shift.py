"""Attacks on the shift additions (issue 26): undo of someone else's decision, bulk decisions
by a moderator or over the bound, forged forms on the new POSTs, photos and pages without a
login, and hostile values in the new fields."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from modq.store.schema import reviews
from tests.console_server import LiveConsole
from tests.consolekit import review_listing
from tests.security.kit import client, logged_in, page_csrf

NUDITY = "nudity: photo 0: nudity.nsfw 0.712 >= review threshold 0.5"


def test_new_pages_and_photo_sizes_need_a_login(live: LiveConsole, photos: list[Path]) -> None:
    review_listing(live.engine, "p1", [NUDITY], photos[:1])
    anon = client(live)
    for size in ("thumb", "view", "full"):
        assert anon.get(f"/listings/p1/photos/0?size={size}").status_code == 401
    for path in ("/sellers/seller-1", "/queues/banned?reason=nudity"):
        assert anon.get(path).headers["location"].startswith("/login")
    for path in ("/jobs/p1/renew", "/jobs/p1/claim", "/reviews/1/undo", "/queues/banned/bulk"):
        assert anon.post(path, data={}).status_code in (401, 403)
    mia = logged_in(live, "mia")
    # Only the sizes the console knows; a full-size photo is a JPEG made here, never kept.
    assert mia.get("/listings/p1/photos/0?size=original").status_code == 422
    full = mia.get("/listings/p1/photos/0?size=full")
    assert full.headers["content-type"] == "image/jpeg"
    assert full.headers["cache-control"] == "no-store"
    assert full.content[:3] == b"\xff\xd8\xff"


def test_undo_bulk_and_claims_are_bounded_by_role_csrf_and_owner(
    live: LiveConsole, photos: list[Path]
) -> None:
    for i in range(3):
        review_listing(live.engine, f"b{i}", [NUDITY], photos[i : i + 1])
    mia, max_, lea = (logged_in(live, n) for n in ("mia", "max", "lea"))
    token = page_csrf(mia)
    assert mia.post("/queues/banned/start", data={"csrf": token}).status_code == 303
    (held,) = [r for r in ("b0", "b1", "b2") if "decide" in mia.get(f"/jobs/{r}").text]
    # Forged forms on the new POSTs are refused before anything else.
    for path in (f"/jobs/{held}/renew", f"/jobs/{held}/claim", "/queues/banned/bulk"):
        assert mia.post(path, data={"csrf": "forged"}).status_code == 403
    # Max cannot renew or claim Mia's job.
    max_token = page_csrf(max_)
    assert max_.post(f"/jobs/{held}/renew", data={"csrf": max_token}).status_code == 409
    assert max_.post(f"/jobs/{held}/claim", data={"csrf": max_token}).status_code == 409
    # A hostile note is stored as text and shown escaped; marks must be photo numbers.
    form = {"csrf": token, "decision": "approve", "note": "<script>alert(1)</script>"}
    assert mia.post(f"/jobs/{held}/decide", data=form | {"not_showing": "x"}).status_code == 400
    assert mia.post(f"/jobs/{held}/decide", data=form | {"note": "n" * 1001}).status_code == 422
    assert mia.post(f"/jobs/{held}/decide", data=form).status_code == 303
    page = mia.get("/")
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text
    with live.engine.connect() as conn:
        review_id = conn.execute(sa.select(reviews.c.id)).scalar_one()
    # Max may not undo Mia's decision (IDOR on the review id); a lead may.
    refused = max_.post(f"/reviews/{review_id}/undo", data={"csrf": max_token})
    assert refused.status_code == 409 and "only the moderator" in refused.text
    assert max_.post("/reviews/999999/undo", data={"csrf": max_token}).status_code == 409
    lea_token = page_csrf(lea)
    assert lea.post(f"/reviews/{review_id}/undo", data={"csrf": lea_token}).status_code == 303
    # Bulk: leads only, at most 50 jobs, a reject needs a reason.
    bulk = {"csrf": max_token, "decision": "approve", "listing_ids": ["b0", "b1"]}
    assert max_.post("/queues/banned/bulk", data=bulk).status_code == 403
    too_many = {
        "csrf": lea_token,
        "decision": "approve",
        "listing_ids": [f"x{i}" for i in range(51)],
    }
    assert lea.post("/queues/banned/bulk", data=too_many).status_code == 400
    reject = {"csrf": lea_token, "decision": "reject", "listing_ids": ["b0"]}
    assert lea.post("/queues/banned/bulk", data=reject).status_code == 400
    others = [r for r in ("b0", "b1", "b2") if r != held]
    ok = lea.post("/queues/banned/bulk", data={"csrf": lea_token, "decision": "approve",
                                                "listing_ids": others})  # fmt: skip
    # Mia's decision took her on to her next job: the bulk leaves that one alone.
    assert ok.headers["location"] == "/queues/banned?m=bulk_partial"
    assert "Being reviewed by mia" in lea.get(f"/jobs/{others[0]}").text
    with live.engine.connect() as conn:
        rows = conn.execute(sa.select(reviews.c.listing_id, reviews.c.moderator,
                                      reviews.c.decision).where(reviews.c.moderator == "lea")
                            .order_by(reviews.c.id)).all()  # fmt: skip
    # Each job of the bulk is its own audited row, naming the lead.
    assert [(r.listing_id, r.decision) for r in rows] == [
        (held, "undo"), (others[1], "approve")
    ]  # fmt: skip
