"""The ANRL network: RFM-style feature extractor with AFNM, depth head, classifier.

Extractor (for a 256x256x6 input): a 6->64 conv block, then three blocks of
128->196->128 convs each followed by 2x2 max-pooling; the three block outputs
are resized to the last one's size and concatenated (3 x 128 = 384 channels,
32x32). `width` scales every channel count for small CPU runs; spatial sizes
follow the input size.
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .nn import AFNM, StableBatchNorm2d, make_norm


def _c(ch: int, width: float) -> int:
    return max(4, int(round(ch * width)))


class ConvNorm(nn.Sequential):
    def __init__(self, cin, cout, norm, norm_kwargs):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                         make_norm(norm, cout, **norm_kwargs), nn.ReLU(inplace=True))


class FeatureExtractor(nn.Module):
    def __init__(self, in_ch: int = 6, width: float = 1.0, norm: str = "afnm", **norm_kwargs):
        super().__init__()
        c64, c128, c196 = _c(64, width), _c(128, width), _c(196, width)
        self.stem = ConvNorm(in_ch, c64, norm, norm_kwargs)
        blocks, cin = [], c64
        for _ in range(3):
            blocks.append(nn.Sequential(ConvNorm(cin, c128, norm, norm_kwargs), ConvNorm(c128, c196, norm, norm_kwargs),
                                        ConvNorm(c196, c128, norm, norm_kwargs), nn.MaxPool2d(2)))
            cin = c128
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = 3 * c128

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        size = feats[-1].shape[-2:]
        return torch.cat([F.adaptive_avg_pool2d(f, size) for f in feats], 1)


class DepthEstimator(nn.Module):
    def __init__(self, cin: int, width: float = 1.0):
        super().__init__()
        c128, c64 = _c(128, width), _c(64, width)
        self.net = nn.Sequential(nn.Conv2d(cin, c128, 3, padding=1, bias=False), StableBatchNorm2d(c128), nn.ReLU(True),
                                 nn.Conv2d(c128, c64, 3, padding=1, bias=False), StableBatchNorm2d(c64), nn.ReLU(True),
                                 nn.Conv2d(c64, 1, 3, padding=1), nn.Sigmoid())

    def forward(self, f: Tensor) -> Tensor:
        return self.net(f)


class Classifier(nn.Module):
    """Conv + global pooling to an embedding (the features O of IDC/ICS), then a linear 2-way head."""

    def __init__(self, cin: int, width: float = 1.0, embed: int = 512):
        super().__init__()
        c = _c(128, width)
        self.conv = nn.Sequential(nn.Conv2d(cin, c, 3, padding=1, bias=False), StableBatchNorm2d(c), nn.ReLU(True),
                                  nn.MaxPool2d(2))
        self.embed = nn.Linear(c, _c(embed, width))
        self.head = nn.Linear(_c(embed, width), 2)

    def forward(self, f: Tensor):
        e = self.embed(torch.flatten(F.adaptive_avg_pool2d(self.conv(f), 1), 1))
        return self.head(F.relu(e)), F.normalize(e, dim=1)


class ANRLNet(nn.Module):
    """Returns dict(logits (N, 2), depth (N, 1, S/8, S/8), features (N, E) L2-normalised)."""

    def __init__(self, width: float = 1.0, norm: str = "afnm", gate: str = "paper", backend: str = "auto",
                 reduction: int = 16):
        super().__init__()
        self.extractor = FeatureExtractor(6, width, norm, gate=gate, backend=backend, reduction=reduction)
        self.depth = DepthEstimator(self.extractor.out_channels, width)
        self.classifier = Classifier(self.extractor.out_channels, width)

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        f = self.extractor(x)
        logits, feats = self.classifier(f)
        return {"logits": logits, "depth": self.depth(f), "features": feats}

    def gate_parameter_names(self) -> List[str]:
        """Names of theta_F: exactly the AFNM gate parameters (empty for non-AFNM norms)."""
        names = []
        for mname, m in self.named_modules():
            if isinstance(m, AFNM):
                names += [f"{mname}.gate.{n}" for n, _ in m.gate.named_parameters()]
        return names
