"""Image banks end to end on real PostgreSQL: `modq bank add/list/remove`, matching in the
worker's batch path, duplicate photos across sellers, and the policy's detector rules."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from modq.cli.bank import add_photos, remove_photos
from modq.cli.main import main
from modq.domain.events import ListingEvent
from modq.domain.verdicts import PhotoResult, Verdict
from modq.pipeline.moderate import handle_messages
from modq.pipeline.runtime import Runtime
from modq.policy.detector_rules import DetectorRules
from modq.settings import Settings
from modq.store.stores import open_stores


def _val_photos(datasets_dir: Path, category: str, n: int) -> list[Path]:
    paths = sorted((datasets_dir / "listings-v1" / "val" / category).glob("*.jpg"))[:n]
    assert len(paths) == n
    return paths


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], datasets_dir: Path, tmp_path: Path
) -> Settings:
    # Refresh on every batch so bank edits are seen at once (no sleeping in tests).
    return make_settings(
        image_roots=[str(datasets_dir), str(tmp_path)], detectors=["banks"], bank_refresh_s=0
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.build(settings, stores=open_stores(settings.database_url))
    yield rt
    rt.close()


def _moderate(rt: Runtime, *events: ListingEvent) -> list[Verdict]:
    return handle_messages([e.to_message() for e in events], rt, "new").verdicts


def _event(images: list[Path], seller: str, category: str = "food.fruit") -> ListingEvent:
    return ListingEvent(
        listing_id=f"l-{uuid.uuid4().hex[:10]}",
        declared_category=category,
        images=[str(p) for p in images],
        seller_id=seller,
    )


def _banned(verdict: Verdict) -> list[str]:
    return [r.text() for r in verdict.reasons if r.code == "banned_image"]


def test_bank_add_match_remove_through_the_worker(
    runtime: Runtime, settings: Settings, datasets_dir: Path, tmp_path: Path
) -> None:
    bank = f"weapons-{uuid.uuid4().hex[:6]}"
    banned, unrelated = _val_photos(datasets_dir, "food.fruit", 2)
    added, skipped = add_photos(settings, bank, [banned])
    assert (added, skipped) == (1, [])

    # The seller re-uploads it smaller and re-compressed.
    img = Image.open(banned).convert("RGB")
    copy = tmp_path / "copy.jpg"
    img.resize((img.width * 3 // 4, img.height * 3 // 4)).save(copy, "JPEG", quality=60)

    hit, clean = _moderate(runtime, _event([unrelated, copy], "s1"), _event([unrelated], "s2"))
    assert hit.decision == "reject"
    (reason,) = _banned(hit)
    assert reason.startswith(f"banned_image: photo 1: banks.{bank} ")
    assert ": PDQ distance " in reason
    assert f"banks.{bank}" in hit.photos[1].detectors
    assert f"banks.{bank}" not in hit.photos[0].detectors
    assert _banned(clean) == []

    assert remove_photos(settings, bank, None) == 1
    (after,) = _moderate(runtime, _event([copy], "s3"))
    assert _banned(after) == []


def test_low_quality_photos_are_not_banked(settings: Settings, tmp_path: Path) -> None:
    flat = tmp_path / "flat.jpg"
    Image.new("RGB", (400, 300), (128, 128, 128)).save(flat, "JPEG")
    added, skipped = add_photos(settings, f"flat-{uuid.uuid4().hex[:6]}", [flat])
    assert added == 0
    assert "PDQ quality" in skipped[0]


def test_bank_cli_add_list_remove(
    settings: Settings, datasets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODQ_DATABASE_URL", settings.database_url)
    bank = f"cli-{uuid.uuid4().hex[:6]}"
    photos = [str(p) for p in _val_photos(datasets_dir, "fashion.hat", 3)]
    runner = CliRunner()
    result = runner.invoke(main, ["bank", "add", bank, *photos])
    assert result.exit_code == 0, result.output
    assert f"bank {bank}: 3 hashes added" in result.output
    listed = runner.invoke(main, ["bank", "list"])
    assert f"{bank}\t3 hashes" in listed.output
    one = runner.invoke(main, ["bank", "remove", bank, photos[0]])
    assert f"bank {bank}: 1 hashes removed" in one.output
    assert f"{bank}\t2 hashes" in runner.invoke(main, ["bank", "list"]).output
    gone = runner.invoke(main, ["bank", "remove", bank, "--yes"])
    assert gone.exit_code == 0 and "bank deleted" in gone.output
    assert bank not in runner.invoke(main, ["bank", "list"]).output


def test_duplicate_photo_of_another_seller_goes_to_review(
    runtime: Runtime, datasets_dir: Path
) -> None:
    photo, other = _val_photos(datasets_dir, "food.vegetables", 2)
    (first,) = _moderate(runtime, _event([photo], "alice"))
    assert not any(r.code == "duplicate_photo" for r in first.reasons)
    same_seller, thief = _moderate(
        runtime, _event([photo], "alice"), _event([other, photo], "mallory")
    )
    assert not any(r.code == "duplicate_photo" for r in same_seller.reasons)
    dup = [r.text() for r in thief.reasons if r.code == "duplicate_photo"]
    assert dup and dup[0].startswith("duplicate_photo: photo 1: duplicate.photo 1.000")
    assert thief.decision in ("review", "reject")


def _photo(scores: dict[str, float]) -> PhotoResult:
    return PhotoResult(index=0, ref="x.jpg", detectors=scores)


def test_policy_exceptions_per_category() -> None:
    rules = DetectorRules.model_validate(
        {
            "labels": {
                "nudity.nsfw": {
                    "review": 0.5,
                    "reject": 0.9,
                    "exceptions": [{"categories": ["fashion.*"], "review": 0.8, "reject": 0.97}],
                },
                "prohibited.knife": {
                    "review": 0.5,
                    "reject": 0.9,
                    "exceptions": [{"categories": ["home.kitchen"], "review": 0.95}],
                },
                "banks.*": {"reject": 0.0},
            },
            "detectors": {"contacts": {"categories": ["electronics.*"]}},
        }
    )
    skin = [_photo({"nudity.nsfw": 0.75})]
    assert rules.decide("electronics.phone", skin)[0] == "review"
    assert rules.decide("fashion.dress", skin)[0] == "approve"
    decision, reasons = rules.decide("food.fruit", [_photo({"nudity.nsfw": 0.93})])
    assert decision == "reject"
    assert [r.text() for r in reasons] == [
        "nudity: photo 0: nudity.nsfw 0.930 >= reject threshold 0.9"
    ]
    knife = [_photo({"prohibited.knife": 0.92})]
    assert rules.decide("fashion.shoes", knife)[0] == "reject"
    assert rules.decide("home.kitchen", knife)[0] == "approve"
    decision, reasons = rules.decide("x.y", [_photo({"banks.weapons": 1 - 12 / 256})])
    assert decision == "reject" and reasons[0].label == "banks.weapons"
    assert reasons[0].photo == 0 and "PDQ distance 12 <= 31" in reasons[0].text()
    assert rules.enabled("contacts", "electronics.laptop")
    assert not rules.enabled("contacts", "fashion.dress")
    assert rules.enabled("nudity", "fashion.dress")


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="review threshold"):
        DetectorRules.model_validate({"labels": {"nudity.nsfw": {"review": 0.9, "reject": 0.5}}})
