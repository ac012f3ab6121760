"""Second-order meta-learning of the AFNM gates (ANRL Algorithm 1)."""
from __future__ import annotations

from typing import Callable, Dict, List

import torch
from torch import Tensor, nn
from torch.func import functional_call

LossFn = Callable[[Dict[str, Tensor]], Tensor]  # loss of one forward with given parameters


def meta_gradient(model: nn.Module, gate_names: List[str], loss_trn: LossFn, loss_val: LossFn,
                  beta1: float, first_order: bool = False) -> List[Tensor]:
    """grad_theta_F [ L_trn(theta_F) + L_val(theta_F - beta1 * grad L_trn(theta_F)) ].

    `loss_trn(params)` / `loss_val(params)` evaluate the model with `params`
    (a dict of name -> tensor overriding the model's) on the meta-train /
    meta-test batches. Second order differentiates through the inner step
    (create_graph=True); first order treats theta_F' as a constant point.
    """
    params = dict(model.named_parameters())
    theta = [params[n] for n in gate_names]
    l_trn = loss_trn({})
    g_trn = torch.autograd.grad(l_trn, theta, create_graph=not first_order)
    if first_order:
        fast = {n: (t - beta1 * g).detach().requires_grad_() for n, t, g in zip(gate_names, theta, g_trn)}
        l_val = loss_val(fast)
        g_val = torch.autograd.grad(l_val, [fast[n] for n in gate_names])
        return [a.detach() + b for a, b in zip(g_trn, g_val)]
    fast = {n: t - beta1 * g for n, t, g in zip(gate_names, theta, g_trn)}
    l_val = loss_val(fast)
    return list(torch.autograd.grad(l_trn + l_val, theta))


def call_with(model: nn.Module, params: Dict[str, Tensor], x: Tensor):
    """Run `model` on x with some parameters replaced (fast weights)."""
    return functional_call(model, params, (x,), strict=False) if params else model(x)
