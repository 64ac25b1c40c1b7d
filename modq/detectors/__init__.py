"""Banned-content detectors that run on the photos the worker has already decoded.

`prohibited` lives inside the classifier's ONNX graph (an extra output); `nudity` and
`contacts` are separate ONNX models run here; `banks` matches PDQ hashes against image banks
and recent photos (see docs/banned-content.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from modq.detectors.base import Detector
from modq.detectors.catalogue import CATALOGUE, SETTINGS, BuildOptions
from modq.errors import ConfigError


def build_detectors(
    names: Sequence[str],
    providers: Sequence[Any],
    threads: int,
    nudity_precision: Literal["int8", "fp32"] = "int8",
) -> list[Detector]:
    """The image detectors named in the `detectors` setting, on the classifier's providers,
    built by their catalogue entries (`modq.detectors.catalogue`)."""
    unknown = sorted(set(names) - SETTINGS - {"prohibited"})
    if unknown:
        raise ConfigError(
            f"unknown detector(s) {unknown} in MODQ_DETECTORS; known: {', '.join(sorted(SETTINGS))}"
        )
    options = BuildOptions(providers, threads, nudity_precision)
    return [
        e.build(options) for e in CATALOGUE.values() if e.factory is not None and e.setting in names
    ]
