"""`/healthz` for the console's container health check and load balancers: 200 when the
database answers, 503 when it does not. It needs no login and says nothing else (no host,
port or role), so it can be probed from anywhere the console is reachable."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from modq.console.context import console_of
from modq.errors import StoreUnavailable
from modq.store.intake import ping

router = APIRouter()


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    try:
        ping(console_of(request).engine)
    except StoreUnavailable:
        return JSONResponse({"database": "unavailable"}, status_code=503)
    return JSONResponse({"database": "ok"})
