"""torch.export of models with anrl_ext layers: the exported program equals the module, saves, loads,
takes other shapes; set_backend("reference") gives a graph of aten ops only, and an ONNX model that
ONNX Runtime runs to the module's outputs."""
import copy
import os

import pytest
import torch
from torch import nn

import anrl_ext
from helpers import LAYER_OP, check_export, check_jit_trace, exported_ops, package_op, package_ops

from conftest import FUSED_CPU_BACKENDS

KINDS = ["afnm", "bin", "half", "ibn", "bn", "in"]


@pytest.mark.parametrize("backend", FUSED_CPU_BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("training", [False, True])
def test_exported_program_equals_the_module_after_save_and_load(backend, kind, training, tmp_path):
    """The program holds the layer's one op where eager mode calls one (a single node whatever the
    batch: export's symbolic batch is not fixed by the op's C++), and runs as the module does."""
    ops = check_export(backend, kind, training, tmp_path / "model.pt2")
    want = {package_op(backend, kind)}
    assert ops == want if LAYER_OP[kind] != "moments" else want < ops, ops


def test_strict_export_and_the_composed_path_still_export(tmp_path):
    """torch.export with strict=True (dynamo) records the layer's one op as the default export does, with a
    dynamic batch (the gate-size choice adds no guard on it); with the one-op paths switched off
    (fast_blend.ENABLED, the benchmarks' composed programs) it records moments / affine and the middle in
    aten ops. Each runs as the module does."""
    from anrl_ext.ops import fast_blend

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), anrl_ext.AFNM(8, reduction=2), nn.ReLU()).eval()
    x = torch.randn(3, 3, 7, 9)
    dims = ({0: torch.export.Dim("n", min=2)},)
    strict = torch.export.export(model, (x,), dynamic_shapes=dims, strict=True)
    ops = package_ops(exported_ops(strict))
    assert ops == {"anrl_ext.gate_blend_apply.default"}, ops
    fast_blend.ENABLED = False
    try:
        composed = torch.export.export(model, (x,), dynamic_shapes=dims)
    finally:
        fast_blend.ENABLED = True
    ops = exported_ops(composed)
    assert {"anrl_ext.moments.default", "anrl_ext.affine.default"} <= ops and "anrl_ext.gate_blend_apply.default" \
        not in ops, ops
    for program in (strict, composed):
        other = torch.randn(5, 3, 7, 9)
        torch.testing.assert_close(program.module()(other), model(other), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["afnm", "ibn"])
def test_aot_inductor_compiles_the_exported_layer(kind, tmp_path):
    """AOTInductor (torch._inductor.aoti_compile_and_package) of a program with the layer's one op: the op
    runs through AOTInductor's proxy executor, and the compiled model equals the module for batch and plane
    sizes other than the traced ones. Before the gated forward was one op with a fake kernel, lowering ran
    the op's C++ autograd on fake tensors, which fixed the batch at the traced 2."""
    from torch.export import Dim

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), anrl_ext.make_norm(kind, 8, backend="cpu"), nn.ReLU(),
                          nn.Conv2d(8, 4, 3, padding=1))
    with torch.no_grad():  # running statistics off their initial values
        model(torch.randn(4, 3, 7, 9) * 2 + 1)
    model.eval()
    program = torch.export.export(model, (torch.randn(2, 3, 7, 9),),
                                  dynamic_shapes=({0: Dim("n", min=1, max=64), 2: Dim("h"), 3: Dim("w")},))
    path = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / "model.pt2"))
    compiled = torch._inductor.aoti_load_package(path)
    with torch.no_grad():
        for shape in [(2, 3, 7, 9), (5, 3, 7, 9), (3, 3, 6, 11)]:
            x = torch.randn(shape)
            got, want = compiled(x), model(x)
            assert got.shape == want.shape, (shape, got.shape)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="interpreted kernels cannot take fake tensors")
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("alpha", ["function", "gate"])
def test_triton_ops_stay_whole_in_an_exported_program(training, alpha, tmp_path):
    """torch.export records the Triton backend's registered ops (namespace anrl_ext_triton), not the
    kernel launches inside them, and the program saves and loads with them: moments / affine for an
    alpha function the kernels do not compute, the one op gate_blend_apply for AFNM's gate. Traced on
    CPU tensors: export runs the ops' fake kernels only, so no GPU is needed (test_gpu runs the loaded
    program)."""
    pytest.importorskip("triton")
    import importlib

    from torch.export import Dim

    blend = importlib.import_module("anrl_ext.ops.adaptive_norm").blend

    class Blend(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = anrl_ext.AFNM(8, reduction=2)

        def forward(self, x):
            lay = self.layer
            alpha_fn, params, slots = ((lambda mean: 0.3), [], None) if alpha == "function" else \
                (lay.alpha_fn, lay.alpha_params(), lay.kernel_gate_slots)
            return blend(x, "triton", alpha_fn, params, lay.bn_weight, lay.bn_bias, lay.in_weight, lay.in_bias,
                         lay.running_mean, lay.running_var, training, 0.1, 1e-5, None, slots)[0]

    program = torch.export.export(Blend(), (torch.randn(3, 8, 7, 9),),
                                  dynamic_shapes=({0: Dim("n", min=2), 2: Dim("h"), 3: Dim("w")},))
    ops = exported_ops(program)
    if alpha == "function":
        assert {"anrl_ext_triton.moments.default", "anrl_ext_triton.affine.default"} <= ops, ops
    else:
        assert "anrl_ext_triton.gate_blend_apply.default" in ops and not any("moments" in op for op in ops), ops
    assert not any("triton_kernel_wrapper" in op for op in ops), ops
    torch.export.save(program, tmp_path / "model.pt2")
    assert exported_ops(torch.export.load(tmp_path / "model.pt2")) == ops


@pytest.mark.parametrize("backend", FUSED_CPU_BACKENDS + ["reference"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("training", [False, True])
def test_jit_trace_equals_the_module(backend, kind, training):
    """torch.jit.trace records the registered ops (the eager fast path records nothing it could replay)."""
    check_jit_trace(backend, kind, training)


@pytest.mark.parametrize("backend", FUSED_CPU_BACKENDS + ["reference"])
def test_jit_trace_of_the_functional_op(backend):
    """adaptive_norm under torch.jit.trace: no TracerWarning from its shape checks, and the traced function
    gives the op's output for another batch and plane size, with an (N, C) alpha of the new batch."""
    import warnings

    def blend(x, alpha):
        return anrl_ext.adaptive_norm(x, alpha, backend=backend)

    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(blend, (torch.randn(3, 8, 5, 5), torch.rand(3, 8)), check_trace=False)
    assert not [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    x, alpha = torch.randn(4, 8, 6, 7), torch.rand(4, 8)
    torch.testing.assert_close(traced(x, alpha), blend(x, alpha), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_jit_script_says_what_to_use_instead(kind):
    """torch.jit.script of a network holding a layer stops on the layer, naming it and what works instead,
    not on a type annotation TorchScript cannot read deep inside the forward."""
    import warnings

    model = nn.Sequential(nn.Conv2d(3, 8, 3), anrl_ext.make_norm(kind, 8), nn.ReLU())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's own deprecation
        with pytest.raises(RuntimeError, match=rf"torch.jit.script cannot compile anrl_ext's "
                                               rf"{type(model[1]).__name__} layer.*torch.export.export"):
            torch.jit.script(model)


@pytest.mark.parametrize("kind", KINDS)
def test_reference_backend_exports_plain_aten_ops(kind):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), anrl_ext.make_norm(kind, 8), nn.ReLU())
    model(torch.randn(4, 3, 7, 9))  # running statistics off their initial values
    anrl_ext.set_backend(model, "reference").eval()
    x = torch.randn(2, 3, 7, 9)
    program = torch.export.export(copy.deepcopy(model), (x,))
    ops = exported_ops(program)
    assert ops and all(op.startswith("aten.") for op in ops), ops
    torch.testing.assert_close(program.module()(x), anrl_ext.set_backend(model, "cpu")(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_export_with_the_reference_backend_runs_in_onnxruntime(kind):
    import onnxruntime
    from torch.export import Dim

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), anrl_ext.make_norm(kind, 8), nn.ReLU())
    model(torch.randn(4, 3, 7, 9) * 2 + 1)  # running statistics off their initial values
    model.eval()
    program = torch.onnx.export(anrl_ext.set_backend(model, "reference"), (torch.randn(2, 3, 7, 9),), dynamo=True,
                                input_names=["x"], output_names=["y"],
                                dynamic_shapes=({0: Dim("n", min=2), 2: Dim("h"), 3: Dim("w")},))
    nodes = program.model_proto.graph.node
    assert {n.domain for n in nodes} <= {"", "ai.onnx"} and "Conv" in {n.op_type for n in nodes}  # standard ops
    session = onnxruntime.InferenceSession(program.model_proto.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    anrl_ext.set_backend(model, "auto")  # compare with the fused layer
    for shape in [(2, 3, 7, 9), (5, 3, 6, 11)]:
        x = torch.randn(shape)
        (y,) = session.run(None, {"x": x.numpy()})
        torch.testing.assert_close(torch.from_numpy(y), model(x).detach(), rtol=1e-5, atol=1e-5)


def test_set_backend_reaches_every_layer_and_names_a_bad_backend():
    model = nn.Sequential(anrl_ext.AFNM(4), nn.Sequential(anrl_ext.IBN(4), nn.BatchNorm2d(4)))
    assert anrl_ext.set_backend(model, "reference") is model
    assert [m.backend for m in model.modules() if hasattr(m, "backend")] == ["reference", "reference"]
    with pytest.raises(ValueError, match="unknown backend 'fast'.*'triton'"):
        anrl_ext.set_backend(model, "fast")
