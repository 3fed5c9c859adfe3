"""The audio encoder's networks (torch): EfficientNet-Lite0 over log-mels with a class head and
a projection, the ensemble of several, and the spoken-digit expert. Their state dicts are what
``search.checkpoints.AudioCheckpoint`` stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

from search.encoders.onnx_image import pretrained_efficientnet

FEATURE_DIM = 1280  # EfficientNet-Lite0's pooled features


class AudioNet(nn.Module):
    """Log-mel [n, mels, frames] -> (class logits, pooled features, projection or None)."""

    def __init__(self, backbone: nn.Module, n_classes: int, proj_dim: int | None) -> None:
        super().__init__()
        self.backbone: Any = backbone  # EfficientNet: untyped attributes
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(FEATURE_DIM, n_classes)
        self.projection = nn.Linear(FEATURE_DIM, proj_dim) if proj_dim else None

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel [n, mels, frames] -> pooled features [n, 1280]."""
        x = mel[:, None].expand(-1, 3, -1, -1)
        return self.backbone._avg_pooling(self.backbone.extract_features(x)).flatten(1)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        feats = self.features(mel)
        dropped = self.dropout(feats)
        proj = self.projection(dropped) if self.projection is not None else None
        return self.classifier(dropped), feats, proj


class AudioEnsemble(nn.Module):
    """Networks of one vocabulary and front end as one: mean logits, features and projections.

    Runs trained from the same ImageNet start on the same rows with other seeds make different
    mistakes; averaging them is the ensemble ``train-audio --combine`` builds.
    """

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(nets)
        self.projection = nets[0].projection  # shape of the output, for callers that ask

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        outs = [m(mel) for m in self.members]
        logits = torch.stack([o[0] for o in outs]).mean(dim=0)
        feats = torch.stack([o[1] for o in outs]).mean(dim=0)
        proj = None if outs[0][2] is None else torch.stack([o[2] for o in outs]).mean(dim=0)
        return logits, feats, proj


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]


class DigitNet(nn.Module):
    """The spoken-digit expert: 4 conv blocks over the first second of log-mel -> 10 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(*_block(1, 16), *_block(16, 32), *_block(32, 64), *_block(64, 96))
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(96, 10))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(mel[:, None]).mean(dim=(2, 3)))


def build_net(n_classes: int, proj_dim: int | None, pretrained: bool) -> AudioNet:
    """An ``AudioNet``; ``pretrained`` starts from the bundled ImageNet weights (training),
    loading shipped weights builds the bare structure."""
    backbone = pretrained_efficientnet() if pretrained else EfficientNet.from_name("efficientnet-lite0")
    backbone._fc = nn.Identity()  # the ImageNet head is not used
    for m in backbone.modules():
        # efficientnet_pytorch sets BN momentum 0.01: running stats would lag ImageNet's for
        # hundreds of steps, and a short fine-tune evaluates with the wrong statistics
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return AudioNet(backbone, n_classes, proj_dim)
