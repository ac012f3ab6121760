"""Public functional API: `adaptive_norm` and its argument checks."""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from .backends import primitives_for, resolve_backend
from .coefficients import Alpha, batch_stats, blend_coefficients, update_running_buffers
from . import fast_blend as _fast
from . import native
from .fast_blend import BlendSpec, ConstantAlpha, affine_slots, alpha_input, fast_blend
from .fused import capturing_graph, fused, shapes_are_trace_constants, traces_one_op
from .reference import adaptive_norm_reference


def check_input(x: Tensor, num_features: Optional[int] = None) -> None:
    """Raise a clear error for input the kernels cannot take."""
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor input, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point input, got dtype {x.dtype}")
    if num_features is not None and x.shape[1] != num_features:
        raise ValueError(
            f"input has {x.shape[1]} channels but the layer was built for {num_features}"
        )


def check_tensors_on(x: Tensor, named: Sequence[Tuple[str, Optional[Tensor]]]) -> None:
    """Every named tensor must be on x's device and have C entries where it is a vector."""
    c, device = x.shape[1], x.device
    for name, t in named:
        if t is None:
            continue
        if t.device != device:
            raise ValueError(f"{name} is on {t.device} but the input is on {device}")
        if t.dim() == 1 and t.numel() != c:
            raise ValueError(f"{name} has {t.numel()} entries, expected C = {c}")


def check_alpha(alpha: Alpha, x: Tensor) -> None:
    n, c = x.shape[:2]
    if isinstance(alpha, Tensor):
        ok = (alpha.dim() == 2 and tuple(alpha.shape) == (n, c)) or (alpha.dim() == 1 and alpha.numel() == c) \
            or alpha.dim() == 0
        if not ok:
            raise ValueError(f"alpha must be a float, (C,) = ({c},) or (N, C) = ({n}, {c}); got {tuple(alpha.shape)}")
        if alpha.device != x.device:
            raise ValueError(f"alpha is on {alpha.device} but the input is on {x.device}")
    elif not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a float or a tensor, got {type(alpha).__name__}")
    elif not torch.compiler.is_compiling() and not math.isfinite(alpha):  # see check_hyperparameters
        raise ValueError(f"alpha must be finite, got {alpha}")


def check_hyperparameters(running_mean: Optional[Tensor], running_var: Optional[Tensor], momentum: float,
                          eps: float) -> None:
    """The functional op's scalars and buffers, as the layers check theirs at construction: a bad one would
    give nan outputs or half-updated statistics without an error."""
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var go together: give both or neither")
    if torch.compiler.is_compiling():
        # torch.compile makes float arguments symbolic (specialize_float=False): a test of their values would
        # break the graph (fullgraph=True fails) or specialise it to one value. Checked in eager calls.
        return
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if not (isinstance(momentum, (int, float)) and 0 <= momentum <= 1):
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")


def check_statistics_defined(x: Tensor, training: bool, uses_in: bool) -> None:
    """BN needs > 1 value per channel in training; IN needs > 1 spatial element.

    An input with no elements has no statistics to compute and is let through, as
    `nn.BatchNorm2d` lets it (see `empty_blend`), except N > 0 samples of no
    spatial element for IN: each of them would get a normalised plane of nothing.
    """
    n, _, h, w = x.shape
    if uses_in and n > 0 and h * w <= 1:
        raise ValueError(
            f"instance normalization needs more than 1 spatial element, got input size {tuple(x.shape)}"
        )
    if training and n * h * w == 1:
        raise ValueError(
            f"expected more than 1 value per channel when training, got input size {tuple(x.shape)}"
        )


def check_arguments(x: Tensor, alpha: Alpha, bn_weight: Optional[Tensor], bn_bias: Optional[Tensor],
                    in_weight: Optional[Tensor], in_bias: Optional[Tensor], running_mean: Optional[Tensor],
                    running_var: Optional[Tensor], training: bool, momentum: float, eps: float) -> None:
    """Every argument check of `adaptive_norm`: a clear error for anything the op cannot take."""
    check_input(x)
    check_alpha(alpha, x)
    check_hyperparameters(running_mean, running_var, momentum, eps)
    check_tensors_on(x, [("bn_weight", bn_weight), ("bn_bias", bn_bias), ("in_weight", in_weight),
                         ("in_bias", in_bias), ("running_mean", running_mean), ("running_var", running_var)])
    uses_in = not (not isinstance(alpha, Tensor) and float(alpha) == 1.0)
    check_statistics_defined(x, training or running_mean is None, uses_in)


def empty_blend(x: Tensor, tensors: Sequence[Optional[Tensor]]) -> Tensor:
    """The output for an input with no elements, as `nn.BatchNorm2d` gives it: an empty
    tensor like x, on the autograd graph of x and of every given tensor, whose gradients
    are then zeros rather than None (DistributedDataParallel expects every parameter used).

    Running statistics are left as they are: an empty batch has none.
    """
    y = x.clone()
    for t in tensors:
        if t is not None:
            y = y + t.sum()  # a 0-dim summand keeps y's dtype; its gradient is a sum over no elements
    return y


def update_running_stats(mean: Tensor, var: Tensor, count: int, running_mean: Optional[Tensor],
                         running_var: Optional[Tensor], momentum: float) -> None:
    """PyTorch BN semantics from per-sample moments: EMA of the batch mean and the
    unbiased batch variance."""
    if running_mean is None and running_var is None:
        return
    update_running_buffers(*batch_stats(mean.detach(), var.detach()), count, running_mean, running_var, momentum)


def make_blend_middle(alpha_fn, n_alpha_params, affine, running_mean, running_var, use_batch, eps,
                      gather_stats=None):
    """middle(mean, var, *alpha_params, *affines) -> (scale, shift, alpha) for the fused op.

    `alpha_fn(mean, *alpha_params)` gives alpha (a float or a tensor); `affine`
    flags which of (bn_weight, bn_bias, in_weight, in_bias) are passed.
    """

    def middle(mean, var, *params):
        alpha = alpha_fn(mean, *params[:n_alpha_params])
        wb, bb, wi, bi = affine_slots(affine, params[n_alpha_params:])
        if use_batch:
            bn_mean, bn_var = batch_stats(*(gather_stats(mean, var) if gather_stats else (mean, var)))
        else:
            bn_mean, bn_var = running_mean, running_var
        scale, shift = blend_coefficients(mean, var, alpha, wb, bb, wi, bi, bn_mean, bn_var, eps)
        if isinstance(alpha, Tensor):
            alpha = alpha.to(mean.dtype)
            alpha = alpha.reshape(1, -1) if alpha.dim() == 1 else alpha
        else:
            alpha = mean.new_full((), float(alpha))
        return scale, shift, alpha.expand_as(mean)

    return middle


def _recording(gather_stats, gathered):
    """gather_stats that also appends its first result, detached, to `gathered`."""

    def gather(mean, var):
        out = gather_stats(mean, var)
        if not gathered:
            gathered.append(tuple(t.detach() for t in out))
        return out

    return gather


def blend(x, backend, alpha_fn, alpha_params, bn_weight, bn_bias, in_weight, in_bias,
          running_mean, running_var, training, momentum, eps, gather_stats=None, gate_slots=None, need_alpha=True):
    """Fused blend with alpha = alpha_fn(per-sample mean, *alpha_params). Returns (y, alpha);
    alpha may be None when not `need_alpha`.

    `backend` is a concrete, non-reference backend name. Running statistics are
    updated in place when training. `gather_stats(mean, var)`, when given, returns
    the per-sample moments of the whole distributed batch (differentiably), so the
    BN branch normalises with global statistics (see anrl_ext.distributed).
    `gate_slots` (a gate's KERNEL_SLOTS, nn/gates.py) lets the middle kernels
    compute alpha_fn themselves on the first-order path.
    """
    use_batch = training or running_mean is None or running_var is None
    prims = primitives_for(backend)
    # torch.export and torch.compile record the two one-op paths as one node each, which the program runs as
    # eager code does (their C++ autograd traced on fake tensors: one op each way). jit.trace traces the
    # composed path of registered primitives below.
    one_op_traced = traces_one_op(_fast.COMPILE_ONE_OP)
    fast = _fast.ENABLED and prims.blend_forward is not None and (one_op_traced or not capturing_graph())
    if fast:  # the one-op paths first: on a GPU every line of Python here is host time the GPU waits through
        # Exported, the gate runs in the kernels whatever the batch: a symbolic batch has no gate work to compare.
        # Compiled, the gate-size test is a guard on the batch, as an eager call's choice (torch 2.11's Dynamo
        # says it is exporting under any compile: there the kernels take the gate at every size, a speed choice).
        if gate_slots is not None and not _fast.gate_in_kernel(prims, gate_slots, alpha_params, x,
                                                               torch.compiler.is_exporting()):
            gate_slots = None
        native = _fast.NATIVE_AUTOGRAD and _fast.WHOLE_PASS and gather_stats is None
        if native and gate_slots is not None and prims.gate_blend_apply is not None:
            # the gate inside the middle kernels: one op whose autograd is native code
            return prims.gate_blend_apply(x, *_fast.gate_arguments(gate_slots, alpha_params), bn_weight, bn_bias,
                                          in_weight, in_bias, running_mean, running_var, use_batch, training,
                                          momentum, eps)
        if native and prims.blend_apply is not None and (alpha_fn is alpha_input
                                                         or isinstance(alpha_fn, ConstantAlpha)):
            # alpha is known before the moments: one op whose autograd is native code.
            alpha = alpha_params[0] if alpha_fn is alpha_input else None
            alpha_value = 0.0 if alpha is not None else alpha_fn.value
            y = prims.blend_apply(x, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, running_mean,
                                  running_var, use_batch, training, momentum, eps)
            return y, (_fast.alpha_output(x, alpha, alpha_value) if need_alpha else None)
        if one_op_traced:  # the Python Function below is not traced: the composed path
            fast = False
    affines = (bn_weight, bn_bias, in_weight, in_bias)
    present = tuple(t is not None for t in affines)
    params = list(alpha_params) + [t for t in affines if t is not None]

    def make_middle():  # reads gather_stats when called: the composed path below wraps it first
        return make_blend_middle(alpha_fn, len(alpha_params), present, running_mean, running_var, use_batch,
                                 eps, gather_stats)

    if fast:
        spec = BlendSpec(prims, alpha_fn, len(alpha_params), present, running_mean, running_var, use_batch,
                         training, momentum, eps, make_middle, gate_slots, gather_stats)
        return fast_blend(x, spec, params)
    gathered = []  # the forward's global moments, kept for the running statistics
    if gather_stats is not None:
        gather_stats = _recording(gather_stats, gathered)
    y, alpha, mean, var = fused(x, prims, make_middle(), params)
    if training:
        if gather_stats is not None:
            # The middle gathered them already; gathering again would cost a collective.
            mean, var = gathered[0]
        count = mean.shape[0] * x.shape[2] * x.shape[3]
        update_running_stats(mean, var, count, running_mean, running_var, momentum)
    return y, alpha


# The common case of adaptive_norm's checks in one C++ call (csrc/argument_checks.cpp): it answers True
# only where every check passes and x has elements, and False sends the call through the Python checks,
# which raise the error. On a GPU they are host time before the first launch. FAST_CHECKS = False always
# runs the Python checks (benchmarks/host_time.py times the two); None without anrl_ext._C.
FAST_CHECKS = True
_arguments_ok = getattr(native._C, "blend_arguments_ok", None) if native.is_built() else None


@shapes_are_trace_constants
def adaptive_norm(
    x: Tensor,
    alpha: Alpha,
    bn_weight: Optional[Tensor] = None,
    bn_bias: Optional[Tensor] = None,
    in_weight: Optional[Tensor] = None,
    in_bias: Optional[Tensor] = None,
    running_mean: Optional[Tensor] = None,
    running_var: Optional[Tensor] = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    backend: str = "auto",
) -> Tensor:
    """alpha * BatchNorm(x) + (1 - alpha) * InstanceNorm(x), fused.

    alpha is a float, a (C,) tensor or an (N, C) tensor. alpha = 1 equals
    `F.batch_norm`, alpha = 0 equals `F.instance_norm` with affine; values
    outside [0, 1] are allowed and extrapolate (the output is affine in
    alpha, and an unconstrained learned alpha may leave the interval). Running
    statistics follow `nn.BatchNorm2d`: updated in place when `training`
    (unbiased variance), used instead of batch statistics otherwise. An input
    with no elements (N = 0) gives an empty output and leaves them as they are.
    """
    if not (FAST_CHECKS and _arguments_ok is not None and not torch.compiler.is_compiling()
            and _arguments_ok(x, alpha, bn_weight, bn_bias, in_weight, in_bias, running_mean, running_var,
                              training, momentum, eps)):
        check_arguments(x, alpha, bn_weight, bn_bias, in_weight, in_bias, running_mean, running_var, training,
                        momentum, eps)
        if x.numel() == 0:
            return empty_blend(x, [alpha if isinstance(alpha, Tensor) else None, bn_weight, bn_bias, in_weight,
                                   in_bias])
    name = resolve_backend(backend, x.device)
    if name == "reference":
        return adaptive_norm_reference(x, alpha, bn_weight, bn_bias, in_weight, in_bias,
                                       running_mean, running_var, training, momentum, eps)
    if isinstance(alpha, Tensor):
        alpha_fn, alpha_params = alpha_input, (alpha,)
    else:
        alpha_fn, alpha_params = ConstantAlpha(alpha), ()
    y, _ = blend(x, name, alpha_fn, alpha_params, bn_weight, bn_bias, in_weight, in_bias,
                 running_mean, running_var, training, momentum, eps, need_alpha=False)
    return y
