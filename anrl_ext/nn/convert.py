"""Model-wide conversions: nn.BatchNorm2d layers to AFNM (or a baseline), and every blend layer to one backend."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from ..distributed import GatherMoments
from ..ops.backends import check_backend_name
from .blend_norm import NORMS, BlendNorm2d, make_norm


def convert_batchnorm(module: nn.Module, norm: str = "afnm", *, sync_batchnorm: bool = False,
                      **norm_kwargs) -> nn.Module:
    """Return `module` with every nn.BatchNorm2d replaced by an anrl_ext layer.

    `norm` names it as `make_norm` does: "afnm" (default), or a Table 4
    baseline ("bn", "in", "half", "bin", "ibn"); `norm_kwargs` go to its
    constructor (`gate` and `reduction` are AFNM's only). The new layer's BN
    branch takes the BN's eps, momentum, affine and running statistics; its
    gate, IN affine and BIN's rho start fresh ("in" has no BN branch and keeps
    only eps). A BN with `affine=False` gives a layer without affine weights
    (IN's too), and one with `track_running_stats=False` a layer that keeps
    no running statistics and normalises with the batch's in eval mode too,
    as the BN did. Like `nn.SyncBatchNorm.convert_sync_batchnorm`, the root itself
    is converted (and returned) when it is a layer to convert.

    `sync_batchnorm=True` converts every nn.SyncBatchNorm too, into a layer that
    stays synchronised over its process group (`anrl_ext.distributed.GatherMoments`:
    the BN branch merges the statistics of every process's batch; local outside a
    process group), and so needs a fused backend when distributed. It is not the
    default because these layers take 4-D input only, and an nn.SyncBatchNorm may
    stand for a BatchNorm1d or 3d (`convert_sync_batchnorm` turns them all into
    one); left alone, they are named in a warning.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"convert_batchnorm converts an nn.Module, got {type(module).__name__}")
    if norm not in NORMS:
        raise ValueError(f"unknown normalization {norm!r}; choose one of {sorted(NORMS)}")
    afnm_only = sorted({"gate", "reduction"} & set(norm_kwargs))
    if norm != "afnm" and afnm_only:
        raise ValueError(f"{', '.join(afnm_only)}: AFNM's option(s), not {norm!r}'s")
    kinds = (nn.BatchNorm2d, nn.SyncBatchNorm) if sync_batchnorm else (nn.BatchNorm2d,)
    left = [] if sync_batchnorm else [name or "(the root)" for name, m in module.named_modules()
                                      if isinstance(m, nn.SyncBatchNorm)]
    if left:
        shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        warnings.warn(f"convert_batchnorm left {len(left)} nn.SyncBatchNorm layer(s) as they are ({shown}); "
                      "pass sync_batchnorm=True to convert them too, if their input is 4-D", stacklevel=2)
    return _convert(module, kinds, norm, norm_kwargs)


def _convert(module: nn.Module, kinds: tuple, norm: str, norm_kwargs: dict) -> nn.Module:
    if isinstance(module, kinds):
        # affine and track_running_stats too: a BN without running statistics normalises with the batch's in
        # eval mode, and one without affine has no weights to train
        kwargs = {"eps": module.eps, "momentum": module.momentum, "affine": module.affine,
                  "track_running_stats": module.track_running_stats, **norm_kwargs}
        new = make_norm(norm, module.num_features, **kwargs)
        ref = module.weight if module.weight is not None else module.running_mean
        if ref is not None:
            new = new.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            if module.affine and new.bn_weight is not None:
                new.bn_weight.copy_(module.weight)
                new.bn_bias.copy_(module.bias)
            if module.track_running_stats and module.running_mean is not None and new.running_mean is not None:
                new.running_mean.copy_(module.running_mean)
                new.running_var.copy_(module.running_var)
                new.num_batches_tracked.copy_(module.num_batches_tracked)
        if isinstance(module, nn.SyncBatchNorm) and new.uses_bn:
            new.gather_stats = GatherMoments(module.process_group)
        new.train(module.training)
        return new
    for name, child in module.named_children():
        setattr(module, name, _convert(child, kinds, norm, norm_kwargs))
    return module


def set_backend(module: nn.Module, backend: str) -> nn.Module:
    """Run every anrl_ext normalization layer in `module` on `backend`; return `module`.

    E.g. `set_backend(model, "reference")` before `torch.export` gives a graph of
    plain aten ops (batch_norm, instance_norm, ...) for tools that know no custom
    ops, such as ONNX exporters; with a fused backend the graph calls the
    package's operators (`torch.ops.anrl_ext.*`), and whoever loads it must
    `import anrl_ext` first. Parameters and buffers are left as they are.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"set_backend sets the backend of an nn.Module's layers, got {type(module).__name__}")
    check_backend_name(backend)
    for m in module.modules():
        if isinstance(m, BlendNorm2d):
            m.backend = backend
    return module
