"""Two-phase training on cached trunk features, with early stopping and checkpoints.

Phase 1 trains the linear head on pooled embeddings (the tail runs once, frozen). Phase 2
fine-tunes the tail (last blocks + head convolution) and the head together at a lower
learning rate. Both stop early on the loss of a held-out part carved from train (val stays
untouched for the report) and keep `best.pt` and `last.pt`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from training import TrainingError
from training.backbones import DEFAULT_ARCH, Backbone, Net, build
from training.data import Item, Manifest, holdout_split
from training.features import ViewKey, trunk_features

Balance = Literal["oversample", "weighted", "none"]


@dataclass
class TrainConfig:
    arch: str = DEFAULT_ARCH
    weights: str | None = None
    tail_blocks: int = 1
    aug_views: int = 2
    balance: Balance = "oversample"
    holdout: float = 0.1
    head_epochs: int = 30
    finetune_epochs: int = 6
    lr_head: float = 1e-3
    lr_tail: float = 2e-4
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    batch_size: int = 64
    patience: int = 3
    seed: int = 0
    threads: int = 2
    tensorboard: bool = False
    loader_workers: int = 1


@dataclass
class History:
    phases: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)


def load_backbone(cfg: TrainConfig, num_classes: int) -> Backbone:
    weights = Path(cfg.weights) if cfg.weights else None
    return build(cfg.arch, num_classes, weights=weights, tail_blocks=cfg.tail_blocks)


def sample_indices(
    labels: npt.NDArray[np.int64], balance: Balance, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """One epoch's order of training items under the chosen imbalance strategy."""
    n_classes = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=n_classes)
    if balance == "weighted":
        weights = 1.0 / counts[labels]
        return rng.choice(len(labels), size=len(labels), replace=True, p=weights / weights.sum())
    if balance == "oversample":
        # Every class up to the 98th-percentile class count; bigger classes stay as they are.
        target = int(np.percentile(counts, 98))
        parts = []
        for c in range(n_classes):
            members = np.flatnonzero(labels == c)
            extra = max(0, target - len(members))
            parts += [members, rng.choice(members, size=extra, replace=True)]
        return rng.permutation(np.concatenate(parts))
    return rng.permutation(len(labels))


def _batches(order: npt.NDArray[np.int64], size: int) -> list[npt.NDArray[np.int64]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


class Trainer:
    def __init__(self, cfg: TrainConfig, manifest: Manifest, out_dir: Path) -> None:
        self.cfg, self.manifest, self.out_dir = cfg, manifest, out_dir
        self.ckpt_dir = out_dir / "checkpoints"
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.labels = manifest.labels
        self.writer: Any = None
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tensorboard"))

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        started = time.perf_counter()
        backbone = load_backbone(cfg, len(self.labels))
        net = backbone.net
        train_items, held_items = holdout_split(self.manifest.split("train"), cfg.holdout, cfg.seed)
        if not held_items:
            raise TrainingError("the held-out part is empty: use a larger --holdout or more photos")
        index = {label: i for i, label in enumerate(self.labels)}
        y_train = np.array([index[it.label] for it in train_items], dtype=np.int64)
        y_held = np.array([index[it.label] for it in held_items], dtype=np.int64)

        key = ViewKey(backbone.arch, backbone.weights, cfg.tail_blocks, backbone.spec, cfg.seed)
        root = Path(self.manifest.root)
        cache = self.out_dir / "cache"
        feats = dict(batch_size=16, workers=cfg.loader_workers)
        x_train = trunk_features(
            net.trunk, root, train_items, 1 + cfg.aug_views, key, cache, "train", **feats
        )
        x_held = trunk_features(net.trunk, root, held_items, 1, key, cache, "holdout", **feats)
        cached_at = time.perf_counter()

        torch.manual_seed(cfg.seed)
        history = History()
        meta = {
            "arch": backbone.arch,
            "weights": backbone.weights,
            "spec": backbone.spec.model_dump(),
            "labels": self.labels,
            "tail_blocks": cfg.tail_blocks,
            "config": asdict(cfg),
        }
        self._phase_head(net, x_train, y_train, x_held, y_held, history, meta)
        head_at = time.perf_counter()
        self._phase_finetune(net, x_train, y_train, x_held, y_held, history, meta)
        done = time.perf_counter()

        summary = {
            "data_hash": self.manifest.data_hash,
            "train_photos": len(train_items),
            "holdout_photos": len(held_items),
            "views_per_photo": 1 + cfg.aug_views,
            "seconds": {
                "cache": round(cached_at - started, 1),
                "head": round(head_at - cached_at, 1),
                "finetune": round(done - head_at, 1),
                "total": round(done - started, 1),
            },
            "best": history.best,
            "history": history.phases,
            "holdout": [it.path for it in held_items],
            "command": " ".join(sys.argv),
            **meta,
        }
        (self.out_dir / "train.json").write_text(json.dumps(summary, indent=1))
        if self.writer is not None:
            self.writer.close()
        return summary

    def _phase_head(
        self,
        net: Net,
        x_train: Any,
        y_train: Any,
        x_held: Any,
        y_held: Any,
        history: History,
        meta: dict[str, Any],
    ) -> None:
        """Head only: embeddings of every cached view computed once with the frozen tail."""
        cfg = self.cfg
        e_train = _embed(net, x_train, "embed train views")
        e_held = _embed(net, x_held, "embed holdout")[:, 0]
        opt = torch.optim.AdamW(net.fc.parameters(), lr=cfg.lr_head, weight_decay=cfg.weight_decay)
        rng = np.random.default_rng(cfg.seed)

        def step(batch: npt.NDArray[np.int64]) -> tuple[torch.Tensor, torch.Tensor]:
            view = rng.integers(0, e_train.shape[1], size=len(batch))
            x = net.dropout(e_train[batch, view])
            return net.fc(x), torch.from_numpy(y_train[batch])

        def evaluate() -> torch.Tensor:
            return net.fc(e_held)

        self._loop(
            "head",
            net,
            opt,
            cfg.head_epochs,
            cfg.lr_head,
            step,
            evaluate,
            y_train,
            y_held,
            history,
            meta,
            batch_size=256,
        )

    def _phase_finetune(
        self,
        net: Net,
        x_train: Any,
        y_train: Any,
        x_held: Any,
        y_held: Any,
        history: History,
        meta: dict[str, Any],
    ) -> None:
        cfg = self.cfg
        if cfg.finetune_epochs <= 0:
            return
        _load_state(net, self.ckpt_dir / "best.pt")
        params = [
            {"params": net.tail.parameters(), "lr": cfg.lr_tail},
            {"params": net.fc.parameters(), "lr": cfg.lr_tail},
        ]
        opt = torch.optim.AdamW(params, weight_decay=cfg.weight_decay)
        rng = np.random.default_rng(cfg.seed + 1)
        views = x_train.shape[1]

        def step(batch: npt.NDArray[np.int64]) -> tuple[torch.Tensor, torch.Tensor]:
            view = rng.integers(0, views, size=len(batch))
            x = torch.from_numpy(np.asarray(x_train[batch, view], dtype=np.float32))
            logits = net.fc(net.dropout(net.embed_trunk(x)))
            return logits, torch.from_numpy(y_train[batch])

        def evaluate() -> torch.Tensor:
            net.eval()
            return net.fc(_embed(net, x_held, None)[:, 0])

        self._loop(
            "finetune",
            net,
            opt,
            cfg.finetune_epochs,
            cfg.lr_tail,
            step,
            evaluate,
            y_train,
            y_held,
            history,
            meta,
            batch_size=cfg.batch_size,
        )

    def _loop(
        self,
        phase: str,
        net: Net,
        opt: torch.optim.Optimizer,
        epochs: int,
        lr: float,
        step: Any,
        evaluate: Any,
        y_train: Any,
        y_held: Any,
        history: History,
        meta: dict[str, Any],
        batch_size: int,
    ) -> None:
        cfg = self.cfg
        rng = np.random.default_rng(cfg.seed + (0 if phase == "head" else 7))
        epoch_len = len(sample_indices(y_train, cfg.balance, np.random.default_rng(0)))
        total_steps = max(1, epochs * math.ceil(epoch_len / batch_size))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
        best_loss = history.best.get("holdout_loss", math.inf)
        stale = 0
        records: list[dict[str, float]] = history.phases.setdefault(phase, [])
        held_t = torch.from_numpy(y_held)
        for epoch in range(1, epochs + 1):
            _train_mode(net)
            order = sample_indices(y_train, cfg.balance, rng)
            total, correct, loss_sum = 0, 0, 0.0
            bar = tqdm(
                _batches(order, batch_size), desc=f"{phase} epoch {epoch}/{epochs}", unit="batch"
            )
            for batch in bar:
                logits, target = step(batch)
                loss = F.cross_entropy(logits, target, label_smoothing=cfg.label_smoothing)
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                sched.step()
                total += len(batch)
                correct += int((logits.argmax(1) == target).sum())
                loss_sum += float(loss.detach()) * len(batch)
                bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}")
            net.eval()
            with torch.no_grad():
                held_logits = evaluate()
                held_loss = float(F.cross_entropy(held_logits, held_t))
                held_acc = float((held_logits.argmax(1) == held_t).float().mean())
            rec = {
                "epoch": epoch,
                "train_loss": loss_sum / total,
                "train_acc": correct / total,
                "holdout_loss": held_loss,
                "holdout_acc": held_acc,
            }
            records.append(rec)
            tqdm.write(
                f"{phase} epoch {epoch}: train loss {rec['train_loss']:.4f} acc "
                f"{rec['train_acc']:.4f} | holdout loss {held_loss:.4f} acc {held_acc:.4f}"
            )
            if self.writer is not None:
                for name, value in rec.items():
                    if name != "epoch":
                        self.writer.add_scalar(f"{phase}/{name}", value, epoch)
            ckpt = {"state_dict": net.state_dict(), "phase": phase, "epoch": epoch, **rec, **meta}
            torch.save(ckpt, self.ckpt_dir / "last.pt")
            if held_loss < best_loss:
                best_loss, stale = held_loss, 0
                torch.save(ckpt, self.ckpt_dir / "best.pt")
                history.best = {
                    "phase": phase,
                    "epoch": epoch,
                    "holdout_loss": held_loss,
                    "holdout_acc": held_acc,
                }
            else:
                stale += 1
                if stale >= cfg.patience:
                    tqdm.write(
                        f"{phase}: early stop, holdout loss has not improved for {stale} epochs"
                    )
                    break


def _train_mode(net: Net) -> None:
    """Dropout on, batch-norm statistics frozen: fine-tuning batches are too small and too
    skewed by oversampling to re-estimate them."""
    net.train()
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _embed(net: Net, x: Any, desc: str | None, chunk: int = 256) -> torch.Tensor:
    """Pooled embeddings [N, views, D] of cached trunk outputs, tail in eval mode."""
    net.eval()
    n, views = x.shape[:2]
    out: torch.Tensor | None = None
    with torch.no_grad():
        for start in tqdm(range(0, n, chunk), desc=desc, unit="chunk", disable=desc is None):
            block = torch.from_numpy(np.asarray(x[start : start + chunk], dtype=np.float32))
            emb = net.embed_trunk(block.flatten(0, 1)).view(len(block), views, -1)
            if out is None:
                out = torch.empty(n, views, emb.shape[-1])
            out[start : start + len(block)] = emb
    assert out is not None
    return out


def _load_state(net: Net, path: Path) -> None:
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["state_dict"])


def load_checkpoint(path: Path) -> tuple[Backbone, dict[str, Any]]:
    """Rebuild the trained network from a checkpoint written by `Trainer`."""
    if not path.is_file():
        raise TrainingError(f"checkpoint {path} not found: run `modq-train train` first")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    backbone = build(
        ckpt["arch"], len(ckpt["labels"]), tail_blocks=ckpt["tail_blocks"], pretrained=False
    )
    backbone.net.load_state_dict(ckpt["state_dict"])
    backbone.net.eval()
    return backbone, ckpt


def items_for(manifest: Manifest, paths: list[str]) -> list[Item]:
    wanted = set(paths)
    return [it for it in manifest.items if it.path in wanted]
