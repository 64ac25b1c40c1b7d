"""One vocabulary: the catalogue of detectors, the reason codes, and the policy's refusals of
names neither knows. No services, no photos, no models."""

from __future__ import annotations

from pathlib import Path

import pytest

from modq.detectors.catalogue import CATALOGUE, catalogue_table, reason_code
from modq.detectors.contacts import ContactsDetector
from modq.detectors.nudity import NudityDetector
from modq.domain.reasons import CODES, Reason, parse_legacy
from modq.domain.review import REJECT_REASONS, route, route_reasons
from modq.domain.verdicts import PhotoResult, Verdict
from modq.errors import ConfigError
from modq.policy.detector_rules import DetectorRules, LabelRules
from modq.policy.policy import Policy
from modq.settings import REPO_ROOT, Settings


def test_every_detector_reason_has_a_queue_and_the_docs_show_the_catalogue() -> None:
    for e in CATALOGUE.values():
        assert e.reason in CODES, e.name
    assert reason_code("banks.CSAI") == "banned_image"
    assert reason_code("duplicate.photo") == "duplicate_photo"
    assert catalogue_table() in (REPO_ROOT / "docs" / "architecture.md").read_text()


def test_detector_classes_take_name_labels_and_size_from_the_catalogue() -> None:
    for cls in (NudityDetector, ContactsDetector):
        e = CATALOGUE[cls.name]
        assert (cls.labels, cls.min_side) == (e.labels, e.min_side)
        assert e.factory is not None and e.factory.startswith(cls.__module__ + ":")


def test_the_default_policy_names_only_known_detectors() -> None:
    policy = Policy.load(Settings().policy_path)
    assert policy.labels


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('version = "x"\n[lables."nudity.nsfw"]\nreview = 0.5\n', "'lables'"),
        ('version = "x"\n[labels."nudty.nsfw"]\nreview = 0.5\n', "'nudty'"),
        ('version = "x"\n[labels."nudity.nsfx"]\nreview = 0.5\n', "'nsfx'"),
        ('version = "x"\n[detectors.ocr]\ncategories = []\n', "'ocr'"),
        ('version = "x"\n[labels.nudity]\nreview = 0.5\n', "'nudity'"),
    ],
)
def test_a_policy_naming_what_the_catalogue_does_not_know_is_refused(
    tmp_path: Path, text: str, named: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=named):
        Policy.load(path)


def test_globs_and_open_label_sets_pass() -> None:
    rules = DetectorRules(
        labels={"banks.*": LabelRules(reject=0.9), "prohibited.*": LabelRules(review=0.5)}
    )
    assert rules.rules_for("banks.anything") is not None


def test_routing_comes_from_the_codes() -> None:
    assert route("detector_error") == ("unreadable", 10)
    assert route("no_such_code") == ("other", 5)
    assert route_reasons([{"code": "duplicate_photo"}, "nudity: photo 0: x"]) == ("banned", 90)
    assert REJECT_REASONS == (
        "prohibited_item", "banned_image", "nudity", "contact_details", "duplicate_photo",
        "category_mismatch", "image_unreadable", "misleading_listing",
    )  # fmt: skip


def _photo(scores: dict[str, float], evidence: dict[str, str] | None = None) -> PhotoResult:
    return PhotoResult(index=1, ref="x", detectors=scores, evidence=evidence or {})


def test_policy_reasons_are_data_and_read_back_from_their_sentence() -> None:
    rules = DetectorRules(
        labels={
            "nudity.nsfw": LabelRules(review=0.5, reject=0.9),
            "banks.*": LabelRules(reject=0.88),
        }
    )
    decision, reasons = rules.decide(
        "x.y", [_photo({"nudity.nsfw": 0.6, "banks.CSAI": 1 - 12 / 256}, {"banks.CSAI": "id 7"})]
    )
    assert decision == "reject"
    bank, nude = reasons
    assert (bank.code, bank.label, bank.photo, bank.action) == (
        "banned_image",
        "banks.CSAI",
        1,
        "reject",
    )
    assert bank.detail == "PDQ distance 12 <= 31: id 7"
    assert nude.text() == "nudity: photo 1: nudity.nsfw 0.600 >= review threshold 0.5"
    for reason in reasons:
        back = parse_legacy(reason.text())
        assert back.code == reason.code and back.photo == reason.photo
        assert back.label == reason.label and back.detail == reason.detail


def test_a_verdict_reads_reasons_written_as_strings() -> None:
    verdict = Verdict(
        listing_id="L", listing_version=1, declared_category="x.y", decision="review",
        reasons=["image_unreadable: photo 0: empty file", {"code": "nudity", "photo": 1}],
        suggested=[], best_photo=None, scores={}, photos=[], model_version="m",
        policy_version="p",
    )  # fmt: skip
    assert verdict.reasons == [
        Reason(code="image_unreadable", photo=0, detail="empty file"),
        Reason(code="nudity", photo=1),
    ]
    again = Verdict.model_validate_json(verdict.model_dump_json())
    assert again.reasons == verdict.reasons
