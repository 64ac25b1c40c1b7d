"""The one catalogue of detectors: what each is called, what it scores, what it needs, what its
hits mean, and how it is built.

Every score a photo gets is keyed "<detector>.<label>" ("nudity.nsfw", "banks.CSAI"). An entry
here is all modq knows about a detector: the runtime builds the image detectors named in
MODQ_DETECTORS from their `factory`, the decoder reads `min_side`, the policy refuses a
`[labels."<detector>.<label>"]` or `[detectors.<name>]` table the catalogue does not know, the
detector rules turn a hit into a `Reason` with the entry's `reason` code, and review routing
files it by that code's queue and severity (`modq.domain.reasons.CODES`). docs/architecture.md
shows the table (`catalogue_table`) and a worked example of adding a detector.

Imports point one way: detector modules import this one (for their name, labels and size);
it names their factories as "module:function" and imports a module only when its factory runs
(OCR pulls in OpenCV, which nothing else needs).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from modq.domain.reasons import CODES, ReasonInfo

if TYPE_CHECKING:
    from modq.detectors.base import Detector


@dataclass(frozen=True)
class BuildOptions:
    """What a factory gets: the classifier's execution providers and the thread budget."""

    providers: Sequence[Any]
    threads: int
    nudity_precision: Literal["int8", "fp32"] = "int8"


@dataclass(frozen=True)
class Entry:
    name: str
    # The labels it scores; None when they are open-ended (one per image bank).
    labels: tuple[str, ...] | None
    reason: str  # the reason code of a hit (a key of modq.domain.reasons.CODES)
    summary: str
    # Shorter side, in pixels, the decoded photo must keep for it (0: whatever the model needs).
    min_side: int = 0
    # "module:function" building the image detector the pipeline runs from `BuildOptions`;
    # None where something else produces the scores (a head inside the classifier graph, the
    # bank matcher, which needs a store).
    factory: str | None = None
    # The name that turns it on in MODQ_DETECTORS; None where it is always on.
    setting: str | None = None

    @property
    def info(self) -> ReasonInfo:
        return CODES[self.reason]

    def build(self, options: BuildOptions) -> Detector:
        if self.factory is None:
            raise ValueError(f"detector {self.name} is not built by the pipeline")
        module, _, function = self.factory.partition(":")
        make: Callable[[BuildOptions], Detector] = getattr(
            importlib.import_module(module), function
        )
        return make(options)


CATALOGUE: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry(
            "prohibited",
            ("firearm", "knife", "drugs", "tobacco"),
            "prohibited_item",
            "a head inside the classifier's ONNX graph (docs/banned-content.md)",
        ),
        Entry(
            "nudity",
            ("nsfw",),
            "nudity",
            "open_nsfw, an ONNX model of its own",
            # open_nsfw squashes the whole photo to 256x256 first: decode at least that much.
            min_side=256,
            factory="modq.detectors.nudity:build",
            setting="nudity",
        ),
        Entry(
            "contacts",
            ("phone", "email", "url", "handle"),
            "contact_details",
            "OCR (PP-OCR via RapidOCR) and patterns for phone numbers, e-mail, URLs, handles",
            # PP-OCR's text detector works at 736 px on the shorter side: less loses small print.
            min_side=736,
            factory="modq.detectors.contacts:build",
            setting="contacts",
        ),
        Entry(
            "banks",
            None,
            "banned_image",
            "PDQ hash within reach of a hash in image bank <label> (`modq bank`)",
            setting="banks",
        ),
        Entry(
            "duplicate",
            ("photo",),
            "duplicate_photo",
            "PDQ hash within reach of another seller's recent photo (with banks)",
            setting="banks",
        ),
    )
}
SETTINGS: frozenset[str] = frozenset(e.setting for e in CATALOGUE.values() if e.setting)


def entry(name: str) -> Entry:
    return CATALOGUE[name]


def reason_code(key: str) -> str:
    """The reason code of a score keyed "<detector>.<label>"."""
    found = CATALOGUE.get(key.partition(".")[0])
    return found.reason if found is not None else key.partition(".")[0]


def catalogue_table() -> str:
    """The markdown table docs/architecture.md shows (a test keeps the two in step)."""
    lines = [
        "| detector | labels | min side | reason code | queue | severity | MODQ_DETECTORS |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in CATALOGUE.values():
        labels = ", ".join(e.labels) if e.labels else "one per bank"
        lines.append(
            f"| {e.name} | {labels} | {e.min_side or '-'} | {e.reason} | {e.info.queue} "
            f"| {e.info.severity} | {e.setting or 'always (in the model)'} |"
        )
    return "\n".join(lines)
