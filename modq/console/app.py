"""The console's FastAPI application: routers, error pages, security headers, body limit.

`create_app(settings)` builds everything a request needs once (database engine, session
signer, the worker's confined photo loader, the model's category labels, templates) and
mounts one router per page group (routes_*.py). Every response, errors and unhandled
failures included, carries the security headers; a request body over `MAX_BODY_BYTES` is
refused with 413 before it is read whole (the console's forms are a few hundred bytes).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modq.console import (
    routes_auth,
    routes_health,
    routes_metrics,
    routes_photos,
    routes_quality,
    routes_review,
    routes_search,
    routes_shift,
)
from modq.console.auth import NotLoggedIn, Sessions
from modq.console.context import HERE, Console, console_of, model_labels, redirect
from modq.console.metrics_cache import MetricsCache
from modq.pipeline.fetch import PhotoFetcher
from modq.policy.policy import Policy
from modq.settings import Settings
from modq.store.database import Engine, make_engine

log = logging.getLogger(__name__)

# Paths that answer 401 rather than redirect to the login page.
_MACHINE_PREFIXES = ("/api/", "/listings/")
MAX_BODY_BYTES = 64 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


class BodyLimit:
    """Refuse (413) a request whose body is over `limit` bytes: at once when its
    Content-Length says so, else (chunked) as soon as the bytes read pass the limit, so an
    anonymous client cannot make the console buffer megabytes."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = _secured(PlainTextResponse("request body too large", 413))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            # The server holds the client to its Content-Length: checking it is enough.
            if not declared.isdigit() or int(declared) > self.limit:
                await too_large(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        # No length given: read (at most `limit` bytes) before the app sees any of it.
        messages: list[Message] = []
        size, more = 0, True
        while more:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            more = message["type"] == "http.request" and bool(message.get("more_body"))
            if size > self.limit:
                await too_large(scope, receive, send)
                return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    engine = engine or make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.console.metrics.warm()
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
        metrics=MetricsCache(engine, settings.console_metrics_cache_s),
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    routers = (routes_auth, routes_review, routes_photos, routes_shift, routes_search,
               routes_metrics, routes_quality, routes_health)  # fmt: skip
    for module in routers:
        app.include_router(module.router)

    @app.exception_handler(NotLoggedIn)
    async def _not_logged_in(request: Request, _exc: NotLoggedIn) -> Response:
        if request.url.path.startswith(_MACHINE_PREFIXES) or request.method != "GET":
            return JSONResponse({"detail": "log in first"}, status_code=401)
        return redirect(f"/login?next={quote(request.url.path)}")

    @app.exception_handler(Exception)
    async def _failure(request: Request, exc: Exception) -> Response:
        # Outside the header middleware: add the headers here, and say nothing of the cause.
        log.exception("console: %s %s failed", request.method, request.url.path)
        return _secured(PlainTextResponse("internal error: the failure is logged", 500))

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
        return _secured(await call_next(request))

    app.add_middleware(BodyLimit)
    return app


__all__ = ["create_app"]
