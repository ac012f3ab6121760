"""Each kernel primitive against the plain-PyTorch primitive in float64."""
import pytest
import torch

import anrl_ext
from anrl_ext.ops import native
from anrl_ext.ops import reference as ref
from helpers import (check_batch_mean_to_one_ulp, check_blend_apply, check_blend_middle, check_gate_launch_choice,
                     check_gate_launches_equal, check_gate_middle, check_gate_saturated_heads,
                     check_params_in_own_dtype, check_reductions_on_large_planes, copies_in_op,
                     native_autograd_op_args)

pytestmark = pytest.mark.skipif(not native.is_built(), reason="anrl_ext._C not built")
P = native.PRIMITIVES
SHAPES = [(2, 3, 7, 7), (3, 17, 5, 13), (1, 4, 1, 1), (2, 8, 63, 65)]


def _args(shape, dtype, channels_last):
    n, c = shape[:2]
    x = torch.randn(shape, dtype=torch.float64) * 3 + 1
    dy = torch.randn(shape, dtype=torch.float64)
    x, dy = x.to(dtype), dy.to(dtype)
    if channels_last:
        x, dy = x.to(memory_format=torch.channels_last), dy.to(memory_format=torch.channels_last)
    coef = [torch.randn(n, c, dtype=torch.float64) for _ in range(4)]
    return x, dy, coef


TOL = {torch.float64: 1e-12, torch.float32: 2e-5, torch.bfloat16: 3e-2, torch.float16: 5e-3}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_primitives_match_reference(shape, dtype, channels_last):
    x, dy, (m, a, b, c) = _args(shape, dtype, channels_last)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    x64, dy64 = x.double(), dy.double()
    tol = TOL[dtype]

    mean, var = P.moments(x)
    assert mean.dtype == acc and mean.shape == shape[:2]
    rmean, rvar = ref.PRIMITIVES.moments(x64)
    torch.testing.assert_close(mean.double(), rmean, atol=1e-5 if dtype != torch.float64 else 1e-12, rtol=1e-5)
    torch.testing.assert_close(var.double(), rvar, atol=1e-5 if dtype != torch.float64 else 1e-12, rtol=1e-5)

    y = P.affine(x, m, a, b)
    assert y.dtype == dtype and y.shape == x.shape
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last and shape[2] * shape[3] > 1
                           else torch.contiguous_format)
    torch.testing.assert_close(y.double(), ref.PRIMITIVES.affine(x64, m, a, b), atol=tol * 10, rtol=tol)

    s0, s1 = P.reduce(dy, x, m)
    r0, r1 = ref.PRIMITIVES.reduce(dy64, x64, m)
    # Sums over M terms: float32 accumulation error grows with M.
    sum_tol = 1e-12 if dtype == torch.float64 else 1e-6 * shape[2] * shape[3] + 1e-5
    torch.testing.assert_close(s0.double(), r0, atol=sum_tol, rtol=1e-5)
    torch.testing.assert_close(s1.double(), r1, atol=sum_tol, rtol=1e-5)

    out = P.affine2(dy, x, m, a, b, c)
    torch.testing.assert_close(out.double(), ref.PRIMITIVES.affine2(dy64, x64, m, a, b, c), atol=tol * 20, rtol=tol)


def test_noncontiguous_input_is_handled():
    x = torch.randn(3, 5, 8, 10, dtype=torch.float64)[:, :, ::2, 1:]  # neither layout
    assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    mean, var = P.moments(x)
    rmean, rvar = ref.PRIMITIVES.moments(x)
    torch.testing.assert_close(mean, rmean)
    torch.testing.assert_close(var, rvar)


def test_moments_stable_at_large_mean():
    # E[x^2] - E[x]^2 in float32 would return garbage here (var ~ 0.01 next to mean^2 ~ 1e8).
    x = (torch.randn(2, 3, 64, 64, dtype=torch.float64) * 0.1 + 1e4).float()
    mean, var = P.moments(x)
    rmean, rvar = ref.PRIMITIVES.moments(x.double())
    torch.testing.assert_close(var.double(), rvar, rtol=1e-3, atol=0)
    torch.testing.assert_close(mean.double(), rmean, rtol=1e-6, atol=0)
    mean_cl, var_cl = P.moments(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(var_cl.double(), rvar, rtol=1e-3, atol=0)
    torch.testing.assert_close(mean_cl.double(), rmean, rtol=1e-6, atol=0)


def test_reductions_accurate_on_large_planes():
    """Plane means within one ulp, variances and sums cascaded. Before the pivot-relative,
    pairwise merges, the same data gave means 1.3 ulps off, variances 5.9e-7, s0 3.4e-7, s1 1.2e-6."""
    worst = check_reductions_on_large_planes(P, [(2, 4, 256, 256), (3, 5, 150, 151)])  # 32 and 12 chunks
    bounds = dict(mean=1.0, var=3e-7, s0=2e-7, s1=6e-7)  # observed 0.62 ulp, 1.7e-7, 1.0e-7, 3.5e-7
    assert all(worst[k] <= bounds[k] for k in bounds), worst


def _bits(t):
    return t.contiguous().view(-1).view({2: torch.int16, 4: torch.int32}[t.element_size()])


def _low_precision_args(shape, dtype, channels_last):
    """x with subnormals, values that overflow float16 after the map, and (where it has
    room) nan and +-inf; dy; (N, C) coefficients."""
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=g) * 3 + 1
    flat = x.view(-1)
    flat[::11] *= 1e-6
    flat[::13] *= 1e3
    if flat.numel() > 20:
        flat[5], flat[9], flat[17] = float("nan"), float("inf"), -float("inf")
    dy = torch.randn(shape, generator=g)
    x, dy = x.to(dtype), dy.to(dtype)
    if channels_last:
        x, dy = x.to(memory_format=torch.channels_last), dy.to(memory_format=torch.channels_last)
    coef = [torch.randn(shape[:2], generator=g) * 100 for _ in range(4)]
    return x, dy, coef


# Plane / row lengths past the 8-wide F16C conversions and past a map's 512-value spans,
# with tails: 35, 1023 and 600 values a plane; rows of 3, 17 and 1030 channels.
LOW_PRECISION_SHAPES = [(2, 3, 5, 7), (2, 17, 33, 31), (1, 1030, 3, 3), (2, 3, 20, 30), (2, 5, 1, 2)]


@pytest.mark.parametrize("shape", LOW_PRECISION_SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_float16_kernels_are_the_float32_kernels_bit_for_bit(shape, channels_last):
    """The half kernels widen spans to float32 (F16C, 8 at a time), run the float32 loops and
    round the outputs to nearest even: every output has the bits of the float32 kernel on the
    widened input, rounded as torch rounds float32 to float16 (nan, inf, subnormals included)."""
    x, dy, (m, a, b, c) = _low_precision_args(shape, torch.float16, channels_last)
    x32, dy32 = x.float(), dy.float()
    if shape[2] * shape[3] > 1:
        for got, want in zip(P.moments(x), P.moments(x32)):
            assert torch.equal(_bits(got), _bits(want))
        for got, want in zip(P.reduce(dy, x, m), P.reduce(dy32, x32, m)):
            assert torch.equal(_bits(got), _bits(want))
    y = P.affine(x, m, a, b)
    assert torch.equal(_bits(y), _bits(P.affine(x32, m, a, b).half()))
    if x.numel() > 20:  # the cases above reach them
        assert y.isinf().any() and y.isnan().any()
    assert torch.equal(_bits(P.affine2(dy, x, m, a, b, c)), _bits(P.affine2(dy32, x32, m, a, b, c).half()))


@pytest.mark.parametrize("shape", LOW_PRECISION_SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_bfloat16_maps_round_as_c10(shape, channels_last):
    """bfloat16 outputs are rounded inside the kernels' simd loops by a select, not c10's
    branch: the bits of the float32 map rounded to nearest even, every nan written as c10's
    0x7FC0; the reductions (float32 sums of bfloat16 values) agree with the float32 kernels'."""
    x, dy, (m, a, b, c) = _low_precision_args(shape, torch.bfloat16, channels_last)
    x32, dy32 = x.float(), dy.float()
    for got, want in [(P.affine(x, m, a, b), P.affine(x32, m, a, b)),
                      (P.affine2(dy, x, m, a, b, c), P.affine2(dy32, x32, m, a, b, c))]:
        nan = want.isnan()
        assert torch.equal(got.isnan(), nan)
        assert torch.equal(_bits(got)[~nan.reshape(-1)], _bits(want.bfloat16())[~nan.reshape(-1)])
        assert (_bits(got)[nan.reshape(-1)] == 0x7FC0).all()
    if shape[2] * shape[3] > 1:
        # float32 sums in another order: equal to float32 rounding (nan and inf where x has them;
        # observed 1.3e-7 of the largest value)
        for got, want in [*zip(P.moments(x), P.moments(x32)), *zip(P.reduce(dy, x, m), P.reduce(dy32, x32, m))]:
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6 * want.nan_to_num(0, 0, 0).abs().max().item(),
                                       equal_nan=True)


@pytest.mark.parametrize("op", ["moments", "affine", "reduce", "affine2"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck(op, channels_last):
    x, dy, (m, a, b, c) = _args((2, 3, 4, 5), torch.float64, channels_last)
    args = {"moments": (x,), "affine": (x, m, a, b), "reduce": (dy, x, m), "affine2": (dy, x, m, a, b, c)}[op]
    args = tuple(t.requires_grad_() for t in args)
    torch.library.opcheck(getattr(torch.ops.anrl_ext, op).default, args)


@pytest.mark.parametrize("op", ["moments", "affine", "reduce", "affine2"])
def test_primitive_gradgradcheck(op):
    x, dy, (m, a, b, c) = _args((2, 3, 4, 5), torch.float64, False)
    args = {"moments": (x,), "affine": (x, m, a, b), "reduce": (dy, x, m), "affine2": (dy, x, m, a, b, c)}[op]
    args = tuple(t.requires_grad_() for t in args)
    fn = getattr(P, op)
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


def test_kernel_errors_are_clear():
    with pytest.raises(ValueError, match="4-D"):
        P.moments(torch.randn(3, 4))
    with pytest.raises(TypeError, match="floating-point"):
        P.moments(torch.ones(1, 2, 3, 3, dtype=torch.int64))
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        P.affine(x, torch.zeros(2, 4), torch.zeros(2, 3), torch.zeros(2, 3))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape, dtype", [((8, 16, 256, 257), torch.float32), ((8, 16, 128, 129), torch.bfloat16)])
def test_large_outputs_reuse_cached_blocks(channels_last, shape, dtype):
    """>= 4 MiB outputs (here 32 MiB, glibc's fresh mappings, and 4 MiB, its heap) come from the
    output cache: a released block is handed to the next output of its size, and every element
    is written again."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(shape).to(dtype=dtype, memory_format=fmt)
    nbytes = x.numel() * x.element_size()
    assert nbytes >= 4 * 2**20
    m, s, t = (torch.randn(8, 16) for _ in range(3))
    native.cpu_output_cache(0)  # start empty: blocks left by other tests would be handed out too
    native.cpu_output_cache(1024)
    y = P.affine(x, m, s, t)
    assert y.is_contiguous(memory_format=fmt)
    ptr = y.data_ptr()
    y.fill_(float("nan"))  # poison the block before it goes back to the cache
    del y
    assert native.cpu_output_cache()["held_mb"] >= nbytes / 2**20
    y = P.affine(x, m, s, t)
    assert y.data_ptr() == ptr
    torch.testing.assert_close(y, ref.PRIMITIVES.affine(x, m, s, t))
    y.fill_(float("nan"))
    del y
    out = P.affine2(x, x, m, s, t, m)
    assert out.data_ptr() == ptr and out.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(out, ref.PRIMITIVES.affine2(x, x, m, s, t, m))


def test_output_cache_limit():
    x = torch.randn(8, 16, 256, 257)
    m = torch.zeros(8, 16)
    try:
        native.cpu_output_cache(1024)
        del_y = P.affine(x, m, m, m)
        del del_y
        assert native.cpu_output_cache()["held_mb"] > 0
        assert native.cpu_output_cache(0) == {"held_mb": 0.0, "limit_mb": 0.0}  # frees what it holds
        y = P.affine(x, m, m, m)
        del y
        assert native.cpu_output_cache()["held_mb"] == 0
        with pytest.raises(ValueError, match="limit_mb"):
            native.cpu_output_cache(-1)
    finally:
        native.cpu_output_cache(1024)


@pytest.mark.parametrize("n, c", [(5, 7), (1, 3), (2, 300)])
def test_blend_middle_matches_reference(n, c):
    check_blend_middle(P, "cpu", n, c)


def test_batch_mean_to_one_ulp():
    check_batch_mean_to_one_ulp(P, "cpu")


def test_blend_middle_float32():
    check_blend_middle(P, "cpu", 4, 9, torch.float32, tol=2e-5)


def test_blend_forward_updates_low_precision_running_buffers():
    mean, var = torch.randn(3, 4), torch.rand(3, 4) + 0.5
    rm, rv = torch.zeros(4, dtype=torch.bfloat16), torch.ones(4, dtype=torch.bfloat16)
    P.blend_forward(mean, var, None, 0.5, None, None, None, None, rm, rv, True, True, 0.5, 1e-5, 30)
    torch.testing.assert_close(rm.float(), 0.5 * mean.mean(0), atol=1e-2, rtol=1e-2)


def test_middle_reads_and_writes_parameters_in_their_own_dtype():
    check_params_in_own_dtype(P)


def test_all_bfloat16_op_converts_no_parameter():
    """A bfloat16 model (x, alpha, weights, running buffers in bfloat16): forward +
    backward of the op on the cpu backend makes one dtype conversion in all, alpha's
    gradient (float32 statistics; the functional op makes no (N, C) alpha output,
    which was the second conversion before blend_apply, 2026-12-05). The weights and
    running buffers are read and written in their own dtype, inside the kernels
    too (the profiler sees the operators called from C++; on a GPU each
    conversion is a launch)."""
    bf16 = dict(dtype=torch.bfloat16)
    x = torch.randn(2, 3, 4, 5, **bf16, requires_grad=True)
    alpha = torch.rand(2, 3, **bf16, requires_grad=True)
    params = [torch.randn(3, **bf16, requires_grad=True) for _ in range(4)]
    running = (torch.zeros(3, **bf16), torch.ones(3, **bf16))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        y = anrl_ext.adaptive_norm(x, alpha, *params, *running, training=True, backend="cpu")
        grads = torch.autograd.grad(y, [x, alpha, *params], torch.randn_like(y))
    names = [e.name for e in prof.events()]
    assert "anrl_ext::blend_apply_forward" in names  # the profiler sees the op's own calls
    assert names.count("aten::_to_copy") == 1 and names.count("aten::copy_") == 1, names
    assert [g.dtype for g in grads] == [torch.bfloat16] * 6
    assert running[0].abs().sum() > 0  # updated in place


def test_op_copies_an_expanded_gradient_once():
    """The gradient of y.sum() is a stride-0 view: the backward brings it into x's
    layout once for both passes (reduce, affine2), and a strided x is copied once
    for both passes of each direction (it was: once per pass)."""
    assert copies_in_op("cpu") == 1
    # strided x: once per direction (the backward reads the saved input), dy once
    assert copies_in_op("cpu", torch.randn(2, 3, 5, 8)[..., ::2]) == 3


@pytest.mark.parametrize("op", ["blend_forward", "blend_backward"])
def test_blend_opcheck(op):
    n, c = 3, 4
    mean, var, s0, s1 = (torch.randn(n, c, dtype=torch.float64) for _ in range(4))
    var = var.abs() + 0.1
    alpha, w = torch.rand(n, c, dtype=torch.float64), torch.randn(c, dtype=torch.float64)
    if op == "blend_forward":
        args = (mean, var, alpha, 0.0, w, None, w, None, torch.zeros(c, dtype=torch.float64),
                torch.ones(c, dtype=torch.float64), True, True, 0.1, 1e-5, 12)
    else:
        args = (s0, s1, mean, var, alpha, 0.0, w, None, w, None, mean[0], var[0], True, 1e-5, 4)
    # Not differentiable themselves (their gradients are what fast_blend composes), so no autograd check.
    torch.library.opcheck(getattr(torch.ops.anrl_ext, op).default, args,
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def test_blend_middle_errors_are_clear():
    mean = torch.randn(3, 4)
    with pytest.raises(ValueError, match="var must have shape"):
        P.blend_forward(mean, torch.rand(3, 5), None, 0.5, None, None, None, None, None, None, True, False,
                        0.1, 1e-5, 12)
    with pytest.raises(ValueError, match="alpha must be"):
        P.blend_forward(mean, torch.rand(3, 4), torch.rand(2, 4), 0.5, None, None, None, None, None, None,
                        True, False, 0.1, 1e-5, 12)
    with pytest.raises(ValueError, match="needs running_mean"):
        P.blend_forward(mean, torch.rand(3, 4), None, 0.5, None, None, None, None, None, None, False, False,
                        0.1, 1e-5, 12)


@pytest.mark.parametrize("shape, channels_last", [((3, 5, 7, 9), False), ((2, 4, 3, 5), True), ((1, 3, 40, 40), False)])
def test_blend_apply_matches_reference(shape, channels_last):
    """The whole first-order forward and backward, one operator call each."""
    check_blend_apply(P, shape, channels_last=channels_last, every_form=shape == (3, 5, 7, 9))


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 2e-5), (torch.bfloat16, 1e-2)])
def test_blend_apply_low_precision(dtype, tol):
    check_blend_apply(P, (4, 3, 5, 6), dtype=dtype, tol=tol, every_form=False)


@pytest.mark.parametrize("op", ["blend_apply_forward", "blend_apply_backward"])
def test_blend_apply_opcheck(op):
    f64 = dict(dtype=torch.float64)
    x, dy = torch.randn(3, 4, 5, 6, **f64), torch.randn(3, 4, 5, 6, **f64)
    alpha, w = torch.rand(3, 4, **f64), torch.randn(4, **f64)
    if op == "blend_apply_forward":
        args = (x, alpha, 0.0, w, None, w, None, torch.zeros(4, **f64), torch.ones(4, **f64), True, True, 0.1, 1e-5)
    else:
        mean, var = P.moments(x)
        args = (dy, x, mean, var, alpha, 0.0, w, None, w, None, mean[0], var[0], True, 1e-5)
    torch.library.opcheck(getattr(torch.ops.anrl_ext, op).default, args,
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


@pytest.mark.parametrize("channels_last", [False, True])
def test_gate_blend_apply_forward_is_its_three_passes(channels_last):
    """gate_blend_apply_forward (the gated forward of gate_blend_apply as one op, with a fake kernel) gives
    the bits of moments, gate_blend_forward and affine called in turn, updates the running statistics as
    they do, and passes opcheck."""
    x, w1, _, wb, _, wi, w, _, _, _, rm, rv, *_ = (t.detach() if isinstance(t, torch.Tensor) else t
                                                   for t in native_autograd_op_args("gate_blend_apply", channels_last))
    rm2, rv2 = rm.clone(), rv.clone()
    got = torch.ops.anrl_ext.gate_blend_apply_forward(x, w1, None, wb, None, wi, w, None, w, None, rm, rv, True, True,
                                                      0.1, 1e-5)
    mean, var = P.moments(x)
    alpha, hidden, scale, shift, bn_mean, bn_var = torch.ops.anrl_ext.gate_blend_forward(
        mean, var, w1, None, wb, None, wi, w, None, w, None, rm2, rv2, True, True, 0.1, 1e-5, 3 * 5 * 6)
    want = (P.affine(x, mean, scale, shift), alpha, hidden, mean, var, bn_mean, bn_var)
    for g, wt in zip(got, want):
        assert torch.equal(g, wt)
    assert torch.equal(rm, rm2) and torch.equal(rv, rv2) and not torch.equal(rm, torch.zeros_like(rm))
    torch.library.opcheck(torch.ops.anrl_ext.gate_blend_apply_forward.default,
                          (x, w1, None, wb, None, wi, w, None, w, None, rm, rv, True, True, 0.1, 1e-5),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def test_native_autograd_ops_need_no_graph_without_gradients():
    """Where no input wants a gradient (torch.no_grad, or none requires one), blend_apply and
    gate_blend_apply call their op again below the Autograd key, not their Function: the same bits and
    running statistics as the call that records a graph, and no grad_fn."""
    for op in ("blend_apply", "gate_blend_apply"):
        args = native_autograd_op_args(op, False)
        detached = [t.detach() if isinstance(t, torch.Tensor) else t for t in args]
        runs = []
        for inputs, grad_mode in ((args, True), (args, False), (detached, True)):
            # fresh running statistics for each call, which updates them
            inputs = [t.clone() if isinstance(t, torch.Tensor) and not t.requires_grad else t for t in inputs]
            with torch.set_grad_enabled(grad_mode):
                out = getattr(torch.ops.anrl_ext, op)(*inputs)
            y = out[0] if isinstance(out, tuple) else out
            assert (y.grad_fn is not None) == (len(runs) == 0), (op, len(runs))
            runs.append([y.detach(), inputs[-6], inputs[-5]])
        for other in runs[1:]:
            assert all(torch.equal(a, b) for a, b in zip(runs[0], other)), op


@pytest.mark.parametrize("op", ["blend_apply", "gate_blend_apply"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_native_autograd_ops_opcheck(op, channels_last):
    """blend_apply and gate_blend_apply, the ops whose autograd is C++: schema, fake kernel, autograd
    registration (the Autograd kernel, not a fallthrough) and AOT dispatch, with gradients wanted for x,
    alpha or the gate, and the weights."""
    torch.library.opcheck(getattr(torch.ops.anrl_ext, op).default, native_autograd_op_args(op, channels_last))


def test_blend_apply_errors_are_clear():
    with pytest.raises(ValueError, match="4-D"):
        P.blend_apply_forward(torch.randn(3, 4), None, 0.5, None, None, None, None, None, None, True, False, 0.1,
                              1e-5)
    with pytest.raises(ValueError, match="needs running_mean"):
        P.blend_apply_forward(torch.randn(2, 3, 4, 4), None, 0.5, None, None, None, None, None, None, False, False,
                              0.1, 1e-5)
    x = torch.randn(2, 3, 4, 4)
    mean, var = P.moments(x)
    with pytest.raises(ValueError, match="same shape"):
        P.blend_apply_backward(torch.randn(2, 3, 4, 5), x, mean, var, None, 0.5, None, None, None, None, mean[0],
                               var[0], True, 1e-5)


@pytest.mark.parametrize("n, c, d", [(5, 7, 3), (1, 3, 1), (2, 40, 5)])
def test_gate_middle_matches_reference(n, c, d):
    check_gate_middle(P, "cpu", n, c, d)


def test_gate_middle_float32():
    check_gate_middle(P, "cpu", 4, 9, 2, torch.float32, tol=3e-5)
    check_gate_middle(P, "cpu", 3, 70, 35, torch.float32, tol=1e-4, every_affine=False)  # test_gpu's sizes


def test_gate_with_saturated_heads():
    check_gate_saturated_heads(P)


def test_gate_middle_is_deterministic():
    g = torch.Generator().manual_seed(0)
    n, c, d = 16, 96, 6
    mean, var, s0, s1 = (torch.randn(n, c, generator=g) for _ in range(4))
    var = var.abs() + 0.1
    gate = (torch.randn(d, c, generator=g), None, torch.randn(c, d, generator=g), None, torch.randn(c, d, generator=g))
    runs = []
    for _ in range(2):
        out = P.gate_blend_forward(mean, var, *gate, None, None, None, None, None, None, True, False, 0.1, 1e-5, 99)
        back = P.gate_blend_backward(s0, s1, mean, var, out[0], out[1], None, *gate, None, None, None, None,
                                     out[4], out[5], True, 1e-5, 12)
        runs.append([*out, *back])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_cuda_gate_launch_choice():
    """The CUDA gated middle runs a gate in one block up to a settable number of multiply-adds of its
    forward, counted as fast_blend.gate_work counts them, and spreads larger ones over blocks
    (kernels/gate_cuda.cu); the CPU kernels give the same bits whatever the setting."""
    from anrl_ext.ops.backends import gate_launch_limit

    assert gate_launch_limit("cpu") is gate_launch_limit("cuda") is native.cuda_gate_one_block_max_work
    check_gate_launch_choice(gate_launch_limit("cuda"), native._C.gate_in_one_block, 2 ** 15)
    check_gate_launches_equal(P, "cpu", 5, 7, 3)


def test_cuda_nhwc_moments_walk_switch():
    """The switch between the CUDA channels_last moments' two walks (kernels/afnm_cuda.cu) exists in
    every build, defaults to the early loads, and takes only a bool; the cpu kernels ignore it."""
    assert native.cuda_nhwc_moments_early_loads() is True
    x = torch.randn(3, 5, 7, 9).contiguous(memory_format=torch.channels_last)
    before = P.moments(x)
    try:
        assert native.cuda_nhwc_moments_early_loads(False) is False
        assert all(torch.equal(a, b) for a, b in zip(before, P.moments(x)))
        with pytest.raises(TypeError, match="bool"):
            native.cuda_nhwc_moments_early_loads(1)
    finally:
        native.cuda_nhwc_moments_early_loads(True)
    assert native.cuda_nhwc_moments_early_loads() is True


@pytest.mark.parametrize("op", ["gate_blend_forward", "gate_blend_backward"])
def test_gate_opcheck(op):
    n, c, d = 3, 4, 2
    f64 = dict(dtype=torch.float64)
    mean, var, s0, s1 = (torch.randn(n, c, **f64) for _ in range(4))
    var = var.abs() + 0.1
    gate = (torch.randn(d, c, **f64), torch.randn(d, **f64), torch.randn(c, d, **f64), None, torch.randn(c, d, **f64))
    w = torch.randn(c, **f64)
    if op == "gate_blend_forward":
        args = (mean, var, *gate, w, None, w, None, torch.zeros(c, **f64), torch.ones(c, **f64), True, True, 0.1,
                1e-5, 12)
    else:
        alpha, hidden = torch.rand(n, c, **f64), torch.rand(n, d, **f64)
        args = (s0, s1, mean, var, alpha, hidden, torch.randn(n, c, **f64), *gate, w, None, w, None, mean[0],
                var[0], True, 1e-5, 4)
    torch.library.opcheck(getattr(torch.ops.anrl_ext, op).default, args,
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def test_gate_middle_errors_are_clear():
    mean, var = torch.randn(3, 4), torch.rand(3, 4) + 0.1
    rest = (None, None, None, None, None, None, True, False, 0.1, 1e-5, 12)
    with pytest.raises(ValueError, match="gate_w1 must be"):
        P.gate_blend_forward(mean, var, torch.randn(2, 5), None, torch.randn(4, 2), None, None, *rest)
    with pytest.raises(ValueError, match="gate_wb must have shape"):
        P.gate_blend_forward(mean, var, torch.randn(2, 4), None, torch.randn(4, 3), None, None, *rest)
    with pytest.raises(ValueError, match="gate_b1 given without gate_w1"):
        P.gate_blend_forward(mean, var, None, torch.randn(2), torch.randn(4, 4), None, None, *rest)
    with pytest.raises(ValueError, match="gate_wi must have shape"):
        P.gate_blend_forward(mean, var, None, None, torch.randn(4, 4), None, torch.randn(4, 2), *rest)
