"""Why a verdict decided what it did: the one reason type and the one list of reason codes.

A reason is data, not a sentence: the policy builds `Reason`s, the store keeps them as JSON
objects in the verdict, routing reads `code`, the label export reads `photo` and `label`, and
`Reason.text()` is the only place that turns one into the human sentence the CLI and the
console print. Verdicts written before reasons were structured hold strings such as
"nudity: photo 0: nudity.nsfw 0.910 >= reject threshold 0.9"; `Reason.read` accepts both, so
old rows and old clients stay readable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class ReasonInfo:
    """What a code means to the people who act on it."""

    queue: str  # the review queue a verdict with this reason is filed in
    severity: int  # a job's queue is that of its most severe reason
    title: str  # one line for a moderator
    rejectable: bool = True  # a moderator may give it as the reason of a reject


# Every reason code modq emits or a moderator may give, in one place.
CODES: dict[str, ReasonInfo] = {
    "prohibited_item": ReasonInfo("banned", 100, "Prohibited item (weapons, drugs, tobacco)"),
    "banned_image": ReasonInfo("banned", 100, "Known banned image (image bank match)"),
    "nudity": ReasonInfo("banned", 90, "Nudity or sexual content"),
    "contact_details": ReasonInfo("banned", 60, "Contact details in a photo"),
    "duplicate_photo": ReasonInfo("duplicates", 40, "Photo of another seller's listing"),
    "category_mismatch": ReasonInfo("category", 30, "Photos do not show the declared category"),
    "category_near_miss": ReasonInfo(
        "category", 20, "Photos show a neighbouring category", rejectable=False
    ),
    "no_readable_photos": ReasonInfo("unreadable", 15, "No photo could be read", rejectable=False),
    "image_unreadable": ReasonInfo("unreadable", 10, "A photo could not be fetched or decoded"),
    "image_blank": ReasonInfo("unreadable", 10, "A photo is blank", rejectable=False),
    "detector_error": ReasonInfo(
        "unreadable", 10, "A detector failed on a photo", rejectable=False
    ),
    "misleading_listing": ReasonInfo("other", 5, "Misleading listing (moderator's judgement)"),
}
UNKNOWN = ReasonInfo("other", 5, "Other", rejectable=False)
# Reasons of the category half: `label` is the predicted category, `detail` the declared one.
CATEGORY_CODES: frozenset[str] = frozenset({"category_mismatch", "category_near_miss"})


def info(code: str) -> ReasonInfo:
    """What `code` means; a code this version does not know goes to "other"."""
    return CODES.get(code, UNKNOWN)


class Reason(BaseModel):
    """One reason of one verdict.

    `label` is the detector label ("prohibited.firearm", "banks.CSAI") for detector reasons and
    the predicted category for category reasons; `score` and `threshold` are the numbers the
    policy compared; `action` is the decision that threshold belongs to; `detail` is the rest
    (the declared category's probability, a bank match's evidence, a photo error's message).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    code: str
    photo: int | None = None
    label: str | None = None
    score: float | None = None
    threshold: float | None = None
    action: str | None = None
    detail: str = ""

    @property
    def info(self) -> ReasonInfo:
        return info(self.code)

    def text(self) -> str:
        """The human sentence: what the CLI prints and the console shows.

        Detector and photo reasons read as they always did ("nudity: photo 0: nudity.nsfw 0.910
        >= reject threshold 0.9"), category reasons as "category_mismatch: predicted
        electronics.laptop (0.87), declared fashion.dress (0.05)".
        """
        parts = [self.code]
        if self.photo is not None:
            parts.append(f"photo {self.photo}")
        if self.code in CATEGORY_CODES and self.label is not None and self.score is not None:
            predicted = f"predicted {self.label} ({self.score:.2f})"
            return ": ".join([*parts, f"{predicted}, {self.detail}" if self.detail else predicted])
        if self.label is not None and self.score is not None:
            measured = f"{self.label} {self.score:.3f}"
            if self.threshold is not None:
                measured += f" >= {self.action or 'review'} threshold {self.threshold:g}"
            parts.append(measured)
        elif self.label is not None:
            parts.append(self.label)
        if self.detail:
            parts.append(self.detail)
        return ": ".join(parts)

    def stored(self) -> dict[str, Any]:
        """The JSON object kept in the verdict (fields left at their default are omitted)."""
        return self.model_dump(exclude_defaults=True)

    @classmethod
    def read(cls, value: str | Mapping[str, Any] | Reason) -> Reason:
        """A reason from a verdict row or message: a structured object or a legacy string."""
        if isinstance(value, Reason):
            return value
        if isinstance(value, str):
            return parse_legacy(value)
        return cls.model_validate(dict(value))


def read_all(values: Iterable[str | Mapping[str, Any] | Reason] | None) -> list[Reason]:
    return [Reason.read(v) for v in values or []]


_PHOTO = re.compile(r"^photo (\d+)$")
_MEASURED = re.compile(
    r"^(?P<label>\S+) (?P<score>[-\d.e]+) >= (?P<action>\w+) threshold (?P<threshold>[-\d.e]+)$"
)
_BANK_MATCH = re.compile(
    r"^(?P<distance>PDQ distance \d+ <= \d+) "
    r"\(score (?P<score>[-\d.e]+) >= (?P<action>\w+) (?P<threshold>[-\d.e]+)\)(?P<rest>.*)$"
)
_CATEGORY = re.compile(r"^predicted (?P<label>\S+) \((?P<score>[\d.]+)\), (?P<rest>.*)$")


def parse_legacy(text: str) -> Reason:
    """Read a reason string written before reasons were structured (old rows, old clients).

    Only this function knows those strings; whatever it cannot take apart stays in `detail`,
    so nothing is lost.
    """
    code, _, rest = text.partition(":")
    code, rest = code.strip(), rest.strip()
    fields: dict[str, Any] = {"code": code}
    head, _, tail = rest.partition(": ")
    if m := _PHOTO.match(head):
        fields["photo"] = int(m.group(1))
        rest = tail
        head, _, tail = rest.partition(": ")
        if m := _MEASURED.match(head):
            fields.update(
                label=m["label"],
                score=float(m["score"]),
                action=m["action"],
                threshold=float(m["threshold"]),
            )
            rest = tail
    elif code == "banned_image" and head.startswith("bank "):
        # "banned_image: bank NAME: photo N: PDQ distance D <= M (score S >= ACTION T)[: evidence]"
        fields["label"] = f"banks.{head[5:]}"
        photo, _, rest = tail.partition(": ")
        if m := _PHOTO.match(photo):
            fields["photo"] = int(m.group(1))
        else:
            rest = tail
        if m := _BANK_MATCH.match(rest):
            fields.update(
                score=float(m["score"]),
                action=m["action"],
                threshold=float(m["threshold"]),
            )
            rest = m["distance"] + m["rest"]
    elif m := _CATEGORY.match(rest):
        fields.update(label=m["label"], score=float(m["score"]))
        rest = m["rest"]
    fields["detail"] = rest
    return Reason(**fields)
