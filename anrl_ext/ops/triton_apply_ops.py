"""The Triton backend's first-order passes as operators, under autograd in C++.

    anrl_ext_triton::blend_apply      (x, alpha, ...) -> y
    anrl_ext_triton::gate_blend_apply (x, gate weights, ...) -> (y, alpha)

are the C++ Functions of csrc/blend_apply_autograd.cpp (the cpu and cuda
backends' `blend_apply` / `gate_blend_apply`), calling the Triton backend's
whole passes, registered here as their kernels:

    blend_apply_forward      : moments, fold_forward               (2 launches)
    blend_apply_backward     : reduce, fold_backward               (2 launches)
    gate_blend_apply_forward : moments, gate_blend_forward, affine (3 launches)
    gate_blend_apply_backward: reduce, gate_blend_backward, affine2 (3 launches)

On a GPU the Triton backend is bound by host time (benchmarks/results/
GPU_NOTES.md, run 4). Before, fast_blend's Python Function ran around the same
passes: its apply, saving, gradient bookkeeping and their Python. Now one
operator call from Python goes to C++, and only the passes themselves (their
kernel launches) run Python, in both directions; `benchmarks/triton_host_time.py`
measures the two side by side (`fast_blend.NATIVE_AUTOGRAD = False` is the
Python Function). A backward that must be differentiable (create_graph=True)
calls `native.triton_*_double_backward`, the same recomputation through the
registered Triton ops as the Python Function's.

Needs anrl_ext._C (the Functions are C++); without it the Triton backend keeps
the Python Function. The backward ops take `needs_dx` and, without it, skip the
map that writes dx (they return an empty dx). Kernels are registered for CPU
tensors too, which Triton runs under TRITON_INTERPRET=1 (the CI's tests).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch

from . import native
from .primitives import (Primitives, blend_apply_backward_fake, blend_apply_fake, blend_apply_forward_fake,
                         gate_blend_apply_fake, gate_blend_apply_forward_fake, gate_blend_backward_fake, map_fake)

NS = "anrl_ext_triton"


def _kernels(direct: Primitives, dense: Callable, like: Callable) -> Dict[str, Callable]:
    """The four whole passes, built on the direct (launching) primitives; dense(x) -> (x in a layout
    the kernels read, channels_last) and like(dy, channels_last) as triton_backend has them."""

    def blend_apply_backward(dy, x, mean, var, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, bn_mean,
                             bn_var, use_batch_stats, eps, needs_dx):
        if needs_dx:
            return direct.blend_apply_backward(dy, x, mean, var, alpha, alpha_value, bn_weight, bn_bias, in_weight,
                                               in_bias, bn_mean, bn_var, use_batch_stats, eps)
        s0, s1 = direct.reduce(dy, x, mean)
        d_alpha, *d_affine, _, _, _ = direct.blend_backward(
            s0, s1, mean, var, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, bn_mean, bn_var,
            use_batch_stats, eps, x.shape[2] * x.shape[3])
        return (x.new_empty((0,)), d_alpha, *d_affine)

    def gate_blend_apply_forward(x, w1, b1, wb, bb, wi, bn_weight, bn_bias, in_weight, in_bias, running_mean,
                                 running_var, use_batch_stats, update_running, momentum, eps):
        x, _ = dense(x)  # a strided x copied once for both passes
        mean, var = direct.moments(x)
        alpha, hidden, scale, shift, bn_mean, bn_var = direct.gate_blend_forward(
            mean, var, w1, b1, wb, bb, wi, bn_weight, bn_bias, in_weight, in_bias, running_mean, running_var,
            use_batch_stats, update_running, momentum, eps, x.shape[0] * x.shape[2] * x.shape[3])
        return direct.affine(x, mean, scale, shift), alpha, hidden, mean, var, bn_mean, bn_var

    def gate_blend_apply_backward(dy, x, mean, var, alpha, hidden, alpha_grad, w1, b1, wb, bb, wi, bn_weight,
                                  bn_bias, in_weight, in_bias, bn_mean, bn_var, use_batch_stats, eps, needs_dx):
        x, channels_last = dense(x)
        dy = like(dy, channels_last)  # once for both passes (an expanded gradient would be copied twice)
        s0, s1 = direct.reduce(dy, x, mean)
        *grads, a, b, c = direct.gate_blend_backward(
            s0, s1, mean, var, alpha, hidden, alpha_grad, w1, b1, wb, bb, wi, bn_weight, bn_bias, in_weight, in_bias,
            bn_mean, bn_var, use_batch_stats, eps, x.shape[2] * x.shape[3])
        dx = direct.affine2(dy, x, mean, a, b, c) if needs_dx else x.new_empty((0,))
        return (dx, *grads)

    return dict(blend_apply_forward=direct.blend_apply_forward, blend_apply_backward=blend_apply_backward,
                gate_blend_apply_forward=gate_blend_apply_forward, gate_blend_apply_backward=gate_blend_apply_backward)


def _register_fakes() -> None:
    """Shapes and dtypes of the ops (torch.library.opcheck, tracing)."""

    def dx_fake(x, needs_dx):
        return map_fake(x) if needs_dx else x.new_empty((0,))

    def blend_backward(dy, x, mean, var, *rest):
        return (dx_fake(x, rest[-1]), *blend_apply_backward_fake(dy, x, mean, var, *rest)[1:])

    def gate_backward(dy, x, mean, var, alpha, hidden, alpha_grad, *rest):
        grads = gate_blend_backward_fake(mean, mean, mean, var, alpha, hidden, alpha_grad, *rest)[:9]
        return (dx_fake(x, rest[-1]), *grads)

    fakes = dict(blend_apply_forward=blend_apply_forward_fake, blend_apply_backward=blend_backward,
                 gate_blend_apply_forward=gate_blend_apply_forward_fake, gate_blend_apply_backward=gate_backward,
                 blend_apply=blend_apply_fake, gate_blend_apply=gate_blend_apply_fake)
    for name, fake in fakes.items():
        torch.library.register_fake(f"{NS}::{name}")(fake)


def register(direct: Primitives, dense: Callable, like: Callable) -> Dict[str, Optional[Callable]]:
    """Register the passes' kernels; returns Primitives' blend_apply and gate_blend_apply for the
    Triton backend (None each without anrl_ext._C, whose build defines the ops)."""
    if not native.is_built() or not hasattr(torch.ops.anrl_ext_triton, "blend_apply"):
        return dict(blend_apply=None, gate_blend_apply=None)
    for name, kernel in _kernels(direct, dense, like).items():
        torch.library.impl(f"{NS}::{name}", ("CPU", "CUDA"), kernel)
    _register_fakes()
    ops = torch.ops.anrl_ext_triton
    return dict(blend_apply=ops.blend_apply.default, gate_blend_apply=ops.gate_blend_apply.default)
