"""Triton kernels of the four primitives (backend="triton").

One program per (n, c) plane for the reductions (chunked Chan merge of
block moments, never E[x^2] - E[x]^2), a 2-D grid (plane, block) for the
elementwise maps. Registered with `torch.library.triton_op` so torch.compile
can trace them; autograd composes from the same kernels as on every backend.
On CPU tensors they run under TRITON_INTERPRET=1 (set before importing
triton), which is how CI checks them. channels_last inputs are made NCHW
contiguous first (an extra copy: the native CUDA backend has no such copy).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from . import triton_blend, triton_gate
from .primitives import Primitives, acc_dtype, register_autograd

BLOCK = 1024
NS = "anrl_ext_triton"


def _acc(dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


@triton.jit
def _moments_kernel(x_ptr, mean_ptr, var_ptr, M, BLOCK: tl.constexpr, ACC: tl.constexpr):
    p = tl.program_id(0).to(tl.int64)
    base = x_ptr + p * M
    zero = tl.sum(tl.zeros([BLOCK], dtype=ACC), axis=0)  # a scalar of the accumulator type
    mean = zero
    m2 = zero
    count = zero
    for start in range(0, M, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < M
        x = tl.load(base + offs, mask=mask, other=0.0).to(ACC)
        nb = tl.minimum(M - start, BLOCK).to(ACC)
        bmean = tl.sum(x, 0) / nb
        d = tl.where(mask, x - bmean, 0.0)
        bm2 = tl.sum(d * d, 0)
        n = count + nb
        delta = bmean - mean
        mean = mean + delta * (nb / n)
        m2 = m2 + bm2 + delta * delta * count * (nb / n)
        count = n
    tl.store(mean_ptr + p, mean)
    tl.store(var_ptr + p, m2 / M)


@triton.jit
def _reduce_kernel(dy_ptr, x_ptr, c_ptr, s0_ptr, s1_ptr, M, BLOCK: tl.constexpr, ACC: tl.constexpr):
    p = tl.program_id(0).to(tl.int64)
    center = tl.load(c_ptr + p)
    a0 = tl.sum(tl.zeros([BLOCK], dtype=ACC), axis=0)
    a1 = a0
    for start in range(0, M, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < M
        g = tl.load(dy_ptr + p * M + offs, mask=mask, other=0.0).to(ACC)
        x = tl.load(x_ptr + p * M + offs, mask=mask, other=0.0).to(ACC)
        a0 += tl.sum(g, 0)
        a1 += tl.sum(g * tl.where(mask, x - center, 0.0), 0)
    tl.store(s0_ptr + p, a0)
    tl.store(s1_ptr + p, a1)


@triton.jit
def _affine_kernel(x_ptr, m_ptr, s_ptr, t_ptr, y_ptr, M, BLOCK: tl.constexpr):
    p = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    m = tl.load(m_ptr + p)
    s = tl.load(s_ptr + p)
    t = tl.load(t_ptr + p)
    x = tl.load(x_ptr + p * M + offs, mask=mask, other=0.0).to(m.dtype)
    y = (x - m) * s + t
    tl.store(y_ptr + p * M + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _affine2_kernel(dy_ptr, x_ptr, m_ptr, a_ptr, b_ptr, c_ptr, out_ptr, M, BLOCK: tl.constexpr):
    p = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    m = tl.load(m_ptr + p)
    a = tl.load(a_ptr + p)
    b = tl.load(b_ptr + p)
    c = tl.load(c_ptr + p)
    g = tl.load(dy_ptr + p * M + offs, mask=mask, other=0.0).to(m.dtype)
    x = tl.load(x_ptr + p * M + offs, mask=mask, other=0.0).to(m.dtype)
    out = a * g + (x - m) * b + c
    tl.store(out_ptr + p * M + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


def _check(x: torch.Tensor, name: str = "x") -> None:
    if x.dim() != 4:
        raise ValueError(f"anrl_ext: {name} must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"anrl_ext: {name} must be a floating-point tensor, got {x.dtype}")


def _coef(t: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    if tuple(t.shape) != tuple(x.shape[:2]):
        raise ValueError(f"anrl_ext: {name} must have shape (N, C) = {tuple(x.shape[:2])}, got {tuple(t.shape)}")
    return t.to(acc_dtype(x.dtype)).contiguous()


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _check(x)
    x = x.contiguous()
    n, c, h, w = x.shape
    mean = x.new_empty((n, c), dtype=acc_dtype(x.dtype))
    var = torch.empty_like(mean)
    if n * c:
        wrap_triton(_moments_kernel)[(n * c,)](x, mean, var, h * w, BLOCK=BLOCK, ACC=_acc(x.dtype))
    return mean, var


def _reduce(dy: torch.Tensor, x: torch.Tensor, center: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _check(x)
    if dy.shape != x.shape or dy.dtype != x.dtype:
        raise ValueError(f"anrl_ext: grad and x must match, got {tuple(dy.shape)}/{dy.dtype} and "
                         f"{tuple(x.shape)}/{x.dtype}")
    x, dy = x.contiguous(), dy.contiguous()
    center = _coef(center, x, "center")
    n, c, h, w = x.shape
    s0 = x.new_empty((n, c), dtype=acc_dtype(x.dtype))
    s1 = torch.empty_like(s0)
    if n * c:
        wrap_triton(_reduce_kernel)[(n * c,)](dy, x, center, s0, s1, h * w, BLOCK=BLOCK, ACC=_acc(x.dtype))
    return s0, s1


def _affine(x: torch.Tensor, center: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    _check(x)
    x = x.contiguous()
    m, s, t = (_coef(v, x, k) for v, k in ((center, "center"), (scale, "scale"), (shift, "shift")))
    n, c, h, w = x.shape
    y = torch.empty_like(x)
    if x.numel():
        grid = (n * c, triton.cdiv(h * w, BLOCK))
        wrap_triton(_affine_kernel)[grid](x, m, s, t, y, h * w, BLOCK=BLOCK)
    return y


def _affine2(dy: torch.Tensor, x: torch.Tensor, center: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
            c: torch.Tensor) -> torch.Tensor:
    _check(x)
    x, dy = x.contiguous(), dy.contiguous()
    m, pa, pb, pc = (_coef(v, x, k) for v, k in ((center, "center"), (a, "a"), (b, "b"), (c, "c")))
    n, ch, h, w = x.shape
    out = torch.empty_like(x)
    if x.numel():
        grid = (n * ch, triton.cdiv(h * w, BLOCK))
        wrap_triton(_affine2_kernel)[grid](dy, x, m, pa, pb, pc, out, h * w, BLOCK=BLOCK)
    return out


# Registered ops (torch.compile, autograd of the composed path) ...
moments = triton_op(f"{NS}::moments", mutates_args=())(_moments)
reduce = triton_op(f"{NS}::reduce", mutates_args=())(_reduce)
affine = triton_op(f"{NS}::affine", mutates_args=())(_affine)
affine2 = triton_op(f"{NS}::affine2", mutates_args=())(_affine2)

# ... and the plain functions for the eager first-order path, which is their
# autograd itself: a dispatcher round trip costs more host time than a launch.
_MIDDLE = (triton_blend.blend_forward, triton_blend.blend_backward, triton_gate.gate_blend_forward,
           triton_gate.gate_blend_backward)
PRIMITIVES = Primitives("triton", moments, affine, reduce, affine2, *_MIDDLE,
                        direct=Primitives("triton_direct", _moments, _affine, _reduce, _affine2, *_MIDDLE))
register_autograd(lambda name: f"{NS}::{name}", PRIMITIVES)
