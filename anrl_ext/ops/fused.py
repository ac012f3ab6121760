"""The fused normalize-and-blend op, built on a backend's four primitives.

Forward: one reduction pass (moments) and one elementwise pass (affine).
First-order backward: one reduction pass (reduce over dY, X) and one
elementwise pass (affine2 writes dX); the small (N, C) middle is
differentiated by autograd on tensors it kept from the forward. Only X and
(N, C) tensors are saved.

When the backward itself must be differentiable (create_graph=True, as in the
second-order meta-update) the Function recomputes the forward from the
primitives' own registered autograd formulas, so any order of
differentiation still runs on the same kernels.
"""
from __future__ import annotations

import functools
import warnings
from typing import Callable, Sequence, Tuple

import torch
from torch import Tensor

from .primitives import Primitives

# middle(mean, var, *params) -> (scale, shift, extra): (N, C) tensors.
Middle = Callable[..., Tuple[Tensor, Tensor, Tensor]]


def composed(x: Tensor, prims: Primitives, middle: Middle, params: Sequence[Tensor]):
    """Differentiable composition of the primitives: any order, any tracer."""
    mean, var = prims.moments(x)
    scale, shift, extra = middle(mean, var, *params)
    return prims.affine(x, mean, scale, shift), extra, mean.detach(), var.detach()


class _FusedBlend(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, prims: Primitives, middle: Middle, *params: Tensor):
        mean, var = prims.moments(x)
        with torch.enable_grad():
            leaves = [mean.detach().requires_grad_(), var.detach().requires_grad_()]
            leaves += [p.detach().requires_grad_(p.requires_grad) for p in params]
            scale, shift, extra = middle(*leaves)
        y = prims.affine(x, mean, scale.detach(), shift.detach())
        ctx.save_for_backward(x, mean, *params)
        ctx.prims, ctx.middle = prims, middle
        ctx.graph = (leaves, scale, shift, extra)
        ctx.mark_non_differentiable(mean, var)
        return y, extra.detach(), mean, var

    @staticmethod
    def backward(ctx, gy: Tensor, gextra: Tensor, _gmean=None, _gvar=None):
        x, mean, *params = ctx.saved_tensors
        prims, middle = ctx.prims, ctx.middle
        param_needs = ctx.needs_input_grad[3:]
        if gy is None:
            gy = torch.zeros_like(x)
        if torch.is_grad_enabled():
            needs = ctx.needs_input_grad
            dx, dparams = differentiable_backward(x, prims, middle, params, needs[0], needs[3:], gy, gextra)
            return (dx, None, None, *dparams)
        leaves, scale, shift, extra = ctx.graph
        s0, s1 = prims.reduce(gy, x, mean)
        outs, grads = [scale, shift, extra], [s1, s0, gextra]
        # A constant shift (alpha = 0, no IN bias) or an unused extra has no graph.
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
        outs, grads = [o for o, _ in pairs], [g for _, g in pairs]
        wanted = [0, 1] + [2 + i for i, need in enumerate(param_needs) if need]
        got = torch.autograd.grad(
            outs, [leaves[i] for i in wanted], grads, allow_unused=True, retain_graph=True
        ) if outs else [None] * len(wanted)
        g = dict(zip(wanted, got))
        gmean = g[0] if g[0] is not None else torch.zeros_like(mean)
        gvar = g[1] if g[1] is not None else torch.zeros_like(mean)
        m = x.shape[2] * x.shape[3]
        dx = None
        if ctx.needs_input_grad[0]:
            # dX = scale*dY + d(var)*2(X - mu)/M + (d(mu) - scale*sum dY)/M
            scale = scale.detach()
            dx = prims.affine2(gy, x, mean, scale, gvar * (2.0 / m), (gmean - scale * s0) / m)
        return (dx, None, None, *(g.get(2 + i) for i in range(len(params))))


def differentiable_backward(x, prims, middle, params, needs_x, needs_params, gy, gextra):
    """(dx, [d param]) by recomputing the forward through the composed primitives,
    with a graph, so the gradients can be differentiated again."""
    with torch.enable_grad():
        y, extra, _, _ = composed(x, prims, middle, params)
        inputs = [t for t, need in zip([x, *params], [needs_x, *needs_params]) if need]
        outs, grads = [y], [gy]
        if gextra is not None and extra.requires_grad:
            outs.append(extra)
            grads.append(gextra)
        got = iter(torch.autograd.grad(outs, inputs, grads, create_graph=True, allow_unused=True))
    dx = next(got) if needs_x else None
    return dx, [next(got) if need else None for need in needs_params]


def capturing_graph() -> bool:
    """torch.compile or torch.jit.trace is recording a graph: it sees the registered custom ops and
    their autograd formulas, not an eager autograd.Function around them (jit.trace cannot record one)."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def traces_one_op(dynamo_one_op: bool) -> bool:
    """A tracer is recording a graph in which an op with C++ autograd is one node (it runs that autograd on
    fake tensors, one op each way): torch.export without Dynamo (strict=False, its default), or Dynamo
    (torch.compile, strict export) where `dynamo_one_op`. Dynamo is asked first: under it torch 2.11
    answers True to torch.compiler.is_exporting() for any torch.compile."""
    if torch.compiler.is_dynamo_compiling():
        return dynamo_one_op
    return torch.compiler.is_exporting()


def shapes_are_trace_constants(fn: Callable) -> Callable:
    """Run fn without torch.jit.trace's TracerWarnings.

    The layer reads its input's shape in Python (the input checks, the empty-input branch, the
    IN-needs-planes check), and under jit.trace each such read warns that the value becomes a
    constant of the trace. None of them changes what the trace records for a non-empty input:
    the traced module is right on other shapes (`check_jit_trace` in the tests), so the warnings
    only alarm. Other warnings still show.
    """
    @functools.wraps(fn)
    def quiet(*args, **kwargs):
        if not torch.jit.is_tracing():
            return fn(*args, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return fn(*args, **kwargs)
    return quiet


def fused(x: Tensor, prims: Primitives, middle: Middle, params: Sequence[Tensor]):
    """(y, extra, mean, var): middle-driven blend of x, fused passes in eager mode.

    mean and var are the per-(n, c) moments, returned detached for running stats.
    """
    if capturing_graph():
        return composed(x, prims, middle, params)
    return _FusedBlend.apply(x, prims, middle, *params)
