"""What every console request handler shares: the `Console` (engine, sessions, the worker's
confined photo loader, policy, labels, templates), how a handler finds it, and redirects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from modq.console.auth import CurrentUser, Sessions
from modq.domain.contract import read_contract
from modq.pipeline.fetch import PhotoFetcher
from modq.policy.policy import Policy
from modq.settings import Settings
from modq.store.database import Engine

HERE = Path(__file__).parent


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
    templates: Jinja2Templates = field(
        default_factory=lambda: Jinja2Templates(directory=str(HERE / "templates"))
    )

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
        values = {"user": user, "csrf": session["csrf"], "flash": request.query_params.get("m")}
        response = self.templates.TemplateResponse(
            request, template, values | context, status_code=status
        )
        self.sessions.write(response, session)
        return response


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def redirect(url: str, message: str | None = None) -> RedirectResponse:
    if message:
        url += ("&" if "?" in url else "?") + "m=" + quote(message)
    return RedirectResponse(url, status_code=303)
