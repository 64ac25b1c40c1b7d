"""What `modq bank add/remove` do: hash photo files with PDQ and edit the banks table."""

from __future__ import annotations

from pathlib import Path

from modq.detectors.hashing import PhotoHash, pdq_hash
from modq.domain.preprocess import PreprocessSpec
from modq.errors import PhotoError
from modq.policy.policy import Policy
from modq.settings import Settings
from modq.store.banks import BankEntry, add_to_bank, remove_from_bank
from modq.store.verdicts import make_engine


def hash_file(path: Path, settings: Settings) -> PhotoHash:
    """PDQ hash of a photo file, decoded exactly as the worker decodes listing photos."""
    from modq.pipeline.decode import decode_image

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PhotoError(f"cannot read {path}: {exc.strerror}") from exc
    return pdq_hash(decode_image(data, PreprocessSpec(resize=512), settings.max_image_pixels))


def add_photos(settings: Settings, bank: str, paths: list[Path]) -> tuple[int, list[str]]:
    """Add the photos' hashes to `bank`; photos that cannot be decoded or whose hash is of
    too low quality to match reliably are skipped and described."""
    min_quality = Policy.load(settings.policy_path).banks.min_quality
    entries, skipped = [], []
    for path in paths:
        try:
            h = hash_file(path, settings)
        except PhotoError as exc:
            skipped.append(f"{path}: {exc}")
            continue
        if h.quality < min_quality:
            skipped.append(f"{path}: PDQ quality {h.quality} < {min_quality} (too flat to match)")
            continue
        entries.append(BankEntry(h.bytes, h.quality, str(path)))
    return add_to_bank(make_engine(settings.database_url), bank, entries), skipped


def remove_photos(settings: Settings, bank: str, paths: list[Path] | None) -> int:
    hashes = None if paths is None else [hash_file(p, settings).bytes for p in paths]
    return remove_from_bank(make_engine(settings.database_url), bank, hashes)
