"""modq-train refuses unusable input with a clear message, and never touches the source."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from training import TrainingError
from training.backbones import build
from training.cli import main
from training.data import prepare


def _dataset(
    source: Path, dest: Path, labels: tuple[str, ...] = ("food.fruit", "fashion.hat")
) -> Path:
    for split in ("train", "val"):
        for label in labels:
            (dest / split / label).mkdir(parents=True)
            for photo in sorted((source / split / label).glob("*.jpg"))[:3]:
                shutil.copy(photo, dest / split / label / photo.name)
    return dest


@pytest.fixture
def listings(datasets_dir: Path) -> Path:
    return datasets_dir / "listings-v1"


def test_empty_category_is_refused(listings: Path, tmp_path: Path) -> None:
    data = _dataset(listings, tmp_path / "d")
    for photo in (data / "val" / "fashion.hat").iterdir():
        photo.unlink()
    with pytest.raises(TrainingError, match=r"empty categories \(no photos\): val/fashion.hat"):
        prepare(data, tmp_path / "run")


def test_missing_or_unreadable_split_folder_is_refused(listings: Path, tmp_path: Path) -> None:
    data = _dataset(listings, tmp_path / "d")
    shutil.rmtree(data / "val")
    (data / "val").write_text("not a folder")
    with pytest.raises(TrainingError, match=r"val is missing: expected .*/val/<category>/\*\.jpg"):
        prepare(data, tmp_path / "run")
    with pytest.raises(TrainingError, match="does not exist"):
        prepare(tmp_path / "nowhere", tmp_path / "run")


def test_categories_differing_between_splits_are_refused(listings: Path, tmp_path: Path) -> None:
    data = _dataset(listings, tmp_path / "d")
    shutil.rmtree(data / "val" / "fashion.hat")
    with pytest.raises(TrainingError, match=r"only in train: \['fashion.hat'\]"):
        prepare(data, tmp_path / "run")


def test_train_val_leakage_is_refused_and_can_be_excluded(listings: Path, tmp_path: Path) -> None:
    data = _dataset(listings, tmp_path / "d")
    val_photo = sorted((data / "val" / "food.fruit").iterdir())[0]
    leaked = data / "train" / "food.fruit" / "copy_of_val.jpg"
    shutil.copy(val_photo, leaked)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))

    with pytest.raises(TrainingError, match="train/val leakage: 1 photo pairs") as info:
        prepare(data, tmp_path / "run")
    assert "copy_of_val.jpg" in str(info.value) and "--exclude-leaked" in str(info.value)

    manifest = prepare(data, tmp_path / "run", exclude_leaked=True)
    paths = {item.path for item in manifest.items}
    assert "train/food.fruit/copy_of_val.jpg" not in paths
    assert str(val_photo.relative_to(data)) in paths
    assert any(e["path"] == "train/food.fruit/copy_of_val.jpg" for e in manifest.excluded)
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before  # nothing deleted


def test_unreadable_photos_and_duplicates_are_reported_not_fatal(
    listings: Path, tmp_path: Path
) -> None:
    data = _dataset(listings, tmp_path / "d")
    good = sorted((data / "train" / "fashion.hat").iterdir())[0]
    (data / "train" / "fashion.hat" / "truncated.jpg").write_bytes(good.read_bytes()[:300])
    (data / "train" / "fashion.hat" / "empty.jpg").write_bytes(b"")
    shutil.copy(good, data / "train" / "fashion.hat" / "zz_same_bytes.jpg")
    manifest = prepare(data, tmp_path / "run")
    reasons = {e["path"].rsplit("/", 1)[-1]: e["reason"] for e in manifest.excluded}
    assert reasons["truncated.jpg"].startswith("unreadable: PhotoDecodeError")
    assert reasons["empty.jpg"].startswith("unreadable: PhotoDecodeError: empty file")
    assert reasons["zz_same_bytes.jpg"].startswith("exact duplicate of")
    assert manifest.counts()["train"]["fashion.hat"] == 3
    saved = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert saved["counts"]["train"]["fashion.hat"] == 3


def test_torchvision_arch_without_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="resnet18 has no pretrained weights available offline"):
        build("resnet18", 3)
    with pytest.raises(TrainingError, match="no such file"):
        build("resnet18", 3, weights=tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a state dict")
    with pytest.raises(TrainingError, match="is not a resnet18 ImageNet state dict"):
        build("resnet18", 3, weights=garbage)
    with pytest.raises(TrainingError, match="unknown architecture 'vgg16'"):
        build("vgg16", 3)


def test_cli_prints_refusals_without_a_traceback(listings: Path, tmp_path: Path) -> None:
    data = _dataset(listings, tmp_path / "d")
    shutil.rmtree(data / "train" / "food.fruit")
    (data / "train" / "food.fruit").mkdir()
    result = CliRunner().invoke(
        main, ["prepare", "--data", str(data), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1
    assert "modq-train: empty categories (no photos): train/food.fruit" in result.output
    assert "Traceback" not in result.output

    result = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "manifest.json not found: run `modq-train prepare` first" in result.output

    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("prepare", "train", "evaluate", "export", "quantize", "all"):
        assert command in result.output
