"""The fused op on every CPU backend against the float64 reference."""
import pytest
import torch
import torch.nn.functional as F

import anrl_ext
from helpers import (NATIVE_AUTOGRAD_CASES, anrl_ops_run, check_channels_last_accuracy, check_native_autograd_op,
                     make_inputs, max_err, oracle, spy_on_primitives)

from conftest import FUSED_CPU_BACKENDS

BACKENDS = FUSED_CPU_BACKENDS
SHAPES = [(4, 3, 7, 7), (3, 17, 5, 6), (2, 5, 63, 65), (5, 16, 1, 3)]


def run(x, alpha, params, backend, running=None, training=True):
    a = alpha.to(x.device) if isinstance(alpha, torch.Tensor) else alpha
    rm, rv = running if running is not None else (None, None)
    return anrl_ext.adaptive_norm(x, a, *params, running_mean=rm, running_var=rv, training=training,
                                  backend=backend)


@pytest.mark.parametrize("backend", BACKENDS + ["reference"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("alpha_kind", ["nc", "c", "0.3"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_forward_backward_float32_vs_float64(backend, shape, alpha_kind, channels_last):
    """float32 against float64 to float32's rounding: observed up to 2e-6 (values) and
    3e-6 (gradients, relative to their largest), bounds 10-20x that."""
    x, alpha, params = make_inputs(shape, torch.float32, alpha_kind, channels_last)
    p32 = [p.float().requires_grad_() for p in params]
    a32 = alpha.float().requires_grad_() if isinstance(alpha, torch.Tensor) else alpha
    x.requires_grad_()
    y = run(x, a32, p32, backend)
    assert y.dtype == torch.float32 and y.shape == x.shape
    x64 = x.detach().double().requires_grad_()
    p64 = [p.detach().double().requires_grad_() for p in p32]
    a64 = alpha.double().requires_grad_() if isinstance(alpha, torch.Tensor) else alpha
    y64 = oracle(x64, a64, p64)
    assert max_err(y, y64) < 2e-5
    g = torch.randn_like(y64)
    ins32 = [x] + ([a32] if isinstance(alpha, torch.Tensor) else []) + p32
    ins64 = [x64] + ([a64] if isinstance(alpha, torch.Tensor) else []) + p64
    grads = torch.autograd.grad(y, ins32, g.float())
    grads64 = torch.autograd.grad(y64, ins64, g)
    for name, a, b in zip(["x", "alpha", "params"], grads, grads64):
        assert max_err(a, b) < 5e-5 * max(1.0, b.abs().max().item()), name


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(3, 4, 3, 5), (2, 3, 1, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_and_gradgradcheck(backend, shape, training):
    x, alpha, params = make_inputs(shape, torch.float64, "nc")
    rm, rv = torch.randn(shape[1], dtype=torch.float64), torch.rand(shape[1], dtype=torch.float64) + 0.5

    def f(x, alpha, wb, bb, wi, bi):
        # running stats cloned so each gradcheck evaluation sees the same state
        return anrl_ext.adaptive_norm(x, alpha, wb, bb, wi, bi, rm.clone(), rv.clone(), training=training,
                                      backend=backend)

    inputs = tuple(t.clone().requires_grad_() for t in [x, alpha, *params])
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_double_backward_matches_reference(backend):
    # The second-order meta-update differentiates a gradient: compare d/dtheta of
    # <grad_x L, v> between the fused backend and the float64 reference.
    x, alpha, params = make_inputs((4, 6, 5, 5), torch.float64, "nc")
    v = torch.randn_like(x)
    outs = []
    for b in (backend, "reference"):
        xs = x.clone().requires_grad_()
        a = alpha.clone().requires_grad_()
        ps = [p.clone().requires_grad_() for p in params]
        y = anrl_ext.adaptive_norm(xs, a, *ps, backend=b)
        (gx,) = torch.autograd.grad((y ** 3).sum(), xs, create_graph=True)
        outs.append(torch.autograd.grad((gx * v).sum(), [xs, a, *ps]))
    for g1, g2 in zip(*outs):
        assert max_err(g1, g2) < 1e-9


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(4, 3, 7, 7), (2, 17, 63, 65), (6, 5, 1, 1)])
def test_alpha_one_is_batchnorm(backend, shape):
    x, _, params = make_inputs(shape, torch.float32)
    bn = torch.nn.BatchNorm2d(shape[1])
    with torch.no_grad():
        bn.weight.copy_(params[0]), bn.bias.copy_(params[1])
    rm, rv = torch.zeros(shape[1]), torch.ones(shape[1])
    for _ in range(3):  # running statistics after several steps
        xs = x * torch.rand(()) + torch.randn(())
        y = anrl_ext.adaptive_norm(xs, 1.0, bn.weight, bn.bias, None, None, rm, rv, training=True,
                                   backend=backend)
        ref = bn(xs)
        assert max_err(y, ref) < 1e-4
    torch.testing.assert_close(rm, bn.running_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rv, bn.running_var, atol=1e-5, rtol=1e-5)
    bn.eval()
    y = anrl_ext.adaptive_norm(x, 1.0, bn.weight, bn.bias, None, None, rm, rv, training=False, backend=backend)
    assert max_err(y, bn(x)) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(4, 3, 7, 7), (1, 17, 63, 65)])
def test_alpha_zero_is_instancenorm(backend, shape):
    x, _, params = make_inputs(shape, torch.float32)
    inn = torch.nn.InstanceNorm2d(shape[1], affine=True)
    with torch.no_grad():
        inn.weight.copy_(params[2]), inn.bias.copy_(params[3])
    for training in (True, False):
        inn.train(training)
        y = anrl_ext.adaptive_norm(x, 0.0, None, None, inn.weight, inn.bias, training=training, backend=backend)
        assert max_err(y, inn(x)) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS + ["reference"])
@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_running_stats_follow_every_training_batch(backend, alpha):
    """Whatever alpha, also 0 (IN only, no BN output to compute): running statistics given in training
    follow the batch as nn.BatchNorm2d's do."""
    x, _, _ = make_inputs((4, 3, 7, 5), torch.float64)
    bn = torch.nn.BatchNorm2d(3, momentum=0.3).double()
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    for step in range(2):
        xs = x * (step + 1) - step
        anrl_ext.adaptive_norm(xs, alpha, running_mean=rm, running_var=rv, training=True, momentum=0.3,
                               backend=backend)
        bn(xs)
    torch.testing.assert_close(rm, bn.running_mean, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(rv, bn.running_var, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_eval_uses_running_stats_and_n1(backend):
    x, alpha, params = make_inputs((1, 5, 6, 7), torch.float64, "nc")
    rm, rv = torch.randn(5, dtype=torch.float64), torch.rand(5, dtype=torch.float64) + 0.1
    y = anrl_ext.adaptive_norm(x, alpha, *params, rm, rv, training=False, backend=backend)
    ref = oracle(x, alpha, params, running=(rm.clone(), rv.clone()), training=False)
    assert max_err(y, ref) < 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision(backend, dtype):
    x, alpha, params = make_inputs((4, 8, 9, 11), dtype, "nc")
    y = anrl_ext.adaptive_norm(x, alpha.to(dtype), *[p.to(dtype) for p in params], backend=backend)
    assert y.dtype == dtype
    ref = oracle(x, alpha.to(dtype), [p.to(dtype) for p in params])
    tol = 3e-2 if dtype == torch.bfloat16 else 4e-3
    assert max_err(y, ref) < tol * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_mean_small_std(backend):
    # mean 1e4, std 0.1 in float32: the naive E[x^2] - E[x]^2 loses every digit.
    x = (torch.randn(4, 3, 32, 32, dtype=torch.float64) * 0.1 + 1e4).float()
    alpha = torch.rand(4, 3)
    params = [torch.ones(3), torch.zeros(3), torch.ones(3), torch.zeros(3)]
    y = anrl_ext.adaptive_norm(x, alpha, *params, backend=backend)
    ref = oracle(x, alpha, params)
    # The float32 means themselves carry ~5e-4 rounding (ulp(1e4)/2), i.e. ~5e-3 of one
    # std; torch's own float32 batch_norm has the same floor. Require that level.
    torch_bn = F.batch_norm(x, None, None, training=True)
    floor = max_err(torch_bn, F.batch_norm(x.double(), None, None, training=True))
    assert max_err(y, ref) < max(2 * floor, 1e-2)
    naive = (x - x.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
        (x * x).mean((0, 2, 3), keepdim=True) - x.mean((0, 2, 3), keepdim=True) ** 2 + 1e-5)
    naive_err = max_err(naive, F.batch_norm(x.double(), None, None, training=True))
    assert not naive_err < 0.1  # the trap is real: large error or NaN


@pytest.mark.parametrize("backend", BACKENDS)
def test_noncontiguous_input(backend):
    x, alpha, params = make_inputs((3, 4, 12, 10), torch.float64, "nc")
    xs = x[:, :, ::2, :]
    assert not xs.is_contiguous()
    y = anrl_ext.adaptive_norm(xs, alpha, *params, backend=backend)
    assert max_err(y, oracle(xs, alpha, params)) < 1e-12


class TestBadInput:
    def test_wrong_ndim(self):
        with pytest.raises(ValueError, match="4-D"):
            anrl_ext.adaptive_norm(torch.randn(2, 3, 4), 0.5)

    def test_integer_dtype(self):
        with pytest.raises(TypeError, match="floating-point"):
            anrl_ext.adaptive_norm(torch.ones(2, 3, 4, 4, dtype=torch.int32), 0.5)

    def test_channel_mismatch(self):
        with pytest.raises(ValueError, match="entries, expected C = 3"):
            anrl_ext.adaptive_norm(torch.randn(2, 3, 4, 4), 0.5, torch.ones(4), torch.zeros(4))
        with pytest.raises(ValueError, match="alpha must be"):
            anrl_ext.adaptive_norm(torch.randn(2, 3, 4, 4), torch.rand(2, 4))
        with pytest.raises(ValueError, match="channels but the layer was built for 8"):
            anrl_ext.AFNM(8)(torch.randn(2, 3, 4, 4))

    def test_one_value_per_channel_in_training(self):
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            anrl_ext.adaptive_norm(torch.randn(1, 3, 1, 1), 1.0)
        with pytest.raises(ValueError, match="more than 1 spatial element"):
            anrl_ext.adaptive_norm(torch.randn(4, 3, 1, 1), 0.5)

    def test_devices_differ(self):
        x = torch.randn(2, 3, 4, 4)
        w = torch.ones(3, device="meta")
        with pytest.raises(ValueError, match="is on meta but the input is on cpu"):
            anrl_ext.adaptive_norm(x, 0.5, w, None, None, None)

    def test_unknown_backend(self):
        with pytest.raises(ValueError, match="unknown backend"):
            anrl_ext.adaptive_norm(torch.randn(2, 3, 4, 4), 0.5, backend="tpu")
        with pytest.raises(ValueError, match="cannot run tensors on cpu"):
            anrl_ext.adaptive_norm(torch.randn(2, 3, 4, 4), 0.5, backend="cuda")
        with pytest.raises(ValueError, match="unknown device 'gpu'; expected e.g. 'cpu', 'cuda' or 'cuda:1'"):
            anrl_ext.available_backends("gpu")

    @pytest.mark.parametrize("device", ["cpu", "cuda"])
    def test_native_shortcut_resolves_as_the_usable_list(self, device):
        """_concrete_backend answers the native backend of the tensor's own device without reading which
        backends are usable (an environment read on every CPU call); every name, 'auto' included, must
        resolve (or fail) as the usable list says. torch.device('cuda') needs no GPU to exist."""
        from anrl_ext.ops import backends

        dev = torch.device(device)
        usable = backends._usable(device)
        for name in backends.BACKENDS + ("auto",):
            if name == "auto":
                order = ("cpu", "reference") if device == "cpu" else backends.CUDA_AUTO_ORDER
                assert backends._concrete_backend(name, dev) == next(b for b in order if b in usable)
            elif name in usable:
                assert backends._concrete_backend(name, dev) == name
            else:
                with pytest.raises(ValueError, match=f"cannot run tensors on {device}"):
                    backends._concrete_backend(name, dev)
        with pytest.raises(ValueError, match="unknown backend"):
            backends._concrete_backend("tpu", dev)

    @pytest.mark.parametrize("kwargs, match", [
        (dict(alpha=float("nan")), "alpha must be finite, got nan"),
        (dict(alpha=float("inf")), "alpha must be finite, got inf"),
        (dict(eps=-1e-5), r"eps must be a finite number >= 0, got -1e-05"),
        (dict(eps=float("nan")), "eps must be a finite number >= 0, got nan"),
        (dict(momentum=1.5), r"momentum must be in \[0, 1\], got 1.5"),
        (dict(momentum=None), r"momentum must be in \[0, 1\], got None"),
        (dict(running_var=None), "running_mean and running_var go together: give both or neither"),
    ])
    def test_bad_scalars_and_running_statistics(self, kwargs, match):
        """Each would give nan outputs or half-updated statistics without an error; the layers check theirs at
        construction."""
        c = 3
        args = dict(alpha=0.5, bn_weight=torch.ones(c), bn_bias=torch.zeros(c), in_weight=torch.ones(c),
                    in_bias=torch.zeros(c), running_mean=torch.zeros(c), running_var=torch.ones(c), momentum=0.1,
                    eps=1e-5)
        args.update(kwargs)
        running = args["running_mean"].clone()
        for backend in ("reference", "cpu"):
            with pytest.raises(ValueError, match=match):
                anrl_ext.adaptive_norm(torch.randn(2, c, 4, 4), **args, backend=backend)
        assert torch.equal(args["running_mean"], running)  # refused before any update
        args.update(alpha=0.5, eps=0.0, momentum=0.0, running_var=torch.ones(c))  # the ends of the ranges are taken
        assert torch.isfinite(anrl_ext.adaptive_norm(torch.randn(2, c, 4, 4), **args)).all()


@pytest.mark.parametrize("backend", BACKENDS + ["reference"])
@pytest.mark.parametrize("alpha_kind", ["nc", "c", "0.3"])
def test_empty_batch(backend, alpha_kind):
    """N = 0, as F.batch_norm takes it: an empty output like x, running statistics unchanged,
    and zero gradients (not None) for alpha and the affines."""
    x, alpha, params = make_inputs((0, 3, 4, 5), torch.float64, alpha_kind)
    x.requires_grad_()
    leaves = [t.requires_grad_() for t in (alpha, *params) if isinstance(t, torch.Tensor)]
    rm, rv = torch.randn(3, dtype=torch.float64), torch.rand(3, dtype=torch.float64)
    running = (rm.clone(), rv.clone())
    y = anrl_ext.adaptive_norm(x, alpha, *params, *running, training=True, backend=backend)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(running[0], rm) and torch.equal(running[1], rv)
    grads = torch.autograd.grad(y.sum(), [x, *leaves])
    assert grads[0].shape == x.shape
    assert all(g.shape == t.shape and not g.any() for g, t in zip(grads[1:], leaves, strict=True))


@pytest.mark.parametrize("shape", [(1, 5, 1, 9), (1, 5, 3, 9)])
def test_channels_last_single_sample_gradients(shape):
    """N = 1, channels_last gradient: torch's own instance_norm backward is
    wrong there on the CPU, so the reference hands it an NCHW gradient."""
    x0 = torch.randn(shape, dtype=torch.float64)
    g0 = torch.randn_like(x0)
    w0 = torch.rand(5, dtype=torch.float64)
    grads = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = x0.to(memory_format=fmt).requires_grad_()
        w = w0.clone().requires_grad_()
        y = anrl_ext.adaptive_norm(x, 0.0, None, None, w, None, backend="reference")
        grads.append(torch.autograd.grad(y, [x, w], g0.to(memory_format=fmt)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_channels_last_batch_norm_accuracy():
    """float32 channels_last on the CPU: the reference is as accurate as for NCHW
    input. torch's own channels_last batch_norm kernel sums in float32 row by
    row (at this shape, one thread: output 2e-5 and weight gradient 6e-2 off,
    NCHW 1e-7 and 9e-5), so the reference runs BN on an NCHW copy."""
    check_channels_last_accuracy(lambda x, w: anrl_ext.adaptive_norm(x, 0.5, w, None, None, None,
                                                                     backend="reference"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_constant_shift_backward(backend):
    """alpha = 0 with no IN bias: the shift is a constant with no graph."""
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    w = torch.rand(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: anrl_ext.adaptive_norm(x, 0.0, None, None, w, None,
                                                                         backend=backend), (x, w))


def _op_grads(x, alpha, params, running, backend):
    xs = x.clone().requires_grad_()
    a = alpha.clone().requires_grad_() if isinstance(alpha, torch.Tensor) else alpha
    ps = [p.clone().requires_grad_() for p in params]
    r = [t.clone() for t in running]
    y = anrl_ext.adaptive_norm(xs, a, *ps, *r, training=True, backend=backend)
    wrt = [xs, *ps] + ([a] if isinstance(a, torch.Tensor) else [])
    return [y, *torch.autograd.grad((y * y.detach().cos()).sum(), wrt), *r]


@pytest.mark.parametrize("alpha_kind", ["nc", "c", "0.3"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_whole_pass_calls_equal_separate_calls(alpha_kind, channels_last, monkeypatch):
    """One operator call each way (blend_apply_forward / _backward) against moments,
    the middle and the map called separately: every output, gradient, running buffer."""
    from anrl_ext.ops import fast_blend

    x, alpha, params = make_inputs((3, 4, 5, 6), torch.float64, alpha_kind, channels_last)
    running = (torch.randn(4, dtype=torch.float64), torch.rand(4, dtype=torch.float64) + 0.5)
    whole = _op_grads(x, alpha, params, running, "cpu")
    monkeypatch.setattr(fast_blend, "WHOLE_PASS", False)
    separate = _op_grads(x, alpha, params, running, "cpu")
    for a, b in zip(whole, separate):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_op_is_one_call_each_way(monkeypatch):
    """adaptive_norm with an input or float alpha: Python calls one op, blend_apply, whose autograd is
    C++; it runs blend_apply_forward and _backward, each of them moments / middle / map inside. The
    switch is read at the forward, so a backward after it changed still matches it."""
    from anrl_ext.ops import fast_blend

    names = ("moments", "affine", "reduce", "affine2", "blend_forward", "blend_backward", "blend_apply_forward",
             "blend_apply_backward", "blend_apply")
    calls = spy_on_primitives(monkeypatch, names)
    x, alpha, params = make_inputs((2, 3, 4, 5), torch.float64, "nc")
    whole_forward = ["blend_apply_forward", "moments", "blend_forward", "affine"]
    whole_backward = ["blend_apply_backward", "reduce", "blend_backward", "affine2"]
    for alpha_arg in (alpha, 0.3):
        calls.clear()
        xs = x.clone().requires_grad_()
        ran = anrl_ops_run(
            lambda: torch.autograd.grad(anrl_ext.adaptive_norm(xs, alpha_arg, *params, backend="cpu").sum(), xs))
        assert calls == ["blend_apply"]
        assert ran == ["blend_apply"] + whole_forward + whole_backward
    calls.clear()
    xs = x.clone().requires_grad_()
    y = anrl_ext.adaptive_norm(xs, alpha, *params, backend="cpu")
    monkeypatch.setattr(fast_blend, "WHOLE_PASS", False)
    assert anrl_ops_run(lambda: torch.autograd.grad(y.sum(), xs)) == whole_backward
    calls.clear()
    torch.autograd.grad(anrl_ext.adaptive_norm(xs, alpha, *params, backend="cpu").sum(), xs)
    assert calls == ["moments", "blend_forward", "affine", "reduce", "blend_backward", "affine2"]


@pytest.mark.parametrize("alpha_kind, dtype, weights, wanted", NATIVE_AUTOGRAD_CASES)
def test_native_autograd_op_equals_the_python_function(alpha_kind, dtype, weights, wanted, monkeypatch):
    check_native_autograd_op(alpha_kind, dtype, weights, wanted, monkeypatch)


@pytest.mark.parametrize("backend", BACKENDS + ["reference"])
def test_compiled_in_one_graph_with_float_arguments(backend):
    """torch.compile(fullgraph=True) of the functional op taking alpha, eps and momentum as arguments, which
    torch makes symbolic floats: the argument checks run in eager calls only (a test of a symbolic float's
    value breaks the graph); outputs and running statistics as in eager."""
    torch._dynamo.reset()
    c = 3
    w, b = torch.rand(c) + 0.5, torch.randn(c)

    def op(x, alpha, eps, momentum, running_mean, running_var):
        return anrl_ext.adaptive_norm(x, alpha, w, b, w, -b, running_mean, running_var, training=True, eps=eps,
                                      momentum=momentum, backend=backend)

    compiled = torch.compile(op, backend="aot_eager", fullgraph=True, dynamic=True)
    x = torch.randn(4, c, 5, 6)
    for alpha, eps, momentum in ((0.3, 1e-5, 0.1), (0.8, 1e-3, 0.5)):
        running = [torch.zeros(c), torch.ones(c)]
        eager_running = [t.clone() for t in running]
        torch.testing.assert_close(compiled(x, alpha, eps, momentum, *running),
                                   op(x, alpha, eps, momentum, *eager_running))
        torch.testing.assert_close(running, eager_running)
