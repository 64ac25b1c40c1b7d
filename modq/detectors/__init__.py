"""Banned-content detectors that run on the photos the worker has already decoded.

`prohibited` lives inside the classifier's ONNX graph (an extra output); `nudity` and
`contacts` are separate ONNX models run here; `banks` matches PDQ hashes against image banks
and recent photos (see docs/banned-content.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from modq.detectors.base import Detector
from modq.errors import ConfigError

KNOWN = ("nudity", "contacts")


def build_detectors(
    names: Sequence[str],
    providers: Sequence[Any],
    threads: int,
    nudity_precision: Literal["int8", "fp32"] = "int8",
) -> list[Detector]:
    """The image detectors named in the `detectors` setting, on the classifier's providers."""
    unknown = sorted(set(names) - {*KNOWN, "banks", "prohibited"})
    if unknown:
        raise ConfigError(
            f"unknown detector(s) {unknown} in MODQ_DETECTORS; known: nudity, contacts, banks"
        )
    out: list[Detector] = []
    if "nudity" in names:
        from modq.detectors.nudity import NudityDetector

        out.append(NudityDetector(providers, threads, precision=nudity_precision))
    if "contacts" in names:
        from modq.detectors.contacts import ContactsDetector

        out.append(ContactsDetector(providers, threads))
    return out
