"""Photos of a listing (thumbnail, job view, full size), and (leads) adding one to a bank.

Every size goes through the worker's confined loader and is re-encoded (photos.py); none is
kept by the browser. Blurring is the page's business: the full-size view opens in an overlay
that stays blurred until the moderator reveals it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Response
from fastapi.concurrency import run_in_threadpool

from modq.console.context import job_url, redirect
from modq.console.deps import ConsoleDep, Csrf, LeadDep, UserDep
from modq.console.photos import listing_ref, photo_hash, photo_jpeg
from modq.console.routes_review import listing_id_of
from modq.store.banks import add_to_bank
from modq.store.interface import BankEntry
from modq.store.review_views import listing_detail

router = APIRouter()


@router.get("/listings/{listing_id}/photos/{index}")
async def photo(
    console: ConsoleDep,
    _user: UserDep,
    listing_id: str,
    index: int,
    size: Literal["thumb", "view", "full"] = "view",
) -> Response:
    listing_id = listing_id_of(listing_id)
    detail = await run_in_threadpool(listing_detail, console.engine, listing_id)
    ref = listing_ref(detail, index)
    data = await run_in_threadpool(
        photo_jpeg, console.fetcher, ref, console.settings.max_image_pixels, size
    )
    # Never kept by the browser: a banned photo must not outlive the session in its cache.
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.post("/listings/{listing_id}/photos/{index}/bank")
def bank_photo(
    console: ConsoleDep,
    _csrf: Csrf,
    user: LeadDep,
    listing_id: str,
    index: int,
    bank: Annotated[str, Form()],
) -> Response:
    listing_id = listing_id_of(listing_id)
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
