"""`modq-train compare CANDIDATE --against SHIPPED`: the ship gate.

Scores both model files through the worker's own path (training/gate_scores.py; an int8 file
is scored as int8) on every labelled photo the change may use, applies the real policy
(modq.policy) and reports, each rate with its bootstrap 95% interval and the paired interval
of candidate − shipped (training/gate_stats.py):

- per category (listings-v1): recall, precision, and the flips between the two models;
- per prohibited label (prohibited-v2): photos flagged by their own label's rule, and the
  benign false-flag rates (listings-v1 photos; prohibited-v2 benign scenes);
- listings as production sends them: 1-3 photos of one category, a share mis-declared (half
  of those inside the declared macro category), each decided by `Policy.decide` (category
  rule on the pooled photos and every detector rule of the heads in the graph): mismatch
  recall (all, cross-macro, same-macro), precision, and correct listings flagged.

It refuses (TrainingError, exit 1) a candidate whose recall on any class or label, or whose
benign false-flag rate, is worse beyond the interval, naming each. Which photos: a change
that is not trained (quantisation, resizing, decode) may use train+val (`--split
train+val`); a trained candidate val (`--split val`), plus the train photos through both
models' out-of-fold head scores (`--split val+oof`, training/prohibited_oof.py). Each model
is judged under its own policy (`candidate_policy`: the thresholds chosen for it).
Writes `<out>/compare.md` and `<out>/compare.json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modq.domain.events import ListingEvent
from modq.domain.provenance import sha256_of
from modq.domain.taxonomy import macro
from modq.domain.verdicts import PhotoResult
from modq.policy.policy import Policy
from modq.settings import Settings
from training import TrainingError
from training.gate_report import markdown
from training.gate_scores import (
    LISTINGS,
    PROHIBITED,
    Photos,
    Rows,
    Scores,
    labelled_photos,
    out_of_fold,
    score,
)
from training.gate_stats import Bootstrap, Paired, flips
from training.prohibited_oof import OOF_DIR

BENIGN = "benign"
MISMATCH = ("category_mismatch", "category_near_miss")


@dataclass(frozen=True)
class Listing:
    photos: list[int]
    category: str
    declared: str
    kind: str  # "correct", "same_macro" or "cross_macro"


def build_listings(
    photos: Photos,
    n: int,
    share: float,
    seed: int,
    categories: list[str],
    eligible: np.ndarray | None = None,
) -> list[Listing]:
    """`n` listings of 1-3 photos of one category; `share` of them declare another category,
    half inside the same macro category (where one exists), half outside it."""
    rng = np.random.default_rng(seed)
    by_cat: dict[str, list[int]] = {}
    for i, (label, ds) in enumerate(zip(photos.labels, photos.dataset, strict=True)):
        if ds == LISTINGS and (eligible is None or eligible[i]):
            by_cat.setdefault(label, []).append(i)
    cats = sorted(by_cat)
    out = []
    for _ in range(n):
        cat = cats[rng.integers(len(cats))]
        pool = by_cat[cat]
        k = min(int(rng.integers(1, 4)), len(pool))
        idx = [pool[j] for j in rng.choice(len(pool), k, replace=False)]
        kind, declared = "correct", cat
        if rng.random() < share:
            same = [c for c in categories if c != cat and macro(c) == macro(cat)]
            cross = [c for c in categories if macro(c) != macro(cat)]
            kind = "same_macro" if same and rng.random() < 0.5 else "cross_macro"
            choices = same if kind == "same_macro" else cross
            declared = choices[rng.integers(len(choices))]
        out.append(Listing(idx, cat, declared, kind))
    return out


def _photo_flags(policy: Policy, photos: Photos, s: Scores) -> tuple[np.ndarray, np.ndarray]:
    """Per photo: flagged by any detector rule; flagged by its own label's rule."""
    rules = policy.detector_rules
    any_flag = np.zeros(len(photos.paths), bool)
    own = np.zeros(len(photos.paths), bool)
    for i, path in enumerate(photos.paths):
        if not s.ok[i]:
            continue
        result = PhotoResult(index=0, ref=str(path), detectors=s.detectors(i))
        decision, reasons = rules.decide(photos.declared[i], [result])
        any_flag[i] = decision != "approve"
        mine = f"prohibited.{photos.labels[i]}"
        own[i] = any(r.label == mine for r in reasons)
    return any_flag, own


def _listing_flags(
    policy: Policy, photos: Photos, s: Scores, listings: list[Listing]
) -> tuple[np.ndarray, np.ndarray]:
    """Per listing: a category mismatch/near-miss reason; any flag (decision != approve)."""
    cat_flag = np.zeros(len(listings), bool)
    any_flag = np.zeros(len(listings), bool)
    for j, li in enumerate(listings):
        refs = [str(photos.paths[i]) for i in li.photos]
        event = ListingEvent(listing_id=f"gate-{j}", declared_category=li.declared, images=refs)
        results, rows = [], []
        for pos, i in enumerate(li.photos):
            if s.ok[i]:
                results.append(PhotoResult(index=pos, ref=refs[pos], detectors=s.detectors(i)))
                rows.append(s.probs[i])
            else:
                results.append(PhotoResult(index=pos, ref=refs[pos], error_code="x", error="x"))
        probs = np.stack(rows) if rows else np.zeros((0, len(s.labels)), np.float32)
        d = policy.decide(event, results, probs, s.labels)
        cat_flag[j] = any(r.code in MISMATCH for r in d.reasons)
        any_flag[j] = d.decision != "approve"
    return cat_flag, any_flag


def compare(
    candidate: Path,
    shipped: Path,
    settings: Settings,
    *,
    split: str,
    out: Path,
    cache: Path,
    listings: int = 3000,
    share: float = 0.15,
    seed: int = 0,
    resamples: int = 1000,
    candidate_policy: Path | None = None,
    oof_dir: Path = OOF_DIR,
) -> dict[str, Any]:
    """Score, compare, write the report; raise TrainingError when the candidate is refused."""
    splits = ["train", "val"] if split in ("train+val", "val+oof") else [split]
    photos = labelled_photos(settings.datasets_dir, splits)
    if not photos.paths:
        raise TrainingError(f"no labelled photos under {settings.datasets_dir} ({split})")
    a = score(shipped, photos, settings, cache)
    b = score(candidate, photos, settings, cache)
    if a.labels != b.labels or a.head_keys != b.head_keys:
        raise TrainingError("the two models' labels or heads differ: not comparable")
    every = np.ones(len(photos.paths), bool)
    rows = Rows(every, every, "")
    if split == "val+oof":
        a, b, rows = out_of_fold(photos, a, b, (shipped, candidate), oof_dir)
    policy = Policy.load(settings.policy_path)
    policy_b = Policy.load(candidate_policy) if candidate_policy else policy
    boot = Bootstrap(len(photos.paths), resamples, seed)
    ds = np.array(photos.dataset)
    y = np.array(photos.labels)
    lab = np.array(a.labels)
    pred_a = np.where(a.ok, lab[a.probs.argmax(1)], "")
    pred_b = np.where(b.ok, lab[b.probs.argmax(1)], "")
    refusals: list[str] = []
    report: dict[str, Any] = {
        "shipped": {"path": str(shipped), "sha256": sha256_of(shipped), "version": a.model_version},
        "candidate": {
            "path": str(candidate),
            "sha256": sha256_of(candidate),
            "version": b.model_version,
        },
        "split": split,
        "photos": {f"{n}": int((ds == n).sum()) for n in (LISTINGS, PROHIBITED)},
        "unreadable": {"shipped": int((~a.ok).sum()), "candidate": int((~b.ok).sum())},
        "policy": str(settings.policy_path),
        "candidate_policy": str(candidate_policy or settings.policy_path),
        "policy_versions": [policy.version, policy_b.version],
        "out_of_fold": rows.note,
        "resamples": resamples,
    }

    def check(p: Paired, higher_is_better: bool, what: str) -> dict[str, Any]:
        if p.worse(higher_is_better):
            refusals.append(
                f"{what} {p.name}: {p.shipped:.4f} -> {p.candidate:.4f} "
                f"(paired 95% interval of the change {p.diff_ci[0]:+.4f} .. {p.diff_ci[1]:+.4f})"
            )
        return p.row()

    is_l = (ds == LISTINGS) & rows.category
    right_a, right_b = is_l & (pred_a == y), is_l & (pred_b == y)
    classes = []
    for c in a.labels:
        of_c = is_l & (y == c)
        if not of_c.any():
            continue
        rec = boot.paired(c, right_a & of_c, of_c, right_b & of_c, of_c)
        pa, pb = is_l & (pred_a == c), is_l & (pred_b == c)
        prec = boot.paired(c, right_a & pa, pa, right_b & pb, pb)
        classes.append(
            {
                "label": c,
                "recall": check(rec, True, "recall of"),
                "precision": prec.row(),
                "flips": flips(right_a[of_c], right_b[of_c]),
            }
        )
    top1 = boot.paired("top-1", right_a, is_l, right_b, is_l)
    report["category"] = {
        "top1": top1.row(),
        "flips": flips(right_a[is_l], right_b[is_l]),
        "per_class": classes,
    }

    flag_a, own_a = _photo_flags(policy, photos, a)
    flag_b, own_b = _photo_flags(policy_b, photos, b)
    is_p = (ds == PROHIBITED) & rows.heads
    pro = []
    for label in sorted(set(y[is_p]) - {BENIGN}):
        of = is_p & (y == label)
        rec = boot.paired(label, own_a & of, of, own_b & of, of)
        pro.append({**check(rec, True, "own-label flags of"), "flips": flips(own_a[of], own_b[of])})
    benign = []
    scenes = is_p & (y == BENIGN)
    benign_l = (ds == LISTINGS) & rows.heads
    for name, mask in (("listings-v1 photos", benign_l), ("prohibited-v2 benign scenes", scenes)):
        if mask.any():
            p = boot.paired(name, flag_a & mask, mask, flag_b & mask, mask)
            benign.append(check(p, False, "benign false-flag rate of"))
    report["prohibited"] = {"own_label": pro, "benign_flagged": benign}

    built = build_listings(photos, listings, share, seed, a.labels, rows.category & rows.heads)
    lb = Bootstrap(len(built), resamples, seed + 1)
    kind = np.array([li.kind for li in built])
    cat_a, any_a = _listing_flags(policy, photos, a, built)
    cat_b, any_b = _listing_flags(policy_b, photos, b, built)
    wrong, correct = kind != "correct", kind == "correct"
    masks = {
        "mismatch recall, all": wrong,
        "mismatch recall, cross-macro": kind == "cross_macro",
        "mismatch recall, same-macro": kind == "same_macro",
    }
    lrows = [
        check(lb.paired(name, cat_a & m, m, cat_b & m, m), True, "listings:")
        for name, m in masks.items()
    ]
    lrows.append(lb.paired("mismatch precision", cat_a & wrong, cat_a, cat_b & wrong, cat_b).row())
    flagged = lb.paired(
        "correct listings flagged (any reason)", any_a & correct, correct, any_b & correct, correct
    )
    lrows.append(check(flagged, False, "listings:"))
    by_category = lb.paired(
        "correct listings flagged (category)", cat_a & correct, correct, cat_b & correct, correct
    )
    lrows.append(by_category.row())
    report["listings"] = {
        "listings": len(built),
        "mis_declared_share": share,
        "photos_per_listing": "1-3, uniform, one category, drawn from the photos above",
        "rows": lrows,
    }
    report["refusals"] = refusals
    report["verdict"] = "refused" if refusals else "passed"
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "compare.md").write_text(markdown(report))
    if refusals:
        raise TrainingError(
            f"refused {candidate.name} against {shipped.name} (report in {out}/compare.md):\n  "
            + "\n  ".join(refusals)
        )
    return report
