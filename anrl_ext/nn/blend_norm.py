"""Normalization layers that blend BatchNorm and InstanceNorm: AFNM and the
baselines of the paper's Table 4, all on the same fused op."""
from __future__ import annotations

from typing import Iterator, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ..distributed import GatherMoments
from ..ops.adaptive_norm import (blend, check_input, check_statistics_defined, empty_blend,
                                 update_running_stats)
from ..ops.backends import check_backend_name, reference_only_context, resolve_backend
from ..ops.fast_blend import ConstantAlpha, alpha_input
from ..ops.fused import shapes_are_trace_constants
from ..ops.reference import adaptive_norm_reference
from .gates import make_gate
from .members import members


class _FirstOrderOnly(torch.autograd.Function):
    """The identity, with a backward that refuses to be differentiated again.

    On the gathered moments of a process with no samples: differentiated twice, its
    graph would issue the collectives in another order than the other processes'
    (which would then wait, or sum the wrong tensors), so it stops with an error instead."""

    @staticmethod
    def forward(ctx, *tensors: Tensor):
        return tuple(t.view_as(t) for t in tensors)

    @staticmethod
    def backward(ctx, *grads: Tensor):
        if torch.is_grad_enabled():  # create_graph=True
            raise RuntimeError("a synchronised layer on a process with no samples cannot be differentiated "
                               "twice (create_graph=True): give every process at least one sample")
        return grads


class BlendNorm2d(nn.Module):
    """alpha * BN(x) + (1 - alpha) * IN(x) with alpha from `alpha_fn`.

    Holds the BN affine and running statistics (as `nn.BatchNorm2d`) and the
    IN affine. Subclasses define `alpha_params()` and the static
    `alpha_fn(mean, *params)`; a float from it means a fixed blend; those with
    alpha parameters give them their initial values in `_reset_alpha()`, which
    `reset_parameters()` calls. An alpha that never reads the means is best
    declared as `ConstantAlpha(value)` or `staticmethod(alpha_input)` (alpha is
    the one alpha param): the fused backends then run each direction as one
    call (`blend_apply_forward` / `_backward`) instead of moments, middle and
    map.
    """

    uses_bn = True
    uses_in = True
    # A gate's KERNEL_SLOTS when the fused middle kernels can compute alpha_fn.
    kernel_gate_slots: Optional[Tuple[str, ...]] = None
    # What forward reads with `members`: the affines, then the running statistics.
    _NORM_TENSORS = ("bn_weight", "bn_bias", "in_weight", "in_bias", "running_mean", "running_var")

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = True, backend: str = "auto", *,
                 device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}  # as nn.BatchNorm2d's factory_kwargs
        if isinstance(num_features, bool) or not hasattr(num_features, "__index__") or num_features < 1:
            raise ValueError(f"num_features must be a positive int, got {num_features!r}")
        num_features = int(num_features)
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        if momentum is not None and not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1] or None (cumulative average), got {momentum!r}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.backend = affine, check_backend_name(backend)
        # Set by anrl_ext.distributed.sync_batch_stats (or convert_batchnorm of an nn.SyncBatchNorm):
        # gathers per-sample moments across processes.
        self.gather_stats = None
        self.track_running_stats = track_running_stats and self.uses_bn

        def affine_pair(used: bool):
            if not (affine and used):
                return None, None
            return tuple(nn.Parameter(torch.empty(num_features, **factory)) for _ in range(2))

        self.bn_weight, self.bn_bias = affine_pair(self.uses_bn)
        self.in_weight, self.in_bias = affine_pair(self.uses_in)
        if self.track_running_stats:
            self.register_buffer("running_mean", torch.empty(num_features, **factory))
            self.register_buffer("running_var", torch.empty(num_features, **factory))
            self.register_buffer("num_batches_tracked", torch.empty((), dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self._reset_norm()

    # -- initial values ----------------------------------------------------
    def reset_running_stats(self) -> None:
        """Running mean 0, variance 1, no batch counted: as `nn.BatchNorm2d.reset_running_stats`."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Every parameter and buffer as a new layer has it: running statistics, the affines
        (weight 1, bias 0) and alpha's parameters (a gate drawn afresh). As
        `nn.BatchNorm2d.reset_parameters`, e.g. after `to_empty()` of a layer built on the
        meta device."""
        self._reset_norm()
        self._reset_alpha()

    def _reset_norm(self) -> None:
        self.reset_running_stats()
        with torch.no_grad():
            for weight, bias in ((self.bn_weight, self.bn_bias), (self.in_weight, self.in_bias)):
                if weight is not None:
                    weight.fill_(1)
                    bias.zero_()

    def _reset_alpha(self) -> None:
        """Initial values of what `alpha_params` returns; nothing for a fixed blend."""

    # -- alpha -------------------------------------------------------------
    def alpha_params(self) -> Tuple[Tensor, ...]:
        return ()

    @staticmethod
    def alpha_fn(mean: Tensor, *params: Tensor) -> Union[float, Tensor]:
        raise NotImplementedError

    # -- forward -----------------------------------------------------------
    def _momentum(self) -> float:
        if not (self.training and self.track_running_stats):
            return 0.0
        count, = members(self, "num_batches_tracked")
        try:
            count.add_(1)
        except RuntimeError as err:  # torch.func's grad / jvp refuse to mutate a captured buffer
            why = reference_only_context()
            if why is None:
                raise
            raise RuntimeError(f"{type(self).__name__} in training updates its running statistics, which it cannot do "
                               f"{why} (nor can nn.BatchNorm2d): set the layer's track_running_stats = False (it then "
                               "normalises with each batch's statistics, in eval mode too), or put it in eval "
                               "mode") from err
        if self.momentum is None:  # cumulative moving average, as nn.BatchNorm2d
            return 1.0 / float(count)
        return self.momentum

    @shapes_are_trace_constants
    def forward(self, x: Tensor, return_alpha: bool = False):
        check_input(x, self.num_features)
        use_batch = self.training or not self.track_running_stats
        check_statistics_defined(x, use_batch and self.uses_bn, self.uses_in)
        backend = resolve_backend(self.backend, x.device)
        momentum = self._momentum()
        bn_weight, bn_bias, in_weight, in_bias, *running = members(self, *self._NORM_TENSORS)
        if not self.track_running_stats:
            running = (None, None)
        params = self.alpha_params()
        gather = None
        if self.gather_stats is not None and self.uses_bn and use_batch:
            gather = self._gather(x.shape[2] * x.shape[3])
        if backend == "reference" or x.numel() == 0:  # plain PyTorch: no kernel sees an empty input
            if backend == "reference" and gather is not None:
                why = reference_only_context()  # what sent a fused layer here, if anything
                raise NotImplementedError("synchronised BN statistics need a fused backend (cpu, cuda, triton)"
                                          + (f"; {why} the layer runs on the reference backend" if why else ""))
            mean = x.float().mean((2, 3)) if x.dtype != torch.float64 else x.mean((2, 3))
            alpha = self.alpha_fn(mean, *params)
            if x.numel() == 0:
                # As nn.BatchNorm2d: nothing to normalise. Only a layer without IN takes planes of
                # no element, and its alpha is a constant that never reads their (NaN) means.
                gathered = self._gather_for_empty(gather, mean, running, momentum, x.shape[2] * x.shape[3])
                y = empty_blend(x, params + (bn_weight, bn_bias, in_weight, in_bias) + gathered)
            else:
                y = adaptive_norm_reference(x, alpha, bn_weight, bn_bias, in_weight, in_bias, *running,
                                            use_batch, momentum, self.eps)
            if not isinstance(alpha, Tensor):
                alpha = mean.new_full(mean.shape, float(alpha))
            elif alpha.dim() == 1:
                alpha = alpha.reshape(1, -1).expand_as(mean)
        else:
            y, alpha = blend(x, backend, self.alpha_fn, params, bn_weight, bn_bias, in_weight, in_bias, *running,
                             use_batch, momentum, self.eps, gather, self.kernel_gate_slots)
        return (y, alpha) if return_alpha else y

    def _gather(self, plane: int):
        """`gather_stats` for inputs of `plane` = H * W elements per channel, or None where it has
        no other process to gather from."""
        g = self.gather_stats
        if isinstance(g, GatherMoments):
            return g.for_plane(plane) if g.active() else None
        return g

    def _gather_for_empty(self, gather, mean: Tensor, running, momentum: float, hw: int) -> Tuple[Tensor, ...]:
        """A synchronised layer given no samples still takes part in the gather, where the
        other processes wait for it, with no rows, and keeps its running statistics equal to
        theirs. Its output then depends on the gathered moments, so that its backward takes
        part in their all-reduce as well. Local statistics: nothing to do."""
        if gather is None:
            return ()
        none = mean[:0]  # no rows, also where N > 0 planes of no element gave (NaN) means
        all_mean, all_var = gather(none, torch.zeros_like(none))
        if self.training and all_mean.shape[0] > 0:
            update_running_stats(all_mean, all_var, all_mean.shape[0] * hw, *running, momentum)
        return _FirstOrderOnly.apply(all_mean, all_var)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}, backend={self.backend!r}"
                + (f", gather_stats={self.gather_stats!r}" if self.gather_stats is not None else ""))

    def __prepare_scriptable__(self):
        # torch.jit.script calls this on every module it compiles, before it reads any source. The
        # forward picks a backend and checks its input in Python that TorchScript cannot compile; its
        # own error would name a type annotation deep inside. Say what to use instead.
        raise RuntimeError(
            f"torch.jit.script cannot compile anrl_ext's {type(self).__name__} layer: its forward chooses the "
            "backend in Python. TorchScript is deprecated in PyTorch 2; use torch.export.export (one operator per "
            "layer; python -m anrl_ext.export for a trained model, .pt2 or .onnx), torch.compile, or "
            "torch.jit.trace, which records the layer's registered operators")


class AFNM(BlendNorm2d):
    """Adaptive Feature Normalization Module (ANRL eq. 1-5).

    A gate on the per-sample channel means picks, per sample and channel,
    alpha in (0, 1); the output is alpha * BN(x) + (1 - alpha) * IN(x).

    Args:
        num_features: C.
        reduction: gate hidden size is C // reduction.
        eps, momentum: as `nn.BatchNorm2d`.
        gate: "paper" (alpha = B / (B + I)), "sigmoid" or "sigmoid2" (official code).
        backend: "auto", "reference", "cpu", "cuda" or "triton".
        track_running_stats: as `nn.BatchNorm2d`; False normalises the BN branch with
            batch statistics in eval mode too (and lets torch.func transforms train it).
        affine: as `nn.BatchNorm2d`; False leaves out both branches' affine weights.
        device, dtype: where and in which dtype parameters and buffers are made, as
            `nn.BatchNorm2d`'s (every layer here takes them).
    """

    def __init__(self, num_features: int, reduction: int = 16, eps: float = 1e-5,
                 momentum: Optional[float] = 0.1, gate: str = "paper", backend: str = "auto",
                 track_running_stats: bool = True, affine: bool = True, *, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, backend, device=device,
                         dtype=dtype)
        self.gate_kind, self.reduction = gate, reduction
        self.gate = make_gate(gate, num_features, reduction, device=device, dtype=dtype)
        self.alpha_fn = self.gate.alpha  # static, pure in its weights
        self.kernel_gate_slots = getattr(self.gate, "KERNEL_SLOTS", None)

    def alpha_params(self) -> Tuple[Tensor, ...]:
        gate, = members(self, "gate")
        return gate.weights()

    def _reset_alpha(self) -> None:
        self.gate.reset_parameters()

    def gate_parameters(self) -> Iterator[nn.Parameter]:
        """theta_F of the paper: the parameters meta-learning updates."""
        return self.gate.parameters()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", gate={self.gate_kind!r}, reduction={self.reduction}"


class BN(BlendNorm2d):
    """BatchNorm2d through the fused op (alpha = 1)."""

    uses_in = False
    alpha_fn = ConstantAlpha(1.0)


class IN(BlendNorm2d):
    """InstanceNorm2d(affine=True) through the fused op (alpha = 0)."""

    uses_bn = False
    alpha_fn = ConstantAlpha(0.0)


class INBNHalf(BlendNorm2d):
    """Fixed equal blend: 0.5 * BN + 0.5 * IN."""

    alpha_fn = ConstantAlpha(0.5)


class BIN(BlendNorm2d):
    """Batch-Instance Normalization (Nam & Kim 2018): one learned alpha per
    channel, shared by all samples, kept in [0, 1] by clamping."""

    def __init__(self, num_features: int, **kwargs):
        super().__init__(num_features, **kwargs)
        self.rho = nn.Parameter(torch.empty(num_features, device=kwargs.get("device"), dtype=kwargs.get("dtype")))
        self._reset_alpha()

    def _reset_alpha(self) -> None:
        with torch.no_grad():
            self.rho.fill_(0.5)

    def alpha_params(self):
        return (self.rho,)

    @staticmethod
    def alpha_fn(mean, rho):
        return rho.clamp(0.0, 1.0)


class IBN(BlendNorm2d):
    """IBN-Net style: IN on the first half of the channels, BN on the rest."""

    def __init__(self, num_features: int, **kwargs):
        super().__init__(num_features, **kwargs)
        self.register_buffer("split", torch.empty(num_features, device=kwargs.get("device"),
                                                  dtype=kwargs.get("dtype")))
        self._reset_alpha()

    def _reset_alpha(self) -> None:
        self.split.fill_(1)
        self.split[: self.num_features // 2] = 0.0

    def alpha_params(self):
        return (self.split,)

    alpha_fn = staticmethod(alpha_input)  # the split buffer is alpha itself


NORMS = {"bn": BN, "in": IN, "half": INBNHalf, "bin": BIN, "ibn": IBN, "afnm": AFNM}


def make_norm(kind: str, num_features: int, **kwargs) -> nn.Module:
    """Build one of the Table 4 normalizations by name (bn, in, half, bin, ibn, afnm)."""
    if kind not in NORMS:
        raise ValueError(f"unknown normalization {kind!r}; choose one of {sorted(NORMS)}")
    if kind != "afnm":
        kwargs.pop("gate", None)
        kwargs.pop("reduction", None)
    return NORMS[kind](num_features, **kwargs)
