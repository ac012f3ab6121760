"""The trainer's meta-gradient against an independent torch.func computation (float64)."""
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

import anrl_ext
from anrl_ext.meta import call_with, meta_gradient

from conftest import FUSED_CPU_BACKENDS


class Tiny(torch.nn.Module):
    def __init__(self, backend):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 6, 3, padding=1)
        self.norm = anrl_ext.AFNM(6, reduction=2, backend=backend)
        self.head = torch.nn.Linear(6, 2)

    def forward(self, x):
        return self.head(F.relu(self.norm(self.conv(x))).mean((2, 3)))


@pytest.mark.parametrize("backend", ["reference"] + FUSED_CPU_BACKENDS)
@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradient_matches_torch_func(backend, first_order):
    torch.manual_seed(0)
    model = Tiny(backend).double().eval()  # eval: running stats fixed, so torch.func sees a pure function
    for p in model.norm.gate.parameters():
        torch.nn.init.normal_(p, std=0.5)
    oracle = Tiny("reference").double().eval()
    oracle.load_state_dict(model.state_dict())
    xt, yt = torch.randn(4, 2, 5, 5, dtype=torch.float64), torch.tensor([0, 1, 1, 0])
    xv, yv = torch.randn(3, 2, 5, 5, dtype=torch.float64), torch.tensor([1, 0, 1])
    names = [f"norm.gate.{n}" for n, _ in model.norm.gate.named_parameters()]
    beta1 = 20.0  # large, so the second-order term is well above the tolerance

    def loss_fn(batch):
        return lambda params: F.cross_entropy(call_with(model, params, batch[0]), batch[1])

    ours = meta_gradient(model, names, loss_fn((xt, yt)), loss_fn((xv, yv)), beta1, first_order)

    fixed = {k: v for k, v in oracle.named_parameters() if k not in names}

    def loss(theta, x, y):
        return F.cross_entropy(functional_call(oracle, {**fixed, **theta}, (x,)), y)

    theta0 = {n: dict(oracle.named_parameters())[n].detach() for n in names}

    def objective(theta):
        g = grad(loss)(theta, xt, yt)
        fast = {n: theta[n] - beta1 * g[n] for n in names}
        return loss(theta, xt, yt) + loss(fast, xv, yv)

    if first_order:
        g_trn = grad(loss)(theta0, xt, yt)
        fast = {n: theta0[n] - beta1 * g_trn[n] for n in names}
        g_val = grad(loss)(fast, xv, yv)
        expect = {n: g_trn[n] + g_val[n] for n in names}
    else:
        expect = grad(objective)(theta0)
    for n, g in zip(names, ours):
        torch.testing.assert_close(g, expect[n], atol=1e-6, rtol=1e-6)
    if not first_order:  # the second-order term is really there
        g_trn = grad(loss)(theta0, xt, yt)
        fast = {n: theta0[n] - beta1 * g_trn[n] for n in names}
        g_fo = {n: g_trn[n] + grad(loss)(fast, xv, yv)[n] for n in names}
        assert max((expect[n] - g_fo[n]).abs().max().item() for n in names) > 1e-5  # 10x the tolerance
