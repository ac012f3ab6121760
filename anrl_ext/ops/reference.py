"""Plain-PyTorch references: the naive baseline and the float64 oracle.

`adaptive_norm_reference` is the textbook composition the fused kernels
replace: alpha * batch_norm(x) + (1 - alpha) * instance_norm(x).
`PRIMITIVES` implements the four primitives with ATen ops, to check each
kernel on its own.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .coefficients import Alpha
from .primitives import Primitives, acc_dtype


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient NCHW contiguous.

    F.instance_norm's backward returns wrong input and weight gradients when
    N = 1 and the output gradient is channels_last (torch 2.14, CPU; see
    test_channels_last_single_sample_gradients). Differentiable, so double
    backward still works.
    """

    @staticmethod
    def forward(ctx, y):
        return y.view_as(y)

    @staticmethod
    def backward(ctx, g):
        return g.contiguous()


def adaptive_norm_reference(
    x: Tensor,
    alpha: Alpha,
    bn_weight: Optional[Tensor],
    bn_bias: Optional[Tensor],
    in_weight: Optional[Tensor],
    in_bias: Optional[Tensor],
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    training: bool,
    momentum: float,
    eps: float,
) -> Tensor:
    """alpha * BN(x) + (1 - alpha) * IN(x), each with its own affine."""
    if isinstance(alpha, Tensor):
        a = alpha.to(x.dtype)
        a = a[:, :, None, None] if a.dim() == 2 else a.reshape(1, -1, 1, 1)
    else:
        a = float(alpha)
    out = 0
    if not (isinstance(a, float) and a == 0.0):
        bn = F.batch_norm(x, running_mean, running_var, bn_weight, bn_bias,
                          training or running_mean is None, momentum, eps)
        out = out + a * bn
    if not (isinstance(a, float) and a == 1.0):
        inn = F.instance_norm(x, weight=in_weight, bias=in_bias, eps=eps)
        if x.shape[0] == 1:
            inn = _ContiguousGrad.apply(inn)
        out = out + (1 - a) * inn
    return out


def _stats_view(t: Tensor) -> Tensor:
    return t[:, :, None, None]


def _moments(x: Tensor):
    xf = x.to(acc_dtype(x.dtype))
    var, mean = torch.var_mean(xf, dim=(2, 3), correction=0)
    return mean, var


def _affine(x, m, s, t):
    xf = x.to(acc_dtype(x.dtype))
    return ((xf - _stats_view(m)) * _stats_view(s) + _stats_view(t)).to(x.dtype)


def _reduce(dy, x, m):
    g = dy.to(acc_dtype(x.dtype))
    xc = x.to(acc_dtype(x.dtype)) - _stats_view(m)
    return g.sum((2, 3)), (g * xc).sum((2, 3))


def _affine2(dy, x, m, a, b, c):
    dt = acc_dtype(x.dtype)
    out = _stats_view(a) * dy.to(dt) + _stats_view(b) * (x.to(dt) - _stats_view(m)) + _stats_view(c)
    return out.to(x.dtype)


PRIMITIVES = Primitives("reference", _moments, _affine, _reduce, _affine2)
