"""What console handlers declare instead of repeating a preamble: the `Console`, its Settings,
the logged-in user (at a role), and a checked CSRF token.

Declare `Csrf` before the user in a POST handler's parameters: FastAPI resolves dependencies
in order, so a forged form is refused (403) before anything else is read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Request

from modq.console.auth import CurrentUser
from modq.console.context import Console, console_of
from modq.settings import Settings


def _console(request: Request) -> Console:
    return console_of(request)


ConsoleDep = Annotated[Console, Depends(_console)]


def _settings(console: ConsoleDep) -> Settings:
    return console.settings


SettingsDep = Annotated[Settings, Depends(_settings)]


def _user(request: Request, console: ConsoleDep) -> CurrentUser:
    return console.sessions.require_user(request)


def _lead(request: Request, console: ConsoleDep) -> CurrentUser:
    return console.sessions.require_user(request, "lead")


UserDep = Annotated[CurrentUser, Depends(_user)]
LeadDep = Annotated[CurrentUser, Depends(_lead)]


def _csrf(
    request: Request, console: ConsoleDep, csrf: Annotated[str | None, Form()] = None
) -> None:
    console.sessions.check_csrf(request, csrf)


Csrf = Annotated[None, Depends(_csrf)]
