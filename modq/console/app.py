"""The console's FastAPI application: routers, error pages, security headers.

`create_app(settings)` builds everything a request needs once (database engine, session
signer, the worker's confined photo loader, the model's category labels, templates) and
mounts one router per page group (routes_*.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from modq.console import (
    routes_auth,
    routes_health,
    routes_metrics,
    routes_review,
    routes_search,
)
from modq.console.auth import NotLoggedIn, Sessions
from modq.console.context import HERE, Console, console_of, model_labels, redirect
from modq.pipeline.fetch import PhotoFetcher
from modq.policy.policy import Policy
from modq.settings import Settings
from modq.store.database import Engine, make_engine

# Paths that answer 401 rather than redirect to the login page.
_MACHINE_PREFIXES = ("/api/", "/listings/")


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
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
        labels=model_labels(settings),
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for module in (routes_auth, routes_review, routes_search, routes_metrics, routes_health):
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


__all__ = ["create_app"]
