"""Login and logout pages (both POSTs carry the session's CSRF token). Every refused log-in
gets the same page, status and work, whatever the reason (`Sessions.login`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from modq.console.auth import LOGIN_REFUSED, client_address
from modq.console.context import console_of, redirect
from modq.store.reviews import release

router = APIRouter()


def _safe_next(target: str) -> str:
    # Only a path on this site: never "//evil.example" or an absolute URL.
    ok = target.startswith("/") and not target.startswith("//") and "\\" not in target
    return target if ok else "/"


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    console = console_of(request)
    user = console.sessions.user(request)
    if user is not None:
        return redirect(_safe_next(next))
    return console.render(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login")
def login(
    request: Request,
    name: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf: Annotated[str | None, Form()] = None,
    next: Annotated[str, Form()] = "/",
) -> Response:
    console = console_of(request)
    console.sessions.check_csrf(request, csrf)
    user = console.sessions.login(name.strip(), password, client_address(request))
    if user is None:
        context = {"next": _safe_next(next), "error": LOGIN_REFUSED, "name": name[:200]}
        return console.render(request, "login.html", context, status=401)
    response = redirect(_safe_next(next))
    console.sessions.start(response, user)
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str | None, Form()] = None) -> Response:
    console = console_of(request)
    console.sessions.check_csrf(request, csrf)
    user = console.sessions.user(request)
    if user is not None:
        release(console.engine, user.name)
    response = redirect("/login", "logged_out")
    console.sessions.end(response, user)
    return response
