"""int8 copies of the shipped models: each sits beside a provenance file that pins it.

`<model>.json` records the copy's sha256 and the sha256 of the fp32 file it was made from.
The worker runs a copy only when both still match, so a retrained fp32 model can never be
served through a stale int8 copy of its predecessor.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from modq.assets import asset_path
from modq.domain.contract import read_contract
from modq.errors import ConfigError
from modq.settings import Settings

# open_nsfw's static int8 copy, shipped in the package (`python -m training.nudity_int8`
# makes it).
NUDITY_INT8_MODEL = asset_path("models", "open-nsfw-int8.onnx")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def int8_copy_of(fp32: Path) -> Path:
    """Where the int8 copy of `fp32` lives: `<stem>-int8.onnx` beside it."""
    return fp32.with_name(f"{fp32.stem}-int8{fp32.suffix}")


def verified_copy(path: Path, *, source: Path | None = None, remedy: str) -> Path:
    """`path` after checking it against `<path>.json` (its own sha256 and, when `source` is
    given, the sha256 of the file it was made from); `remedy` says how to fix a refusal."""
    meta = Path(f"{path}.json")
    if not path.is_file() or not meta.is_file():
        raise ConfigError(f"int8 model {path} (or its .json) is missing: {remedy}")
    provenance = json.loads(meta.read_text())
    if sha256_of(path) != provenance.get("sha256"):
        raise ConfigError(f"{path} does not match the sha256 in {meta}: {remedy}")
    if source is not None and sha256_of(source) != provenance.get("source_sha256"):
        raise ConfigError(
            f"{path} was made from another version of {source} (source_sha256 in {meta}): {remedy}"
        )
    return path


def classifier_path(settings: Settings) -> Path:
    """The category model file a worker with `settings` serves: `model_path`, or its int8
    copy (`classifier_precision`), whose contract names the model version verdicts carry."""
    if settings.classifier_precision == "fp32":
        return settings.model_path
    remedy = (
        f"run `python -m training.classifier_int8 --model {settings.model_path}`, "
        "or set MODQ_CLASSIFIER_PRECISION=fp32"
    )
    copy = int8_copy_of(settings.model_path)
    return verified_copy(copy, source=settings.model_path, remedy=remedy)


def nudity_int8_path(path: Path = NUDITY_INT8_MODEL) -> str:
    """The shipped int8 open_nsfw model, checked against the sha256 in its provenance file."""
    remedy = "run `python -m training.nudity_int8`, or set MODQ_NUDITY_PRECISION=fp32"
    return str(verified_copy(path, remedy=remedy))


def check_model_files(settings: Settings) -> None:
    """Refuse now, with the fix in the message, a configuration whose model files are missing
    or stale: `modq worker` calls this before it consumes anything. (The runtime itself is
    built after the worker starts, when a database outage must not stop it.) Light on
    purpose: the supervisor of a CPU worker's processes calls it too, and loads no model."""
    read_contract(classifier_path(settings))
    if "nudity" in settings.detectors and settings.nudity_precision == "int8":
        nudity_int8_path()
