"""`modq-train`: prepare → train → evaluate → export (→ quantize), or `all` of them.

Every subcommand works on one run folder (`--out`, e.g. runs/listings-v1); see
docs/training.md. Refusals (bad dataset, missing weights, failed parity) exit with status 1
and a one-paragraph reason instead of a traceback.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from training import TrainingError
from training.backbones import ARCHS, DEFAULT_ARCH
from training.train import TrainConfig

OUT = click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Run folder: manifest, caches, checkpoints, reports, model (e.g. runs/listings-v1).",
)


def _refusals(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TrainingError as exc:
            click.echo(f"modq-train: {exc}", err=True)
            sys.exit(1)

    return wrapper


def _prepare_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "--data",
                type=click.Path(path_type=Path),
                required=True,
                help="Dataset folder with train/<category>/*.jpg and val/<category>/*.jpg.",
            ),
            click.option(
                "--near-distance",
                default=4,
                show_default=True,
                help="Perceptual-hash Hamming distance (of 64 bits) for near duplicates.",
            ),
            click.option(
                "--exclude-leaked",
                is_flag=True,
                help="Leave train photos duplicating a val photo out of the manifest; else refuse.",
            ),
            click.option(
                "--workers", default=2, show_default=True, help="Processes decoding photos."
            ),
            click.option(
                "--extra",
                type=click.Path(exists=True, file_okay=False, path_type=Path),
                multiple=True,
                help="A `modq reviews export` folder whose train/<category>/ photos (human "
                "labels) join the train split; repeatable.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def _train_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    d = TrainConfig()
    for option in reversed(
        [
            click.option(
                "--arch",
                type=click.Choice(ARCHS),
                default=DEFAULT_ARCH,
                show_default=True,
                help="Backbone. torchvision ones need --weights.",
            ),
            click.option(
                "--weights",
                type=click.Path(path_type=Path),
                default=None,
                help="Local ImageNet state dict (required for torchvision architectures).",
            ),
            click.option(
                "--tail-blocks",
                default=d.tail_blocks,
                show_default=True,
                help="Last backbone blocks fine-tuned in phase 2 (with the head convolution).",
            ),
            click.option(
                "--aug-views",
                default=d.aug_views,
                show_default=True,
                help="Cached augmented views per training photo (plus the plain one).",
            ),
            click.option(
                "--balance",
                type=click.Choice(["oversample", "weighted", "none"]),
                default=d.balance,
                show_default=True,
                help="oversample: every class up to the 98th-percentile count; "
                "weighted: sampling weights 1/class count.",
            ),
            click.option(
                "--holdout",
                default=d.holdout,
                show_default=True,
                help="Share of train held out for early stopping and threshold choice.",
            ),
            click.option(
                "--head-epochs",
                default=d.head_epochs,
                show_default=True,
                help="Phase 1 (head only) epochs.",
            ),
            click.option(
                "--finetune-epochs",
                default=d.finetune_epochs,
                show_default=True,
                help="Phase 2 (tail + head) epochs; 0 skips it.",
            ),
            click.option("--lr-head", default=d.lr_head, show_default=True),
            click.option("--lr-tail", default=d.lr_tail, show_default=True),
            click.option("--label-smoothing", default=d.label_smoothing, show_default=True),
            click.option("--batch-size", default=d.batch_size, show_default=True),
            click.option(
                "--patience",
                default=d.patience,
                show_default=True,
                help="Epochs without a better holdout loss before stopping a phase.",
            ),
            click.option("--seed", default=d.seed, show_default=True),
            click.option(
                "--threads", default=d.threads, show_default=True, help="torch CPU threads."
            ),
            click.option(
                "--tensorboard", is_flag=True, help="Write TensorBoard logs to <out>/tensorboard."
            ),
        ]
    ):
        fn = option(fn)
    return fn


def _eval_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "--share",
                default=0.1,
                show_default=True,
                help="Share of listings with a wrong declared category in the simulated stream.",
            ),
            click.option(
                "--target-precision",
                # The holdout comes from the train split's sources and runs optimistic: on
                # listings-v1, 0.95 on holdout gave 0.92 on val, 0.97 gave 0.957 (model card).
                default=0.97,
                show_default=True,
                help="Mismatch flagging precision the threshold must reach on the holdout "
                "(set above the precision you need on unseen photos).",
            ),
            click.option(
                "--policy",
                type=click.Path(path_type=Path),
                default=None,
                help="Policy TOML whose [category].match_threshold to set (evaluate: always; "
                "export/all: only when the model is shipped).",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def _export_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "--prefix", default="listings", show_default=True, help="model_version prefix."
            ),
            click.option(
                "--ship-to",
                type=click.Path(path_type=Path),
                default=None,
                help="Copy the model here if better on val than the one there (models/...onnx).",
            ),
            click.option(
                "--force", is_flag=True, help="Ship even if not better than the current model."
            ),
            click.option(
                "--parity-photos",
                default=32,
                show_default=True,
                help="Real photos for the parity check.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def _config(kw: dict[str, Any]) -> TrainConfig:
    fields = TrainConfig.__dataclass_fields__
    cfg = {k: v for k, v in kw.items() if k in fields}
    if cfg.get("weights") is not None:
        cfg["weights"] = str(cfg["weights"])
    return TrainConfig(**cfg)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Train the modq category classifier and export it as the ONNX model the worker runs."""


@main.command("prepare")
@OUT
@_prepare_options
@_refusals
def prepare_cmd(
    out: Path,
    data: Path,
    near_distance: int,
    exclude_leaked: bool,
    workers: int,
    extra: tuple[Path, ...],
) -> None:
    """Check every photo (decodes, RGB, exact/near duplicates, leakage) and write the manifest."""
    from training.run import run_prepare

    run_prepare(
        data,
        out,
        near_distance=near_distance,
        exclude_leaked=exclude_leaked,
        workers=workers,
        extra=extra,
    )


@main.command("train")
@OUT
@_train_options
@_refusals
def train_cmd(out: Path, **kw: Any) -> None:
    """Cache trunk features, train the head, fine-tune the last blocks (best/last checkpoints)."""
    from training.run import run_train

    run_train(out, _config(kw))


@main.command("evaluate")
@OUT
@_eval_options
@_refusals
def evaluate_cmd(out: Path, share: float, target_precision: float, policy: Path | None) -> None:
    """Validation report, confusion matrix and mismatch operating curve; sets the threshold."""
    from training.run import run_evaluate

    run_evaluate(out, share=share, target_precision=target_precision, policy=policy)


@main.command("export")
@OUT
@_export_options
@click.option(
    "--policy",
    type=click.Path(path_type=Path),
    default=None,
    help="Policy TOML to update with the chosen threshold when the model is shipped.",
)
@_refusals
def export_cmd(
    out: Path,
    prefix: str,
    ship_to: Path | None,
    force: bool,
    parity_photos: int,
    policy: Path | None,
) -> None:
    """ONNX export with the model contract, parity check against PyTorch, optional shipping."""
    from training.run import run_export

    run_export(
        out, prefix=prefix, ship_to=ship_to, force=force, parity_photos=parity_photos, policy=policy
    )


@main.command("quantize")
@OUT
@click.option("--calibration-photos", default=128, show_default=True)
@_refusals
def quantize_cmd(out: Path, calibration_photos: int) -> None:
    """int8 copy of the exported model, with accuracy and speed next to fp32."""
    from training.run import run_quantize

    run_quantize(out, calibration_photos=calibration_photos)


@main.command("all")
@OUT
@_prepare_options
@_train_options
@_eval_options
@_export_options
@click.option(
    "--quantize", "do_quantize", is_flag=True, help="Also build and compare the int8 model."
)
@_refusals
def all_cmd(
    out: Path,
    data: Path,
    near_distance: int,
    exclude_leaked: bool,
    workers: int,
    extra: tuple[Path, ...],
    share: float,
    target_precision: float,
    policy: Path | None,
    prefix: str,
    ship_to: Path | None,
    force: bool,
    parity_photos: int,
    do_quantize: bool,
    **kw: Any,
) -> None:
    """prepare → train → evaluate → export (→ quantize), timing the whole run."""
    from training.run import run_evaluate, run_export, run_prepare, run_quantize, run_train

    started = time.perf_counter()
    run_prepare(
        data,
        out,
        near_distance=near_distance,
        exclude_leaked=exclude_leaked,
        workers=workers,
        extra=extra,
    )
    run_train(out, _config(kw))
    run_evaluate(out, share=share, target_precision=target_precision, policy=None)
    run_export(
        out, prefix=prefix, ship_to=ship_to, force=force, parity_photos=parity_photos, policy=policy
    )
    if do_quantize:
        run_quantize(out, calibration_photos=128)
    click.echo(f"all done in {time.perf_counter() - started:.0f} s")


@main.command("compare")
@click.argument("candidate", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--against",
    "shipped",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The model file that ships now (the int8 copy if that is what workers serve).",
)
@click.option(
    "--split",
    type=click.Choice(["val", "val+oof", "train+val"]),
    default="val",
    show_default=True,
    help="train+val only for a change that is not trained (quantisation, resize, decode); "
    "val+oof adds train photos through out-of-fold head scores (a trained prohibited head).",
)
@click.option(
    "--candidate-policy",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Policy the candidate is judged under (its own thresholds); default: MODQ_POLICY_PATH.",
)
@click.option(
    "--oof-dir",
    type=click.Path(path_type=Path),
    default=Path("runs/prohibited-oof"),
    show_default=True,
    help="Out-of-fold head scores, one file per model weights (add-prohibited-head writes them).",
)
@click.option(
    "--ship-to",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="On a pass, copy CANDIDATE here (and --candidate-policy over the shipped policy).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/compare"),
    show_default=True,
    help="Folder for compare.md and compare.json.",
)
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    default=Path("runs/compare-cache"),
    show_default=True,
    help="Per-model score cache (keyed by the file's sha256 and the photo list).",
)
@click.option("--listings", default=3000, show_default=True, help="Simulated listings.")
@click.option("--share", default=0.15, show_default=True, help="Share of listings mis-declared.")
@click.option("--resamples", default=1000, show_default=True, help="Bootstrap resamples.")
@click.option("--seed", default=0, show_default=True)
@click.option("--decode-threads", default=2, show_default=True, help="Photo-loading threads.")
@_refusals
def compare_cmd(
    candidate: Path,
    shipped: Path,
    split: str,
    out: Path,
    cache: Path,
    listings: int,
    share: float,
    resamples: int,
    seed: int,
    decode_threads: int,
    candidate_policy: Path | None,
    oof_dir: Path,
    ship_to: Path | None,
) -> None:
    """Ship gate: refuse CANDIDATE if it is worse than --against beyond the 95% interval."""
    from modq.settings import get_settings
    from training.compare import compare

    settings = get_settings().model_copy(update={"decode_threads": decode_threads})
    report = compare(
        candidate,
        shipped,
        settings,
        split=split,
        out=out,
        cache=cache,
        listings=listings,
        share=share,
        seed=seed,
        resamples=resamples,
        candidate_policy=candidate_policy,
        oof_dir=oof_dir,
    )
    click.echo((out / "compare.md").read_text())
    click.echo(f"passed: {report['candidate']['version']} may ship ({out}/compare.md)")
    if ship_to is not None:
        from training.gate_ship import ship_candidate

        for line in ship_candidate(candidate, ship_to, candidate_policy, settings.policy_path):
            click.echo(line)


# The prohibited-items head (another engineer's module) registers here when it is present.
if importlib.util.find_spec("training.prohibited") is not None:
    from training.prohibited_cli import add_prohibited_head, prohibited_oof

    main.add_command(add_prohibited_head)
    main.add_command(prohibited_oof)


if __name__ == "__main__":
    main()
