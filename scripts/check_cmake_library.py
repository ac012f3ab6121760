"""Load the libtorch operator library (CMakeLists.txt) without the Python package and check two of
its ops against torch: moments, and blend_apply with its C++ first-order backward.

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
    print(f"{path}: moments and blend_apply (forward, first-order backward) match torch")


if __name__ == "__main__":
    main(sys.argv[1])
