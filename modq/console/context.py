"""What every console request handler shares: the `Console` (engine, sessions, the worker's
confined photo loader, policy, labels, templates), how a handler finds it, redirects, and the
notices a redirect may show.

A notice travels in the URL as a fixed code (`?m=moved&q=other`), never as text: a link
cannot make the console print words of its author's choosing. An unknown code shows nothing;
the one parameter, `q`, must name a queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from modq.console.auth import CurrentUser, Sessions
from modq.console.metrics_cache import MetricsCache
from modq.domain.contract import read_contract
from modq.domain.reasons import Reason
from modq.domain.review import BANNED_CODES, QUEUES
from modq.pipeline.fetch import PhotoFetcher
from modq.policy.policy import Policy
from modq.settings import Settings
from modq.store.database import Engine

HERE = Path(__file__).parent

NOTICES = {
    "logged_out": "Logged out.",
    "queue_empty": "{queue}: nothing left to review.",
    "escalated": "Escalated to a lead.",
    "recorded": "Recorded: see “My recent decisions” (u undoes the latest).",
    "bulk_done": "Recorded on every selected job, each as its own audited decision.",
    "bulk_partial": (
        "Recorded on some of the selected jobs only: the others were taken by someone else, "
        "moved or decided meanwhile."
    ),
    "undone": "Undone: the job is yours again; decide it anew.",
    "not_decided": (
        "That decision was not recorded: the job is no longer yours (taken by someone else, "
        "expired or already decided). Start again from its queue."
    ),
    "not_pending": "No pending review to move.",
    "moved": "Moved to {queue}.",
    "bank_added": "Photo added to the bank.",
    "checked": "Answer recorded (blind: it is compared with the expected answer later).",
    "sampled": "Decisions sampled for a blind second review.",
    "golden_added": "Golden check added: it is served among the quality checks.",
    "example_added": "Photo added to the policy page as an example.",
    "bank_known": "That photo is already in the bank.",
    "bank_low_quality": "Not added: the photo's PDQ quality is too low to match.",
}


def notice(query: Any) -> str | None:
    """The text of the notice a URL's `m` (and `q`) ask for, or None."""
    text = NOTICES.get(str(query.get("m") or ""))
    if text is None:
        return None
    queue = QUEUES.get(str(query.get("q") or ""), "That queue")
    return text.format(queue=queue)


# Bidirectional controls (LRE..RLO, LRI..PDI, LRM, RLM, ALM): a seller's title must not
# reorder what the console shows around or inside it.
_BIDI = {cp: f"<U+{cp:04X}>" for cp in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
_BIDI |= {cp: f"<U+{cp:04X}>" for cp in (0x200E, 0x200F, 0x061C)}


def visible(value: object) -> str:
    """Seller text with its bidirectional control characters shown as code points."""
    return str(value).translate(_BIDI)


def banned(reasons: Any) -> bool:
    """Whether a listing's reasons suspect banned content: its thumbnails are blurred too."""
    return any(Reason.read(r).code in BANNED_CODES for r in reasons or [])


def segment(value: object) -> str:
    """`value` as one URL path segment: `/ ? # %` and the rest percent-encoded."""
    return quote(str(value), safe="")


def model_labels(settings: Settings) -> list[str]:
    """The categories a moderator may re-categorise to: the deployed model's labels."""
    return list(read_contract(settings.model_path).labels)


@dataclass
class Console:
    settings: Settings
    engine: Engine
    sessions: Sessions
    fetcher: PhotoFetcher
    policy: Policy
    labels: list[str]
    metrics: MetricsCache
    templates: Jinja2Templates = field(default_factory=lambda: _templates())

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        *,
        user: CurrentUser | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        session = self.sessions.read(request)
        values = {"user": user, "csrf": session["csrf"], "flash": notice(request.query_params)}
        response = self.templates.TemplateResponse(
            request, template, values | context, status_code=status
        )
        self.sessions.write(response, session)
        return response


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["segment"] = segment
    templates.env.filters["visible"] = visible
    templates.env.filters["banned"] = banned
    return templates


def redirect(url: str, code: str | None = None, queue: str | None = None) -> RedirectResponse:
    """303 to `url` (a path built with `segment` for ids), with the notice `code`."""
    if code:
        if code not in NOTICES:
            raise ValueError(f"no notice {code!r}")
        url += ("&" if "?" in url else "?") + "m=" + code
        if queue in QUEUES:
            url += "&q=" + quote(queue)
    return RedirectResponse(url, status_code=303)


def job_url(listing_id: str) -> str:
    return f"/jobs/{segment(listing_id)}"
