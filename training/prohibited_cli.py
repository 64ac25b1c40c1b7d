"""`modq-train add-prohibited-head` (fit, calibrate, graft, check, report) and
`modq-train prohibited-oof` (out-of-fold scores of the head a shipped file already has)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click
import numpy as np
import onnx
from onnx import numpy_helper

from training import TrainingError
from training.prohibited import (
    BENIGN,
    DEFAULT_LABELS,
    category_outputs,
    evaluate_head,
    train_head,
)
from training.prohibited_data import list_labelled_photos
from training.prohibited_fit import REVIEW_FPR
from training.prohibited_graph import DEFAULT_FEATURES, DETECTOR, FEATURES
from training.prohibited_oof import OOF_DIR, weights_digest

CACHE = Path("runs/prohibited-cache")


@click.command("add-prohibited-head")
@click.option("--model", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True,
              help="prohibited-v2: train/<label>/*.jpg, val/<label>/*.jpg, boxes/")  # fmt: skip
@click.option("--benign", type=click.Path(exists=True, path_type=Path), required=True,
              help="listings-v1: every photo counts as benign")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output ONNX (default: overwrite --model).")  # fmt: skip
@click.option("--labels", default=",".join(DEFAULT_LABELS), show_default=True)
@click.option("--features", type=click.Choice(FEATURES), default=DEFAULT_FEATURES,
              show_default=True,
              help="Head input: pooled embedding, or it + spatial max of the same map")  # fmt: skip
@click.option("--crops/--no-crops", default=False, show_default=True,
              help="Also train on square crops around the boxes in DATA/boxes/")  # fmt: skip
@click.option("--review-fpr", type=float, default=REVIEW_FPR, show_default=True,
              help="Share of out-of-fold listing photos at review, per label")  # fmt: skip
@click.option("--hard-weight", type=float, default=1.0, show_default=True,
              help="Weight of DATA's benign scenes (hard negatives) in the fit")  # fmt: skip
@click.option("--scene-fpr", type=float, default=None,
              help="Cap on the out-of-fold share of DATA's benign scenes at review")  # fmt: skip
@click.option("--policy", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="With --policy-out: the policy to copy")  # fmt: skip
@click.option("--policy-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write POLICY with the chosen thresholds and a bumped version here")  # fmt: skip
@click.option("--oof-dir", type=click.Path(path_type=Path), default=OOF_DIR, show_default=True,
              help="Where the out-of-fold scores for the ship gate go")  # fmt: skip
@click.option("--cache", type=click.Path(path_type=Path), default=CACHE, show_default=True)
def add_prohibited_head(
    model: Path,
    data: Path,
    benign: Path,
    out: Path | None,
    labels: str,
    features: str,
    crops: bool,
    review_fpr: float,
    hard_weight: float,
    scene_fpr: float | None,
    policy: Path | None,
    policy_out: Path | None,
    oof_dir: Path,
    cache: Path,
) -> None:
    """Fit the prohibited-items head on MODEL's features and graft it into the graph."""
    if (policy is None) != (policy_out is None):
        raise click.UsageError("--policy and --policy-out go together")
    wanted = [lb.strip() for lb in labels.split(",") if lb.strip()]
    target = out or model
    # The category outputs of MODEL on listing val photos, before TARGET (maybe MODEL) is written.
    listing_val = list_labelled_photos(benign, "val", benign_as=BENIGN).paths
    before = category_outputs(model, listing_val, cache)
    info = train_head(
        model, data, benign, target, wanted, cache, features=features, crops=crops,
        review_fpr=review_fpr, hard_weight=hard_weight, scene_fpr=scene_fpr, oof_dir=oof_dir,
    )  # fmt: skip
    changed = [k for k, v in category_outputs(target, listing_val, cache).items()
               if not np.array_equal(v, before[k])]  # fmt: skip
    if changed:
        raise TrainingError(f"grafting the head changed {changed} of {model}: not shipping")
    click.echo(f"category outputs bit-identical to {model} on {len(listing_val)} photos")
    click.echo(json.dumps(info["suggested_thresholds"], indent=2))
    report = evaluate_head(target, data, benign, info["suggested_thresholds"], cache)
    click.echo(json.dumps(report, indent=2))
    if policy is not None and policy_out is not None:
        from training.gate_ship import write_candidate_policy

        match = _match_threshold(target)
        today = dt.datetime.now(dt.UTC).date().isoformat()
        write_candidate_policy(policy, policy_out, today, info["suggested_thresholds"], match)
        click.echo(f"wrote {policy_out} (the policy for {target}: judge it with it)")
    click.echo(f"wrote {target}")


def _match_threshold(model: Path) -> float | None:
    """The category threshold `modq-train evaluate` chose for this model, if it recorded one."""
    from training.prohibited import _session

    _, contract = _session(model)
    value = contract.training.get("thresholds", {}).get("match_threshold")
    return float(value) if value is not None else None


def _head_weights(model: Path) -> list[np.ndarray]:
    init = {t.name: t for t in onnx.load(str(model)).graph.initializer}
    return [numpy_helper.to_array(init[f"{DETECTOR}_{n}"]) for n in ("w", "b")]


@click.command("prohibited-oof")
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="A file with a prohibited head (the shipped one)")  # fmt: skip
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--benign", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--oof-dir", type=click.Path(path_type=Path), default=OOF_DIR, show_default=True)
@click.option("--cache", type=click.Path(path_type=Path), default=CACHE, show_default=True)
def prohibited_oof(model: Path, data: Path, benign: Path, oof_dir: Path, cache: Path) -> None:
    """Out-of-fold scores of MODEL's head for the ship gate: refit the recipe its contract
    records and check the refit is the head in the file, else refuse."""
    from training.prohibited import _session
    from training.prohibited_oof import load_oof

    if load_oof(model, oof_dir) is not None:  # same weights, same scores: 20 minutes saved
        click.echo(f"out-of-fold scores of {model} already in {oof_dir}")
        return
    _, contract = _session(model)
    info = contract.training.get(DETECTOR)
    if not info:
        raise TrainingError(f"{model} records no prohibited head")
    recipe = info.get("recipe", {})
    refit = cache / "refit" / model.name
    refit.parent.mkdir(parents=True, exist_ok=True)
    train_head(
        model, data, benign, refit, list(info["labels"]), cache,
        seed=recipe.get("seed", 0), features=info["features"], crops=recipe.get("crops", False),
        review_fpr=recipe.get("review_fpr", REVIEW_FPR),
        hard_weight=recipe.get("hard_weight", 1.0), scene_fpr=recipe.get("scene_fpr"),
        oof_dir=oof_dir,
    )  # fmt: skip
    mine, theirs = _head_weights(model), _head_weights(refit)
    if weights_digest(refit) != weights_digest(model):
        worst = max(float(np.abs(a - b).max()) for a, b in zip(mine, theirs, strict=True))
        raise TrainingError(
            f"refitting {model}'s recipe gives another head (largest weight difference "
            f"{worst:.3g}): its out-of-fold scores cannot be rebuilt here"
        )
    click.echo(f"out-of-fold scores of {model} in {oof_dir}")
