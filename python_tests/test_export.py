"""torch.export of models with anrl_ext layers: the exported program equals the module, saves, loads,
takes other shapes; set_backend("reference") gives a graph of aten ops only."""
import copy

import pytest
import torch
from torch import nn
from torch.export import Dim

import anrl_ext

from conftest import FUSED_CPU_BACKENDS

KINDS = ["afnm", "bin", "half", "ibn", "bn", "in"]


def small_model(kind, backend):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), anrl_ext.make_norm(kind, 8, backend=backend), nn.ReLU())
    with torch.no_grad():  # running statistics away from their initial values, so eval mode reads them
        for _ in range(3):
            model(torch.randn(4, 3, 7, 9) * 2 + 1)
    return model


def called_ops(program):
    return {str(n.target) for n in program.graph.nodes if n.op == "call_function"}


@pytest.mark.parametrize("backend", FUSED_CPU_BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("training", [False, True])
def test_exported_program_equals_the_module_after_save_and_load(backend, kind, training, tmp_path):
    model = small_model(kind, backend).train(training)
    twin = copy.deepcopy(model)
    x = torch.randn(3, 3, 7, 9)
    program = torch.export.export(twin, (x,), dynamic_shapes=({0: Dim("n", min=2), 2: Dim("h"), 3: Dim("w")},))
    assert any(op.startswith("anrl_ext.") for op in called_ops(program))  # the package's kernels, not a fallback
    torch.export.save(program, tmp_path / "model.pt2")
    loaded = torch.export.load(tmp_path / "model.pt2").module()
    for shape in [(3, 3, 7, 9), (5, 3, 6, 11)]:  # the traced shape and another one
        x = torch.randn(shape)
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-5)
    buffers = dict(loaded.named_buffers())
    for name, want in model.named_buffers():  # training: running statistics updated alike
        if name.endswith("running_mean") or name.endswith("running_var"):
            torch.testing.assert_close(buffers[name], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_reference_backend_exports_plain_aten_ops(kind):
    model = anrl_ext.set_backend(small_model(kind, "auto"), "reference").eval()
    x = torch.randn(2, 3, 7, 9)
    program = torch.export.export(copy.deepcopy(model), (x,))
    ops = called_ops(program)
    assert ops and all(op.startswith("aten.") for op in ops), ops
    torch.testing.assert_close(program.module()(x), anrl_ext.set_backend(model, "cpu")(x), rtol=1e-5, atol=1e-5)


def test_set_backend_reaches_every_layer_and_names_a_bad_backend():
    model = nn.Sequential(anrl_ext.AFNM(4), nn.Sequential(anrl_ext.IBN(4), nn.BatchNorm2d(4)))
    assert anrl_ext.set_backend(model, "reference") is model
    assert [m.backend for m in model.modules() if hasattr(m, "backend")] == ["reference", "reference"]
    with pytest.raises(ValueError, match="unknown backend 'fast'.*'triton'"):
        anrl_ext.set_backend(model, "fast")
