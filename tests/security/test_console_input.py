"""Hostile input to the console over real HTTP: ids in URLs, notices, markup and bidi
controls in seller text, redirects, deep pages and far dates, oversized bodies, photo
caching, error headers, reason codes and role checks."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from modq.console.app import SECURITY_HEADERS, create_app
from modq.domain.events import ListingEvent, parse_event
from modq.domain.verdicts import PhotoResult, Verdict
from modq.errors import EventError
from modq.store.verdicts import save_batch
from tests.console_server import PASSWORD, LiveConsole
from tests.consolekit import MODEL, POLICY, review_listing
from tests.security.kit import client, csrf_of, logged_in, page_csrf

NUDITY = "nudity: photo 0: nudity.nsfw 0.712 >= review threshold 0.5"
XSS = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def _secured(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name


def legacy_listing(live: LiveConsole, listing_id: str, photo: Path, title: str = "") -> None:
    """A listing stored before ids were checked (model_construct skips validation)."""
    event = ListingEvent.model_construct(
        listing_id=listing_id, declared_category="fashion.dress", images=[str(photo)],
        title=title or None, seller_id="seller-1", listing_version=1,
        created_at=ListingEvent(listing_id="x", declared_category="c", images=["a"]).created_at,
        schema_version=1,
    )  # fmt: skip
    top = [("fashion.dress", 0.9)]
    verdict = Verdict(
        listing_id=listing_id, listing_version=1, declared_category="fashion.dress",
        decision="review", reasons=[NUDITY], suggested=top, best_photo=0, scores=dict(top),
        photos=[PhotoResult(index=0, ref=str(photo), top=top)], model_version=MODEL,
        policy_version=POLICY,
    )  # fmt: skip
    save_batch(live.engine, [event], [verdict])


@pytest.mark.parametrize(
    "listing_id",
    ["a/b", "a?m=Call+us", "a#x", "..", "../etc", "a b", "a%2Fb", "a\x00b", "é", "x" * 129, ""],
)
def test_unsafe_ids_are_refused_when_the_event_is_parsed(listing_id: str) -> None:
    for field in ("listing_id", "seller_id"):
        event = {"listing_id": "ok-1", "declared_category": "c", "images": ["p.jpg"]}
        with pytest.raises(EventError, match=field):
            parse_event(event | {field: listing_id}, ["c"])


def test_ids_are_encoded_in_every_url_the_console_builds(
    live: LiveConsole, photos: list[Path]
) -> None:
    odd = "a?m=logged_out#frag"  # stored before ids were checked
    legacy_listing(live, odd, photos[0])
    mia = logged_in(live, "mia")
    start = mia.post("/queues/banned/start", data={"csrf": page_csrf(mia)})
    assert start.headers["location"] == "/jobs/a%3Fm%3Dlogged_out%23frag"
    page = mia.get(start.headers["location"])
    assert page.status_code == 200 and 'data-testid="listing-id">a?m=logged_out#frag<' in page.text
    assert 'action="/jobs/a%3Fm%3Dlogged_out%23frag/decide"' in page.text
    assert 'src="/listings/a%3Fm%3Dlogged_out%23frag/photos/0"' in page.text
    assert 'class="flash"' not in page.text
    decided = mia.post(
        "/jobs/a%3Fm%3Dlogged_out%23frag/decide",
        data={"csrf": csrf_of(page.text), "decision": "approve"},
    )
    assert decided.status_code == 303 and "not_decided" not in decided.headers["location"]
    assert mia.get("/jobs/a%00b").status_code == 404  # NUL: no listing, not a 500


def test_notices_come_from_fixed_codes_only(live: LiveConsole) -> None:
    http = client(live)
    for text in ("Your account is locked. Call +1 555 0100", XSS, "logged_out "):
        page = http.get("/login", params={"m": text})
        assert 'class="flash"' not in page.text and "555" not in page.text
    page = http.get("/login", params={"m": "logged_out"})
    assert 'data-testid="flash">Logged out.<' in page.text
    mia = logged_in(live, "mia")
    page = mia.get("/", params={"m": "moved", "q": "Call +1 555 0100"})
    assert "Moved to That queue." in page.text and "555" not in page.text


def test_seller_text_is_escaped_and_bidi_controls_shown(
    live: LiveConsole, photos: list[Path]
) -> None:
    review_listing(live.engine, "x1", [NUDITY], photos[:1])
    legacy_listing(live, "x2", photos[0], title=f"{XSS} \u202egpj.exe")
    page = logged_in(live, "mia").get("/jobs/x2")
    assert "<script>alert" not in page.text and 'onerror="alert' not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "\u202e" not in page.text and "&lt;U+202E&gt;gpj.exe" in page.text


def test_log_in_redirects_stay_on_the_site(live: LiveConsole) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:x"):
        http = client(live)
        token = csrf_of(http.get("/login").text)
        form = {"name": "mia", "password": PASSWORD, "csrf": token, "next": target}
        assert http.post("/login", data=form).headers["location"] == "/"


def test_deep_pages_and_far_dates_are_400s_not_500s(live: LiveConsole) -> None:
    mia = logged_in(live, "mia")
    assert mia.get("/search", params={"go": 1, "page": "1e20"}).status_code == 200  # page 1
    for params in (
        {"page": str(10**20)},
        {"until": "9999-12-31"},
        {"since": "0000-01-01"},
        {"since": "not a date"},
    ):
        response = mia.get("/search", params={"go": 1} | params)
        assert response.status_code == 400, params
        _secured(response)
    for params in (
        {"reason": "%"},
        {"reason": "_"},
        {"seller_id": "a\x00b"},
        {"listing_id": "' OR 1=1 --"},
    ):
        response = mia.get("/search", params={"go": 1} | params)
        assert response.status_code == 200, params
        assert 'data-testid="results"' not in response.text or "<td>" not in response.text


def test_an_unhandled_failure_carries_the_security_headers(live: LiveConsole) -> None:
    app = create_app(live.settings, live.engine)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("database host db.internal:5432 role modq")

    with TestClient(app, raise_server_exceptions=False) as http:
        response = http.get("/boom")
    assert response.status_code == 500
    _secured(response)
    assert "db.internal" not in response.text


def test_oversized_bodies_are_refused_before_they_are_read(live: LiveConsole) -> None:
    http = client(live)
    token = csrf_of(http.get("/login").text)
    big = {"name": "mia", "password": "x" * (1 << 20), "csrf": token}
    response = http.post("/login", data=big)
    assert response.status_code == 413
    _secured(response)
    # Declared 64 MB, 1 KB sent: answered 413 on the header alone, without waiting for the rest.
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = f"POST /login HTTP/1.1\r\nHost: {host}\r\nContent-Length: {64 << 20}\r\n"
        sock.sendall(head.encode() + b"Content-Type: text/plain\r\n\r\n" + b"x" * 1024)
        assert sock.recv(4096).startswith(b"HTTP/1.1 413 ")

    def chunks() -> object:
        for _ in range(64):
            yield b"name=" + b"x" * (1 << 20)

    try:  # no Content-Length (chunked): refused once the bytes read pass the limit
        form_type = {"content-type": "application/x-www-form-urlencoded"}
        response = http.post("/login", content=chunks(), headers=form_type)  # type: ignore[arg-type]
        assert response.status_code == 413
    except (httpx.RemoteProtocolError, httpx.WriteError):
        pass
    assert client(live).get("/login").status_code == 200  # the console still answers


def test_photos_are_never_cached(live: LiveConsole, photos: list[Path]) -> None:
    review_listing(live.engine, "p1", [NUDITY], photos[:1])
    mia = logged_in(live, "mia")
    photo = mia.get("/listings/p1/photos/0")
    assert photo.status_code == 200 and photo.headers["cache-control"] == "no-store"
    assert mia.get("/jobs/p1").headers["cache-control"] == "no-store"
    assert client(live).get("/listings/p1/photos/0").status_code == 401


def test_reason_codes_roles_and_other_peoples_jobs(live: LiveConsole, photos: list[Path]) -> None:
    review_listing(live.engine, "r1", [NUDITY], photos[:1])
    mia, max_ = logged_in(live, "mia"), logged_in(live, "max")
    token = page_csrf(mia)
    assert mia.post("/queues/banned/start", data={"csrf": token}).status_code == 303
    for decision in ("escalate", "reject"):
        form = {"csrf": token, "decision": decision, "reason_code": "anything <b>at all</b>"}
        assert mia.post("/jobs/r1/decide", data=form).status_code == 400
    # max may not decide mia's job, nor move it (a lead's action), nor escalate-queue it.
    form = {"csrf": page_csrf(max_), "decision": "approve"}
    refused = max_.post("/jobs/r1/decide", data=form)
    assert refused.status_code == 409 and "claimed by mia, not you" in refused.text
    move = {"csrf": page_csrf(max_), "queue": "other"}
    assert max_.post("/jobs/r1/move", data=move).status_code == 403
    assert max_.post("/queues/escalated/start", data={"csrf": page_csrf(max_)}).status_code == 403
