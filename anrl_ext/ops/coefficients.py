"""The small (N, C) middle of the fused op: BN merge and blend coefficients.

With per-sample moments (mu_nc, var_nc), the BN statistics are their Chan
merge, and the blend alpha * BN(x) + (1 - alpha) * IN(x) collapses to one
centred affine map per (n, c):

    y = scale_nc * (x - mu_nc) + shift_nc
    scale_nc = alpha * g_b * r_c + (1 - alpha) * g_i * r_nc
    shift_nc = alpha * (b_b + g_b * r_c * (mu_nc - mu_c)) + (1 - alpha) * b_i

Centring on mu_nc (rather than y = A x + B) keeps float32 exact when
|mean| >> std. Everything here is plain differentiable PyTorch.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor

Alpha = Union[float, Tensor]


def batch_stats(mean: Tensor, var: Tensor) -> Tuple[Tensor, Tensor]:
    """BN statistics (per channel, biased var) from per-sample moments."""
    mu_c = mean.mean(0)
    var_c = (var + (mean - mu_c) ** 2).mean(0)
    return mu_c, var_c


def update_running_buffers(mu_c: Tensor, var_c: Tensor, count: int, running_mean: Optional[Tensor],
                   running_var: Optional[Tensor], momentum: float) -> None:
    """nn.BatchNorm2d's update: EMA of the batch mean and the unbiased batch variance
    (count values per channel), in place.

    Detached inputs rather than a no_grad block: torch.export records a grad-mode
    switch as a higher-order op that its saved programs cannot load again."""
    mu_c, var_c = mu_c.detach(), var_c.detach()
    if running_mean is not None:
        running_mean.mul_(1 - momentum).add_(mu_c.to(running_mean.dtype), alpha=momentum)
    if running_var is not None:
        unbiased = var_c * (count / (count - 1)) if count > 1 else var_c
        running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)


def expand_alpha(alpha: Alpha, mean: Tensor) -> Union[float, Tensor]:
    """alpha as a float or an (N, C)-broadcastable tensor in the stats dtype."""
    if isinstance(alpha, Tensor):
        alpha = alpha.to(mean.dtype)
        return alpha if alpha.dim() == 2 else alpha.reshape(1, -1)
    return float(alpha)


def blend_coefficients(
    mean: Tensor,
    var: Tensor,
    alpha: Alpha,
    bn_weight: Optional[Tensor],
    bn_bias: Optional[Tensor],
    in_weight: Optional[Tensor],
    in_bias: Optional[Tensor],
    bn_mean: Tensor,
    bn_var: Tensor,
    eps: float,
) -> Tuple[Tensor, Tensor]:
    """(scale, shift), each (N, C), of the centred affine map above."""
    dt = mean.dtype
    alpha = expand_alpha(alpha, mean)
    scale = mean.new_zeros(())
    shift = mean.new_zeros(())
    if not (isinstance(alpha, float) and alpha == 0.0):  # BN branch
        a_bn = torch.rsqrt(bn_var.to(dt) + eps)
        if bn_weight is not None:
            a_bn = a_bn * bn_weight.to(dt)
        s_bn = a_bn * (mean - bn_mean.to(dt))
        if bn_bias is not None:
            s_bn = s_bn + bn_bias.to(dt)
        scale = scale + alpha * a_bn
        shift = shift + alpha * s_bn
    if not (isinstance(alpha, float) and alpha == 1.0):  # IN branch
        a_in = torch.rsqrt(var + eps)
        if in_weight is not None:
            a_in = a_in * in_weight.to(dt)
        scale = scale + (1 - alpha) * a_in
        if in_bias is not None:
            shift = shift + (1 - alpha) * in_bias.to(dt)
    return scale.expand_as(mean), shift.expand_as(mean)
