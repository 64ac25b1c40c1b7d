"""Search page: listings with the machine's and the human decision, filtered and paginated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request, Response

from modq.console.deps import ConsoleDep, UserDep
from modq.domain.reasons import read_all
from modq.domain.review import QUEUES, REJECT_REASONS
from modq.store.review_views import SearchQuery, search

router = APIRouter()
FIELDS = ("listing_id", "seller_id", "category", "decision", "final", "reason", "since", "until")
# Deeper pages are refused rather than turned into an OFFSET PostgreSQL cannot hold.
MAX_PAGE = 10_000


def _date(text: str, *, end: bool = False) -> datetime | None:
    """A date (or date and time) in UTC; `end`: a bare date means the end of that day."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
        if end and len(text) == 10:
            value += timedelta(days=1)
    except (ValueError, OverflowError) as exc:  # 9999-12-31 + 1 day overflows
        raise HTTPException(400, "not a date (use YYYY-MM-DD)") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@router.get("/search")
def search_page(request: Request, console: ConsoleDep, user: UserDep) -> Response:
    # PostgreSQL text cannot hold NUL: dropped, not a 500.
    params = {
        name: request.query_params.get(name, "").replace("\x00", "").strip()[:200]
        for name in FIELDS
    }
    try:
        page = max(1, int(request.query_params.get("page", "1")[:12]))
    except ValueError:
        page = 1
    if page > MAX_PAGE:
        raise HTTPException(400, f"at most {MAX_PAGE} pages: narrow the search")
    rows: list[dict[str, object]] = []
    more = False
    if any(params.values()) or "go" in request.query_params:
        query = SearchQuery(
            listing_id=params["listing_id"],
            seller_id=params["seller_id"],
            category=params["category"],
            decision=params["decision"],
            final=params["final"],
            reason=params["reason"],
            since=_date(params["since"]),
            until=_date(params["until"], end=True),
            page=page,
        )
        rows, more = search(console.engine, query)
        for row in rows:
            row["reasons"] = read_all(row["reasons"])  # type: ignore[arg-type]
    base = {k: v for k, v in params.items() if v} | {"go": "1"}
    context = {
        "p": params,
        "rows": rows,
        "page": page,
        "prev_url": f"/search?{urlencode(base | {'page': page - 1})}" if page > 1 else None,
        "next_url": f"/search?{urlencode(base | {'page': page + 1})}" if more else None,
        "reasons": sorted(set(REJECT_REASONS) | {"category_near_miss", "no_readable_photos"}),
        "queues": QUEUES,
    }
    return console.render(request, "search.html", context, user=user)
