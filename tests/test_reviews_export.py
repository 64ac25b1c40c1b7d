"""Human labels flow back to training: a re-categorised listing's photo is exported under the
moderator's category and `modq-train prepare --extra` lists it in the training manifest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from modq.backfill.label_export import export_labels
from modq.settings import Settings
from modq.store.database import make_engine, migrate
from modq.store.reviews import claim_next, decide
from tests.conftest import create_database, drop_database
from tests.consolekit import review_listing
from training.data import Manifest, prepare

PROHIBITED = "prohibited_item: photo 0: prohibited.knife 0.512 >= review threshold 0.3535"


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    url = create_database("modq_test_export")
    migrate(url)
    engine = make_engine(url)
    yield url, engine
    engine.dispose()
    drop_database(url)


def _tiny_dataset(root: Path, listings_v1: Path) -> None:
    """Two categories, three train and one val photo each (symlinks to the real photos)."""
    for label in ("fashion.dress", "electronics.phone"):
        photos = sorted((listings_v1 / "train" / label).glob("*.jpg"))
        for split, picked in (("train", photos[:3]), ("val", photos[3:4])):
            folder = root / split / label
            folder.mkdir(parents=True)
            for p in picked:
                (folder / p.name).symlink_to(p)


def test_recategorised_photo_reaches_the_training_manifest(
    db: tuple[str, Engine], datasets_dir: Path, tmp_path: Path
) -> None:
    url, engine = db
    listings_v1 = datasets_dir / "listings-v1"
    dresses = sorted((listings_v1 / "train" / "fashion.dress").glob("*.jpg"))
    # A dress photo the moderator says is really a phone listing (the label the model learns).
    review_listing(engine, "R1", ["category_mismatch: x"], [dresses[20]], seller="s1")
    review_listing(engine, "K1", [PROHIBITED], [dresses[21], dresses[22]], seller="s2")
    review_listing(engine, "A1", ["category_near_miss: y"], [dresses[23]], seller="s3")
    for queue, decision, extra in (
        ("category", "recategorise", {"new_category": "electronics.phone"}),
        ("banned", "reject", {"reason_code": "prohibited_item"}),
    ):
        claim = claim_next(engine, "mia", queue)
        assert claim is not None
        decide(engine, claim.listing_id, "mia", decision, **extra)  # type: ignore[arg-type]

    settings = Settings(database_url=url, image_roots=[str(datasets_dir)], data_dir=tmp_path)
    out = tmp_path / "labels"
    since = datetime.now(UTC) - timedelta(hours=1)
    report = export_labels(settings, since, out)
    assert (report.listings, report.photos, report.skipped) == (2, 2, [])
    exported = out / "train" / "electronics.phone" / "R1-0.jpg"
    assert exported.read_bytes() == dresses[20].read_bytes()
    # The rejected knife: only the photo the reason names, under the detector label.
    assert [p.name for p in (out / "banned" / "prohibited.knife").iterdir()] == ["K1-0.jpg"]
    lines = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert {(e["listing_id"], e["label"], e["moderator"]) for e in lines} == {
        ("R1", "electronics.phone", "mia"),
        ("K1", "prohibited.knife", "mia"),
    }
    # Nothing decided after `since`: nothing exported.
    assert (
        export_labels(settings, datetime.now(UTC) + timedelta(hours=1), tmp_path / "x").photos == 0
    )

    data = tmp_path / "listings"
    _tiny_dataset(data, listings_v1)
    manifest = prepare(data, tmp_path / "run", extra=[out], workers=1, settings=settings)
    extra_items = [it for it in manifest.items if Path(it.path).is_absolute()]
    assert [(it.split, it.label, it.path) for it in extra_items] == [
        ("train", "electronics.phone", str(exported.resolve()))
    ]
    assert manifest.counts()["train"]["electronics.phone"] == 4
    reloaded = Manifest.load(tmp_path / "run")
    assert any(it.path == str(exported.resolve()) for it in reloaded.items)


def test_modq_train_prepare_has_the_extra_option() -> None:
    from training.cli import main

    result = CliRunner().invoke(main, ["prepare", "--help"])
    assert result.exit_code == 0 and "--extra" in result.output


def test_a_one_reason_reject_exports_one_label_and_marked_photos_as_negatives(
    db: tuple[str, Engine], datasets_dir: Path, tmp_path: Path
) -> None:
    """The vegetables case of issue 26: the verdict names nudity and two prohibited labels;
    the moderator rejects for prohibited_item and marks photo 1 as not showing it."""
    url, engine = db
    photos = sorted((datasets_dir / "listings-v1" / "train" / "fashion.dress").glob("*.jpg"))
    reasons = [
        "nudity: photo 0: nudity.nsfw 0.610 >= review threshold 0.5",
        "prohibited_item: photo 0: prohibited.firearm 0.600 >= review threshold 0.35",
        "prohibited_item: photo 0: prohibited.knife 0.400 >= review threshold 0.35",
        "prohibited_item: photo 1: prohibited.knife 0.500 >= review threshold 0.35",
    ]
    review_listing(engine, "V1", reasons, photos[30:33])
    claim = claim_next(engine, "mia", "banned")
    assert claim is not None
    decide(engine, "V1", "mia", "reject", reason_code="prohibited_item", not_showing=[1],
           note="gun on the first photo only")  # fmt: skip
    settings = Settings(database_url=url, image_roots=[str(datasets_dir)], data_dir=tmp_path)
    out = tmp_path / "labels"
    report = export_labels(settings, datetime.now(UTC) - timedelta(hours=1), out)
    assert (report.listings, report.photos, report.skipped) == (1, 2, [])
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg"))
    assert written == ["banned/prohibited.firearm/V1-0.jpg", "negative/prohibited.knife/V1-1.jpg"]
    lines = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert [(e["label"], e["photo"], e["negative"], e["note"]) for e in lines] == [
        ("prohibited.firearm", 0, False, "gun on the first photo only"),
        ("prohibited.knife", 1, True, "gun on the first photo only"),
    ]


def test_an_undone_decision_is_not_exported(
    db: tuple[str, Engine], datasets_dir: Path, tmp_path: Path
) -> None:
    from modq.store.review_shift import undo

    url, engine = db
    photos = sorted((datasets_dir / "listings-v1" / "train" / "fashion.dress").glob("*.jpg"))
    review_listing(engine, "U1", [PROHIBITED], photos[40:41])
    assert claim_next(engine, "mia", "banned") is not None
    first = decide(engine, "U1", "mia", "reject", reason_code="prohibited_item")
    undo(engine, first, "mia", is_lead=False, window_s=600)
    settings = Settings(database_url=url, image_roots=[str(datasets_dir)], data_dir=tmp_path)
    since = datetime.now(UTC) - timedelta(hours=1)
    assert export_labels(settings, since, tmp_path / "a").photos == 0
    decide(engine, "U1", "mia", "recategorise", new_category="electronics.phone")
    assert export_labels(settings, since, tmp_path / "b").photos == 1
    assert (tmp_path / "b" / "train" / "electronics.phone" / "U1-0.jpg").is_file()
