"""The four heavy primitives of the fused op and their autograd formulas.

    moments(x)                 -> (mean, var)            per (n, c), biased var
    affine(x, m, s, t)         -> s * (x - m) + t
    reduce(dy, x, m)           -> (sum dy, sum dy * (x - m))   per (n, c)
    affine2(dy, x, m, a, b, c) -> a * dy + b * (x - m) + c

The reductions and the elementwise maps are each other's adjoints, so every
formula below is written with the same four primitives: any order of
differentiation runs on the backend's own kernels. Statistics and
coefficients are (N, C) tensors in float32 (float64 for float64 inputs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch


@dataclass(frozen=True)
class Primitives:
    """One backend's implementation of the four primitives."""

    name: str
    moments: Callable
    affine: Callable
    reduce: Callable
    affine2: Callable
    # The (N, C) middle of the first-order path in one kernel each way (see
    # fast_blend.py); None where a backend has no such kernels.
    blend_forward: Optional[Callable] = None
    blend_backward: Optional[Callable] = None
    # The same middle with the AFNM gate MLP inside (alpha from the means).
    gate_blend_forward: Optional[Callable] = None
    gate_blend_backward: Optional[Callable] = None
    # The same four kernels callable without the dispatcher (no autograd, no
    # tracing), for the eager first-order path; None: call the ops above.
    direct: Optional["Primitives"] = None
    # The whole first-order forward (moments, blend_forward, affine) and backward
    # (reduce, blend_backward, affine2) in one call each (native: one operator
    # call; Triton: two launches, the middle folded into the map). None where a
    # backend has no such calls.
    blend_apply_forward: Optional[Callable] = None
    blend_apply_backward: Optional[Callable] = None
    # The same two calls as one op whose autograd is native code (native:
    # blend_apply, csrc/blend_apply_autograd.cpp): y only, no Python on the way;
    # and the gated path (moments, gate_blend_forward, affine and back) the same
    # way: (y, alpha). Triton's (triton_apply_ops.py) run Python in its passes only.
    blend_apply: Optional[Callable] = None
    gate_blend_apply: Optional[Callable] = None


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation / statistics dtype for an input dtype."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def output_memory_format(x: torch.Tensor) -> torch.memory_format:
    """Layout the kernels write: NCHW unless x is channels_last (and not also NCHW)."""
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return torch.contiguous_format
    return torch.channels_last


def weight_grads(weights, mean: torch.Tensor) -> list:
    """Empty (C,) gradients of the middle's affine weights, each in its weight's dtype
    (the statistics dtype for an absent weight), as every backend returns them."""
    c = mean.shape[1]
    return [mean.new_empty((c,), dtype=mean.dtype if w is None else w.dtype) for w in weights]


def map_fake(x):
    """An output shaped and laid out like the map x (y, dx)."""
    return torch.empty_like(x, memory_format=output_memory_format(x))


def stats_fake(x):
    """(N, C) statistics of x in its accumulation dtype."""
    return x.new_empty(x.shape[:2], dtype=acc_dtype(x.dtype))


def register_fakes(qualname: Callable[[str], str]) -> None:
    """Shape/dtype-only implementations, used by torch.compile and opcheck."""
    torch.library.register_fake(qualname("moments"))(lambda x: (stats_fake(x), stats_fake(x)))
    torch.library.register_fake(qualname("affine"))(lambda x, m, s, t: map_fake(x))
    torch.library.register_fake(qualname("reduce"))(lambda dy, x, m: (stats_fake(x), stats_fake(x)))
    torch.library.register_fake(qualname("affine2"))(lambda dy, x, m, a, b, c: map_fake(x))


def blend_forward_fake(mean, var, *rest):
    """Fake of blend_forward: (scale, shift, bn_mean, bn_var)."""
    c = mean.shape[1]
    return (torch.empty_like(mean), torch.empty_like(mean), mean.new_empty((c,)), mean.new_empty((c,)))


def blend_backward_fake(s0, s1, mean, var, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, *rest):
    """Fake of blend_backward: (d_alpha, four weight gradients, a, b, c)."""
    return (torch.empty_like(mean), *weight_grads((bn_weight, bn_bias, in_weight, in_bias), mean),
            *(torch.empty_like(mean) for _ in range(3)))


def gate_blend_forward_fake(mean, var, w1, *rest):
    """Fake of gate_blend_forward: (alpha, hidden, scale, shift, bn_mean, bn_var)."""
    d = w1.shape[0] if w1 is not None else 0
    return (torch.empty_like(mean), mean.new_empty((mean.shape[0], d)), *blend_forward_fake(mean, var))


def gate_blend_backward_fake(s0, s1, mean, var, alpha, hidden, alpha_grad, *gate_and_rest):
    """Fake of gate_blend_backward: (five gate gradients, four weight gradients, a, b, c)."""
    grads = [mean.new_empty(t.shape) if t is not None else mean.new_empty((0,)) for t in gate_and_rest[:5]]
    return (*grads, *blend_backward_fake(s0, s1, mean, var, alpha, 0.0, *gate_and_rest[5:9])[1:])


def blend_apply_forward_fake(x, *rest):
    """Fake of blend_apply_forward: (y, mean, var, bn_mean, bn_var)."""
    stats = [stats_fake(x) for _ in range(2)]
    return (map_fake(x), *stats, *blend_forward_fake(*stats)[2:])


def blend_apply_backward_fake(dy, x, mean, var, alpha, alpha_value, *weights_and_rest):
    """Fake of blend_apply_backward: (dx, d_alpha, four weight gradients)."""
    return (map_fake(x), *blend_backward_fake(mean, mean, mean, var, alpha, alpha_value, *weights_and_rest)[:5])


def blend_apply_fake(x, *rest):
    """Fake of blend_apply: y."""
    return map_fake(x)


def gate_blend_apply_forward_fake(x, w1, *rest):
    """Fake of gate_blend_apply_forward: (y, alpha, hidden, mean, var, bn_mean, bn_var)."""
    mean, var = stats_fake(x), stats_fake(x)
    alpha, hidden, _, _, bn_mean, bn_var = gate_blend_forward_fake(mean, var, w1)
    return map_fake(x), alpha, hidden, mean, var, bn_mean, bn_var


def gate_blend_apply_fake(x, *rest):
    """Fake of gate_blend_apply: (y, alpha)."""
    return map_fake(x), stats_fake(x)


def register_blend_fakes(qualname: Callable[[str], str]) -> None:
    """Fakes of the middle ops (blend_forward, blend_backward, their gated versions,
    blend_apply_forward / _backward and gate_blend_apply_forward): (N, C), (N, D), (C,) and map-like outputs."""
    torch.library.register_fake(qualname("blend_apply_forward"))(blend_apply_forward_fake)
    torch.library.register_fake(qualname("gate_blend_apply_forward"))(gate_blend_apply_forward_fake)
    torch.library.register_fake(qualname("blend_apply_backward"))(blend_apply_backward_fake)
    torch.library.register_fake(qualname("blend_forward"))(blend_forward_fake)
    torch.library.register_fake(qualname("blend_backward"))(blend_backward_fake)
    torch.library.register_fake(qualname("gate_blend_forward"))(gate_blend_forward_fake)
    torch.library.register_fake(qualname("gate_blend_backward"))(gate_blend_backward_fake)


def register_autograd(qualname: Callable[[str], str], prims: Primitives) -> None:
    """Register backward formulas for the four ops, composed from `prims`."""

    def scaled(t: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        # coef * t per (n, c): an affine map with zero center and shift.
        zero = torch.zeros_like(coef)
        return prims.affine(t, zero, coef, zero)

    # moments ---------------------------------------------------------------
    def moments_setup(ctx, inputs, output):
        (x,) = inputs
        ctx.save_for_backward(x, output[0])

    def moments_backward(ctx, gmean, gvar):
        x, mean = ctx.saved_tensors
        m = x.shape[2] * x.shape[3]
        gmean = torch.zeros_like(mean) if gmean is None else gmean
        gvar = torch.zeros_like(mean) if gvar is None else gvar
        return prims.affine(x, mean, gvar * (2.0 / m), gmean / m)

    # affine ----------------------------------------------------------------
    def affine_setup(ctx, inputs, output):
        x, center, scale, _ = inputs
        ctx.save_for_backward(x, center, scale)

    def affine_backward(ctx, gy):
        x, center, scale = ctx.saved_tensors
        nx, nc, ns, nt = ctx.needs_input_grad
        dx = scaled(gy, scale) if nx else None
        dc = ds = dt = None
        if nc or ns or nt:
            s0, s1 = prims.reduce(gy, x, center)
            dc, ds, dt = (-scale * s0 if nc else None), (s1 if ns else None), (s0 if nt else None)
        return dx, dc, ds, dt

    # reduce ----------------------------------------------------------------
    def reduce_setup(ctx, inputs, output):
        dy, x, center = inputs
        ctx.save_for_backward(dy, x, center, output[0])

    def reduce_backward(ctx, g0, g1):
        dy, x, center, s0 = ctx.saved_tensors
        g0 = torch.zeros_like(s0) if g0 is None else g0
        g1 = torch.zeros_like(s0) if g1 is None else g1
        ndy, nx, nc = ctx.needs_input_grad
        ddy = prims.affine(x, center, g1, g0) if ndy else None
        dx = scaled(dy, g1) if nx else None
        dc = -g1 * s0 if nc else None
        return ddy, dx, dc

    # affine2 ---------------------------------------------------------------
    def affine2_setup(ctx, inputs, output):
        dy, x, center, a, b, _ = inputs
        ctx.save_for_backward(dy, x, center, a, b)

    def affine2_backward(ctx, g):
        dy, x, center, a, b = ctx.saved_tensors
        ndy, nx, nm, na, nb, nc = ctx.needs_input_grad
        ddy = scaled(g, a) if ndy else None
        dx = scaled(g, b) if nx else None
        dm = db = dc = da = None
        if nm or nb or nc:
            r0, r1 = prims.reduce(g, x, center)
            dm, db, dc = (-b * r0 if nm else None), (r1 if nb else None), (r0 if nc else None)
        if na:
            da = prims.reduce(g, dy, torch.zeros_like(a))[1]
        return ddy, dx, dm, da, db, dc

    for name, setup, backward in (
        ("moments", moments_setup, moments_backward),
        ("affine", affine_setup, affine_backward),
        ("reduce", reduce_setup, reduce_backward),
        ("affine2", affine2_setup, affine2_backward),
    ):
        torch.library.register_autograd(qualname(name), backward, setup_context=setup)
