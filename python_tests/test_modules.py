"""nn modules: AFNM, the Table 4 baselines, convert_batchnorm, torch.compile."""
import copy
import numpy as np
import pytest
import torch
from torch import nn

import anrl_ext
from anrl_ext.nn import GATES
import helpers
from helpers import (MIXED_DTYPES, anrl_ops_run, check_channels_last_accuracy, check_gated_native_autograd_op,
                     check_graph_replay, check_mixed_dtypes, check_norm_matches_reference, check_wide_afnm_layer,
                     check_sync_of_one_process, max_err, spy_on_primitives)

from conftest import FUSED_CPU_BACKENDS

BACKENDS = FUSED_CPU_BACKENDS


@pytest.mark.parametrize("gate", sorted(GATES))
def test_gate_weights_are_its_parameters_in_order(gate):
    """weights() (what the layer passes to alpha_fn) is parameters() in order, and follows
    functional_call's replacements, as meta-learning's fast weights need."""
    m = anrl_ext.AFNM(8, reduction=2, gate=gate)
    assert all(a is b for a, b in zip(m.gate.weights(), m.gate.parameters(), strict=True))

    class Weights(nn.Module):
        def __init__(self, gate):
            super().__init__()
            self.gate = gate

        def forward(self):
            return self.gate.weights()

    fast = {f"gate.{n}": p.detach() + 1 for n, p in m.gate.named_parameters()}
    got = torch.func.functional_call(Weights(m.gate), fast, ())
    assert all(a is b for a, b in zip(got, fast.values(), strict=True))


def test_members_reads_as_getattr():
    """members() reads from the module's dicts what getattr would give: parameters, buffers (None
    ones too), submodules, plain attributes, a parametrization's property; an unknown name raises
    getattr's AttributeError."""
    from torch.nn.utils import parametrize
    from anrl_ext.nn.members import members

    m = anrl_ext.AFNM(6, reduction=2, track_running_stats=False)
    names = ("bn_weight", "in_bias", "running_mean", "gate", "eps", "num_features")
    assert all(a is b for a, b in zip(members(m, *names), [getattr(m, n) for n in names], strict=True))
    assert members(m, "running_var") == (None,)

    class Doubled(nn.Module):
        def forward(self, w):
            return 2 * w

    parametrize.register_parametrization(m, "bn_weight", Doubled())
    got, = members(m, "bn_weight")
    assert "bn_weight" not in m._parameters
    torch.testing.assert_close(got, 2 * m.parametrizations.bn_weight.original)
    with pytest.raises(AttributeError, match="no_such"):
        members(m, "no_such")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["afnm", "bn", "sigmoid2"])
def test_parametrized_weights_are_what_the_layer_uses(backend, kind):
    """A parametrization (weight norm, a constraint) replaces a parameter by a property; the layer's
    forward reads its tensors past nn.Module.__getattr__ (members) and must still see the property's
    value: the same output and gradients as a layer holding that value as its parameter."""
    from torch.nn.utils import parametrize

    def build():
        torch.manual_seed(3)
        if kind == "sigmoid2":
            return anrl_ext.AFNM(6, reduction=2, gate="sigmoid2", backend=backend).double()
        return anrl_ext.make_norm(kind, 6, backend=backend).double()

    class Scaled(nn.Module):
        def forward(self, w):
            return 0.5 * w + 0.25

    plain, constrained = build(), build()
    with torch.no_grad():
        for p in plain.parameters():
            p.uniform_(-1, 1)
        if kind == "sigmoid2":  # hidden units alive, so that fc2.weight has a gradient
            plain.gate.fc1.bias.abs_()
    constrained.load_state_dict(plain.state_dict())
    if kind == "sigmoid2":
        layer, name, owner = "gate.fc2.weight", "weight", constrained.gate.fc2
        target = plain.gate.fc2.weight
    else:
        layer, name, owner, target = "bn_weight", "bn_weight", constrained, plain.bn_weight
    parametrize.register_parametrization(owner, name, Scaled())
    with torch.no_grad():
        target.mul_(0.5).add_(0.25)
    x = torch.randn(4, 6, 5, 3, dtype=torch.float64)
    dy, da = torch.randn_like(x), torch.randn(4, 6, dtype=torch.float64)  # a plain sum's BN weight gradient is 0
    (y1, a1), (y2, a2) = plain(x, return_alpha=True), constrained(x, return_alpha=True)
    assert max_err(y1, y2) < 1e-12 and max_err(a1, a2) < 1e-12, layer
    g1, = torch.autograd.grad((y1 * dy).sum() + (a1 * da).sum(), target)
    original = getattr(owner.parametrizations, name).original
    g2, = torch.autograd.grad((y2 * dy).sum() + (a2 * da).sum(), original)
    assert g1.abs().max() > 0.1, layer  # a gradient the comparison can tell apart from a wrong one
    assert max_err(0.5 * g1, g2) < 1e-10, layer


@pytest.mark.parametrize("gate", sorted(GATES))
def test_alpha_is_half_at_init(gate):
    m = anrl_ext.AFNM(32, gate=gate)
    y, alpha = m(torch.randn(4, 32, 5, 5) * 3 + 1, return_alpha=True)
    assert alpha.shape == (4, 32)
    torch.testing.assert_close(alpha, torch.full_like(alpha, 0.5))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gate", sorted(GATES))
@pytest.mark.parametrize("training", [True, False])
def test_afnm_matches_reference_module(backend, gate, training):
    torch.manual_seed(1)
    fused = anrl_ext.AFNM(20, reduction=4, gate=gate, backend=backend).double()
    for p in fused.gate.parameters():  # move away from alpha = 0.5
        nn.init.normal_(p, std=0.3)
    ref = anrl_ext.AFNM(20, reduction=4, gate=gate, backend="reference").double()
    ref.load_state_dict(fused.state_dict())
    fused.train(training), ref.train(training)
    x = torch.randn(6, 20, 7, 9, dtype=torch.float64) * 2 + 1
    outs = []
    for m in (fused, ref):
        xs = x.clone().requires_grad_()
        y, alpha = m(xs, return_alpha=True)
        loss = (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum() + alpha.pow(2).sum()
        outs.append((y, alpha, torch.autograd.grad(loss, [xs, *m.parameters()])))
    assert max_err(outs[0][0], outs[1][0]) < 1e-12
    assert max_err(outs[0][1], outs[1][1]) < 1e-12
    assert 0 < outs[0][1].min() and outs[0][1].max() < 1
    for g1, g2 in zip(outs[0][2], outs[1][2]):
        assert max_err(g1, g2) < 1e-10
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(fused, name), getattr(ref, name))


@pytest.mark.parametrize("backend", BACKENDS)
def test_afnm_gradgradcheck_through_gate(backend):
    m = anrl_ext.AFNM(6, reduction=2, backend=backend).double()
    for p in m.gate.parameters():
        nn.init.normal_(p, std=0.5)
    names = [n for n, _ in m.named_parameters()]
    x = torch.randn(3, 6, 4, 3, dtype=torch.float64, requires_grad=True)

    def f(x, *params):
        return torch.func.functional_call(m, dict(zip(names, params)), (x,))

    params = tuple(p.detach().clone().requires_grad_() for p in m.parameters())
    assert torch.autograd.gradcheck(f, (x, *params))
    assert torch.autograd.gradgradcheck(f, (x, *params))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_running_stats_follow_batchnorm(backend, momentum):
    afnm = anrl_ext.AFNM(8, momentum=momentum, backend=backend)
    bn = nn.BatchNorm2d(8, momentum=momentum)
    for _ in range(4):
        x = torch.randn(5, 8, 6, 6) * torch.rand(8).view(1, 8, 1, 1) * 3 + torch.randn(8).view(1, 8, 1, 1)
        afnm(x), bn(x)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(afnm, name), getattr(bn, name), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bn_and_in_modules_equal_torch(backend):
    x = torch.randn(4, 6, 9, 9) * 2 + 3
    bn, tbn = anrl_ext.BN(6, backend=backend), nn.BatchNorm2d(6)
    inn, tin = anrl_ext.IN(6, backend=backend), nn.InstanceNorm2d(6, affine=True)
    for m in (bn, tbn, inn, tin):
        for p in m.parameters():
            nn.init.uniform_(p, 0.5, 1.5) if p.dim() else None
    with torch.no_grad():
        tbn.weight.copy_(bn.bn_weight), tbn.bias.copy_(bn.bn_bias)
        tin.weight.copy_(inn.in_weight), tin.bias.copy_(inn.in_bias)
    for train in (True, False):
        for ours, theirs in ((bn, tbn), (inn, tin)):
            ours.train(train), theirs.train(train)
            assert max_err(ours(x), theirs(x)) < 1e-4
    assert inn.running_mean is None and inn.in_weight is not None and inn.bn_weight is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_ibn_half_in_half_bn(backend):
    x = torch.randn(4, 6, 5, 5) * 2 + 1
    ibn = anrl_ext.IBN(6, backend=backend)
    y, alpha = ibn(x, return_alpha=True)
    assert alpha[:, :3].eq(0).all() and alpha[:, 3:].eq(1).all()
    ref_in = nn.functional.instance_norm(x[:, :3], eps=ibn.eps)
    ref_bn = nn.functional.batch_norm(x[:, 3:], None, None, training=True, eps=ibn.eps)
    assert max_err(y, torch.cat([ref_in, ref_bn], 1)) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_bin_alpha_kept_in_unit_interval(backend):
    m = anrl_ext.BIN(4, backend=backend)
    with torch.no_grad():
        m.rho.copy_(torch.tensor([-1.0, 0.25, 0.75, 2.0]))
    _, alpha = m(torch.randn(3, 4, 5, 5), return_alpha=True)
    torch.testing.assert_close(alpha[0], torch.tensor([0.0, 0.25, 0.75, 1.0]))
    half = anrl_ext.INBNHalf(4, backend=backend)
    _, a = half(torch.randn(3, 4, 5, 5), return_alpha=True)
    assert a.eq(0.5).all()


@pytest.mark.parametrize("kind", ["bn", "in", "half", "bin", "ibn", "afnm"])
@pytest.mark.parametrize("training", [True, False])
def test_make_norm_all_backends_agree(kind, training):
    for backend in BACKENDS:
        check_norm_matches_reference(kind, training, backend)


@pytest.mark.parametrize("kind", ["op", "afnm", "bn", "ibn"])
def test_graph_replay_check_on_the_cpu(kind):
    """The GPU test of CUDA graph capture (test_gpu.py) runs its check here with each replay an eager
    call (the CPU has no graphs): new inputs and weights reach the layer, running statistics compared."""
    check_graph_replay("cpu", kind)


def test_graph_replay_check_fails_on_a_stale_replay(monkeypatch):
    """The check can fail: a replay that returns the first replay's outputs (a graph that read stale
    inputs) does not pass it."""
    def stale(step, device):
        first = []

        def replay():
            if not first:
                first.append(tuple(t.clone() for t in step()))
            return first[0]
        return replay

    monkeypatch.setattr(helpers.cases, "graph_replay", stale)
    with pytest.raises(AssertionError):
        check_graph_replay("cpu", "afnm")


def test_convert_batchnorm_keeps_statistics():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Sequential(nn.Conv2d(8, 4, 3), nn.BatchNorm2d(4)))
    for _ in range(3):
        model(torch.randn(4, 3, 10, 10))
    bn = model[1]
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2), bn.bias.uniform_(-1, 1)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    model.eval()
    x = torch.randn(2, 3, 10, 10)
    converted = anrl_ext.convert_batchnorm(model, gate="sigmoid")
    assert isinstance(converted[1], anrl_ext.AFNM) and isinstance(converted[3][1], anrl_ext.AFNM)
    assert converted[1].gate_kind == "sigmoid" and not converted[1].training
    torch.testing.assert_close(converted[1].bn_weight.detach(), before["weight"])
    torch.testing.assert_close(converted[1].running_var, before["running_var"])
    assert int(converted[1].num_batches_tracked) == 3
    assert not any(isinstance(m, nn.BatchNorm2d) for m in converted.modules())
    # With the IN affine set to reproduce nothing, alpha = 1 would be exactly the old BN:
    only_bn = anrl_ext.adaptive_norm(converted[0](x), 1.0, converted[1].bn_weight, converted[1].bn_bias,
                                     running_mean=converted[1].running_mean,
                                     running_var=converted[1].running_var, training=False)
    assert max_err(only_bn, bn.eval()(converted[0](x))) < 1e-5


@pytest.mark.parametrize("norm", ["bn", "in", "half", "bin", "ibn", "afnm"])
def test_convert_batchnorm_to_each_norm(norm):
    """Every BatchNorm2d becomes the named layer; its BN branch takes the BN's eps, momentum,
    affine and running statistics; norm="bn" computes what the BatchNorm2d did, in training
    (running statistics included) and in eval, values and gradients."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6, eps=1e-3, momentum=0.2), nn.ReLU(),
                          nn.Sequential(nn.Conv2d(6, 4, 3), nn.BatchNorm2d(4, momentum=None))).double()
    for _ in range(2):
        model(torch.randn(4, 3, 9, 9, dtype=torch.float64))
    with torch.no_grad():
        for bn in (model[1], model[3][1]):
            bn.weight.uniform_(0.5, 2), bn.bias.uniform_(-1, 1)
    original = copy.deepcopy(model)
    converted = anrl_ext.convert_batchnorm(model, norm, backend="cpu")
    layers = [converted[1], converted[3][1]]
    assert all(type(m) is anrl_ext.nn.NORMS[norm] for m in layers)
    assert (layers[0].eps, layers[0].momentum, layers[1].momentum) == (1e-3, 0.2, None)
    assert layers[0].bn_weight is None if norm == "in" else torch.equal(layers[0].bn_weight, original[1].weight)
    if norm != "in":
        assert torch.equal(layers[1].running_var, original[3][1].running_var)
        assert int(layers[1].num_batches_tracked) == 2
    assert all(p.dtype == torch.float64 for p in converted.parameters())
    if norm != "bn":
        return
    for training in (True, False):
        original.train(training), converted.train(training)
        x = torch.randn(3, 3, 9, 9, dtype=torch.float64)
        want, got = original(x), converted(x)
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
        for a, b in zip(torch.autograd.grad(got.sum(), list(converted.parameters())),
                        torch.autograd.grad(want.sum(), list(original.parameters()))):
            torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(converted[3][1].running_mean, original[3][1].running_mean, atol=1e-12, rtol=0)


@pytest.mark.parametrize("norm", ["bn", "in", "half", "bin", "ibn", "afnm"])
@pytest.mark.parametrize("affine, track_running_stats", [(False, True), (True, False), (False, False)])
def test_convert_batchnorm_keeps_affine_and_running_statistics_flags(norm, affine, track_running_stats):
    """A BN without affine gives a layer without affine weights; one without running statistics, a layer
    without them, which normalises with the batch's statistics in eval mode as the BN does: norm="bn" computes
    what the BN did in both modes, values and gradients. Every backend agrees with the reference."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6, affine=affine,
                                                             track_running_stats=track_running_stats)).double()
    model(torch.randn(4, 3, 9, 9, dtype=torch.float64))
    converted = anrl_ext.convert_batchnorm(copy.deepcopy(model), norm, backend="reference")
    layer = converted[1]
    assert (layer.bn_weight is None) == (not affine or norm == "in")
    assert (layer.in_weight is None) == (not affine or norm == "bn")
    assert (layer.running_mean is None) == (not track_running_stats or norm == "in")
    if not affine:  # alpha's parameters only
        assert {n for n, _ in layer.named_parameters()} <= {"rho", "gate.fc", "gate.fc_bn", "gate.fc_in"}
    x = torch.randn(3, 3, 9, 9, dtype=torch.float64)
    for training in (True, False):
        model.train(training), converted.train(training)
        want = converted(x)
        for backend in BACKENDS:
            fused = anrl_ext.set_backend(copy.deepcopy(converted), backend)
            torch.testing.assert_close(fused(x), want, atol=1e-10, rtol=1e-10)
        if norm == "bn":  # one call each: a call in training mode updates the running statistics
            bn_output = model(x)
            torch.testing.assert_close(want, bn_output, atol=1e-10, rtol=1e-10)
            for a, b in zip(torch.autograd.grad(want.sum(), list(converted.parameters())),
                            torch.autograd.grad(bn_output.sum(), list(model.parameters()))):
                torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("norm", ["afnm", "half", "in"])
def test_convert_sync_batchnorm(norm, backend):
    """An nn.SyncBatchNorm becomes the named layer as a BatchNorm2d does, synchronised over its
    process group (checked with two processes in test_distributed.py). Outside a process group
    it computes what the layer converted from a BatchNorm2d computes, as nn.SyncBatchNorm then
    does BatchNorm2d's work: values, running statistics and gradients, on every backend."""
    from anrl_ext.distributed import GatherMoments

    group = object()  # stands for a torch.distributed process group; never used outside one
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.SyncBatchNorm(6, momentum=0.2, process_group=group))
    plain = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6, momentum=0.2))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1), model[1].weight.uniform_(0.5, 2)
    plain.load_state_dict(model.state_dict())
    kwargs = {"reduction": 2} if norm == "afnm" else {}
    torch.manual_seed(0)
    synced = anrl_ext.convert_batchnorm(model, norm, backend=backend, sync_batchnorm=True, **kwargs).double()
    torch.manual_seed(0)
    local = anrl_ext.convert_batchnorm(plain, norm, backend=backend, **kwargs).double()
    assert type(synced[1]) is anrl_ext.nn.NORMS[norm] and local[1].gather_stats is None
    if norm == "in":  # no BN branch, nothing to synchronise
        assert synced[1].gather_stats is None
    else:
        gather = synced[1].gather_stats
        assert isinstance(gather, GatherMoments) and gather.group is group and not gather.same_rows
        assert "gather_stats=GatherMoments(" in repr(synced) and "gather_stats" not in repr(local)
        assert copy.deepcopy(synced)[1].gather_stats.group is group
        assert torch.equal(synced[1].running_mean, model[1].running_mean.double())
    x = torch.randn(4, 3, 9, 9, dtype=torch.float64)
    got, want = synced(x), local(x)
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    for a, b in zip(torch.autograd.grad((got ** 2).sum(), list(synced.parameters())),
                    torch.autograd.grad((want ** 2).sum(), list(local.parameters()))):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    for a, b in zip(synced.buffers(), local.buffers()):
        assert torch.equal(a, b)


def test_convert_batchnorm_leaves_sync_batchnorm_unless_told():
    """An nn.SyncBatchNorm may stand for a BatchNorm1d (convert_sync_batchnorm converts every
    dimension), which the 4-D layers cannot take: by default it stays, named in a warning."""
    model = nn.SyncBatchNorm.convert_sync_batchnorm(
        nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Flatten(), nn.BatchNorm1d(36)))
    with pytest.warns(UserWarning, match=r"left 2 nn.SyncBatchNorm layer\(s\) as they are \(1, 3\); "
                                         "pass sync_batchnorm=True"):
        converted = anrl_ext.convert_batchnorm(model)
    assert isinstance(converted[1], nn.SyncBatchNorm) and isinstance(converted[3], nn.SyncBatchNorm)
    assert converted(torch.randn(2, 3, 3, 3)).shape == (2, 36)
    with pytest.warns(UserWarning, match=r"\(the root\)"):
        assert isinstance(anrl_ext.convert_batchnorm(nn.SyncBatchNorm(4)), nn.SyncBatchNorm)
    converted = anrl_ext.convert_batchnorm(model, sync_batchnorm=True)
    assert isinstance(converted[1], anrl_ext.AFNM) and isinstance(converted[3], anrl_ext.AFNM)
    with pytest.raises(ValueError, match="expected a 4-D input"):  # what the default spares a 1-D layer
        converted(torch.randn(2, 3, 3, 3))


@pytest.mark.parametrize("backend", FUSED_CPU_BACKENDS)
def test_synchronised_layer_with_no_samples(backend):
    """With no samples a synchronised layer still gathers (the others wait for it) and takes its
    running statistics from what it gathered; its backward goes through the gather once, and
    refuses create_graph=True. (Two processes: test_distributed.py.)"""
    rows = torch.randn(5, 6, dtype=torch.float64)  # what "the other processes" hold
    calls = []

    def gather(mean, var):
        calls.append(mean.shape[0])
        return torch.cat([mean, rows]), torch.cat([var, rows.abs()])

    layer = anrl_ext.AFNM(6, reduction=2, backend=backend).double()
    layer.gather_stats = gather
    x = torch.zeros(0, 6, 4, 4, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    assert y.shape == x.shape and calls == [0]
    want = nn.BatchNorm2d(6).double()
    want.running_mean.mul_(0.9).add_(rows.mean(0), alpha=0.1)
    var = (rows.abs() + (rows - rows.mean(0)) ** 2).mean(0) * (5 * 16 / (5 * 16 - 1))
    want.running_var.mul_(0.9).add_(var, alpha=0.1)
    torch.testing.assert_close(layer.running_mean, want.running_mean, atol=1e-15, rtol=0)
    torch.testing.assert_close(layer.running_var, want.running_var, atol=1e-15, rtol=0)
    y.sum().backward()
    assert all(p.grad is not None and not p.grad.any() for p in layer.parameters())
    with pytest.raises(RuntimeError, match="no samples cannot be differentiated twice"):
        torch.autograd.grad(layer(x).sum(), x, create_graph=True)
    layer.eval()  # running statistics: nothing to gather
    layer(x)
    assert calls == [0, 0]


def test_synchronised_layer_on_the_reference_backend_is_refused():
    """The reference backend computes BN with aten's batch_norm, which cannot take gathered moments."""
    layer = anrl_ext.AFNM(4, reduction=2, backend="reference")
    layer.gather_stats = lambda mean, var: (mean, var)
    x = torch.randn(3, 4, 5, 5)
    with pytest.raises(NotImplementedError, match=r"synchronised BN statistics need a fused backend"):
        layer(x)
    layer.eval()(x)  # running statistics: nothing gathered
    anrl_ext.distributed.sync_batch_stats(layer.train())
    layer(x)  # outside a process group nothing is gathered either


def test_sync_batch_stats_switches_layers():
    from anrl_ext import distributed

    model = nn.Sequential(anrl_ext.AFNM(4, reduction=2), nn.Conv2d(4, 4, 1), anrl_ext.nn.make_norm("bin", 4))
    group = object()
    assert distributed.sync_batch_stats(model, group=group, same_rows=True) is model
    gathers = [model[0].gather_stats, model[2].gather_stats]
    assert all(g.group is group and g.same_rows for g in gathers) and not gathers[0].active()
    distributed.sync_batch_stats(model, enabled=False)
    assert model[0].gather_stats is None and model[2].gather_stats is None


def test_planes_of_every_process_must_agree():
    from anrl_ext.distributed import check_same_planes

    check_same_planes([25, 25, 0])  # 0: a process that did not say
    with pytest.raises(ValueError, match=r"same height x width .*: rank 0: 25, rank 2: 16$"):
        check_same_planes([25, 0, 16])


@pytest.mark.parametrize("backend", BACKENDS)
def test_afnm_without_running_stats_uses_batch_statistics_in_eval(backend):
    layer = anrl_ext.AFNM(6, reduction=2, backend=backend, track_running_stats=False)
    assert layer.running_mean is None and "running_mean" not in layer.state_dict()
    x = torch.randn(4, 6, 5, 5, dtype=torch.float64) * 3 + 2  # far from the default running mean 0, var 1
    layer.double()
    torch.testing.assert_close(layer.eval()(x), layer.train()(x), atol=1e-12, rtol=1e-12)
    tracking = anrl_ext.AFNM(6, reduction=2, backend=backend).double()
    tracking.load_state_dict(layer.state_dict(), strict=False)  # same weights, running mean 0 and var 1
    assert layer.eval()(x).sub(tracking.eval()(x)).abs().max() > 0.5


def test_convert_batchnorm_rejects_bad_arguments():
    model = nn.Sequential(nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="unknown normalization 'ibnb'"):
        anrl_ext.convert_batchnorm(model, "ibnb")
    with pytest.raises(ValueError, match="gate: AFNM's option"):
        anrl_ext.convert_batchnorm(model, "ibn", gate="sigmoid")
    assert isinstance(model[0], nn.BatchNorm2d)  # nothing converted
    with pytest.raises(TypeError, match="convert_batchnorm converts an nn.Module, got OrderedDict"):
        anrl_ext.convert_batchnorm(model.state_dict())  # a common slip: the weights for the network
    with pytest.raises(TypeError, match="set_backend sets the backend of an nn.Module's layers, got OrderedDict"):
        anrl_ext.set_backend(model.state_dict(), "cpu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_saved_tensors_are_x_plus_small(backend):
    # Nothing of tensor size is saved beyond x itself.
    m = anrl_ext.AFNM(16, backend=backend)
    x = torch.randn(8, 16, 16, 16, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        m(x).sum()
    big = [t for t in saved if t.numel() >= x.numel()]
    assert len(big) == 1 and big[0].data_ptr() == x.data_ptr()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
def test_torch_compile_first_order(backend, compiler):
    torch._dynamo.reset()
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), anrl_ext.AFNM(8, reduction=2, backend=backend),
                          nn.ReLU(), nn.Conv2d(8, 4, 3))
    eager = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(4, 3, 12, 12)
    compiled = torch.compile(model, backend=compiler, fullgraph=True)
    y = compiled(x)
    y.square().mean().backward()
    grads_c = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for p, e in zip(model.parameters(), eager):
        p.data.copy_(e)
    model[1].num_batches_tracked.zero_()
    y2 = model(x)
    y2.square().mean().backward()
    torch.testing.assert_close(y, y2, atol=1e-5, rtol=1e-5)
    for g1, p in zip(grads_c, model.parameters()):
        torch.testing.assert_close(g1, p.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", ["reference"] + BACKENDS)
@pytest.mark.parametrize("n", [3, 1])
def test_torch_compile_channels_last(backend, n):
    """torch.compile(fullgraph=True) of a layer on channels_last input, the reference backend too
    (whose CPU batch_norm detour, output layout and N = 1 gradient guard are Python decisions
    dynamo must trace): the eager layer's output, layout and gradients."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = anrl_ext.AFNM(8, reduction=2, backend=backend)
    twin = copy.deepcopy(layer)
    x = torch.randn(n, 8, 5, 4).to(memory_format=torch.channels_last).requires_grad_()
    y = torch.compile(layer, backend="aot_eager", fullgraph=True)(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    dy = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, *layer.parameters()], dy)
    y_eager = twin(x)
    torch.testing.assert_close(y, y_eager, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads, torch.autograd.grad(y_eager, [x, *twin.parameters()], dy), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gate", sorted(GATES))
@pytest.mark.parametrize("training", [True, False])
def test_middle_kernels_equal_the_composed_chain(backend, gate, training):
    """The first-order path with the (N, C) middle in one kernel each way, with the gate
    inside that kernel or in PyTorch, gives what the chain of small differentiable ops
    gives: outputs, every gradient, running stats."""
    from anrl_ext.ops import fast_blend

    torch.manual_seed(3)
    modes = [(True, True), (True, False), (False, True)]  # (ENABLED, GATE_IN_KERNEL)
    layers = [anrl_ext.AFNM(12, reduction=3, gate=gate, backend=backend).double() for _ in modes]
    with torch.no_grad():
        for p in layers[0].parameters():
            p.normal_()
    for layer in layers[1:]:
        layer.load_state_dict(layers[0].state_dict())
    x = (torch.randn(5, 12, 6, 7, dtype=torch.float64) * 2 + 1).requires_grad_()
    results = []
    for layer, (enabled, in_kernel) in zip(layers, modes):
        layer.train(training)
        fast_blend.ENABLED, fast_blend.GATE_IN_KERNEL = enabled, in_kernel
        try:
            y, alpha = layer(x, return_alpha=True)
            loss = (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum() + alpha.square().sum()
            grads = torch.autograd.grad(loss, [x, *layer.parameters()])
        finally:
            fast_blend.ENABLED, fast_blend.GATE_IN_KERNEL = True, True
        results.append([y, alpha, *grads, layer.running_mean, layer.running_var])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gate", sorted(GATES))
def test_gate_runs_inside_the_middle_kernel(backend, gate, monkeypatch):
    """AFNM's gate goes to gate_blend_forward / _backward (one call each), not to PyTorch,
    on the first-order path (cpu: inside the one op gate_blend_apply, whose autograd is C++);
    a gate with weights of another dtype falls back to PyTorch."""
    names = ("gate_blend_forward", "gate_blend_backward")
    spied = spy_on_primitives(monkeypatch, names + ("gate_blend_apply",))

    def gate_calls():  # from Python (spied) or from C++ (the profiler)
        spied.clear()
        ran = anrl_ops_run(lambda: layer(x).sum().backward())
        return spied + [op for op in ran if op in names]

    layer = anrl_ext.AFNM(8, reduction=2, gate=gate, backend=backend)
    x = torch.randn(3, 8, 5, 5, requires_grad=True)
    one_op = ["gate_blend_apply"] if backend == "cpu" else []
    assert gate_calls() == one_op + ["gate_blend_forward", "gate_blend_backward"]
    assert all(p.grad is not None for p in layer.gate.parameters())
    from anrl_ext.ops import fast_blend

    limit = fast_blend.CPU_GATE_MAX_WORK
    monkeypatch.setattr(fast_blend, "CPU_GATE_MAX_WORK", 0)  # a gate too large for the CPU loops
    assert gate_calls() == []
    monkeypatch.setattr(fast_blend, "CPU_GATE_MAX_WORK", limit)
    assert gate_calls() == one_op + ["gate_blend_forward", "gate_blend_backward"]
    layer.gate.double()  # float64 gate weights, float32 statistics: the gate runs in PyTorch
    assert gate_calls() == []


@pytest.mark.parametrize("gate", sorted(GATES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gated_native_autograd_op_equals_the_python_function(gate, dtype, monkeypatch):
    check_gated_native_autograd_op(gate, dtype, monkeypatch)


@pytest.mark.parametrize("name, limit, expected", [("native", "CUDA_GATE_MAX_WORK", [True, True, False]),
                                                    ("triton", "TRITON_GATE_MAX_WORK", [True, True, False])])
def test_a_large_gate_runs_in_pytorch_on_a_gpu(name, limit, expected):
    """On a GPU a gate past the backend's limit (a wide layer, a large batch) runs as PyTorch ops:
    past TRITON_GATE_MAX_WORK / CUDA_GATE_MAX_WORK multiply-adds: both backends' kernels spread a
    large gate over programs / blocks, up to a limit. Decided from shapes alone, so a meta tensor
    stands in for a CUDA one."""
    import dataclasses

    from anrl_ext.ops import fast_blend
    from anrl_ext.ops.backends import primitives_for

    prims = dataclasses.replace(primitives_for("cpu"), name=name)
    for (c, n), in_kernel in zip([(64, 32), (512, 64), (2048, 64)], expected):
        gate = anrl_ext.AFNM(c).gate  # the paper gate, D = C / 16
        slots, params = gate.KERNEL_SLOTS, list(gate.parameters())
        x = torch.empty(n, c, 7, 7, device="meta")
        work = fast_blend.gate_work(n, slots, params)
        assert fast_blend.gate_in_kernel(prims, slots, params, x) is in_kernel, (c, n, work)
        assert (work <= getattr(fast_blend, limit)) is in_kernel


def test_wide_afnm_layer_matches_reference_backend():
    """Past CPU_GATE_MAX_WORK the gate runs as PyTorch ops, and the layer still equals the reference
    (the GPU test runs the same check through the CUDA kernels spread over blocks)."""
    ran = check_wide_afnm_layer("cpu")
    assert "gate_blend_forward" not in ran and "blend_forward" in ran, ran


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind, whole", [("bn", True), ("in", True), ("half", True), ("ibn", True),
                                         ("bin", False), ("afnm", False)])
def test_fixed_blend_layers_are_one_call_each_way(backend, kind, whole, monkeypatch):
    """A layer whose alpha never reads the means (BN, IN, INBNHalf, IBN) runs its forward and
    backward as blend_apply_forward / _backward, in training and in eval (cpu: inside the one op
    blend_apply, whose autograd is C++); BIN (alpha a function of a parameter) and AFNM (a gate)
    take the middle kernels."""
    calls = spy_on_primitives(monkeypatch, ("moments", "blend_forward", "gate_blend_forward",
                                            "blend_apply_forward", "blend_apply_backward", "blend_apply"))
    layer = anrl_ext.make_norm(kind, 6, backend=backend)
    x = torch.randn(3, 6, 5, 7, requires_grad=True)
    whole_calls = ["blend_apply"] if backend == "cpu" else ["blend_apply_forward", "blend_apply_backward"]
    for training in (True, False):
        calls.clear()
        layer.train(training)
        ran = anrl_ops_run(lambda: torch.autograd.grad(layer(x).sum(), [x, *layer.parameters()]))
        if whole:
            assert calls == whole_calls, (kind, training)
            if backend == "cpu":
                assert [op for op in ran if op.startswith("blend_apply_")] == ["blend_apply_forward",
                                                                               "blend_apply_backward"]
        else:
            # cpu AFNM: the calls from C++, inside gate_blend_apply and its forward's gate_blend_apply_forward
            seen = calls or [op for op in ran if op not in ("gate_blend_apply", "gate_blend_apply_forward")]
            assert "blend_apply_forward" not in seen and seen[0] == "moments", (kind, training, seen)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind, dtype, channels_last, tol", [
    ("afnm", torch.float64, False, 1e-12), ("afnm", torch.float32, True, 1e-5), ("afnm", torch.bfloat16, False, 1e-2),
    ("bin", torch.float64, False, 1e-12), ("half", torch.float64, True, 1e-12), ("bn", torch.float32, False, 1e-5)])
def test_synchronised_statistics_of_one_process_equal_the_plain_layer(backend, kind, dtype, channels_last, tol):
    check_sync_of_one_process(backend, kind, dtype, channels_last, tol)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_features=0), "num_features must be a positive int, got 0"),
    (dict(num_features=4.0), "num_features must be a positive int"),
    (dict(num_features=4, eps=0.0), "eps must be > 0"),
    (dict(num_features=4, momentum=1.5), r"momentum must be in \[0, 1\]"),
    (dict(num_features=4, backend="gpu"), "unknown backend 'gpu'"),
    (dict(num_features=4, gate="mlp"), "unknown gate 'mlp'"),
    (dict(num_features=4, reduction=0), "reduction must be >= 1"),
])
def test_bad_constructor_arguments_raise_at_construction(kwargs, match):
    """A bad setting fails where it is written, not at the first forward."""
    with pytest.raises(ValueError, match=match):
        anrl_ext.AFNM(**kwargs)


def test_constructor_accepts_integer_likes():
    assert anrl_ext.AFNM(np.int64(8)).num_features == 8
    assert anrl_ext.AFNM(8, momentum=None).momentum is None


def test_stable_batch_norm_channels_last_accuracy():
    """The heads' BN on float32 channels_last CPU input is as accurate as on NCHW input
    (nn.BatchNorm2d there: weight gradient 6e-2 off at this shape, one thread)."""
    bn = anrl_ext.nn.StableBatchNorm2d(8)
    check_channels_last_accuracy(lambda x, w: torch.func.functional_call(bn.to(x.dtype), {"weight": w}, (x,)))


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_stable_batch_norm_is_batch_norm(fmt):
    """Same state_dict keys, outputs, gradients and running statistics as nn.BatchNorm2d,
    in train and eval mode; the output keeps the input's layout."""
    torch.manual_seed(0)
    ours, theirs = anrl_ext.nn.StableBatchNorm2d(5, momentum=0.3), nn.BatchNorm2d(5, momentum=0.3)
    theirs.load_state_dict(ours.state_dict())
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = (torch.randn(4, 5, 6, 7, dtype=torch.float64) * 2 + 1).contiguous(memory_format=fmt)
    for m in (ours, theirs):
        m.double()
    for train in (True, False):
        outs = []
        for m in (ours, theirs):
            m.train(train)
            xi = x.clone().requires_grad_()
            y = m(xi)
            assert y.is_contiguous(memory_format=fmt)
            outs.append([y, *torch.autograd.grad(y.square().sum(), [xi, m.weight, m.bias])])
        for a, b in zip(*outs):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.running_mean, theirs.running_mean, rtol=1e-14, atol=0)
    torch.testing.assert_close(ours.running_var, theirs.running_var, rtol=1e-14, atol=0)
    assert ours.num_batches_tracked == theirs.num_batches_tracked == 1


def test_stable_batch_norm_scripts_as_batch_norm():
    """torch.jit.script compiles nn.BatchNorm2d in its place: the same state_dict keys and tensors (a
    scripted training step moves the module's running statistics) and nn.BatchNorm2d's outputs."""
    import warnings

    torch.manual_seed(0)
    ours = anrl_ext.nn.StableBatchNorm2d(5, momentum=0.3)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
    theirs = nn.BatchNorm2d(5, momentum=0.3)
    theirs.load_state_dict(ours.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's own deprecation
        scripted = torch.jit.script(nn.Sequential(nn.ReLU(), ours))
    assert list(scripted.state_dict()) == ["1." + k for k in ours.state_dict()]
    assert type(ours) is anrl_ext.nn.StableBatchNorm2d  # the module itself is left as it was
    x = torch.randn(4, 5, 6, 7) * 2 + 1
    torch.testing.assert_close(scripted(x), theirs(x.relu()), rtol=0, atol=0)
    torch.testing.assert_close(ours.running_mean, theirs.running_mean, rtol=0, atol=0)
    assert ours.num_batches_tracked == 1
    scripted.eval(), theirs.eval()
    torch.testing.assert_close(scripted(x), theirs(x.relu()), rtol=0, atol=0)


KINDS = ["bn", "in", "half", "bin", "ibn", "afnm"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", BACKENDS + ["reference"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_empty_batch_as_batchnorm(kind, backend, training, fmt):
    """N = 0 (an empty batch, e.g. the last one of a filtered loader): an empty output like the
    input, as nn.BatchNorm2d gives; running statistics unchanged, num_batches_tracked counted as
    nn.BatchNorm2d counts it, and every parameter's gradient zeros (not None, as DDP expects)."""
    layer = anrl_ext.make_norm(kind, 6, backend=backend).train(training)
    bn = nn.BatchNorm2d(6).train(training)
    before = copy.deepcopy(layer.state_dict())
    x = torch.randn(0, 6, 5, 7).contiguous(memory_format=fmt).requires_grad_()
    y, alpha = layer(x, return_alpha=True)
    assert y.shape == x.shape and y.dtype == x.dtype and y.is_contiguous(memory_format=fmt)
    assert alpha.shape == (0, 6)
    y.sum().backward()
    bn(torch.randn(0, 6, 5, 7)).sum().backward()
    assert x.grad.shape == x.shape
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape and not p.grad.any(), name
    for name, t in layer.state_dict().items():
        expected = bn.num_batches_tracked if name == "num_batches_tracked" else before[name]
        assert torch.equal(t, expected), name
    if layer.track_running_stats:  # the buffer torch counts: this compares something
        assert int(layer.num_batches_tracked) == int(training)


@pytest.mark.parametrize("backend", BACKENDS + ["reference"])
def test_empty_planes(backend):
    """Planes of no element: the BN layer gives an empty output as nn.BatchNorm2d does; a layer
    with IN refuses them (IN of a plane of nothing), naming the shape."""
    x = torch.randn(3, 4, 0, 5)
    torch.testing.assert_close(anrl_ext.BN(4, backend=backend)(x), nn.BatchNorm2d(4)(x))
    for kind in ("in", "half", "afnm"):
        with pytest.raises(ValueError, match=r"more than 1 spatial element, got input size \(3, 4, 0, 5\)"):
            anrl_ext.make_norm(kind, 4, backend=backend)(x)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", BACKENDS + ["reference"])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_output_keeps_the_input_layout(kind, backend, fmt):
    """Every layer on every backend writes its output in the input's layout (F.instance_norm alone
    would give the IN layer's reference an NCHW output); the fused backends the input gradient too
    (the reference's BN runs on an NCHW copy of channels_last CPU input, see `_batch_norm`)."""
    x = torch.randn(3, 6, 5, 7).contiguous(memory_format=fmt).requires_grad_()
    for training in (True, False):
        y = anrl_ext.make_norm(kind, 6, backend=backend).train(training)(x)
        assert y.is_contiguous(memory_format=fmt), (training, y.stride())
        (dx,) = torch.autograd.grad(y.square().sum(), x)
        assert backend == "reference" or dx.is_contiguous(memory_format=fmt), (training, dx.stride())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", BACKENDS + ["reference"])
@pytest.mark.parametrize("param_dtype, x_dtype", MIXED_DTYPES)
def test_parameters_in_another_dtype_than_the_input(kind, backend, param_dtype, x_dtype):
    check_mixed_dtypes(kind, backend, param_dtype, x_dtype)


def _tensors(module: nn.Module):
    return dict(module.named_parameters()) | dict(module.named_buffers())


@pytest.mark.parametrize("kind", KINDS)
def test_factory_kwargs(kind):
    """device= and dtype= as nn.BatchNorm2d takes them: every parameter and buffer is made there,
    in that dtype (num_batches_tracked stays long), and holds what a layer converted after
    construction holds (the gate's random weights are drawn in the dtype: its alpha is 0.5)."""
    made = anrl_ext.make_norm(kind, 12, reduction=4, dtype=torch.float64)
    converted = anrl_ext.make_norm(kind, 12, reduction=4).double()
    for name, t in _tensors(made).items():
        assert t.dtype == (torch.long if name == "num_batches_tracked" else torch.float64), name
        if not name.startswith("gate."):
            torch.testing.assert_close(t, _tensors(converted)[name], rtol=0, atol=0)
    x = torch.randn(3, 12, 4, 4, dtype=torch.float64) * 2 + 1
    torch.testing.assert_close(made(x, return_alpha=True), converted(x, return_alpha=True))
    on_meta = anrl_ext.make_norm(kind, 12, device="meta")
    assert {t.device.type for t in _tensors(on_meta).values()} == {"meta"}
    y = on_meta(torch.randn(2, 12, 3, 3, device="meta"))
    assert y.device.type == "meta" and y.shape == (2, 12, 3, 3)


@pytest.mark.parametrize("kind", KINDS + ["afnm-sigmoid", "afnm-sigmoid2"])
def test_reset_parameters_after_to_empty(kind):
    """A layer built on the meta device, moved with to_empty() and reset, equals a layer built on
    the CPU under the same seed: the deferred initialisation of large models (FSDP's
    param_init_fn calls reset_parameters)."""
    kind, _, gate = kind.partition("-")
    kwargs = {"gate": gate} if gate else {}
    torch.manual_seed(5)
    fresh = anrl_ext.make_norm(kind, 12, reduction=4, **kwargs)
    deferred = anrl_ext.make_norm(kind, 12, reduction=4, device="meta", **kwargs).to_empty(device="cpu")
    with torch.no_grad():  # to_empty leaves whatever the memory held: make it wrong
        for t in _tensors(deferred).values():
            t.fill_(7)
    torch.manual_seed(5)
    deferred.reset_parameters()
    assert _tensors(deferred).keys() == _tensors(fresh).keys()
    for name, t in _tensors(fresh).items():
        torch.testing.assert_close(_tensors(deferred)[name], t, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_reset_running_stats_as_batchnorm(kind):
    """After training steps, reset_running_stats() puts back what nn.BatchNorm2d's puts back and
    leaves the parameters alone."""
    layer = anrl_ext.make_norm(kind, 5, momentum=None)
    for _ in range(3):
        layer(torch.randn(4, 5, 6, 6) * 3 + 2).sum().backward()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(1)
    params = copy.deepcopy(dict(layer.named_parameters()))
    layer.reset_running_stats()
    bn = nn.BatchNorm2d(5)
    if layer.track_running_stats:
        assert int(layer.num_batches_tracked) == 0
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.equal(getattr(layer, name), getattr(bn, name)), name
    for name, p in layer.named_parameters():
        assert torch.equal(p, params[name]), name


def _averaged_model(backend):
    """Conv stacks with AFNM, nn.BatchNorm2d, IBN and an IN layer (no running statistics),
    trained a few steps so every running statistic is away from its start."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), anrl_ext.AFNM(8, reduction=2, backend=backend), nn.ReLU(),
                          nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 6, 3), anrl_ext.make_norm("ibn", 6, backend=backend, momentum=0.3),
                          nn.Conv2d(6, 4, 1), anrl_ext.IN(4, backend=backend)).double()
    for _ in range(3):
        model(torch.randn(5, 3, 12, 12, dtype=torch.float64) * 2 + 1).sum().backward()
    with torch.no_grad():  # "averaged" weights: the statistics no longer fit them
        for p in model.parameters():
            p.mul_(1.5)
    return model.eval()


@pytest.mark.parametrize("backend", BACKENDS + ["reference"])
def test_update_bn_recomputes_every_layer(backend):
    """anrl_ext.update_bn: each BN branch's running statistics become the cumulative average over
    the loader's batches (mean of batch means, of unbiased batch variances) of the inputs it
    sees, for nn.BatchNorm2d exactly as torch.optim.swa_utils.update_bn; momenta and the model's
    mode are put back."""
    model = _averaged_model(backend)
    batches = [(torch.randn(4, 3, 12, 12, dtype=torch.float64) * 3 - 1, torch.zeros(4)) for _ in range(3)]
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, anrl_ext.nn.BlendNorm2d))]
    seen = {m: [] for m in norms}
    handles = [m.register_forward_pre_hook(lambda m, args: seen[m].append(args[0].detach())) for m in norms]
    state = copy.deepcopy(model.state_dict())
    model.train()  # in training no layer reads running statistics: these are the inputs update_bn gives
    for x, _ in batches:
        model(x)
    for h in handles:
        h.remove()
    model.load_state_dict(state)
    model.eval()
    theirs = copy.deepcopy(model)
    torch.optim.swa_utils.update_bn(batches, theirs)

    anrl_ext.update_bn(batches, model)
    assert not model.training
    assert [m.momentum for m in norms] == [0.1, 0.1, 0.3, 0.1]
    for m in norms:
        if not m.track_running_stats:
            assert m.running_mean is None
            continue
        xs = seen[m]
        torch.testing.assert_close(m.running_mean, torch.stack([x.mean((0, 2, 3)) for x in xs]).mean(0),
                                   rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(m.running_var, torch.stack([x.var((0, 2, 3)) for x in xs]).mean(0),
                                   rtol=1e-12, atol=1e-12)
        assert int(m.num_batches_tracked) == len(batches)
    bn = model[4]
    torch.testing.assert_close(bn.state_dict(), theirs[4].state_dict(), rtol=0, atol=0)


def test_update_bn_interrupted_puts_settings_back():
    """A loader that fails mid-pass: the error comes through and momenta and mode are as before."""
    model = _averaged_model("reference")

    def loader():
        yield torch.randn(2, 3, 12, 12, dtype=torch.float64)
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        anrl_ext.update_bn(loader(), model)
    assert not model.training
    assert [m.momentum for m in model.modules() if hasattr(m, "momentum")] == [0.1, 0.1, 0.3, 0.1]


def test_update_bn_names_misuse():
    """The arguments swapped, or batches of the trainer's dicts: a TypeError saying what to pass, not one from
    deep inside the model; the layers' settings stay as they were."""
    model = _averaged_model("reference")
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"update_bn\(loader, model\): model must be an nn.Module, got list"):
        anrl_ext.update_bn(model, [x])
    with pytest.raises(TypeError, match=r"got a dict with keys \['image', 'label'\]; pass the inputs alone"):
        anrl_ext.update_bn([{"image": x, "label": 1}], model)
    with pytest.raises(TypeError, match="whose first element is the model's input tensor, got str"):
        anrl_ext.update_bn([("path.png", x)], model)
    assert not model.training
    assert [m.momentum for m in model.modules() if hasattr(m, "momentum")] == [0.1, 0.1, 0.3, 0.1]
