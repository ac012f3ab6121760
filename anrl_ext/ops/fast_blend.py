"""The first-order fused path: each (N, C) step in one kernel, each way.

    forward : moments -> blend_forward (BN merge, running stats, coefficients) -> affine
    backward: reduce  -> blend_backward (closed-form gradients, dx coefficients) -> affine2

Four launches over the (N, C) statistics and X instead of a chain of several
dozen small PyTorch ops, which on a GPU cost more host time than the kernels
take. When alpha does not depend on the means (an input tensor or a float),
each direction is one call of the backend's blend_apply_forward / _backward
(one C++ operator call for cpu / cuda, two launches for Triton with the
middle folded into the map). AFNM's gate (an MLP on the per-sample means) runs inside the middle
kernels when the gate declares its kernel layout (`BlendSpec.gate_slots`,
see nn/gates.py) and the backend has them (gate_blend_forward / _backward).
Any other alpha function runs in PyTorch on a detached copy of the means; in
the backward its small graph is differentiated by autograd and its gradient
with respect to the means is folded into the dx coefficients. Either way the
gate's gradient with respect to the means ends up in the dx shift. With
synchronised BN statistics (`BlendSpec.gather_stats`) the middle kernels get
the whole distributed batch's BN statistics as fixed inputs, and the gradient
through them is added to the dx coefficients (`_global_bn_stats`). When the
backward must itself be differentiable (create_graph=True), it recomputes
through the composed primitives (`fused.composed`), exactly as
`fused._FusedBlend` does.

The whole-pass and gated paths do not come here: `adaptive_norm.blend` calls
the backend's ops `blend_apply` / `gate_blend_apply`, the same kernel calls
with their autograd in C++ (csrc/blend_apply_autograd.cpp; for Triton,
anrl_ext_triton::* around its passes, triton_apply_ops.py, when anrl_ext._C is
built). This Function serves synchronised statistics, alpha functions the
kernels do not compute, and Triton without anrl_ext._C (NATIVE_AUTOGRAD = False
sends everything here).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .coefficients import batch_stats, expand_alpha, update_running_buffers
from .fused import differentiable_backward
from .primitives import Primitives, acc_dtype

# Switches for benchmarks and debugging. ENABLED = False sends every call
# through the composed chain of small ops (fused._FusedBlend) instead;
# GATE_IN_KERNEL = False runs a kernel-layout gate in PyTorch like any other;
# WHOLE_PASS = False calls moments, the middle and the map separately where
# a backend has them as one call each way (blend_apply_forward / _backward);
# NATIVE_AUTOGRAD = False runs those two calls, and the gated middle's, from this
# module's Python Function instead of the ops whose autograd is C++
# (blend_apply, gate_blend_apply, on every backend; see adaptive_norm.blend).
# COMPILE_ONE_OP = False has Dynamo (torch.compile, strict torch.export) trace the
# composed path of registered primitives (moments, the middle as PyTorch ops that
# Inductor fuses, affine) instead of those two ops.
ENABLED = True
GATE_IN_KERNEL = True
WHOLE_PASS = True
NATIVE_AUTOGRAD = True
COMPILE_ONE_OP = True

# The gate slots of the gated middle kernels, in their argument order.
GATE_SLOTS = ("w1", "b1", "wb", "bb", "wi")

# The kernels are called below the Autograd dispatch key: this Function is their
# autograd, so the per-op Python autograd wrappers (register_autograd) are skipped.
_below_autograd = getattr(torch._C, "_AutoDispatchBelowAutograd", contextlib.nullcontext)


def alpha_input(mean: Tensor, alpha: Tensor) -> Tensor:
    """The alpha function of `adaptive_norm`: alpha is an input tensor, no gate."""
    return alpha


class ConstantAlpha:
    """The alpha function of a float alpha: the same value whatever the means (and
    whatever alpha params it is handed; the fixed-blend layers BN, IN, INBNHalf hold none)."""

    __slots__ = ("value",)

    def __init__(self, value: float):
        self.value = float(value)

    def __call__(self, mean: Tensor, *params: Tensor) -> float:
        return self.value


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~3 us more, on every call's launch path
class BlendSpec:
    """Everything about one fused blend call that is not a differentiable input."""

    prims: Primitives
    alpha_fn: Callable  # alpha = alpha_fn(per-sample mean, *alpha params): float or tensor
    n_alpha: int  # leading inputs that are alpha params; the rest are the present affines
    affine: Tuple[bool, bool, bool, bool]  # which of bn_weight, bn_bias, in_weight, in_bias
    running_mean: Optional[Tensor]
    running_var: Optional[Tensor]
    use_batch: bool
    update: bool
    momentum: float
    eps: float
    make_middle: Callable  # () -> the composed middle, for create_graph recomputation
    # Slot (of GATE_SLOTS) of each alpha param when the gated middle kernels compute
    # alpha; None: alpha_fn runs in PyTorch.
    gate_slots: Optional[Tuple[str, ...]] = None
    # gather_stats(mean, var) -> every process's moments (anrl_ext.distributed), when the
    # BN branch uses statistics of the whole distributed batch (see _global_bn_stats).
    gather_stats: Optional[Callable] = None


def affine_slots(present: Sequence[bool], affines: Sequence[Tensor]) -> list:
    """The four affine slots (bn_weight, bn_bias, in_weight, in_bias), None where absent."""
    it = iter(affines)
    return [next(it) if p else None for p in present]


def _sum_to(g: Tensor, like: Tensor) -> Tensor:
    """Reduce an (N, C) gradient to the shape of a broadcast alpha: (N, C), (C,) or ()."""
    if like.dim() == 1:
        g = g.sum(0)
    elif like.dim() == 0:
        g = g.sum()
    return g if g.dtype == like.dtype else g.to(like.dtype)


# On the CPU the gate's loops in the middle kernel beat PyTorch's BLAS calls and
# their autograd only while the gate is small: measured with
# benchmarks/gate_cpu.py (2-core x86, 2026-11-28), the AFNM layer is 1.10-1.25x
# faster with the gate inside up to 1e5 multiply-adds, 0.66-0.97x from 4e5 up.
CPU_GATE_MAX_WORK = 2 ** 18
# On a GPU the gated middle's time grows with the gate. In one program (Triton) or
# one block (CUDA) the H200's run 4 (benchmarks/results/gpu-h200-20261204-run4,
# `gated_middle_kernels` rows) measured about 1 ns per multiply-add for forward +
# backward on either backend (32 us more than the plain middle at 2.5e4, 2.9-3.1 ms
# more at 3.1e6). The gate as PyTorch ops costs host time instead, about 0.9 ms per
# forward + backward on that host (the AFNM layer at 32x64x128x128: 2.02 ms with
# it, 1.09 ms with the kernel). So both backends now spread a gate past 2^15 / 2^16
# multiply-adds one launch per phase over many blocks / programs (kernels/gate_cuda.cu,
# anrl_ext._C.gate_in_one_block; triton_gate.gate_in_one_program), where each
# block's or program's loop is one row, column or tile of the gate: at 2^24 the
# longest (a channel's head gradient, 4 N K multiply-adds) is ~2e4 for N = 64.
# Predicted (2026-12-05 for CUDA, 2026-12-06 for Triton, no GPU lent) to stay well
# under the PyTorch gate's 0.9 ms up to there; not yet measured.
TRITON_GATE_MAX_WORK = 2 ** 24
CUDA_GATE_MAX_WORK = 2 ** 24


def gate_work(n: int, gate_slots: Sequence[str], alpha_params: Sequence[Tensor]) -> int:
    """Multiply-adds of one gate forward: hidden layer plus heads."""
    c, k = alpha_params[gate_slots.index("wb")].shape
    heads = 2 if "wi" in gate_slots else 1
    hidden = alpha_params[gate_slots.index("w1")].numel() if "w1" in gate_slots else 0
    return n * (c * k * heads + hidden)


def gate_in_kernel(prims: Primitives, gate_slots, alpha_params: Sequence[Tensor], x: Tensor,
                   any_size: bool = False) -> bool:
    """Whether the gated middle kernels should compute this gate: they compute it
    exactly as its alpha_fn would (weights in the statistics dtype), and faster
    while the gate is small (CPU_GATE_MAX_WORK, TRITON_GATE_MAX_WORK, CUDA_GATE_MAX_WORK;
    `any_size` skips that limit)."""
    if not (GATE_IN_KERNEL and gate_slots is not None and prims.gate_blend_forward is not None
            and len(gate_slots) == len(alpha_params)):
        return False
    stats_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    for p in alpha_params:  # a loop, not all() of a generator: this runs on every call's launch path
        if p.dtype != stats_dtype:
            return False
    if x.is_cpu:
        limit = CPU_GATE_MAX_WORK
    else:
        limit = TRITON_GATE_MAX_WORK if prims.name == "triton" else CUDA_GATE_MAX_WORK
    return any_size or gate_work(x.shape[0], gate_slots, alpha_params) <= limit


def gate_arguments(gate_slots: Sequence[str], alpha_params: Sequence[Tensor]) -> list:
    """The five gate slots of the kernels, None where this gate has no such weight."""
    slots = [None] * len(GATE_SLOTS)
    for slot, p in zip(gate_slots, alpha_params):
        slots[GATE_SLOTS.index(slot)] = p
    return slots


def alpha_output(x: Tensor, alpha: Optional[Tensor], alpha_value: float) -> Tensor:
    """alpha as (N, C) in the statistics dtype, as `_FastBlend` returns it: the alpha tensor
    (differentiably) or the float (not differentiable)."""
    shape = x.shape[:2]
    if alpha is None:
        return torch.full((), alpha_value, dtype=acc_dtype(x.dtype), device=x.device).expand(shape)
    return alpha.to(acc_dtype(x.dtype)).expand(shape)


def _alpha_before_moments(spec: BlendSpec, alpha_params: Sequence[Tensor]):
    """(alpha tensor or None, alpha value) when alpha does not depend on the means
    (an input tensor or a float), else None."""
    if spec.alpha_fn is alpha_input:
        return alpha_params[0].detach(), 0.0
    if isinstance(spec.alpha_fn, ConstantAlpha):
        return None, spec.alpha_fn.value
    return None


# Synchronised BN statistics (--sync-stats). The middle kernels merge the local
# per-sample moments; here the merge of every process's moments is done outside
# them and handed to the kernels as fixed BN statistics (their running-statistics
# mode), so the middle is still one kernel each way. The gradient through those
# statistics, which the kernels then leave out, is added to the dx coefficients:
# closed form down to (bn_mean, bn_var), then autograd through the merge and the
# all-gather (whose backward is the layer's one all-reduce).

def _global_bn_stats(spec: BlendSpec, mean: Tensor, var: Tensor, hw: int):
    """(bn_mean, bn_var, graph) of the whole distributed batch; updates the running statistics."""
    with torch.enable_grad():
        m, v = mean.detach().requires_grad_(), var.detach().requires_grad_()
        all_mean, all_var = spec.gather_stats(m, v)
        bn_mean, bn_var = batch_stats(all_mean, all_var)
    if spec.update:
        update_running_buffers(bn_mean.detach(), bn_var.detach(), all_mean.shape[0] * hw, spec.running_mean,
                               spec.running_var, spec.momentum)
    return bn_mean.detach(), bn_var.detach(), (m, v, bn_mean, bn_var)


def _global_stats_terms(graph, s0: Tensor, s1: Tensor, mean: Tensor, alpha, bn_weight: Optional[Tensor],
                        eps: float, hw: int) -> Tuple[Tensor, Tensor]:
    """What the gradient through the global BN statistics adds to the dx coefficients (b, c).

    With g = bn_weight * rsqrt(bn_var + eps): shift_nc holds alpha g (mean_nc - bn_mean)
    and scale_nc holds alpha g, so dL/d bn_mean = -g sum_n alpha s0 and
    dL/d bn_var = -g r^2 / 2 sum_n alpha (s1 + s0 (mean_nc - bn_mean)).
    """
    m, v, bn_mean, bn_var = graph
    alpha = expand_alpha(alpha, mean)
    r = torch.rsqrt(bn_var.detach() + eps)
    g = r * bn_weight.to(r.dtype) if bn_weight is not None else r
    t0 = (alpha * s0).sum(0)
    t1 = (alpha * (s1 + s0 * (mean - bn_mean.detach()))).sum(0)
    d_mean, d_var = torch.autograd.grad([bn_mean, bn_var], [m, v], [-g * t0, -0.5 * g * r * r * t1],
                                        retain_graph=True)
    return d_var * (2.0 / hw), d_mean / hw


class _FastBlend(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, spec: BlendSpec, *params: Tensor):
        P = spec.prims.direct or spec.prims
        # Unused outputs (alpha, mostly) get None, not a zero tensor and an add.
        ctx.set_materialize_grads(False)
        alpha_params, affines = params[: spec.n_alpha], params[spec.n_alpha:]
        w = affine_slots(spec.affine, affines)
        ctx.spec = spec
        # One call each way (blend_apply_*)? Decided here: the switch may change before the backward.
        # Not with global statistics: they need the moments before the middle.
        ctx.whole_pass = WHOLE_PASS and P.blend_apply_forward is not None and spec.gather_stats is None
        ctx.sync = None
        known = _alpha_before_moments(spec, alpha_params) if spec.gate_slots is None else None
        if known is not None and ctx.whole_pass:  # the whole forward in one call
            alpha_t, alpha_value = known
            with _below_autograd():
                y, mean, var, bn_mean, bn_var = P.blend_apply_forward(
                    x, alpha_t, alpha_value, *w, spec.running_mean, spec.running_var, spec.use_batch, spec.update,
                    spec.momentum, spec.eps)
            return _FastBlend._finish(ctx, y, x, mean, var, bn_mean, bn_var, alpha_t, alpha_value, None, params)
        with _below_autograd():
            mean, var = P.moments(x)
        hw = x.shape[2] * x.shape[3]
        # (BN statistics or running buffers, use_batch, update) as the middle kernels take them
        stats = (spec.running_mean, spec.running_var, spec.use_batch, spec.update)
        if spec.gather_stats is not None and spec.use_batch:
            bn_mean, bn_var, ctx.sync = _global_bn_stats(spec, mean, var, hw)
            stats = (bn_mean, bn_var, False, False)
        count = x.shape[0] * hw
        if spec.gate_slots is not None:  # the gate MLP inside the middle kernel
            with _below_autograd():
                alpha, hidden, scale, shift, bn_mean, bn_var = P.gate_blend_forward(
                    mean, var, *gate_arguments(spec.gate_slots, alpha_params), *w, *stats, spec.momentum, spec.eps,
                    count)
                y = P.affine(x, mean, scale, shift)
            ctx.save_for_backward(x, mean, var, bn_mean, bn_var, alpha, hidden, *params)
            return y, alpha
        graph = None
        if spec.alpha_fn is alpha_input:
            alpha = alpha_params[0].detach()
        else:
            with torch.enable_grad():
                s = mean.detach().requires_grad_()
                leaves = [p.detach().requires_grad_(p.requires_grad) for p in alpha_params]
                alpha = spec.alpha_fn(s, *leaves)
            if isinstance(alpha, Tensor):
                # A constant alpha tensor (IBN's split buffer) has no graph to differentiate.
                graph = (s, leaves, alpha) if alpha.requires_grad else None
                alpha = alpha.detach()
        alpha_t, alpha_value = (alpha, 0.0) if isinstance(alpha, Tensor) else (None, float(alpha))
        with _below_autograd():
            scale, shift, bn_mean, bn_var = P.blend_forward(
                mean, var, alpha_t, alpha_value, *w, *stats, spec.momentum, spec.eps, count)
            y = P.affine(x, mean, scale, shift)
        return _FastBlend._finish(ctx, y, x, mean, var, bn_mean, bn_var, alpha_t, alpha_value, graph, params)

    @staticmethod
    def _finish(ctx, y, x, mean, var, bn_mean, bn_var, alpha_t, alpha_value, graph, params):
        """Save for backward; (y, alpha as (N, C))."""
        ctx.save_for_backward(x, mean, var, bn_mean, bn_var, alpha_t, None, *params)
        ctx.graph, ctx.alpha_value = graph, alpha_value
        alpha_out = alpha_output(x, alpha_t, alpha_value)
        if alpha_t is None:
            ctx.mark_non_differentiable(alpha_out)
        return y, alpha_out

    @staticmethod
    def backward(ctx, gy: Optional[Tensor], galpha: Optional[Tensor]):
        x, mean, var, bn_mean, bn_var, alpha_t, hidden, *params = ctx.saved_tensors
        spec: BlendSpec = ctx.spec
        P = spec.prims.direct or spec.prims
        needs_x, needs_params = ctx.needs_input_grad[0], ctx.needs_input_grad[2:]
        if gy is None:
            gy = torch.zeros_like(x)
        if torch.is_grad_enabled():  # create_graph=True: differentiable recomputation
            dx, dparams = differentiable_backward(x, spec.prims, spec.make_middle(), params, needs_x,
                                                  needs_params, gy, galpha)
            return (dx, None, *dparams)
        hw = x.shape[2] * x.shape[3]
        w = affine_slots(spec.affine, params[spec.n_alpha:])
        alpha_params = params[: spec.n_alpha]
        use_batch = spec.use_batch and ctx.sync is None  # global statistics went in as fixed ones
        dx = None
        with _below_autograd():
            if spec.gate_slots is None and needs_x and ctx.graph is None and ctx.whole_pass:
                # The whole backward in one call: no gate graph adds to the dx shift afterwards.
                dx, d_alpha, *d_affine = P.blend_apply_backward(
                    gy, x, mean, var, alpha_t, ctx.alpha_value, *w, bn_mean, bn_var, use_batch, spec.eps)
            elif spec.gate_slots is not None:  # gate gradients and d mean come from the kernel
                s0, s1 = P.reduce(gy, x, mean)
                out = P.gate_blend_backward(
                    s0, s1, mean, var, alpha_t, hidden, galpha, *gate_arguments(spec.gate_slots, alpha_params), *w,
                    bn_mean, bn_var, use_batch, spec.eps, hw)
                d_gate, d_affine, (a, b, c) = out[:5], out[5:9], out[9:]
            else:
                s0, s1 = P.reduce(gy, x, mean)
                d_alpha, *d_affine, a, b, c = P.blend_backward(
                    s0, s1, mean, var, alpha_t, ctx.alpha_value, *w, bn_mean, bn_var, use_batch, spec.eps, hw)
            if spec.gate_slots is None and galpha is not None and alpha_t is not None:
                d_alpha = d_alpha + galpha
        if ctx.sync is not None and needs_x:
            db, dc = _global_stats_terms(ctx.sync, s0, s1, mean, alpha_t if alpha_t is not None else ctx.alpha_value,
                                         w[0], spec.eps, hw)
            b, c = b + db.to(b.dtype), c + dc.to(c.dtype)
        grads = []
        if spec.gate_slots is not None:  # the kernel computes in the gate weights' own dtype
            grads += [d_gate[GATE_SLOTS.index(slot)] if need else None
                      for slot, need in zip(spec.gate_slots, needs_params)]
        elif spec.alpha_fn is alpha_input:
            grads.append(_sum_to(d_alpha, alpha_params[0]) if needs_params[0] else None)
        elif ctx.graph is not None:
            s, leaves, alpha = ctx.graph
            wanted = [s] + [leaf for leaf, need in zip(leaves, needs_params) if need]
            # retain_graph: the Function may be backpropagated through more than once.
            got = list(torch.autograd.grad(alpha, wanted, _sum_to(d_alpha, alpha), allow_unused=True,
                                           retain_graph=True))
            if got[0] is not None:  # the gate reads the means: d mean_nc joins the dx shift
                c = c + got[0].to(c.dtype) / hw
            it = iter(got[1:])
            grads += [next(it) if need else None for need in needs_params[: spec.n_alpha]]
        else:
            grads += [None] * spec.n_alpha
        d_slots = iter(d_affine)
        for present in spec.affine:
            g = next(d_slots)
            if present:
                p = params[len(grads)]
                need = ctx.needs_input_grad[2 + len(grads)]
                grads.append((g if g.dtype == p.dtype else g.to(p.dtype)) if need else None)
        if dx is None and needs_x:
            with _below_autograd():
                dx = P.affine2(gy, x, mean, a, b, c)
        return (dx, None, *grads)


def fast_blend(x: Tensor, spec: BlendSpec, params: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
    """(y, alpha as (N, C)) of the blend, running statistics updated as `spec` says."""
    return _FastBlend.apply(x, spec, *params)
