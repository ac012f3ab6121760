"""Gates that map the per-sample channel means S (N, C) to alpha (N, C).

Each gate is a module whose `alpha(s, *weights)` is a pure function of its
weights, so the fused op can differentiate it on detached copies and
meta-learning can call it with fast weights. `KERNEL_SLOTS` names, for each
weight in `parameters()` order, its slot in the fused middle kernel's gate
(w1, b1, wb, bb, wi: see `anrl_ext.ops.reference.gate_alpha_reference`), so
the native backends compute alpha and its gradients inside that kernel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .members import members


def hidden_size(num_features: int, reduction: int) -> int:
    if reduction < 1:
        raise ValueError(f"reduction must be >= 1, got {reduction}")
    return max(num_features // reduction, 1)


class PaperGate(nn.Module):
    """ANRL eq. 2-4: Z = relu(S W^T), B = sigmoid(Z W_B^T), I = sigmoid(Z W_I^T), alpha = B / (B + I).

    W_B and W_I start equal, so alpha = 0.5 at initialisation.
    """

    KERNEL_SLOTS = ("w1", "wb", "wi")

    def __init__(self, num_features: int, reduction: int = 16, *, device=None, dtype=None):
        super().__init__()
        d = hidden_size(num_features, reduction)
        self.fc = nn.Parameter(torch.empty(d, num_features, device=device, dtype=dtype))
        self.fc_bn = nn.Parameter(torch.empty(num_features, d, device=device, dtype=dtype))
        self.fc_in = nn.Parameter(torch.empty(num_features, d, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.fc, a=5 ** 0.5)
        nn.init.kaiming_uniform_(self.fc_bn, a=5 ** 0.5)
        with torch.no_grad():
            self.fc_in.copy_(self.fc_bn)

    def weights(self) -> tuple:
        """The arguments of `alpha` after s: parameters() in order, without the generator's cost."""
        return members(self, "fc", "fc_bn", "fc_in")

    def hidden(self, s: Tensor) -> Tensor:
        """Z (eq. 2), the hidden layer for per-sample means s: a unit that is 0 for every sample
        passes no gradient to any of the gate's weights."""
        return F.relu(F.linear(s.to(self.fc.dtype), self.fc))

    @staticmethod
    def alpha(s: Tensor, fc: Tensor, fc_bn: Tensor, fc_in: Tensor) -> Tensor:
        z = F.relu(F.linear(s.to(fc.dtype), fc))
        b = torch.sigmoid(F.linear(z, fc_bn))
        i = torch.sigmoid(F.linear(z, fc_in))
        return b / (b + i)


class SigmoidGate(nn.Module):
    """Official TFace ANRL code: alpha = sigmoid(Linear(S)). Zero-initialised: alpha = 0.5."""

    KERNEL_SLOTS = ("wb", "bb")

    def __init__(self, num_features: int, reduction: int = 16, *, device=None, dtype=None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_features, num_features, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(num_features, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.zero_()
            self.bias.zero_()

    def weights(self) -> tuple:
        return members(self, "weight", "bias")

    @staticmethod
    def alpha(s: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return torch.sigmoid(F.linear(s.to(weight.dtype), weight, bias))


class Sigmoid2Gate(nn.Module):
    """Two-layer variant: alpha = sigmoid(W2 relu(W1 S + b1) + b2); W2 = 0 so alpha = 0.5 at init."""

    KERNEL_SLOTS = ("w1", "b1", "wb", "bb")

    def __init__(self, num_features: int, reduction: int = 16, *, device=None, dtype=None):
        super().__init__()
        d = hidden_size(num_features, reduction)
        self.fc1 = nn.Linear(num_features, d, device=device, dtype=dtype)
        self.fc2 = nn.Linear(d, num_features, device=device, dtype=dtype)
        self._zero_output_layer()

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        self._zero_output_layer()

    def _zero_output_layer(self) -> None:
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def weights(self) -> tuple:
        fc1, fc2 = members(self, "fc1", "fc2")
        return members(fc1, "weight", "bias") + members(fc2, "weight", "bias")

    def hidden(self, s: Tensor) -> Tensor:
        """relu(W1 S + b1), the hidden layer for per-sample means s."""
        return F.relu(self.fc1(s.to(self.fc1.weight.dtype)))

    @staticmethod
    def alpha(s: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
        return torch.sigmoid(F.linear(F.relu(F.linear(s.to(w1.dtype), w1, b1)), w2, b2))


GATES = {"paper": PaperGate, "sigmoid": SigmoidGate, "sigmoid2": Sigmoid2Gate}


def make_gate(kind: str, num_features: int, reduction: int, *, device=None, dtype=None) -> nn.Module:
    if kind not in GATES:
        raise ValueError(f"unknown gate {kind!r}; choose one of {sorted(GATES)}")
    return GATES[kind](num_features, reduction, device=device, dtype=dtype)
