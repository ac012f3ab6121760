"""Load the libtorch operator library (CMakeLists.txt) without the Python package and check three of
its ops against torch: moments, and blend_apply and gate_blend_apply (AFNM's gated blend, the paper
gate) with their C++ first-order backward.

    python scripts/check_cmake_library.py build-cmake/libanrl_ext_ops.so
"""
import sys

import torch
import torch.nn.functional as F


def main(path):
    torch.ops.load_library(path)
    m, v = torch.ops.anrl_ext.moments(torch.arange(8.).view(1, 2, 2, 2))
    assert m.tolist() == [[1.5, 5.5]], m
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    dy = torch.randn_like(x)
    y = torch.ops.anrl_ext.blend_apply(x, None, 0.25, None, None, None, None, None, None, True, False, 0.1, 1e-5)
    (dx,) = torch.autograd.grad(y, x, dy)
    want = 0.25 * F.batch_norm(x, None, None, training=True) + 0.75 * F.instance_norm(x)
    (want_dx,) = torch.autograd.grad(want, x, dy)
    torch.testing.assert_close(y, want, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(dx, want_dx, atol=1e-12, rtol=1e-12)
    y = torch.ops.anrl_ext.blend_apply(x, None, 0.25, None, None, None, None, None, None, True, False, 0.1, 1e-5)
    try:
        torch.autograd.grad(y, x, dy, create_graph=True)
    except RuntimeError as exc:
        assert "needs the Python package" in str(exc), exc
    else:
        raise AssertionError("create_graph=True should need the Python package in the libtorch build")
    check_gate_blend_apply(x.detach().requires_grad_(), dy)
    print(f"{path}: moments, blend_apply and gate_blend_apply (forward, first-order backward) match torch")


def check_gate_blend_apply(x, dy):
    """The paper gate (eq. 2-4: alpha = B / (B + I) of two sigmoid heads on a relu hidden layer of the
    per-sample channel means) blending BN and IN, against the same written in torch."""
    n, c = x.shape[:2]
    w1, wb, wi = (torch.randn(shape, dtype=x.dtype, requires_grad=True) for shape in ((2, c), (c, 2), (c, 2)))
    weights = [x, w1, wb, wi]
    y, alpha = torch.ops.anrl_ext.gate_blend_apply(x, w1, None, wb, None, wi, None, None, None, None, None, None,
                                                   True, False, 0.1, 1e-5)
    got = torch.autograd.grad(y, weights, dy)
    z = F.relu(x.mean((2, 3)) @ w1.T)
    b, i = torch.sigmoid(z @ wb.T), torch.sigmoid(z @ wi.T)
    want_alpha = b / (b + i)
    a = want_alpha[:, :, None, None]
    want = a * F.batch_norm(x, None, None, training=True) + (1 - a) * F.instance_norm(x)
    for g, w in zip(got, torch.autograd.grad(want, weights, dy)):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(alpha, want_alpha, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(y, want, atol=1e-12, rtol=1e-12)


if __name__ == "__main__":
    main(sys.argv[1])
