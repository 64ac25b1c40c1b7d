"""The detector half of the policy: per-label thresholds, per-category exceptions, label
globs, evidence, and the worst action winning over the category half. Unit tests on a policy
written here (the shipped thresholds move whenever the model is retrained)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modq.domain.events import ListingEvent
from modq.domain.reasons import Reason
from modq.domain.verdicts import PhotoResult
from modq.errors import ConfigError
from modq.policy.policy import Policy
from modq.settings import DEFAULT_POLICY

LABELS = ["fashion.dress", "electronics.phone", "home.kitchen"]

RULES = """
[labels."nudity.nsfw"]
review = 0.50
reject = 0.90
exceptions = [{ categories = ["fashion.*"], review = 0.80, reject = 0.97 }]

[labels."prohibited.knife"]
review = 0.30
reject = 0.60
exceptions = [{ categories = ["home.*"], review = 0.90 }]

[labels."banks.*"]
reject = 0.0

[labels."duplicate.photo"]
review = 0.0
"""


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    shipped = DEFAULT_POLICY.read_text()
    head = shipped[: shipped.index("[labels.")]  # category, photos, switches and banks
    path = tmp_path_factory.mktemp("policy") / "policy.toml"
    path.write_text(head + RULES)
    return Policy.load(path)


def decide(
    policy: Policy, declared: str, *scores: dict[str, float], **evidence: str
) -> tuple[str, list[Reason]]:
    photos = [
        PhotoResult(
            index=i,
            ref=f"p{i}.jpg",
            detectors=s,
            evidence={k.replace("__", "."): v for k, v in evidence.items()},
        )
        for i, s in enumerate(scores)
    ]
    event = ListingEvent(
        listing_id="l1", declared_category=declared, images=[p.ref for p in photos]
    )
    # Every photo shows the declared category clearly: only the detectors can object.
    probs = np.array([[float(lbl == declared) for lbl in LABELS]] * len(photos), np.float32)
    decided = policy.decide(event, photos, probs, LABELS)
    return decided.decision, [Reason.read(r) for r in decided.reasons]


def test_below_every_threshold_is_approved(policy: Policy) -> None:
    assert decide(policy, "electronics.phone", {"nudity.nsfw": 0.49}) == ("approve", [])


def test_the_review_and_reject_thresholds_are_inclusive(policy: Policy) -> None:
    decision, (reason,) = decide(policy, "electronics.phone", {"nudity.nsfw": 0.50})
    assert decision == "review"
    assert (reason.code, reason.photo, reason.label) == ("nudity", 0, "nudity.nsfw")
    assert reason.threshold == pytest.approx(0.50) and reason.score == pytest.approx(0.50)
    decision, (reason,) = decide(policy, "electronics.phone", {}, {"nudity.nsfw": 0.90})
    assert decision == "reject" and reason.photo == 1 and reason.threshold == pytest.approx(0.9)


def test_a_category_exception_replaces_the_thresholds(policy: Policy) -> None:
    assert decide(policy, "fashion.dress", {"nudity.nsfw": 0.79})[0] == "approve"
    assert decide(policy, "fashion.dress", {"nudity.nsfw": 0.95})[0] == "review"
    # The exception names only `review`: its reject is "never", not the label's 0.60.
    assert decide(policy, "home.kitchen", {"prohibited.knife": 0.89})[0] == "approve"
    assert decide(policy, "home.kitchen", {"prohibited.knife": 0.99})[0] == "review"
    assert decide(policy, "electronics.phone", {"prohibited.knife": 0.61})[0] == "reject"


def test_the_worst_action_wins_and_every_hit_is_a_reason(policy: Policy) -> None:
    decision, reasons = decide(
        policy,
        "electronics.phone",
        {"nudity.nsfw": 0.6, "prohibited.knife": 0.7},
        {"duplicate.photo": 0.99},
    )
    assert decision == "reject"
    assert sorted((r.code, r.photo) for r in reasons) == [
        ("duplicate_photo", 1),
        ("nudity", 0),
        ("prohibited_item", 0),
    ]


def test_a_bank_match_rejects_by_label_glob_and_carries_its_evidence(policy: Policy) -> None:
    decision, (reason,) = decide(
        policy, "electronics.phone", {"banks.TVEC": 0.98}, banks__TVEC="content id 42"
    )
    assert decision == "reject"
    assert (reason.code, reason.photo, reason.label) == ("banned_image", 0, "banks.TVEC")
    assert "content id 42" in reason.text()


def test_a_score_no_rule_names_is_ignored(policy: Policy) -> None:
    assert decide(policy, "electronics.phone", {"contacts.phone": 1.0}) == ("approve", [])


def test_a_review_threshold_above_reject_is_refused_with_the_numbers(tmp_path: Path) -> None:
    shipped = DEFAULT_POLICY.read_text()
    path = tmp_path / "bad.toml"
    rule = '[labels."nudity.nsfw"]\nreview = 0.9\nreject = 0.5\n'
    path.write_text(shipped[: shipped.index("[labels.")] + rule)
    with pytest.raises(ConfigError, match=r"review threshold 0\.9 above reject 0\.5"):
        Policy.load(path)
