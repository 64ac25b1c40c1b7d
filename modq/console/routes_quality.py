"""Quality checks on human decisions: moderators answer blind checks (a second review of a
decided listing, or a golden one with a lead's known answer, served mixed and looking alike);
leads sample decisions and set golden checks. Policy examples: a lead marks a photo of a
decided listing as an example of a reason for the policy page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, Response

from modq.console.context import banned, redirect
from modq.console.deps import ConsoleDep, Csrf, LeadDep, UserDep
from modq.console.routes_review import listing_id_of
from modq.domain.reasons import read_all
from modq.domain.review import FINAL_DECISIONS, REJECT_REASONS
from modq.errors import ReviewError
from modq.store.review_examples import choose_example
from modq.store.review_quality import (
    GOLDEN_DECISIONS,
    add_golden,
    answer,
    next_check,
    sample_second_reviews,
)
from modq.store.review_views import listing_detail

router = APIRouter()


@router.get("/quality")
def quality_page(request: Request, console: ConsoleDep, user: UserDep) -> Response:
    item = next_check(console.engine, user.name)
    detail = listing_detail(console.engine, item.listing_id) if item is not None else None
    # Blind: the page shows the listing and the machine's reasons, never the first decision,
    # the expected answer, or whether the check is golden.
    context = {
        "item": item,
        "title": (detail or {}).get("title"),
        "photos": range(len((detail or {}).get("images") or [])),
        "blurred": banned((detail or {}).get("reasons")),
        "machine": sorted({r.code for r in read_all((detail or {}).get("reasons"))}),
        "decisions": FINAL_DECISIONS,
        "golden_decisions": GOLDEN_DECISIONS,
        "reasons": REJECT_REASONS,
    }
    return console.render(request, "quality.html", context, user=user)


@router.post("/quality/{check_id}/answer")
def answer_check(
    console: ConsoleDep,
    _csrf: Csrf,
    user: UserDep,
    check_id: int,
    decision: Annotated[str, Form()],
    reason_code: Annotated[str | None, Form()] = None,
) -> Response:
    try:
        answer(console.engine, check_id, user.name, decision, reason_code or None)
    except ReviewError as exc:
        raise HTTPException(409, f"Not recorded: {exc}") from exc
    return redirect("/quality", "checked")


@router.post("/quality/sample")
def sample(console: ConsoleDep, _csrf: Csrf, user: LeadDep, n: Annotated[int, Form()]) -> Response:
    try:
        sample_second_reviews(console.engine, user.name, n)
    except ReviewError as exc:
        raise HTTPException(400, str(exc)) from exc
    return redirect("/quality", "sampled")


@router.post("/quality/golden")
def golden(
    console: ConsoleDep,
    _csrf: Csrf,
    user: LeadDep,
    listing_id: Annotated[str, Form()],
    decision: Annotated[str, Form()],
    reason_code: Annotated[str | None, Form()] = None,
) -> Response:
    try:
        add_golden(
            console.engine, user.name, listing_id_of(listing_id), decision, reason_code or None
        )
    except ReviewError as exc:
        raise HTTPException(400, str(exc)) from exc
    return redirect("/quality", "golden_added")


@router.post("/policy/examples")
def policy_example(
    console: ConsoleDep,
    _csrf: Csrf,
    user: LeadDep,
    listing_id: Annotated[str, Form()],
    photo_index: Annotated[int, Form()],
    reason_code: Annotated[str, Form()],
) -> Response:
    try:
        choose_example(
            console.engine, user.name, listing_id_of(listing_id), photo_index, reason_code
        )
    except ReviewError as exc:
        raise HTTPException(400, str(exc)) from exc
    return redirect("/policy", "example_added")
