"""GPU backends (cuda, triton) on a real GPU. Skipped without one: these run in
benchmarks/gpu_check.sh on a lent machine, not in CI."""
import pytest
import torch

import anrl_ext
from helpers import make_inputs, max_err, oracle

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU_BACKENDS = [b for b in ("cuda", "triton") if torch.cuda.is_available() and b in anrl_ext.available_backends("cuda")]


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("shape", [(4, 3, 7, 7), (3, 17, 63, 65), (2, 64, 32, 32), (1, 5, 1, 9)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_values_and_gradients_vs_float64(backend, shape, channels_last, dtype):
    x, alpha, params = make_inputs(shape, dtype, "nc", channels_last)
    x = x.cuda().requires_grad_()
    a = alpha.to("cuda", dtype).requires_grad_()
    ps = [p.to("cuda", dtype).requires_grad_() for p in params]
    y = anrl_ext.adaptive_norm(x, a, *ps, backend=backend)
    x64 = x.detach().double().requires_grad_()
    a64 = a.detach().double().requires_grad_()
    p64 = [p.detach().double().requires_grad_() for p in ps]
    y64 = oracle(x64, a64, p64)
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    assert max_err(y, y64) < tol * max(1, y64.abs().max().item())
    g = torch.randn_like(y64)
    for g1, g2 in zip(torch.autograd.grad(y, [x, a, *ps], g.to(dtype)), torch.autograd.grad(y64, [x64, a64, *p64], g)):
        assert max_err(g1, g2) < 20 * tol * max(1, g2.abs().max().item())


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gradcheck_gradgradcheck_float64_cuda(backend):
    x, alpha, params = make_inputs((3, 4, 5, 6), torch.float64, "nc")
    inputs = tuple(t.cuda().requires_grad_() for t in [x, alpha, *params])
    f = lambda *t: anrl_ext.adaptive_norm(*t, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_alpha_one_and_zero_vs_torch_modules(backend):
    x = torch.randn(8, 16, 20, 20, device="cuda") * 2 + 1
    bn = torch.nn.BatchNorm2d(16).cuda()
    inn = torch.nn.InstanceNorm2d(16, affine=True).cuda()
    rm, rv = torch.zeros(16, device="cuda"), torch.ones(16, device="cuda")
    for _ in range(3):
        y = anrl_ext.adaptive_norm(x, 1.0, bn.weight, bn.bias, None, None, rm, rv, backend=backend)
        assert max_err(y, bn(x)) < 1e-4
    torch.testing.assert_close(rv, bn.running_var)
    y = anrl_ext.adaptive_norm(x, 0.0, None, None, inn.weight, inn.bias, backend=backend)
    assert max_err(y, inn(x)) < 1e-4


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_deterministic_bits(backend):
    x = torch.randn(4, 8, 128, 128, device="cuda", requires_grad=True)
    outs = []
    for _ in range(2):
        y = anrl_ext.adaptive_norm(x, 0.3, backend=backend)
        (g,) = torch.autograd.grad((y * y).sum(), x)
        outs.append((y, g))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_large_mean_small_std_cuda(backend):
    x = (torch.randn(4, 3, 64, 64, dtype=torch.float64) * 0.1 + 1e4).float().cuda()
    y = anrl_ext.adaptive_norm(x, 0.5, backend=backend)
    ref = oracle(x.cpu(), 0.5, [torch.ones(3), torch.zeros(3)] * 2)
    assert max_err(y.cpu(), ref) < 2e-2
