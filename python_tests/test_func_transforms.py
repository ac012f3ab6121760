"""torch.func transforms (grad, vmap, jacrev, jvp) and forward-mode AD over the layers: inside
one the fused backends hand over to the reference composition, whose aten ops every transform
supports."""
import copy
import warnings

import pytest
import torch
from torch.func import functional_call, jacrev, jvp, stack_module_state, vmap

from anrl_ext.ops import backends
from conftest import FUSED_CPU_BACKENDS
from helpers import check_batched_gradients, check_func_grad, layer_for_func

KINDS = ["bn", "in", "half", "bin", "ibn", "afnm"]


@pytest.fixture(autouse=True)
def fresh_fallback_warning(monkeypatch):
    """The hand-over warns once per process; each test sees it afresh."""
    monkeypatch.setattr(backends, "_warned_reference_only", False)


@pytest.mark.parametrize("backend", FUSED_CPU_BACKENDS)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_func_grad_equals_autograd(kind, training, backend):
    with pytest.warns(UserWarning, match="inside a torch.func transform"):
        check_func_grad(kind, training, backend)


@pytest.mark.parametrize("transform", ["grad", "vmap", "forward_ad"])
def test_fallback_warning_points_at_the_users_line(transform):
    """The hand-over warning names the caller's file and line, not the layer's forward or torch's
    transform wrappers."""
    import torch.autograd.forward_ad as fwAD

    layer = layer_for_func("afnm", FUSED_CPU_BACKENDS[0], training=False)
    x = torch.randn(2, 6, 3, 3, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if transform == "grad":
            line = _line() + 1
            torch.func.grad(lambda v: layer(v).sum())(x)
        elif transform == "vmap":
            line = _line() + 1
            vmap(layer)(x.unsqueeze(0))
        else:
            with fwAD.dual_level():
                line = _line() + 1
                layer(fwAD.make_dual(x, torch.ones_like(x)))
    hand_over = [w for w in caught if "'reference' backend" in str(w.message)]
    assert len(hand_over) == 1, [str(w.message) for w in caught]
    assert (hand_over[0].filename, hand_over[0].lineno) == (__file__, line)


def _line() -> int:
    """The caller's line number."""
    import sys

    return sys._getframe(1).f_lineno


@pytest.mark.parametrize("backend", FUSED_CPU_BACKENDS)
def test_func_jacrev_and_jvp_over_the_input(backend):
    """jacrev and jvp with respect to x of an AFNM layer in eval mode: the Jacobian equals the
    reference backend's (autograd, row by row), and the jvp is the Jacobian times the tangent."""
    layer = layer_for_func("afnm", backend, training=False)
    x = torch.randn(2, 6, 3, 2, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jac = jacrev(layer)(x)
        tangent = torch.randn_like(x)
        _, jv = jvp(layer, (x,), (tangent,))
    ref = copy.deepcopy(layer)
    ref.backend = "reference"
    xs = x.clone().requires_grad_()
    y = ref(xs).reshape(-1)
    rows = torch.stack([torch.autograd.grad(y[i], xs, retain_graph=True)[0] for i in range(y.numel())])
    torch.testing.assert_close(jac.reshape(rows.shape), rows, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(jv.reshape(-1), rows.reshape(y.numel(), -1) @ tangent.reshape(-1),
                               atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("backend", FUSED_CPU_BACKENDS)
def test_vmap_over_an_ensemble(backend):
    """vmap over three AFNM layers' stacked parameters and buffers (an ensemble, eval mode) gives
    each layer's own output."""
    layers = [layer_for_func("afnm", backend, training=False, seed=s) for s in range(3)]
    params, buffers = stack_module_state(layers)
    base = copy.deepcopy(layers[0]).to("meta")
    x = torch.randn(4, 6, 5, 5, dtype=torch.float64)

    def one(p, b):
        return functional_call(base, (p, b), (x,))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = vmap(one)(params, buffers)
    for i, layer in enumerate(layers):
        torch.testing.assert_close(got[i], layer(x), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_per_sample_gradients(kind, training, channels_last):
    """vmap(grad) over single samples (each seen as N = 1, the usual per-sample-gradient recipe)
    equals one plain backward per sample, for every layer; N = 1 is where the reference composition
    passes instance_norm's gradient through its own autograd Function."""
    layer = layer_for_func(kind, FUSED_CPU_BACKENDS[0], training=training)
    x = torch.randn(3, 6, 4, 3, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    params = {name: p.detach() for name, p in layer.named_parameters()}

    def loss(p, sample):
        return (functional_call(layer, p, (sample.unsqueeze(0),)) ** 2).sum()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        per_sample = vmap(torch.func.grad(loss), in_dims=(None, 0))(params, x)
    for i in range(x.shape[0]):
        layer.zero_grad()
        loss(dict(layer.named_parameters()), x[i]).backward()
        for name, p in layer.named_parameters():
            assert p.grad.abs().max() > 0, name
            torch.testing.assert_close(per_sample[name][i], p.grad, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("kind", KINDS + ["stable_bn"])
def test_vmap_over_channels_last_batches(kind, training):
    """vmap over a stack of channels_last batches (vmap's batched tensors refuse channels_last
    layout queries and copies) gives each batch's own output; StableBatchNorm2d, the trainer's BN,
    too."""
    from anrl_ext.nn.batch_norm import StableBatchNorm2d

    if kind == "stable_bn":
        layer = StableBatchNorm2d(6, track_running_stats=not training).double().train(training)
    else:
        layer = layer_for_func(kind, FUSED_CPU_BACKENDS[0], training=training)
    batches = torch.randn(3, 2, 4, 5, 6, dtype=torch.float64).permute(0, 1, 4, 2, 3)  # each (2, 6, 4, 5) channels_last
    assert batches[0].is_contiguous(memory_format=torch.channels_last)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = vmap(layer)(batches)
    for i in range(batches.shape[0]):
        torch.testing.assert_close(got[i], layer(batches[i]), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("backend", FUSED_CPU_BACKENDS)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_batched_gradients(kind, training, channels_last, backend):
    check_batched_gradients(kind, training, channels_last, backend)


@pytest.mark.parametrize("switch", ["NATIVE_AUTOGRAD", "GATE_IN_KERNEL", "WHOLE_PASS", "ENABLED"])
@pytest.mark.parametrize("kind", ["ibn", "afnm"])
def test_batched_gradients_on_every_path(kind, switch, monkeypatch):
    """The same with each fast path switched off (fast_blend's switches): the Python Function, the
    gate in PyTorch, the separate passes, the composed chain; channels_last input."""
    from anrl_ext.ops import fast_blend

    monkeypatch.setattr(fast_blend, switch, False)
    check_batched_gradients(kind, True, True, FUSED_CPU_BACKENDS[0])


@pytest.mark.parametrize("transform", ["grad", "jvp"])
@pytest.mark.parametrize("kind", ["bn", "afnm"])
def test_running_statistics_inside_a_transform_say_what_to_do(kind, transform):
    """A layer in training with running statistics inside grad / jvp: an error that names the layer,
    the transform and the fix; with track_running_stats = False set on the built layer, the
    transform runs and gives what a layer built that way gives."""
    import anrl_ext

    torch.manual_seed(0)
    layer = anrl_ext.make_norm(kind, 6).double()
    x = torch.randn(3, 6, 4, 4, dtype=torch.float64)
    params = dict(layer.named_parameters())

    def run():
        if transform == "grad":
            return torch.func.grad(lambda p: (functional_call(layer, p, (x,)) ** 2).sum())(params)
        return jvp(layer, (x,), (torch.ones_like(x),))[1]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match=f"{type(layer).__name__} in training .* inside a torch.func "
                                               "transform .* track_running_stats = False"):
            run()
        assert int(layer.num_batches_tracked) == 0
        layer.track_running_stats = False
        got = run()
    built = anrl_ext.make_norm(kind, 6, backend="reference", track_running_stats=False).double()
    built.load_state_dict({k: v for k, v in layer.state_dict().items() if k in built.state_dict()})
    xs = x.clone().requires_grad_()
    y = built(xs)
    if transform == "grad":
        want = dict(zip(params, torch.autograd.grad((y ** 2).sum(), list(built.parameters()))))
        for name in params:
            torch.testing.assert_close(got[name], want[name], atol=1e-12, rtol=1e-12)
    else:
        u = torch.zeros_like(y, requires_grad=True)
        vjp, = torch.autograd.grad(y, xs, u, create_graph=True)
        want, = torch.autograd.grad(vjp, u, torch.ones_like(x))
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)


def test_single_sample_jacobian_and_tangents():
    """jacrev, jvp and forward-mode AD with respect to one channels_last sample (N = 1) agree: the
    jvp and the forward-mode tangent are the Jacobian times the tangent; torch.func.hessian equals
    autograd's on an NCHW copy."""
    import torch.autograd.forward_ad as fwAD

    layer = layer_for_func("afnm", FUSED_CPU_BACKENDS[0], training=False)
    x = torch.randn(1, 6, 3, 4, dtype=torch.float64).to(memory_format=torch.channels_last)
    tangent = torch.randn_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        jac = jacrev(layer)(x)
        _, jv = jvp(layer, (x,), (tangent,))
        with fwAD.dual_level():
            forward_tangent = fwAD.unpack_dual(layer(fwAD.make_dual(x, tangent))).tangent
    want = jac.reshape(x.numel(), x.numel()) @ tangent.reshape(-1)
    torch.testing.assert_close(jv.reshape(-1), want, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(forward_tangent.reshape(-1), want, atol=1e-12, rtol=1e-12)
    # forward over reverse (jacfwd of jacrev): the guard's jvp inside a grad transform
    ref = copy.deepcopy(layer)
    ref.backend = "reference"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hessian = torch.func.hessian(lambda t: (layer(t) ** 3).sum())(x)
    want = torch.autograd.functional.hessian(lambda t: (ref(t) ** 3).sum(), x.contiguous())
    torch.testing.assert_close(hessian, want, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("backend", FUSED_CPU_BACKENDS)
def test_forward_mode_ad_gives_the_jvp(backend):
    """torch.autograd.forward_ad through an AFNM layer in training: the tangent is the jvp of the
    reference backend (double backward trick), and the running statistics still update."""
    import torch.autograd.forward_ad as fwAD

    layer = layer_for_func("afnm", backend, training=False).train()
    ref = copy.deepcopy(layer)
    ref.backend = "reference"
    x, tangent = torch.randn(3, 6, 4, 5, dtype=torch.float64), torch.randn(3, 6, 4, 5, dtype=torch.float64)
    with fwAD.dual_level(), pytest.warns(UserWarning, match="forward-mode AD"):
        got = fwAD.unpack_dual(layer(fwAD.make_dual(x, tangent))).tangent
    xs = x.clone().requires_grad_()
    y = ref(xs)
    u = torch.zeros_like(y, requires_grad=True)
    vjp, = torch.autograd.grad(y, xs, u, create_graph=True)
    want, = torch.autograd.grad(vjp, u, tangent)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(layer.running_mean, ref.running_mean, atol=1e-12, rtol=1e-12)
    assert int(layer.num_batches_tracked) == 1


def test_synchronised_statistics_inside_a_transform_say_why():
    """A --sync-stats layer cannot run on the reference backend: inside torch.func the error names
    the transform that sent it there."""
    layer = layer_for_func("afnm", FUSED_CPU_BACKENDS[0], training=True)
    layer.gather_stats = lambda mean, var: (mean, var)
    x = torch.randn(2, 6, 3, 3, dtype=torch.float64)
    with warnings.catch_warnings(), pytest.raises(NotImplementedError, match="inside a torch.func transform"):
        warnings.simplefilter("ignore")
        jacrev(layer)(x)
