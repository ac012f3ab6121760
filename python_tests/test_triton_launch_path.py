"""The eager Triton path launches its kernels bare: no higher-order-op dispatch.

wrap_triton called outside a triton_op routes each launch through a
higher-order op (for tracing), which costs ~170 us of host time per launch,
more than the launch itself. The first-order path (fast_blend) calls the
backend's `direct` primitives, which must hand their kernels straight to
Triton. Runs in this (non-interpreted) process with the launch itself stubbed
out, so no GPU is needed; under TRITON_INTERPRET=1 wrap_triton never
dispatches, so there is nothing to check.
"""
import os

import pytest
import torch

pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1",
                                reason="interpreted kernels never take the higher-order-op path")


@pytest.fixture
def launches(monkeypatch):
    """Names of the kernels launched; a launch through the higher-order op fails."""
    from torch._higher_order_ops import triton_kernel_wrap
    from triton.runtime.jit import JITFunction

    launched = []
    monkeypatch.setattr(JITFunction, "run",
                        lambda self, *args, grid, warmup, **kwargs: launched.append(self.fn.__name__))

    def through_hop(*args, **kwargs):
        raise AssertionError("launch dispatched as a higher-order op")

    monkeypatch.setattr(triton_kernel_wrap.tracing_triton_hopifier_singleton, "call_triton_kernel", through_hop)
    return launched


def test_direct_primitives_launch_bare_kernels(launches):
    from anrl_ext.ops import triton_backend

    P = triton_backend.PRIMITIVES.direct
    x, m = torch.randn(2, 3, 5, 7), torch.zeros(2, 3)
    for xx in (x, x.contiguous(memory_format=torch.channels_last)):
        P.moments(xx)
        P.reduce(xx, xx, m)
        P.affine(xx, m, m, m)
        P.affine2(xx, xx, m, m, m, m)
    assert launches == ["_moments_kernel", "_reduce_kernel", "_affine_kernel", "_affine2_kernel",
                        "_moments_nhwc_kernel", "_reduce_nhwc_kernel", "_affine_nhwc_kernel", "_affine2_nhwc_kernel"]


def test_wrap_triton_outside_triton_op_is_caught(launches):
    """The check above can fail: the same primitives launched through wrap_triton
    (as the registered ops are built) take the higher-order-op path here."""
    from torch.library import wrap_triton

    from anrl_ext.ops import triton_backend

    moments = triton_backend._primitive_functions(wrap_triton)[0]
    with pytest.raises(AssertionError, match="higher-order op"):
        moments(torch.randn(2, 3, 4, 4))
    assert launches == []


@pytest.mark.parametrize("m, block", [(1, 128), (196, 256), (256, 256), (257, 512), (1024, 1024), (16384, 1024)])
def test_plane_block(m, block):
    from anrl_ext.ops import triton_blend

    assert triton_blend.plane_block(m) == block
