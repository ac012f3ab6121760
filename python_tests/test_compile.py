"""torch.compile of models with anrl_ext layers: Dynamo records each layer's one op (its C++ autograd traced
on fake tensors, as torch.export does), the compiled model equals the eager one, and other batch and plane
sizes do not recompile once the sizes are dynamic."""
import pytest
import torch

import anrl_ext
from anrl_ext.ops import fast_blend
from helpers import LAYER_OP, check_compile, package_op, recording_backend

from conftest import FUSED_CPU_BACKENDS


@pytest.mark.parametrize("backend", FUSED_CPU_BACKENDS)
@pytest.mark.parametrize("kind", sorted(LAYER_OP))
@pytest.mark.parametrize("training", [True, False])
def test_compiled_layer_is_its_one_op(backend, kind, training):
    """Dynamo's graph holds the layer's one op where eager mode calls one (nothing else of the package's);
    outputs, gradients and running statistics as eager on three shapes, two compiles at most. Before the
    C++ backward passed H * W as a SymInt and compared shapes symbolically, tracing it fixed the batch and
    plane sizes, and every new shape compiled again. The one op runs the eager call's kernels: the same bits
    (BIN's composed middle is aten ops, equal to float32 rounding)."""
    ops = check_compile(backend, kind, training, tol=1e-4 if LAYER_OP[kind] == "moments" else 0.0)
    want = {package_op(backend, kind)}
    assert ops == want if LAYER_OP[kind] != "moments" else want < ops, ops


@pytest.mark.parametrize("backend", FUSED_CPU_BACKENDS)
@pytest.mark.parametrize("kind", ["bn", "afnm"])
def test_compiled_layer_on_an_input_without_gradient(backend, kind):
    """The layer first, on an input that needs no gradient: the backward computes no dx (blend_apply's
    reduce and middle only), and passes H * W to the middle as it traces, without fixing it."""
    ops = check_compile(backend, kind, True, tol=0.0, input_grad=False)
    assert ops == {package_op(backend, kind)}, ops


def test_compiled_layer_with_inductor():
    """Inductor's program runs the layer's kernels too, with its own code for the conv and relu around it:
    equal to float32 rounding."""
    check_compile("cpu", "afnm", True, compiler="inductor", tol=1e-5)


def test_compile_one_op_switch_traces_the_composed_path(monkeypatch):
    """fast_blend.COMPILE_ONE_OP = False (the benchmarks' comparison) traces moments, the middle in aten ops
    and affine, as before the one-op paths were compiled; it gives the same outputs and gradients."""
    monkeypatch.setattr(fast_blend, "COMPILE_ONE_OP", False)
    ops = check_compile("cpu", "afnm", True, tol=1e-4)  # the middle in aten ops: another float32 rounding
    assert {"anrl_ext.moments.default", "anrl_ext.affine.default"} <= ops, ops
    assert "anrl_ext.gate_blend_apply.default" not in ops, ops


@pytest.mark.parametrize("alpha_shape", [(4, 6), (6,), ()])
def test_compiled_functional_op_with_alpha_gradient(alpha_shape):
    """adaptive_norm with a learned alpha tensor, compiled: one blend_apply in the graph; alpha's gradient
    summed to its own shape, x's, the weights', and the running statistics as eager."""
    torch._dynamo.reset()
    graphs = []
    c = 6
    w, b = torch.rand(c) + 0.5, torch.randn(c)
    alpha = torch.rand(alpha_shape)
    inputs = [alpha, w, b, w.flip(0), b.flip(0)]

    def op(x, alpha, wb, bb, wi, bi, running_mean, running_var):
        return anrl_ext.adaptive_norm(x, alpha, wb, bb, wi, bi, running_mean, running_var, training=True)

    compiled = torch.compile(op, backend=recording_backend(graphs, "eager"), fullgraph=True)
    x = torch.randn(4, c, 5, 7) * 3 - 1
    results = []
    for fn in (compiled, op):
        leaves = [t.clone().requires_grad_() for t in [x, *inputs]]
        running = [torch.zeros(c), torch.ones(c)]
        y = fn(*leaves, *running)
        results.append([y, *torch.autograd.grad(y.square().sum(), leaves), *running])
    for got, want in zip(*results, strict=True):  # the same kernels: the same bits
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert [g & {"anrl_ext.blend_apply.default"} for g in graphs] == [{"anrl_ext.blend_apply.default"}], graphs


def test_compiled_inference_is_the_one_op():
    """An eval-mode model compiled for inference (torch.no_grad, as deployed): the layer's one op in the
    graph, the eager outputs, and batch 1 then other batches with one recompile (dynamic) at most."""
    from torch import nn

    torch._dynamo.reset()
    graphs = []
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), anrl_ext.AFNM(8, reduction=2), nn.ReLU()).eval()
    compiled = torch.compile(model, backend=recording_backend(graphs, "inductor"))
    with torch.no_grad():
        for n in (1, 5, 3):
            x = torch.randn(n, 3, 9, 9)
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
    assert len(graphs) <= 2 and all("anrl_ext.gate_blend_apply.default" in g for g in graphs), graphs
