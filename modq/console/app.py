"""The console's FastAPI application: shared state, rendering, errors, security headers.

`create_app(settings)` builds everything a request needs once (database engine, session
signer, the worker's confined photo loader, the model's category labels, templates) and
mounts one router per page group (routes_*.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from modq.console.auth import CurrentUser, NotLoggedIn, Sessions
from modq.pipeline.fetch import PhotoFetcher
from modq.policy.policy import Policy
from modq.settings import Settings
from modq.store.database import make_engine

HERE = Path(__file__).parent
# Paths that answer 401 rather than redirect to the login page.
_MACHINE_PREFIXES = ("/api/", "/listings/")


def _model_labels(settings: Settings) -> list[str]:
    try:
        from modq.pipeline.infer import read_contract

        return list(read_contract(settings.model_path).labels)
    except Exception:
        return []


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


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    from modq.console import routes_auth, routes_metrics, routes_review, routes_search

    engine = engine or make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.console.fetcher.close()

    app = FastAPI(
        title="modq console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.console = Console(
        settings=settings,
        engine=engine,
        sessions=Sessions(settings, engine),
        fetcher=PhotoFetcher(settings),
        policy=Policy.load(settings.policy_path),
        labels=_model_labels(settings),
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for module in (routes_auth, routes_review, routes_search, routes_metrics):
        app.include_router(module.router)

    @app.exception_handler(NotLoggedIn)
    async def _not_logged_in(request: Request, _exc: NotLoggedIn) -> Response:
        if request.url.path.startswith(_MACHINE_PREFIXES) or request.method != "GET":
            return JSONResponse({"detail": "log in first"}, status_code=401)
        return redirect(f"/login?next={quote(request.url.path)}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(_MACHINE_PREFIXES):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        console = console_of(request)
        user = console.sessions.user(request)
        context = {"status": exc.status_code, "detail": exc.detail}
        return console.render(request, "error.html", context, user=user, status=exc.status_code)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


__all__ = ["Console", "HTTPException", "console_of", "create_app", "redirect"]
