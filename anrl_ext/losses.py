"""ANRL losses: Dual Calibrated Constraints (IDC, ICS), depth and classification.

Distances are squared Euclidean between L2-normalised features and
centroids. Global centroids are momentum-averaged (gamma = 0.9) batch means,
held as buffers and treated as constants in the loss (no gradient).
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _dist(f: Tensor, c: Tensor) -> Tensor:
    return (f - c).pow(2).sum(-1)


class DualCalibration(nn.Module):
    """Global domain centroids (IDC) and real / fake centroids (ICS)."""

    def __init__(self, num_domains: int, dim: int, gamma: float = 0.9):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("domain_centroids", torch.zeros(num_domains, dim))
        self.register_buffer("domain_seen", torch.zeros(num_domains, dtype=torch.bool))
        self.register_buffer("class_centroids", torch.zeros(2, dim))  # index 0 fake, 1 real
        self.register_buffer("class_seen", torch.zeros(2, dtype=torch.bool))

    @torch.no_grad()
    def update(self, features: Tensor, domains: Tensor, labels: Tensor) -> None:
        """C <- gamma * C + (1 - gamma) * batch mean; a first sighting sets C to the batch mean."""
        for cent, seen, keys in ((self.domain_centroids, self.domain_seen, domains),
                                 (self.class_centroids, self.class_seen, labels)):
            for k in keys.unique().tolist():
                mean = features[keys == k].mean(0).to(cent.dtype)
                cent[k] = self.gamma * cent[k] + (1 - self.gamma) * mean if seen[k] else mean
                seen[k] = True

    def idc(self, features: Tensor, domains: Tensor) -> Tensor:
        """eq. 6-8: sum over present domains k of (D_dd^k - D_sd^k)."""
        loss = features.new_zeros(())
        seen = self.domain_seen.nonzero().flatten().tolist()
        for k in domains.unique().tolist():
            others = [j for j in seen if j != k]
            if k not in seen or not others:
                continue
            fk = features[domains == k]
            d_sd = _dist(fk, self.domain_centroids[k]).mean()
            d_dd = torch.stack([_dist(fk, self.domain_centroids[j]).mean() for j in others]).mean()
            loss = loss + d_dd - d_sd
        return loss

    def ics(self, features: Tensor, labels: Tensor) -> Tensor:
        """eq. 9-11: D_rr - D_rf - D_fr; terms of an absent class are left out."""
        loss = features.new_zeros(())
        real, fake = features[labels == 1], features[labels == 0]
        cr, cf = self.class_centroids[1], self.class_centroids[0]
        if len(real) and self.class_seen[1]:
            loss = loss + _dist(real, cr).mean()
        if len(real) and self.class_seen[0]:
            loss = loss - _dist(real, cf).mean()
        if len(fake) and self.class_seen[1]:
            loss = loss - _dist(fake, cr).mean()
        return loss


def depth_loss(pred: Tensor, depth: Tensor, labels: Tensor) -> Tensor:
    """MSE to the pseudo-depth map for live faces and to zeros for spoofs."""
    target = depth * (labels == 1).to(depth.dtype).view(-1, 1, 1, 1)
    if target.shape[-2:] != pred.shape[-2:]:
        target = F.interpolate(target, size=pred.shape[-2:], mode="bilinear", align_corners=False)
    return F.mse_loss(pred, target)


def anrl_losses(out: Dict[str, Tensor], batch: Dict[str, Tensor], dcc: DualCalibration,
                lambda_idc: float, lambda_ics: float, with_dcc: bool = True) -> Dict[str, Tensor]:
    """The loss terms of one forward; 'total' = cls + dep (+ lambda1 IDC + lambda2 ICS)."""
    terms = {"cls": F.cross_entropy(out["logits"], batch["label"]),
             "dep": depth_loss(out["depth"], batch["depth"], batch["label"])}
    total = terms["cls"] + terms["dep"]
    if with_dcc:
        terms["idc"] = dcc.idc(out["features"], batch["domain"])
        terms["ics"] = dcc.ics(out["features"], batch["label"])
        total = total + lambda_idc * terms["idc"] + lambda_ics * terms["ics"]
    terms["total"] = total
    return terms
