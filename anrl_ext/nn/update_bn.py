"""Recompute BN running statistics after weight averaging (SWA, SWAD, EMA), anrl_ext layers included."""
from __future__ import annotations

from typing import Any, Iterable, Optional, Union

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .blend_norm import BlendNorm2d


@torch.no_grad()
def update_bn(loader: Iterable[Any], model: nn.Module,
              device: Optional[Union[int, str, torch.device]] = None) -> None:
    """`torch.optim.swa_utils.update_bn` for models with anrl_ext layers.

    torch's version finds only `nn.BatchNorm*` layers, so it would leave the BN
    branch of every AFNM (and BN, INBNHalf, BIN, IBN) layer with the running
    statistics of the weights before averaging. This one resets the running
    statistics of both kinds, runs one pass over `loader` in training mode with
    a cumulative average (momentum None), then puts back each layer's momentum
    and the model's mode. Each batch is a tensor, or a list or tuple whose first
    element is the model's input; `device`, when given, is where it is moved.
    """
    if not isinstance(model, nn.Module):  # torch's order is (loader, model): a swap is an easy slip
        raise TypeError(f"update_bn(loader, model): model must be an nn.Module, got {type(model).__name__}")
    layers = {m: m.momentum for m in model.modules() if isinstance(m, (_BatchNorm, BlendNorm2d))}
    if not layers:
        return
    was_training = model.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # the cumulative average: every batch weighs the same
    model.train()
    try:
        for batch in loader:
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            if not isinstance(x, torch.Tensor):
                what = f"a dict with keys {sorted(map(str, batch))}" if isinstance(batch, dict) else type(x).__name__
                raise TypeError(f"update_bn: each batch must be a tensor or a list or tuple whose first element is "
                                f"the model's input tensor, got {what}; pass the inputs alone, e.g. "
                                f"(batch['image'] for batch in loader)")
            model(x.to(device) if device is not None else x)
    finally:  # an interrupted pass still leaves the layers' settings as they were
        for m, momentum in layers.items():
            m.momentum = momentum
        model.train(was_training)
