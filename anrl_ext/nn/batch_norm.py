"""nn.BatchNorm2d, accurate for channels_last input on the CPU."""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ..ops.reference import is_cpu_channels_last


class StableBatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` that runs channels_last CPU input through an NCHW copy.

    torch's CPU batch_norm kernel for channels_last sums each channel row by row
    in float32 (torch 2.14): at 36 x 8 x 128 x 128 its weight gradient is 7e-2
    off, against 2e-4 for NCHW input (see `anrl_ext.ops.reference._batch_norm`).
    Same parameters, buffers and state_dict keys as `nn.BatchNorm2d`; any other
    input goes straight to it. The output keeps the input's layout.
    """

    def forward(self, x: Tensor) -> Tensor:
        if is_cpu_channels_last(x):
            return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)
        return super().forward(x)

    def __prepare_scriptable__(self) -> nn.BatchNorm2d:
        """What torch.jit.script compiles in this module's place: `nn.BatchNorm2d` over the same
        parameters and buffers (TorchScript can compile neither the layout check nor `super()`), so
        a scripted network runs torch's kernel for channels_last input too."""
        plain = copy.copy(self)  # shares the parameter and buffer dicts, adds no state of its own
        plain.__class__ = nn.BatchNorm2d
        return plain
