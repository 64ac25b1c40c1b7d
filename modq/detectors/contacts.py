"""Contact details burnt into photos: phone numbers, e-mails, URLs and messenger handles.

Text is read with the PP-OCRv4 models shipped inside the `rapidocr-onnxruntime` wheel (no
downloads), then matched with the regexes below. A label's score is the OCR confidence of
the best line in which it was found (0.0 when absent), so a blurry guess lands in review
while a crisp phone number can be auto-rejected. OCR costs ~0.2-0.5 s per photo on a CPU,
which is why the policy leaves this detector off for most categories.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from modq.detectors.base import Result, Scores, as_detector_error, open_session
from modq.detectors.catalogue import BuildOptions, entry
from modq.errors import ConfigError

LABELS: tuple[str, ...] = entry("contacts").labels or ()

# Phone numbers: digits with spaces, dots, dashes, slashes or brackets between them, never
# glued to letters (model numbers like SM-G991B, serials) or followed by a currency.
_PHONE = re.compile(r"(?<![\w@.,/])(\+|00)?\s?\(?\d(?:[\s().\-/]{0,3}\d){6,18}(?![\w@])")
_CURRENCY = re.compile(
    r"^\s*(?:[$€£¥₹₽]|eur|usd|gbp|mad|dhs?|rs|руб|zł|kr|fr|chf)\b|^\s*[$€£¥₹₽]", re.IGNORECASE
)
_CURRENCY_BEFORE = re.compile(r"(?:[$€£¥₹₽]|eur|usd|gbp|mad|dhs?|rs)\s*$", re.IGNORECASE)
_DATE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{4}$")
# Cameras burn a date and time into photos, and OCR glues them ("21.11.201713:12"): digits
# that start with a date or run into ":MM" are a timestamp, not a number to call.
_DATE_START = re.compile(r"^\d{4}[-./]\d{1,2}[-./]|^\d{1,2}[-./]\d{1,2}[-./]\d{4}")
_TIME_AFTER = re.compile(r"^\s?:\d{2}")
# A national number is 9-11 digits; with +/00 and a country code 8-15 (E.164). Barcodes
# (EAN-8/13, UPC-A = 8/13/12 digits without a plus) fall outside the national range.
_NATIONAL_DIGITS = range(9, 12)
_INTERNATIONAL_DIGITS = range(8, 16)

_EMAIL = re.compile(
    r"[\w.+-]{1,64}\s?(?:@|\(at\)|\[at\])\s?[a-z0-9-]{1,63}(?:\s?(?:\.|\(dot\)|\[dot\])\s?[a-z0-9-]{1,63})*"
    r"\s?(?:\.|\(dot\)|\[dot\])\s?[a-z]{2,12}\b",
    re.IGNORECASE,
)
_TLDS = (
    "com|net|org|info|biz|io|co|me|ly|app|shop|store|online|site|link|xyz|ru|fr|de|uk|ma|"
    "es|it|pl|ua|in|br|nl|be|ch|at|pt|tr|ro|cz|eu|us|ca|au"
)
_URL = re.compile(
    rf"(?:https?://|www\.)\S+|(?<![\w@.-])[a-z0-9][a-z0-9-]{{1,62}}(?:\.[a-z0-9-]{{1,62}})*"
    rf"\.(?:{_TLDS})\b(?:/\S*)?",
    re.IGNORECASE,
)
_HANDLE = re.compile(
    r"(?<![\w.])@[a-z0-9_][a-z0-9_.]{2,30}|\b(?:whats\s?app|telegram|viber|wechat|snapchat|"
    r"insta(?:gram)?|skype|kik|line\s?id|t\.me|wa\.me)\b",
    re.IGNORECASE,
)


def _is_phone(match: re.Match[str], line: str) -> bool:
    text = match.group(0).strip()
    digits = re.sub(r"\D", "", text)
    if _DATE.match(text) or _DATE_START.match(text) or _TIME_AFTER.match(line[match.end() :]):
        return False
    if _CURRENCY.match(line[match.end() :]) or _CURRENCY_BEFORE.search(line[: match.start()]):
        return False
    if match.group(1):
        return len(digits) - (2 if match.group(1) == "00" else 0) in _INTERNATIONAL_DIGITS
    return len(digits) in _NATIONAL_DIGITS


def find_contacts(line: str) -> set[str]:
    """Labels of the contact details one line of text contains."""
    found: set[str] = set()
    rest = line
    if _EMAIL.search(rest):
        found.add("email")
        rest = _EMAIL.sub(" ", rest)
    if _URL.search(rest):
        found.add("url")
    if _HANDLE.search(rest):
        found.add("handle")
    if any(_is_phone(m, rest) for m in _PHONE.finditer(rest)):
        found.add("phone")
    return found


def score_lines(lines: Iterable[tuple[str, float]]) -> Scores:
    """Per label, the best OCR confidence among the lines that contain it."""
    scores = dict.fromkeys(LABELS, 0.0)
    for text, confidence in lines:
        for label in find_contacts(text):
            scores[label] = max(scores[label], float(confidence))
    return scores


@dataclass(frozen=True)
class OcrLine:
    text: str
    confidence: float


def _ort_wrappers(engine: Any) -> list[Any]:
    """RapidOCR's session wrappers (one per stage; each stage names its attribute its own way)."""
    from rapidocr_onnxruntime.utils import OrtInferSession

    stages = (engine.text_det, engine.text_cls, engine.text_rec)
    found = [v for stage in stages for v in vars(stage).values() if isinstance(v, OrtInferSession)]
    if len(found) != len(stages):
        raise ConfigError(f"unexpected rapidocr layout: {len(found)} ONNX sessions, not 3")
    return found


class ContactsDetector:
    """Labels `phone`, `email`, `url`, `handle`."""

    name = "contacts"
    labels: tuple[str, ...] = LABELS
    min_side = entry(name).min_side

    def __init__(self, providers: Sequence[Any] | None = None, intra_op_threads: int = 0) -> None:
        # Imported here: it pulls in OpenCV, which only this detector needs.
        from rapidocr_onnxruntime import RapidOCR

        self.engine = RapidOCR(print_verbose=False)
        # RapidOCR opens its three sessions on CPU, or on CUDA device 0 with options of its
        # own: open them again on the classifier's providers (its GPU and options) instead.
        self._wrappers = _ort_wrappers(self.engine)
        for wrapper in self._wrappers:
            wrapper.session = open_session(wrapper.session._model_path, providers, intra_op_threads)

    @property
    def sessions(self) -> list[Any]:
        """The ONNX Runtime sessions OCR runs (text detection, orientation, recognition)."""
        return [wrapper.session for wrapper in self._wrappers]

    def read(self, img: Image.Image) -> list[OcrLine]:
        """The text lines OCR finds in one RGB photo."""
        bgr = np.ascontiguousarray(np.asarray(img.convert("RGB"))[:, :, ::-1])
        result, _ = self.engine(bgr)
        return [OcrLine(str(text), float(conf)) for _box, text, conf in (result or [])]

    def score(self, images: Sequence[Image.Image]) -> list[Result]:
        # OCR runs photo by photo anyway, so each photo is simply isolated on its own.
        out: list[Result] = []
        for img in images:
            try:
                out.append(score_lines((ln.text, ln.confidence) for ln in self.read(img)))
            except Exception as exc:
                out.append(as_detector_error(self.name, exc))
        return out


def build(options: BuildOptions) -> ContactsDetector:
    """The catalogue's factory (`modq.detectors.catalogue`)."""
    return ContactsDetector(options.providers, options.threads)
