"""Event parsing and settings validation: the two doors every value comes in by, checked
without services. Each refusal names what is wrong, so an operator or a producer can act."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from modq.domain.events import (
    MAX_IMAGES,
    MAX_REF_CHARS,
    ListingEvent,
    latest_versions,
    parse_event,
    raw_text,
)
from modq.errors import EventError
from modq.settings import Settings

CATEGORIES = {"fashion.shoes", "food.fruit"}
GOOD = {"listing_id": "L-1", "declared_category": "fashion.shoes", "images": ["a.jpg"]}


def test_a_good_event_parses_from_text_bytes_and_a_dict() -> None:
    for raw in (json.dumps(GOOD), json.dumps(GOOD).encode(), dict(GOOD)):
        event = parse_event(raw, CATEGORIES)
        assert (event.listing_id, event.listing_version, event.images) == ("L-1", 1, ["a.jpg"])
        assert event.created_at.tzinfo is not None


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[" * 100_000 + "]" * 100_000, "not JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        ({**GOOD, "declared_category": "pets.dog"}, "unknown category 'pets.dog'"),
        ({**GOOD, "images": []}, "images"),
        ({**GOOD, "images": ["x.jpg"] * (MAX_IMAGES + 1)}, "too many images: 11"),
        ({**GOOD, "images": ["  "]}, "non-empty"),
        ({**GOOD, "images": ["x" * (MAX_REF_CHARS + 1)]}, f"at most {MAX_REF_CHARS}"),
        ({**GOOD, "images": ["a\x00.jpg"]}, "NUL"),
        ({**GOOD, "listing_id": "../etc"}, "listing_id"),
        ({**GOOD, "seller_id": "a b"}, "seller_id"),
        ({**GOOD, "title": "bad \ud800 text"}, "title"),
        ({**GOOD, "schema_version": 2}, "unsupported schema_version 2"),
        ({**GOOD, "listing_version": 0}, "listing_version"),
        ({**GOOD, "colour": "red"}, "colour"),
        ({"declared_category": "fashion.shoes", "images": ["a.jpg"]}, "listing_id"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_a_bad_event_is_refused_with_a_reason(raw: object, says: str) -> None:
    with pytest.raises(EventError) as info:
        parse_event(raw, CATEGORIES)  # type: ignore[arg-type]
    assert says in str(info.value)


def test_the_message_body_round_trips() -> None:
    event = ListingEvent(**GOOD, seller_id="s1", title="Shoes", listing_version=3)
    body = event.to_message()
    assert json.loads(json.dumps(body)) == body
    assert parse_event(body, CATEGORIES) == event
    assert raw_text(body) == json.dumps(body) and raw_text(b"\xffx") == "\ufffdx"


def test_the_newest_version_of_each_listing_wins_and_a_later_copy_wins_a_tie() -> None:
    a1 = ListingEvent(**{**GOOD, "listing_id": "a", "listing_version": 1})
    a3 = a1.model_copy(update={"listing_version": 3})
    a3_again = a3.model_copy(update={"title": "again"})
    b = a1.model_copy(update={"listing_id": "b"})
    kept = latest_versions([a3, b, a1, a3_again])
    assert [(e.listing_id, e.listing_version, e.title) for e in kept] == [
        ("a", 3, "again"),
        ("b", 1, None),
    ]


def test_naive_times_are_taken_as_utc() -> None:
    event = ListingEvent(**GOOD, created_at=datetime(2026, 1, 2, 3, 4))
    assert event.created_at.utcoffset() is not None and event.created_at.hour == 3


# --- settings ----------------------------------------------------------------------------------


def test_the_visibility_timeout_must_cover_two_batch_deadlines() -> None:
    with pytest.raises(ValidationError, match="must exceed two batch deadlines"):
        Settings(visibility_timeout_s=10, batch_deadline_s=5, batch_interval_s=1)
    Settings(visibility_timeout_s=12, batch_deadline_s=5, batch_interval_s=1)


def test_comma_lists_come_from_one_environment_string(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODQ_DETECTORS", "nudity, banks,,")
    monkeypatch.setenv("MODQ_IMAGE_ROOTS", "/a,/b")
    settings = Settings()
    assert settings.detectors == ["nudity", "banks"]
    assert settings.image_roots == ["/a", "/b"]


@pytest.mark.parametrize(
    ("given", "password", "used"),
    [
        ("postgresql://modq@db/modq", "p@ss/word", "postgresql+psycopg2://modq:p%40ss%2Fword@db/modq"),
        ("postgresql://modq:kept@db/modq", "other", "postgresql+psycopg2://modq:kept@db/modq"),
        ("postgresql://db/modq", "unused", "postgresql+psycopg2://db/modq"),
        ("sqlite:///x.db", "unused", "sqlite:///x.db"),
    ],
)  # fmt: skip
def test_the_database_password_goes_into_a_url_that_has_a_user_and_no_password(
    given: str, password: str, used: str
) -> None:
    settings = Settings(database_url=given, database_password=SecretStr(password))
    assert settings.database_url == used
    assert password not in repr(settings)


@pytest.mark.parametrize(
    "field",
    ["max_deliveries", "intake_keep_days"],
)
def test_counts_and_durations_must_be_positive(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: 0})  # type: ignore[arg-type]


def test_settings_pass_to_a_child_process_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path, detectors=["banks"], max_deliveries=5)
    env = settings.to_env()
    assert all(k.startswith("MODQ_") for k in env)
    assert env["MODQ_MAX_DELIVERIES"] == "5"
    for name, value in env.items():  # what the child process finds
        monkeypatch.setenv(name, value)
    again = Settings()
    assert again.detectors == ["banks"] and again.data_dir == tmp_path
