"""Review pages: queues with counts, "start reviewing", the job view, decisions, and (leads)
moving a job to another queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, Response

from modq.console.context import job_url, redirect
from modq.console.deps import ConsoleDep, Csrf, LeadDep, UserDep
from modq.domain.reasons import CODES, Reason, read_all
from modq.domain.review import LEAD_QUEUES, QUEUES, has_banned_content
from modq.errors import ReviewError
from modq.store.banks import list_banks
from modq.store.review_shift import claim_job, job_queue, recent_decisions
from modq.store.review_views import (
    SORTS,
    QueueFilter,
    listing_detail,
    queue_page,
    review_history,
    seller_listings,
    verdict_history,
)
from modq.store.reviews import MAX_NOTE, claim_next, decide, move_job, queue_counts

router = APIRouter()
# What a moderator may give as the reason of a reject or an escalation, with its title.
REASON_CHOICES: dict[str, str] = {c: i.title for c, i in CODES.items() if i.rejectable}


def listing_id_of(listing_id: str) -> str:
    """A listing id from the URL, or 404 for one no listing can have (PostgreSQL text cannot
    hold NUL; ids are at most 128 characters)."""
    if "\x00" in listing_id or len(listing_id) > 128:
        raise HTTPException(404, "no such listing")
    return listing_id


def queue_role(queue: str) -> str:
    if queue not in QUEUES:
        raise HTTPException(404, "no such queue")
    return "lead" if queue in LEAD_QUEUES else "moderator"


@dataclass(frozen=True)
class PhotoRow:
    index: int
    error: str | None
    top: str | None  # the model's top category for this photo, "label 0.91"
    reasons: list[str]  # the codes of the machine reasons naming this photo


def _photo_rows(detail: dict[str, Any], reasons: list[Reason]) -> list[PhotoRow]:
    stored = list(detail.get("photos") or [])
    rows = []
    for i in range(len(detail.get("images") or [])):
        p = stored[i] if i < len(stored) else {}
        top = p.get("top") or []
        rows.append(
            PhotoRow(
                index=i,
                error=f"{p['error_code']}: {p.get('error')}" if p.get("error_code") else None,
                top=f"{top[0][0]} {top[0][1]:.2f}" if top else None,
                reasons=sorted({r.code for r in reasons if r.photo == i}),
            )
        )
    return rows


@router.get("/")
def home(request: Request, console: ConsoleDep, user: UserDep) -> Response:
    counts = queue_counts(console.engine)
    recent = recent_decisions(console.engine, user.name, _undo_s(console))
    return console.render(request, "home.html", {"queues": counts, "recent": recent}, user=user)


@router.get("/api/queues")
def api_queues(console: ConsoleDep, user: UserDep) -> list[dict[str, Any]]:
    return [
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
        for row in queue_counts(console.engine)
    ]


def _undo_s(console: Any) -> float:
    return float(console.settings.console_undo_minutes) * 60


def next_job(console: Any, user_name: str, queue: str, code: str | None = None) -> Response:
    claim = claim_next(console.engine, user_name, queue, console.settings.review_lease_s)
    if claim is None:
        return redirect("/", "queue_empty", queue)
    return redirect(job_url(claim.listing_id), code)


@router.post("/queues/{queue}/start")
def start(console: ConsoleDep, _csrf: Csrf, request: Request, queue: str) -> Response:
    user = console.sessions.require_user(request, queue_role(queue))
    return next_job(console, user.name, queue)


@router.get("/jobs/{listing_id}")
def job_view(request: Request, console: ConsoleDep, user: UserDep, listing_id: str) -> Response:
    listing_id = listing_id_of(listing_id)
    detail = listing_detail(console.engine, listing_id)
    if detail is None:
        raise HTTPException(404, "no such listing")
    reasons = read_all(detail.get("reasons"))
    until = detail.get("claimed_until")
    until = until.replace(tzinfo=until.tzinfo or UTC) if until is not None else None
    # Still theirs after the lease ran out, while nobody else claimed it (store.decide).
    holds = detail.get("claimed_by") == user.name and detail.get("job_decided_at") is None
    suggested = [r.code for r in reasons if r.code in REASON_CHOICES]
    context = {
        "d": detail,
        "reasons": reasons,
        "suggested": list(dict.fromkeys(suggested)),
        "blur": has_banned_content(reasons),
        "top3": list(detail.get("suggested") or [])[:3],
        "photos": _photo_rows(detail, reasons),
        "history": verdict_history(console.engine, listing_id),
        "audit": review_history(console.engine, listing_id),
        "seller": seller_listings(console.engine, detail.get("seller_id"), listing_id),
        "holds": holds,
        "lease_until": until.isoformat() if holds and until else "",
        "lease_s": console.settings.review_lease_s,
        "categories": console.labels or sorted(detail.get("scores") or {}),
        "reason_choices": REASON_CHOICES,
        "max_note": MAX_NOTE,
        "queues": QUEUES,
        "recent": recent_decisions(console.engine, user.name, _undo_s(console)),
        "banks": [b["name"] for b in list_banks(console.engine)] if user.at_least("lead") else [],
    }
    return console.render(request, "job.html", context, user=user)


def _marked(values: list[str] | None) -> list[int]:
    try:
        marked = sorted({int(v) for v in values or []})
    except ValueError as exc:
        raise HTTPException(400, "photo marks are photo numbers") from exc
    if any(not 0 <= i < 1000 for i in marked):
        raise HTTPException(400, "no such photo")
    return marked


@router.post("/jobs/{listing_id}/decide")
def decide_job(
    console: ConsoleDep,
    _csrf: Csrf,
    user: UserDep,
    listing_id: str,
    decision: Annotated[str, Form()],
    reason_code: Annotated[str | None, Form()] = None,
    new_category: Annotated[str | None, Form()] = None,
    note: Annotated[str | None, Form(max_length=MAX_NOTE)] = None,
    not_showing: Annotated[list[str] | None, Form()] = None,
) -> Response:
    listing_id = listing_id_of(listing_id)
    detail = listing_detail(console.engine, listing_id)
    queue = (detail or {}).get("queue") or "other"
    if decision in ("reject", "escalate"):
        # Never a default: the moderator picks the reason (the machine's are suggestions).
        if not reason_code or reason_code not in REASON_CHOICES:
            raise HTTPException(400, f"{decision}: pick a reason from the policy")
    else:
        reason_code = None
    if decision == "recategorise" and (new_category or "") not in console.labels:
        raise HTTPException(400, "pick a category the model knows")
    try:
        decide(
            console.engine,
            listing_id,
            user.name,
            decision,
            reason_code=reason_code,
            new_category=new_category or None,
            note=note,
            not_showing=_marked(not_showing),
        )
    except ReviewError as exc:
        # A clear refusal on the job's own page (who took it, or that it was decided).
        raise HTTPException(409, f"Not recorded: {exc}") from exc
    if queue in LEAD_QUEUES and not user.at_least("lead"):
        return redirect("/", "recorded")
    return next_job(console, user.name, queue, "recorded")


@router.post("/jobs/{listing_id}/move")
def move(
    console: ConsoleDep,
    _csrf: Csrf,
    _lead: LeadDep,
    listing_id: str,
    queue: Annotated[str, Form()],
) -> Response:
    """Leads: move a pending job to another queue (this also ends anyone's lease on it)."""
    listing_id = listing_id_of(listing_id)
    if queue not in QUEUES:
        raise HTTPException(400, "no such queue")
    if not move_job(console.engine, listing_id, queue):
        return redirect(job_url(listing_id), "not_pending")
    return redirect(job_url(listing_id), "moved", queue)


BULK_MAX = 50
BULK_DECISIONS = ("approve", "reject")


def _queue_filter(request: Request) -> QueueFilter:
    q = request.query_params
    older = q.get("older_than_h", "").strip()
    try:
        older_h = float(older) if older else None
    except ValueError as exc:
        raise HTTPException(400, "age: a number of hours") from exc
    if older_h is not None and not 0 <= older_h <= 24 * 365:
        raise HTTPException(400, "age: between 0 and 8760 hours")
    sort = q.get("sort", "claim")
    if sort not in SORTS:
        raise HTTPException(400, "no such sort")
    return QueueFilter(
        reason=q.get("reason", "").strip()[:64],
        category=q.get("category", "").strip()[:128],
        model_version=q.get("model_version", "").strip()[:128],
        older_than_h=older_h,
        sort=sort,
    )


@router.get("/queues/{queue}")
def queue_view(request: Request, console: ConsoleDep, queue: str) -> Response:
    user = console.sessions.require_user(request, queue_role(queue))
    flt = _queue_filter(request)
    context = {
        "queue": queue,
        "title": QUEUES[queue],
        "rows": queue_page(console.engine, queue, flt),
        "flt": flt,
        "reason_codes": list(CODES),
        "categories": console.labels,
        "sorts": SORTS,
        "now": datetime.now(UTC),
        "bulk_max": BULK_MAX,
        "reason_choices": REASON_CHOICES,
    }
    return console.render(request, "queue.html", context, user=user)


@router.post("/jobs/{listing_id}/claim")
def claim_one(console: ConsoleDep, _csrf: Csrf, request: Request, listing_id: str) -> Response:
    """Claim a chosen row of a queue page (if nobody else holds it) and open it."""
    listing_id = listing_id_of(listing_id)
    queue = job_queue(console.engine, listing_id)
    if queue is None:
        raise HTTPException(409, "that job is no longer pending")
    user = console.sessions.require_user(request, queue_role(queue))
    if not claim_job(console.engine, listing_id, user.name, console.settings.review_lease_s):
        raise HTTPException(409, "someone else is reviewing that job now")
    return redirect(job_url(listing_id))


@router.post("/queues/{queue}/bulk")
def bulk_decide(
    console: ConsoleDep,
    _csrf: Csrf,
    user: LeadDep,
    queue: str,
    decision: Annotated[str, Form()],
    listing_ids: Annotated[list[str] | None, Form()] = None,
    reason_code: Annotated[str | None, Form()] = None,
    note: Annotated[str | None, Form(max_length=MAX_NOTE)] = None,
) -> Response:
    """Leads: one decision on a selection (at most BULK_MAX) of a queue's jobs, each claimed
    and recorded as its own review row (the audit names the lead on every one); a job
    someone else holds, or no longer in this queue, is left alone."""
    queue_role(queue)
    ids = list(dict.fromkeys(listing_ids or []))
    if not ids or len(ids) > BULK_MAX:
        raise HTTPException(400, f"select between 1 and {BULK_MAX} jobs")
    if decision not in BULK_DECISIONS:
        raise HTTPException(400, "bulk decisions: approve or reject")
    if decision == "reject" and reason_code not in REASON_CHOICES:
        raise HTTPException(400, "reject: pick a reason from the policy")
    done = 0
    for listing_id in map(listing_id_of, ids):
        if job_queue(console.engine, listing_id) != queue:
            continue
        if not claim_job(console.engine, listing_id, user.name, console.settings.review_lease_s):
            continue
        try:
            decide(console.engine, listing_id, user.name, decision,
                   reason_code=reason_code if decision == "reject" else None,
                   note=note or f"bulk {decision}")  # fmt: skip
            done += 1
        except ReviewError:
            continue
    return redirect(f"/queues/{queue}", "bulk_done" if done == len(ids) else "bulk_partial")
