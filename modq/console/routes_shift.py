"""A shift's helpers: undo a decision, keep a lease alive while working, the seller view and
the policy as guidance."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response

from modq.console.context import job_url, redirect
from modq.console.deps import ConsoleDep, Csrf, UserDep
from modq.console.routes_review import REASON_CHOICES, listing_id_of
from modq.domain.reasons import CODES
from modq.domain.review import BANNED_CODES
from modq.errors import ReviewError
from modq.store.review_examples import examples_by_reason
from modq.store.review_shift import renew_lease, undo
from modq.store.review_views import review_listing_id, seller_listings

router = APIRouter()
SELLER_PAGE = 200


@router.post("/reviews/{review_id}/undo")
def undo_review(console: ConsoleDep, _csrf: Csrf, user: UserDep, review_id: int) -> Response:
    """Take back a decision: the decider within the window, or a lead (store.review_shift)."""
    try:
        undo(
            console.engine,
            review_id,
            user.name,
            is_lead=user.at_least("lead"),
            window_s=console.settings.console_undo_minutes * 60,
            lease_s=console.settings.review_lease_s,
        )
    except ReviewError as exc:
        raise HTTPException(409, f"Not undone: {exc}") from exc
    listing_id = review_listing_id(console.engine, review_id)
    return redirect(job_url(listing_id or ""), "undone")


@router.post("/jobs/{listing_id}/renew")
def renew(console: ConsoleDep, _csrf: Csrf, user: UserDep, listing_id: str) -> dict[str, str]:
    """Extend the caller's lease (the job page calls this while the moderator is active)."""
    until = renew_lease(
        console.engine, listing_id_of(listing_id), user.name, console.settings.review_lease_s
    )
    if until is None:
        raise HTTPException(409, "this job is no longer yours")
    return {"until": until.isoformat()}


@router.get("/sellers/{seller_id}")
def seller_view(request: Request, console: ConsoleDep, user: UserDep, seller_id: str) -> Response:
    if "\x00" in seller_id or len(seller_id) > 128:
        raise HTTPException(404, "no such seller")
    rows = seller_listings(console.engine, seller_id, exclude="", limit=SELLER_PAGE)
    context = {"seller_id": seller_id, "rows": rows, "limit": SELLER_PAGE}
    return console.render(request, "seller.html", context, user=user)


@router.get("/policy")
def policy_page(request: Request, console: ConsoleDep, user: UserDep) -> Response:
    thresholds = console.settings.policy_path.read_text()
    guidance = [
        (code, info.title, info.queue, code in REASON_CHOICES) for code, info in CODES.items()
    ]
    # Thumbnails through the confined photo route; banned-content examples stay blurred.
    context = {
        "guidance": guidance,
        "text": thresholds,
        "examples": examples_by_reason(console.engine),
        "banned_codes": BANNED_CODES,
    }
    return console.render(request, "policy.html", context, user=user)
