"""The reason type (modq/domain/reasons.py) and routing by reason code, without services.

`parse_legacy` must read every reason string a released modq wrote into a verdict. The
formats below are the f-strings of modq/policy and of worker/policy before it, as
`git log -p -- modq/policy worker` shows them (commits 50ef821, 99f478d, bf84b1f, e128e95).
"""

from __future__ import annotations

import pytest

from modq.domain.reasons import CODES, UNKNOWN, Reason, info, parse_legacy, read_all
from modq.domain.review import QUEUES, has_banned_content, route, route_reasons

# (string as stored, the fields parse_legacy must recover from it)
LEGACY = [
    # Detector hit: f"{code}: photo {photo}: {key} {score:.3f} >= {action} threshold {threshold:g}"
    (
        "nudity: photo 0: nudity.nsfw 0.910 >= reject threshold 0.9",
        {"code": "nudity", "photo": 0, "label": "nudity.nsfw", "score": 0.91, "threshold": 0.9},
    ),
    (
        "prohibited_item: photo 2: prohibited.firearm 0.644 >= review threshold 0.5",
        {"code": "prohibited_item", "photo": 2, "label": "prohibited.firearm", "score": 0.644},
    ),
    (
        "contact_details: photo 1: contacts.phone 1.000 >= review threshold 1",
        {"code": "contact_details", "photo": 1, "label": "contacts.phone", "threshold": 1.0},
    ),
    # A detector hit with the bank matcher's evidence appended (bf84b1f): ": {evidence}".
    (
        "duplicate_photo: photo 0: duplicate.photo 0.992 >= review threshold 0.97: "
        "listing L9 photo 1",
        {"code": "duplicate_photo", "photo": 0, "label": "duplicate.photo", "score": 0.992},
    ),
    # Image bank (99f478d), with and without evidence (bf84b1f).
    (
        "banned_image: bank CSAI: photo 3: PDQ distance 4 <= 31 (score 0.984 >= reject 0.9)",
        {"code": "banned_image", "photo": 3, "label": "banks.CSAI"},
    ),
    (
        "banned_image: bank TVEC: photo 0: PDQ distance 0 <= 31 (score 1.000 >= reject 0.9): "
        "content id 123; note 'flyer'; matched the upload's rot90 variant",
        {"code": "banned_image", "photo": 0, "label": "banks.TVEC"},
    ),
    # A photo that could not be used: f"{photo.error_code}: photo {photo.index}: {photo.error}"
    (
        "image_unreadable: photo 0: no such file",
        {"code": "image_unreadable", "photo": 0, "detail": "no such file"},
    ),
    (
        "image_blank: photo 1: the photo is one flat colour",
        {"code": "image_blank", "photo": 1, "detail": "the photo is one flat colour"},
    ),
    (
        "detector_error: photo 2: nudity: RuntimeError: boom",
        {"code": "detector_error", "photo": 2, "detail": "nudity: RuntimeError: boom"},
    ),
    ("no_readable_photos: nothing to classify", {"code": "no_readable_photos"}),
    # Category (50ef821): f"predicted {top} ({p_top:.2f}), declared {declared} ({p:.2f})"
    (
        "category_mismatch: predicted electronics.laptop (0.87), declared fashion.dress (0.05)",
        {"code": "category_mismatch", "label": "electronics.laptop", "score": 0.87},
    ),
    (
        "category_near_miss: predicted fashion.shirt (0.55), declared fashion.tshirt (0.31)",
        {"code": "category_near_miss", "label": "fashion.shirt", "score": 0.55},
    ),
    # A moderator's reason is a bare code.
    ("misleading_listing", {"code": "misleading_listing", "photo": None, "detail": ""}),
]


@pytest.mark.parametrize(("text", "fields"), LEGACY, ids=[t[:40] for t, _ in LEGACY])
def test_every_legacy_format_is_read_into_its_fields(text: str, fields: dict[str, object]) -> None:
    reason = parse_legacy(text)
    for name, value in fields.items():
        got = getattr(reason, name)
        assert got == pytest.approx(value) if isinstance(value, float) else got == value, name
    # Nothing is lost: every value of the old sentence (numbers, labels, the error's words) is
    # in the sentence printed again; only the joining words may be spelt differently.
    sentence = reason.text()
    joining = {"threshold", "predicted", ">=", "bank"}
    for word in text.replace(":", " ").replace(",", " ").split():
        if word in joining or word.startswith("("):
            continue
        assert word.strip("()") in sentence or word in reason.detail, (word, sentence)


@pytest.mark.parametrize(
    "text",
    [
        "image_unreadable: photo 0: no such file",
        "detector_error: photo 2: nudity: RuntimeError: boom",
        "no_readable_photos: nothing to classify",
        "misleading_listing",
    ],
)
def test_photo_and_plain_reasons_read_back_as_the_same_sentence(text: str) -> None:
    assert parse_legacy(text).text() == text


def test_a_structured_reason_prints_its_measure_and_stores_only_what_is_set() -> None:
    reason = Reason(
        code="nudity", photo=0, label="nudity.nsfw", score=0.91, threshold=0.9, action="reject"
    )
    text = reason.text()
    assert text.startswith("nudity: photo 0: nudity.nsfw 0.910 >= reject")
    assert text.endswith("0.9")
    assert reason.stored() == {
        "code": "nudity",
        "photo": 0,
        "label": "nudity.nsfw",
        "score": 0.91,
        "threshold": 0.9,
        "action": "reject",
    }
    assert Reason.read(reason.stored()) == reason
    assert Reason.read(reason) is reason


def test_read_takes_objects_strings_and_unknown_fields_from_newer_writers() -> None:
    newer = {"code": "nudity", "photo": 1, "label": "nudity.nsfw", "score": 0.5, "colour": "red"}
    got = read_all([newer, "image_unreadable: photo 0: gone", Reason(code="banned_image")])
    assert [r.code for r in got] == ["nudity", "image_unreadable", "banned_image"]
    assert got[0].photo == 1 and got[1].detail == "gone"
    assert read_all(None) == [] and read_all([]) == []


def test_a_reason_is_frozen() -> None:
    reason = Reason(code="nudity")
    with pytest.raises(ValueError):
        reason.code = "other"  # type: ignore[misc]


# --- routing by reason code -------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_code_routes_to_a_queue_the_console_shows(code: str) -> None:
    assert info(code).queue in QUEUES
    assert info(code).severity > 0 and info(code).title


@pytest.mark.parametrize("code", sorted(CODES))
def test_routing_agrees_with_the_one_list_of_codes(code: str) -> None:
    assert route(code) == (info(code).queue, info(code).severity)


def test_unknown_codes_go_to_other_at_the_lowest_severity() -> None:
    assert info("made_up_code") == UNKNOWN
    assert route("made_up_code") == ("other", UNKNOWN.severity)
    assert all(UNKNOWN.severity <= i.severity for i in CODES.values())


def test_a_job_goes_to_the_queue_of_its_most_severe_reason() -> None:
    reasons = [
        "image_unreadable: photo 1: no such file",
        "category_mismatch: predicted electronics.laptop (0.87), declared fashion.dress (0.05)",
        "nudity: photo 0: nudity.nsfw 0.910 >= reject threshold 0.9",
    ]
    assert route_reasons(reasons) == ("banned", CODES["nudity"].severity)
    assert route_reasons(reasons[:2]) == ("category", CODES["category_mismatch"].severity)
    assert route_reasons(reasons[:1])[0] == "unreadable"
    assert route_reasons([])[0] == "other"


def test_banned_content_is_blurred_and_nothing_else() -> None:
    banned = [c for c, i in CODES.items() if i.queue == "banned"]
    assert set(banned) == {"prohibited_item", "banned_image", "nudity", "contact_details"}
    for code in banned:
        assert has_banned_content([f"{code}: photo 0: x"])
    assert not has_banned_content(["duplicate_photo: photo 0: x", "image_unreadable: photo 0"])
