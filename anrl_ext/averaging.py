"""`--ema`: an exponential moving average of the trained network's weights, the network a run
evaluates and delivers (as in DomainBed's and SWAD's weight averaging for domain generalisation)."""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from . import distributed

# Early on the average follows the network faster, so that a short run is not an average
# dominated by its first steps: the n-th update keeps min(decay, (1 + n) / (10 + n)) of the
# average (TensorFlow's ExponentialMovingAverage with num_updates).
WARMUP = 10


def decay_at(decay: float, n: int) -> float:
    """The share of the average kept by its n-th update after the first (n >= 1)."""
    return min(decay, (1 + n) / (WARMUP + n))


class WeightAverage(AveragedModel):
    """`torch.optim.swa_utils.AveragedModel` as an EMA of parameters and buffers (BN running
    statistics included: the average is evaluated as it is, with no pass over the data), with
    the warm-up of `decay_at`. Integer buffers (BN's batch counts) are copied, not averaged.

    The copy never synchronises statistics across processes: it runs in eval mode on one
    process. `state_dict()` of `.module` is a plain network's, which is what checkpoints hold."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        super().__init__(model, multi_avg_fn=self._average, use_buffers=True)
        self.decay = decay
        distributed.sync_batch_stats(self.module, enabled=False)
        self.module.eval().requires_grad_(False)

    @torch.no_grad()
    def _average(self, averaged, current, _) -> None:
        # Called once per device and dtype. The count is read from this module's own buffer, which
        # stays on the CPU; the copy of it AveragedModel passes on the network's device is not read,
        # so no .item() waits for a GPU.
        if not (averaged[0].is_floating_point() or averaged[0].is_complex()):
            torch._foreach_copy_(averaged, current)
            return
        torch._foreach_lerp_(averaged, current, 1 - decay_at(self.decay, self.updates()))

    def updates(self) -> int:
        """How many networks the average has taken in."""
        return int(self.n_averaged)

    def set_updates(self, n: int) -> None:
        self.n_averaged.fill_(n)
