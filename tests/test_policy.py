"""The category half of the policy: match, near miss, cross-macro mismatch, unreadable photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modq.domain.events import ListingEvent
from modq.domain.verdicts import PhotoResult
from modq.errors import ConfigError
from modq.policy.policy import Policy
from modq.settings import DEFAULT_POLICY

LABELS = ["fashion.shirt", "fashion.tshirt", "electronics.laptop", "electronics.phone"]


def event(declared: str, photos: int = 1) -> ListingEvent:
    return ListingEvent(
        listing_id="l1", declared_category=declared, images=[f"p{i}.jpg" for i in range(photos)]
    )


def ok(index: int) -> PhotoResult:
    return PhotoResult(index=index, ref=f"p{index}.jpg")


def probs(*rows: list[float]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


@pytest.fixture
def policy() -> Policy:
    return Policy.load(DEFAULT_POLICY).model_copy(
        update={"category": Policy.load(DEFAULT_POLICY).category.model_copy(
            update={"match_threshold": 0.10, "reject_threshold": 0.90, "near_miss": "review"}
        )}
    )  # fmt: skip


def test_top1_declared_is_approved_with_suggestions(policy: Policy) -> None:
    d = policy.decide_category(
        event("electronics.laptop"), [ok(0)], probs([0.01, 0.01, 0.9, 0.08]), LABELS
    )
    assert d.decision == "approve" and d.reasons == []
    assert d.suggested[0] == ("electronics.laptop", 0.9)
    assert len(d.suggested) == 3
    assert d.best_photo == 0


def test_declared_above_threshold_matches_even_when_not_top1(policy: Policy) -> None:
    d = policy.decide_category(
        event("electronics.phone"), [ok(0)], probs([0.0, 0.0, 0.8, 0.2]), LABELS
    )
    assert d.decision == "approve"


def test_cross_macro_confident_mismatch_is_rejected_with_reason(policy: Policy) -> None:
    d = policy.decide_category(
        event("fashion.shirt"), [ok(0)], probs([0.01, 0.01, 0.97, 0.01]), LABELS
    )
    assert d.decision == "reject"
    assert [r.text() for r in d.reasons] == [
        "category_mismatch: predicted electronics.laptop (0.97), declared fashion.shirt (0.01)"
    ]


def test_cross_macro_unsure_mismatch_goes_to_review(policy: Policy) -> None:
    d = policy.decide_category(
        event("fashion.shirt"), [ok(0)], probs([0.05, 0.05, 0.6, 0.3]), LABELS
    )
    assert d.decision == "review"
    assert d.reasons[0].text().startswith("category_mismatch:")


def test_same_macro_near_miss_is_softer(policy: Policy) -> None:
    d = policy.decide_category(
        event("fashion.shirt"), [ok(0)], probs([0.02, 0.97, 0.005, 0.005]), LABELS
    )
    assert d.decision == "review"
    assert d.reasons[0].text().startswith("category_near_miss: predicted fashion.tshirt (0.97)")
    lenient = policy.model_copy(
        update={"category": policy.category.model_copy(update={"near_miss": "approve"})}
    )
    assert (
        lenient.decide_category(
            event("fashion.shirt"), [ok(0)], probs([0.02, 0.97, 0.005, 0.005]), LABELS
        ).decision
        == "approve"
    )


def test_photos_are_pooled_and_best_photo_shows_declared(policy: Policy) -> None:
    rows = probs([0.0, 0.0, 0.9, 0.1], [0.0, 0.0, 0.3, 0.7])
    d = policy.decide_category(event("electronics.phone", 2), [ok(0), ok(1)], rows, LABELS)
    assert d.decision == "approve"
    assert d.best_photo == 1
    # Renormalised geometric mean: sqrt(.9*.3) / (sqrt(.9*.3) + sqrt(.1*.7)).
    assert d.scores["electronics.laptop"] == pytest.approx(0.6626, abs=1e-4)


def test_one_ambiguous_photo_does_not_outvote_clear_ones(policy: Policy) -> None:
    # Two photos clearly show a shirt; a third gives the declared laptop 0.3. The arithmetic
    # mean (0.1007) would clear the 0.10 threshold; the pooled score does not.
    rows = probs([0.7, 0.0, 0.3, 0.0], [0.999, 0.0, 0.001, 0.0], [0.999, 0.0, 0.001, 0.0])
    d = policy.decide_category(event("electronics.laptop", 3), [ok(0), ok(1), ok(2)], rows, LABELS)
    assert rows[:, 2].mean() > 0.10 > d.scores["electronics.laptop"]
    assert d.decision == "reject" and d.reasons[0].text().startswith("category_mismatch: ")
    assert d.best_photo == 0


def test_one_photo_keeps_its_own_probabilities(policy: Policy) -> None:
    d = policy.decide_category(
        event("electronics.phone"), [ok(0)], probs([0.1, 0.2, 0.3, 0.4]), LABELS
    )
    assert [d.scores[label] for label in LABELS] == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_unreadable_photo_sends_to_review_but_others_count(policy: Policy) -> None:
    bad = PhotoResult(index=0, ref="p0.jpg", error_code="image_unreadable", error="empty file")
    d = policy.decide_category(
        event("electronics.laptop", 2), [bad, ok(1)], probs([0.0, 0.0, 1.0, 0.0]), LABELS
    )
    assert d.decision == "review"
    assert [r.text() for r in d.reasons] == ["image_unreadable: photo 0: empty file"]
    assert d.best_photo == 1


def test_no_readable_photo_is_reviewed(policy: Policy) -> None:
    bad = PhotoResult(index=0, ref="p0.jpg", error_code="image_unreadable", error="HTTP 404")
    d = policy.decide_category(
        event("electronics.laptop"), [bad], np.zeros((0, 4), np.float32), LABELS
    )
    assert d.decision == "review"
    assert d.reasons[-1].code == "no_readable_photos"
    assert d.suggested == [] and d.best_photo is None


def test_policy_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Policy.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("version = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Policy.load(bad)
    no_version = tmp_path / "nov.toml"
    no_version.write_text("[category]\nmatch_threshold = 0.2\n")
    with pytest.raises(ConfigError, match="version"):
        Policy.load(no_version)


def test_shipped_policy_loads() -> None:
    policy = Policy.load(DEFAULT_POLICY)
    assert policy.version
    assert 0 < policy.category.match_threshold < 1
