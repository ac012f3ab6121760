"""The compiled backends: C++ (cpu) and CUDA C++ (cuda) kernels in anrl_ext._C.

Both register under the same operator names (torch.ops.anrl_ext.*) and are
picked by the tensor's device; this module adds fake kernels and autograd.
"""
from __future__ import annotations

from typing import Optional

import torch

from .primitives import (Primitives, blend_apply_fake, gate_blend_apply_fake, register_autograd, register_blend_fakes,
                         register_fakes)

try:
    from .. import _C  # noqa: F401  (importing registers the operators)

    LOAD_ERROR: Exception | None = None
except ImportError as exc:  # pragma: no cover - only without a build
    _C = None
    LOAD_ERROR = exc


def is_built() -> bool:
    """Whether the compiled extension anrl_ext._C imported."""
    return _C is not None


def with_cuda() -> bool:
    """Whether the compiled extension contains the CUDA kernels."""
    return _C is not None and bool(_C.with_cuda)


def cpu_output_cache(limit_mb: Optional[float] = None) -> dict:
    """The cache of large CPU output blocks (y, dX of 32 MiB and more).

    Released outputs are kept for reuse up to a limit (env ANRL_EXT_CPU_CACHE_MB,
    default 1024), because a fresh large block costs a page fault per page on
    first write. Pass `limit_mb` to change the limit (0 disables the cache and
    frees what it holds). Returns {"held_mb": ..., "limit_mb": ...}.
    """
    require_built()
    if limit_mb is not None:
        if limit_mb < 0:
            raise ValueError(f"limit_mb must be >= 0, got {limit_mb}")
        _C.set_output_cache_limit(int(limit_mb * 2**20))
    return {"held_mb": _C.output_cache_bytes() / 2**20, "limit_mb": _C.output_cache_limit() / 2**20}


def cuda_gate_one_block_max_work(work: Optional[int] = None) -> int:
    """The largest gate (multiply-adds of its forward, `fast_blend.gate_work`) that the CUDA gated
    middle runs in one block; larger gates run one launch per phase over many blocks
    (kernels/gate_cuda.cu: the same per-thread loops, so the same bits, which test_gpu.py checks;
    not yet run on a GPU). Pass `work` to change it (0 spreads every gate); returns the limit now.
    The default, 2^15, is a prediction from the H200's run 4, not a measured crossover."""
    require_built()
    if work is not None:
        _C.set_gate_one_block_max_work(checked_gate_work(work))
    return _C.gate_one_block_max_work()


def cuda_nhwc_moments_early_loads(early: Optional[bool] = None) -> bool:
    """Whether the CUDA channels_last `moments` loads each part of a thread's rows before the part
    before it is reduced (the default since 2026-12-06: two parts' loads in flight a thread) rather
    than as it is reduced (the kernel before). Both do the same arithmetic in the same order, so
    they give the same bits (test_row_walk.py on the CPU, test_gpu.py on a GPU); the switch lets a
    benchmark time the two side by side. Pass `early` to choose; returns the setting now."""
    require_built()
    if early is not None:
        if not isinstance(early, bool):
            raise TypeError(f"early must be a bool, got {type(early).__name__}")
        _C.set_nhwc_moments_early_loads(early)
    return _C.nhwc_moments_early_loads()


def checked_gate_work(work) -> int:
    """work if it is an int >= 0 (a gate size limit in multiply-adds); ValueError otherwise."""
    if isinstance(work, bool) or not isinstance(work, int) or work < 0:
        raise ValueError(f"work must be an int >= 0 (multiply-adds), got {work!r}")
    return work


def _recomputed_gradients(x, alpha_fn, alpha_slots, affines, bn_mean, bn_var, use_batch_stats, eps, needs, gy,
                          galpha=None, prims=None):
    """[dx, one per alpha slot, one per affine weight] (None where absent or not needed), differentiable:
    the forward recomputed through the primitives' registered autograd formulas (`prims`, default this
    module's), as the Python Function's differentiable backward does (fused.differentiable_backward).
    Without batch statistics the forward's bn_mean / bn_var are the fixed BN statistics."""
    from .adaptive_norm import make_blend_middle  # imports this module
    from .fused import differentiable_backward

    alpha_params = [t for t in alpha_slots if t is not None]
    middle = make_blend_middle(alpha_fn, len(alpha_params), tuple(t is not None for t in affines), bn_mean, bn_var,
                               use_batch_stats, eps)
    given = [t is not None for t in (*alpha_slots, *affines)]  # which of needs[1:] are params
    params = alpha_params + [t for t in affines if t is not None]
    dx, dparams = differentiable_backward(x, prims or PRIMITIVES, middle, params, needs[0],
                                          [need for need, g in zip(needs[1:], given) if g], gy, galpha)
    it = iter(dparams)
    return [dx] + [next(it) if g else None for g in given]


def blend_apply_double_backward(x, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, bn_mean, bn_var,
                                use_batch_stats, eps, needs, gy, prims=None):
    """The gradients of `blend_apply` (x, alpha, the four affine weights) as differentiable tensors: its
    C++ backward calls this under create_graph=True."""
    from .fast_blend import ConstantAlpha, alpha_input

    alpha_fn = alpha_input if alpha is not None else ConstantAlpha(alpha_value)
    return _recomputed_gradients(x, alpha_fn, [alpha], (bn_weight, bn_bias, in_weight, in_bias), bn_mean, bn_var,
                                 use_batch_stats, eps, needs, gy, prims=prims)


def gate_blend_apply_double_backward(x, w1, b1, wb, bb, wi, bn_weight, bn_bias, in_weight, in_bias, bn_mean,
                                     bn_var, use_batch_stats, eps, needs, gy, galpha, prims=None):
    """The gradients of `gate_blend_apply` (x, the five gate slots, the four affine weights) as
    differentiable tensors: its C++ backward calls this under create_graph=True. alpha is the kernels'
    gate layout in PyTorch (reference.gate_alpha_reference), the same math as each gate's `alpha`."""
    from .reference import gate_alpha_reference

    slots = (w1, b1, wb, bb, wi)

    def alpha_fn(mean, *weights):
        it = iter(weights)
        return gate_alpha_reference(mean, *(next(it) if t is not None else None for t in slots))[0]

    return _recomputed_gradients(x, alpha_fn, slots, (bn_weight, bn_bias, in_weight, in_bias), bn_mean, bn_var,
                                 use_batch_stats, eps, needs, gy, galpha, prims)


# The Triton backend's blend_apply / gate_blend_apply (anrl_ext_triton::*, triton_apply_ops.py) have the same
# C++ Functions; their differentiable backward recomputes through the registered Triton ops.
def triton_blend_apply_double_backward(*args):
    from .triton_backend import PRIMITIVES as triton

    return blend_apply_double_backward(*args, prims=triton)


def triton_gate_blend_apply_double_backward(*args):
    from .triton_backend import PRIMITIVES as triton

    return gate_blend_apply_double_backward(*args, prims=triton)


def require_built() -> None:
    if _C is None:
        raise RuntimeError(
            "anrl_ext._C is not built, so the 'cpu' and 'cuda' backends are unavailable "
            f"({LOAD_ERROR}). Install with `pip install --no-build-isolation -e .` "
            "or use backend='reference'."
        )


if _C is not None:
    _ops = torch.ops.anrl_ext
    PRIMITIVES = Primitives(
        name="native",
        moments=_ops.moments.default,
        affine=_ops.affine.default,
        reduce=_ops.reduce.default,
        affine2=_ops.affine2.default,
        blend_forward=_ops.blend_forward.default,
        blend_backward=_ops.blend_backward.default,
        gate_blend_forward=_ops.gate_blend_forward.default,
        gate_blend_backward=_ops.gate_blend_backward.default,
        blend_apply_forward=_ops.blend_apply_forward.default,
        blend_apply_backward=_ops.blend_apply_backward.default,
        blend_apply=_ops.blend_apply.default,
        gate_blend_apply=_ops.gate_blend_apply.default,
    )
    register_fakes(lambda name: f"anrl_ext::{name}")
    register_blend_fakes(lambda name: f"anrl_ext::{name}")
    register_autograd(lambda name: f"anrl_ext::{name}", PRIMITIVES)

    torch.library.register_fake("anrl_ext::blend_apply")(blend_apply_fake)
    torch.library.register_fake("anrl_ext::gate_blend_apply")(gate_blend_apply_fake)
else:  # pragma: no cover
    PRIMITIVES = None
