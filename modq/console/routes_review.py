"""Review pages: queues with counts, "start reviewing", the job view, decisions, photos,
and (leads and admins) adding a photo to an image bank."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from modq.console.context import console_of, job_url, redirect
from modq.console.photos import listing_ref, photo_hash, photo_jpeg
from modq.domain.reasons import read_all
from modq.domain.review import (
    LEAD_QUEUES,
    QUEUES,
    REJECT_REASONS,
    has_banned_content,
)
from modq.errors import ReviewError
from modq.store.banks import add_to_bank, list_banks
from modq.store.interface import BankEntry
from modq.store.review_views import (
    listing_detail,
    queue_page,
    review_history,
    seller_listings,
    verdict_history,
)
from modq.store.reviews import claim_next, decide, move_job, queue_counts

router = APIRouter()


def _listing_id(listing_id: str) -> str:
    """A listing id from the URL, or 404 for one no listing can have (PostgreSQL text cannot
    hold NUL; ids are at most 128 characters)."""
    if "\x00" in listing_id or len(listing_id) > 128:
        raise HTTPException(404, "no such listing")
    return listing_id


def _queue_role(queue: str) -> str:
    if queue not in QUEUES:
        raise HTTPException(404, "no such queue")
    return "lead" if queue in LEAD_QUEUES else "moderator"


@router.get("/")
def home(request: Request) -> Response:
    console = console_of(request)
    user = console.sessions.require_user(request)
    counts = queue_counts(console.engine)
    return console.render(request, "home.html", {"queues": counts}, user=user)


@router.get("/api/queues")
def api_queues(request: Request) -> list[dict[str, Any]]:
    console = console_of(request)
    console.sessions.require_user(request)
    return [
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
        for row in queue_counts(console.engine)
    ]


@router.get("/queues/{queue}")
def queue_view(request: Request, queue: str) -> Response:
    console = console_of(request)
    user = console.sessions.require_user(request, _queue_role(queue))
    rows = queue_page(console.engine, queue)
    context = {"queue": queue, "title": QUEUES[queue], "rows": rows, "now": datetime.now(UTC)}
    return console.render(request, "queue.html", context, user=user)


def _next_job(request: Request, user_name: str, queue: str) -> Response:
    console = console_of(request)
    claim = claim_next(console.engine, user_name, queue, console.settings.review_lease_s)
    if claim is None:
        return redirect("/", "queue_empty", queue)
    return redirect(job_url(claim.listing_id))


@router.post("/queues/{queue}/start")
def start(request: Request, queue: str, csrf: Annotated[str | None, Form()] = None) -> Response:
    console = console_of(request)
    console.sessions.check_csrf(request, csrf)
    user = console.sessions.require_user(request, _queue_role(queue))
    return _next_job(request, user.name, queue)


@router.get("/jobs/{listing_id}")
def job_view(request: Request, listing_id: str) -> Response:
    console = console_of(request)
    listing_id = _listing_id(listing_id)
    user = console.sessions.require_user(request)
    detail = listing_detail(console.engine, listing_id)
    if detail is None:
        raise HTTPException(404, "no such listing")
    reasons = list(detail.get("reasons") or [])
    until = detail.get("claimed_until")
    holds = (
        detail.get("claimed_by") == user.name
        and detail.get("job_decided_at") is None
        and until is not None
        and until.replace(tzinfo=until.tzinfo or UTC) > datetime.now(UTC)
    )
    scores = detail.get("scores") or {}
    context = {
        "d": detail,
        "reasons": [(r.code, r.text()) for r in read_all(reasons)],
        "blur": has_banned_content(reasons),
        "top3": list(detail.get("suggested") or [])[:3],
        "photos": list(detail.get("photos") or []),
        "n_images": len(detail.get("images") or []),
        "history": verdict_history(console.engine, listing_id),
        "audit": review_history(console.engine, listing_id),
        "seller": seller_listings(console.engine, detail.get("seller_id"), listing_id),
        "holds": holds,
        "categories": console.labels or sorted(scores),
        "reject_reasons": REJECT_REASONS,
        "queues": QUEUES,
        "banks": [b["name"] for b in list_banks(console.engine)] if user.at_least("lead") else [],
    }
    return console.render(request, "job.html", context, user=user)


@router.post("/jobs/{listing_id}/decide")
def decide_job(
    request: Request,
    listing_id: str,
    decision: Annotated[str, Form()],
    csrf: Annotated[str | None, Form()] = None,
    reason_code: Annotated[str | None, Form()] = None,
    new_category: Annotated[str | None, Form()] = None,
) -> Response:
    console = console_of(request)
    listing_id = _listing_id(listing_id)
    console.sessions.check_csrf(request, csrf)
    user = console.sessions.require_user(request)
    detail = listing_detail(console.engine, listing_id)
    queue = (detail or {}).get("queue") or "other"
    if decision in ("reject", "escalate") and reason_code and reason_code not in REJECT_REASONS:
        raise HTTPException(400, "pick a reason code from the policy")
    if decision == "reject" and not reason_code:
        raise HTTPException(400, "pick a reason code from the policy")
    if decision not in ("reject", "escalate"):
        reason_code = None
    if decision == "recategorise" and console.labels and new_category not in console.labels:
        raise HTTPException(400, "pick a category the model knows")
    try:
        decide(
            console.engine,
            listing_id,
            user.name,
            decision,
            reason_code=reason_code or None,
            new_category=new_category or None,
        )
    except ReviewError:
        return redirect("/", "not_decided")
    if queue in LEAD_QUEUES and not user.at_least("lead"):
        return redirect("/", "escalated")
    return _next_job(request, user.name, queue)


@router.post("/jobs/{listing_id}/move")
def move(
    request: Request,
    listing_id: str,
    queue: Annotated[str, Form()],
    csrf: Annotated[str | None, Form()] = None,
) -> Response:
    """Leads: move a pending job to another queue (this also ends anyone's lease on it)."""
    console = console_of(request)
    listing_id = _listing_id(listing_id)
    console.sessions.check_csrf(request, csrf)
    console.sessions.require_user(request, "lead")
    if queue not in QUEUES:
        raise HTTPException(400, "no such queue")
    if not move_job(console.engine, listing_id, queue):
        return redirect(job_url(listing_id), "not_pending")
    return redirect(job_url(listing_id), "moved", queue)


@router.get("/listings/{listing_id}/photos/{index}")
async def photo(request: Request, listing_id: str, index: int) -> Response:
    console = console_of(request)
    listing_id = _listing_id(listing_id)
    console.sessions.require_user(request)
    detail = await run_in_threadpool(listing_detail, console.engine, listing_id)
    ref = listing_ref(detail, index)
    data = await run_in_threadpool(
        photo_jpeg, console.fetcher, ref, console.settings.max_image_pixels
    )
    # Never kept by the browser: a banned photo must not outlive the session in its cache.
    headers = {"Cache-Control": "no-store"}
    return Response(data, media_type="image/jpeg", headers=headers)


@router.post("/listings/{listing_id}/photos/{index}/bank")
def bank_photo(
    request: Request,
    listing_id: str,
    index: int,
    bank: Annotated[str, Form()],
    csrf: Annotated[str | None, Form()] = None,
) -> Response:
    console = console_of(request)
    listing_id = _listing_id(listing_id)
    console.sessions.check_csrf(request, csrf)
    user = console.sessions.require_user(request, "lead")
    bank = bank.strip()
    if not bank:
        raise HTTPException(400, "name the bank")
    ref = listing_ref(listing_detail(console.engine, listing_id), index)
    h = photo_hash(console.fetcher, ref, console.settings.max_image_pixels)
    back = job_url(listing_id)
    if h.quality < console.policy.banks.min_quality:
        return redirect(back, "bank_low_quality")
    source = f"console: listing {listing_id} photo {index} by {user.name}"
    added = add_to_bank(console.engine, bank, [BankEntry(h.bytes, h.quality, source)])
    return redirect(back, "bank_added" if added else "bank_known")


@router.get("/policy")
def policy_page(request: Request) -> Response:
    console = console_of(request)
    user = console.sessions.require_user(request)
    text = console.settings.policy_path.read_text()
    return console.render(request, "policy.html", {"text": text}, user=user)
