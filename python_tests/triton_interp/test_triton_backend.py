"""Triton backend on CPU tensors under TRITON_INTERPRET=1, against float64 references.

Collected only when TRITON_INTERPRET=1 (see conftest.py); test_triton_interpret.py
runs this file in such an interpreter.
"""
import pytest
import torch

import anrl_ext
from anrl_ext.ops import reference as ref
from anrl_ext.ops import triton_backend as tb
from helpers import (GPU_REDUCTION_BOUNDS, LARGE_PLANES, MIXED_DTYPES, NATIVE_AUTOGRAD_CASES,
                     check_batch_mean_to_one_ulp, check_batched_gradients, check_blend_apply, check_blend_middle,
                     check_compile, check_gate_launch_choice, check_gate_launches_equal, check_gate_middle,
                     check_gate_saturated_heads, check_gated_native_autograd_op, check_graph_replay, check_jit_trace,
                     check_mixed_dtypes, check_native_autograd_op, check_norm_matches_reference,
                     check_params_in_own_dtype, check_reductions_on_large_planes, check_sync_of_one_process,
                     copies_in_op, gate_weights, make_inputs, max_err, native_autograd_op_args, oracle, package_op,
                     random_maker)

P = tb.PRIMITIVES


def test_triton_is_available_under_interpreter():
    assert "triton" in anrl_ext.available_backends("cpu")


# (2, 37, 9, 5): more channels than one channels_last tile (32), H*W not a multiple of it.
@pytest.mark.parametrize("shape", [(2, 3, 7, 7), (1, 17, 33, 40), (3, 2, 1, 5), (2, 37, 9, 5)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_primitives(shape, dtype, channels_last):
    n, c = shape[:2]
    x = (torch.randn(shape, dtype=torch.float64) * 3 + 1).to(dtype)
    dy = torch.randn(shape, dtype=torch.float64).to(dtype)
    if channels_last:
        x, dy = x.to(memory_format=torch.channels_last), dy.to(memory_format=torch.channels_last)
    m, a, b, cc = (torch.randn(n, c, dtype=torch.float64) for _ in range(4))
    x64, dy64 = x.double(), dy.double()
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 3e-2, torch.float16: 4e-3}[dtype]
    mean, var = P.moments(x)
    rmean, rvar = ref.PRIMITIVES.moments(x64)
    torch.testing.assert_close(mean.double(), rmean, atol=max(tol, 1e-6), rtol=1e-5)
    torch.testing.assert_close(var.double(), rvar, atol=max(tol, 1e-6), rtol=1e-5)
    torch.testing.assert_close(P.affine(x, m, a, b).double(), ref.PRIMITIVES.affine(x64, m, a, b),
                               atol=tol * 10, rtol=tol)
    s0, s1 = P.reduce(dy, x, m)
    r0, r1 = ref.PRIMITIVES.reduce(dy64, x64, m)
    sum_tol = 1e-10 if dtype == torch.float64 else 1e-6 * shape[2] * shape[3] + 1e-5
    torch.testing.assert_close(s0.double(), r0, atol=sum_tol, rtol=1e-5)
    torch.testing.assert_close(s1.double(), r1, atol=sum_tol, rtol=1e-5)
    torch.testing.assert_close(P.affine2(dy, x, m, a, b, cc).double(),
                               ref.PRIMITIVES.affine2(dy64, x64, m, a, b, cc), atol=tol * 20, rtol=tol)
    if channels_last and not x.is_contiguous():  # read in place, written in x's layout
        assert P.affine(x, m, a, b).is_contiguous(memory_format=torch.channels_last)
        assert P.affine2(dy, x, m, a, b, cc).is_contiguous(memory_format=torch.channels_last)


# (3, 130, 7, 5): channels over three column tiles of 64 (the last of 2), 35 rows over three
# row tiles of 16 (the last partial); (2, 64, 4, 8): tiles that fit exactly; C = 3: the
# smallest column tile (4 channels), one masked.
@pytest.mark.parametrize("shape", [(3, 130, 7, 5), (2, 64, 4, 8), (2, 3, 5, 9)])
def test_channels_last_maps_cover_every_tile(shape):
    """The channels_last maps walk [rows, channels] tiles (map_tiles): every element is written
    once, with its own channel's coefficients, as in float64 by the reference."""
    n, c = shape[:2]
    assert tb.map_tiles(130) == (16, 64) and tb.map_tiles(17) == (32, 32) and tb.map_tiles(3) == (256, 4)
    x, dy = (torch.randn(shape, dtype=torch.float64).to(memory_format=torch.channels_last) for _ in range(2))
    m, a, b, cc = (torch.randn(n, c, dtype=torch.float64) for _ in range(4))
    y = P.affine(x, m, a, b)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, ref.PRIMITIVES.affine(x, m, a, b), atol=1e-14, rtol=1e-14)
    torch.testing.assert_close(P.affine2(dy, x, m, a, b, cc), ref.PRIMITIVES.affine2(dy, x, m, a, b, cc),
                               atol=1e-14, rtol=1e-14)


def test_channels_last_reduction_splits():
    """A sample's rows split over programs when few (sample, 32 channels) programs would leave SMs
    idle: ~4 programs per SM, whole parts of 256 rows, at most 16, none empty."""
    cpu = torch.device("cpu")  # planned for tb.NOMINAL_SMS (132), as on an H100 / H200
    assert tb._nhwc_splits(32, 64, 128 * 128, cpu) == (8, 2048)  # 64 programs -> 512
    assert tb._nhwc_splits(64, 512, 14 * 14, cpu) == (1, 256)  # 1024 programs: no split
    assert tb._nhwc_splits(2, 4, 256 * 256, cpu) == (16, 4096)  # the cap
    for n, c, hw in [(1, 17, 1320), (3, 5, 150 * 151), (1, 1, 257), (2, 40, 255)]:
        splits, seg = tb._nhwc_splits(n, c, hw, cpu)
        assert seg % (tb.BLOCK_HW * tb.PART_CL) == 0 and 1 <= splits <= 16 and (splits - 1) * seg < hw <= splits * seg


@pytest.mark.parametrize("shape", [(1, 17, 33, 40), (2, 40, 16, 32)])
def test_channels_last_split_reductions_match_unsplit(shape, monkeypatch):
    """Split and merged (the merge kernels, float64 tree) or in one program: the same statistics, to
    float64 rounding, and each path the same bits on a second run."""
    x = (torch.randn(shape, dtype=torch.float64) * 2 + 5).to(memory_format=torch.channels_last)
    dy = torch.randn_like(x)
    center = torch.randn(shape[:2], dtype=torch.float64)

    def stats():
        return (*P.moments(x), *P.reduce(dy, x, center))

    split = stats()
    assert tb._nhwc_splits(shape[0], shape[1], shape[2] * shape[3], x.device)[0] > 1
    assert all(torch.equal(a, b) for a, b in zip(split, stats()))
    monkeypatch.setattr(tb, "NOMINAL_SMS", 0)  # 4 * 0 SMs: one split
    assert tb._nhwc_splits(shape[0], shape[1], shape[2] * shape[3], x.device)[0] == 1
    for a, b, want in zip(split, stats(), (*ref.PRIMITIVES.moments(x), *ref.PRIMITIVES.reduce(dy, x, center))):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(a, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
def test_welford_moments_of_the_benchmark_match(channels_last):
    """benchmarks/triton_welford_moments.py, the moments kernels of before 2026-12-06 that the GPU table
    times side by side with the package's (a Welford step per value, not parts in two passes): the
    same statistics to float64 rounding, so the two rows time the same result."""
    import triton_welford_moments  # benchmarks/, on sys.path through helpers

    for shape in [(2, 37, 9, 5), (1, 17, 33, 40)]:
        x = torch.randn(shape, dtype=torch.float64) * 2 + 5
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        want = ref.PRIMITIVES.moments(x)
        for got in (triton_welford_moments.moments(x), P.moments(x)):
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_reduce_part_at_once_of_the_benchmark_matches():
    """benchmarks/triton_reduce_part_at_once.py, the channels_last reduce variant that the GPU table
    times next to the package's: the same sums to float64 rounding, split and unsplit, masked
    channels and rows, so the rows time the same result."""
    import triton_reduce_part_at_once as part_at_once  # benchmarks/, on sys.path through helpers

    for shape in [(2, 37, 9, 5), (1, 17, 33, 40), (3, 40, 64, 70)]:
        x = (torch.randn(shape, dtype=torch.float64) * 2 + 5).to(memory_format=torch.channels_last)
        dy = torch.randn_like(x)
        center = torch.randn(shape[:2], dtype=torch.float64)
        want = ref.PRIMITIVES.reduce(dy, x, center)
        for got in (part_at_once.reduce(dy, x, center), P.reduce(dy, x, center)):
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-10)
    with pytest.raises(ValueError, match="channels_last"):
        part_at_once.reduce(dy, x.contiguous(), center)


def test_primitives_mixed_layouts():
    """x channels_last with an NCHW gradient (and the other way round): dy follows x."""
    x = torch.randn(2, 40, 6, 7, dtype=torch.float64) * 2 + 1
    dy = torch.randn_like(x)
    m, a, b, c = (torch.randn(2, 40, dtype=torch.float64) for _ in range(4))
    for xs, dys in ((x.to(memory_format=torch.channels_last), dy), (x, dy.to(memory_format=torch.channels_last))):
        for got, want in zip(P.reduce(dys, xs, m), ref.PRIMITIVES.reduce(dy, x, m)):
            torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(P.affine2(dys, xs, m, a, b, c), ref.PRIMITIVES.affine2(dy, x, m, a, b, c),
                                   atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("shape", [(4, 3, 7, 7), (2, 5, 13, 11)])
@pytest.mark.parametrize("training", [True, False])
def test_adaptive_norm_values_and_gradients(shape, training):
    x, alpha, params = make_inputs(shape, torch.float64, "nc")
    rm, rv = torch.randn(shape[1], dtype=torch.float64), torch.rand(shape[1], dtype=torch.float64) + 0.5
    outs = []
    for backend in ("triton", "reference"):
        xs, a = x.clone().requires_grad_(), alpha.clone().requires_grad_()
        ps = [p.clone().requires_grad_() for p in params]
        r = (rm.clone(), rv.clone())
        y = anrl_ext.adaptive_norm(xs, a, *ps, *r, training=training, backend=backend)
        g = torch.autograd.grad((y * y.detach().sin()).sum(), [xs, a, *ps])
        outs.append((y, g, r))
    assert max_err(outs[0][0], outs[1][0]) < 1e-12
    for g1, g2 in zip(outs[0][1], outs[1][1]):
        assert max_err(g1, g2) < 1e-10
    for r1, r2 in zip(outs[0][2], outs[1][2]):
        assert max_err(r1, r2) < 1e-12


@pytest.mark.parametrize("kind", ["bn", "in", "half", "bin", "ibn", "afnm"])
@pytest.mark.parametrize("training", [True, False])
def test_every_norm_matches_reference(kind, training):
    check_norm_matches_reference(kind, training, "triton")


@pytest.mark.parametrize("kind", ["op", "afnm", "bn", "ibn"])
def test_graph_replay_check(kind):
    """The GPU test of CUDA graph replays, its check with each replay an eager call (no graphs here):
    the Triton path of the op and the layers under in-place updates of input and weights."""
    check_graph_replay("triton", kind)


@pytest.mark.parametrize("kind", ["in", "bin", "afnm"])  # one of each alpha: a float, (C,), (N, C) from a gate
@pytest.mark.parametrize("param_dtype, x_dtype", MIXED_DTYPES)
def test_parameters_in_another_dtype_than_the_input(kind, param_dtype, x_dtype):
    check_mixed_dtypes(kind, "triton", param_dtype, x_dtype)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kind", ["bn", "afnm"])
def test_batched_gradients(kind, channels_last):
    """is_grads_batched through the Triton backward (its C++ autograd ops, vmap's fallback)."""
    check_batched_gradients(kind, True, channels_last, "triton")


@pytest.mark.parametrize("training", [True, False])
def test_jit_trace_equals_the_module(training):
    check_jit_trace("triton", "afnm", training)


@pytest.mark.parametrize("kind, input_grad, compiler", [("afnm", True, "aot_eager"), ("afnm", False, "aot_eager"),
                                                        ("bn", True, "aot_eager"), ("bn", False, "aot_eager"),
                                                        ("ibn", True, "inductor")])
def test_torch_compile_records_the_one_op(kind, input_grad, compiler):
    """torch.compile traces the Triton layer's one op (anrl_ext_triton::gate_blend_apply / blend_apply, their
    C++ autograd on fake tensors): the eager module's values, gradients and running statistics on three
    shapes. (The composed path, bin's, does not compile under the interpreter: tracing its triton_op reads
    a fake tensor's data pointer. test_torch_compile_on_cuda compiles it on a GPU.)"""
    ops = check_compile("triton", kind, True, compiler=compiler, input_grad=input_grad,
                        tol=0.0 if compiler == "aot_eager" else 1e-5)  # the eager launches: the same bits
    assert ops == {package_op("triton", kind)}, ops


# two tests, so that parallel workers can take them apart: the interpreted gradgradcheck is the longest here
@pytest.mark.parametrize("check", [torch.autograd.gradcheck, torch.autograd.gradgradcheck],
                         ids=["gradcheck", "gradgradcheck"])
def test_gradcheck_and_gradgradcheck(check):
    x, alpha, params = make_inputs((2, 3, 3, 4), torch.float64, "nc")
    p = [t.requires_grad_() for t in params]

    def f(x, alpha):
        return anrl_ext.adaptive_norm(x, alpha, *p, backend="triton")

    assert check(f, (x.requires_grad_(), alpha.requires_grad_()))


@pytest.mark.parametrize("kind, dtype, tol", [("afnm", torch.float64, 1e-12), ("afnm", torch.bfloat16, 1e-2),
                                              ("bin", torch.float32, 1e-5)])
def test_synchronised_statistics_of_one_process_equal_the_plain_layer(kind, dtype, tol):
    check_sync_of_one_process("triton", kind, dtype, tol=tol)


def test_afnm_module_float32_and_bfloat16():
    torch.manual_seed(0)
    m = anrl_ext.AFNM(8, reduction=2, backend="triton")
    r = anrl_ext.AFNM(8, reduction=2, backend="reference")
    r.load_state_dict(m.state_dict())
    x = torch.randn(4, 8, 9, 10) * 2 + 1
    assert max_err(m(x), r(x.double().float())) < 1e-4
    xb = x.bfloat16()
    y = m.bfloat16()(xb)
    assert y.dtype == torch.bfloat16
    assert max_err(y, oracle(xb, 0.5, [torch.ones(8), torch.zeros(8)] * 2)) < 5e-2


@pytest.mark.parametrize("gate", ["paper", "sigmoid", "sigmoid2"])
@pytest.mark.parametrize("affine", [True, False])
def test_afnm_gate_in_kernel_matches_reference_module(gate, affine):
    """The gated middle kernels (gate MLP inside) through the AFNM module, float64, with and without
    the affine weights: output, alpha and every gradient against the reference backend."""
    torch.manual_seed(2)
    m = anrl_ext.AFNM(10, reduction=3, gate=gate, affine=affine, backend="triton").double()
    for p in m.gate.parameters():
        torch.nn.init.normal_(p, std=0.4)
    r = anrl_ext.AFNM(10, reduction=3, gate=gate, affine=affine, backend="reference").double()
    r.load_state_dict(m.state_dict())
    x = torch.randn(5, 10, 6, 7, dtype=torch.float64) * 2 + 1
    outs = []
    for layer in (m, r):
        xs = x.clone().requires_grad_()
        y, alpha = layer(xs, return_alpha=True)
        loss = (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum() + alpha.square().sum()
        outs.append([y, alpha, *torch.autograd.grad(loss, [xs, *layer.parameters()]), layer.running_var])
    for a, b in zip(*outs):
        assert max_err(a, b) < 1e-10


def test_large_mean_small_std():
    x = (torch.randn(4, 3, 32, 32, dtype=torch.float64) * 0.1 + 1e4).float()
    alpha = torch.rand(4, 3)
    params = [torch.ones(3), torch.zeros(3), torch.ones(3), torch.zeros(3)]
    y = anrl_ext.adaptive_norm(x, alpha, *params, backend="triton")
    assert max_err(y, oracle(x, alpha, params)) < 2e-2


@pytest.mark.parametrize("n, c", [(5, 7), (1, 3), (2, 300)])
def test_blend_middle_matches_reference(n, c):
    check_blend_middle(P, "cpu", n, c)


def test_batch_mean_to_one_ulp():
    check_batch_mean_to_one_ulp(P, "triton")


def test_reductions_accurate_on_large_planes():
    """The planes and bounds of test_gpu.py's test_reductions_on_large_planes_cuda, interpreted.
    Observed 0.71 ulp, 1.2e-7, 6.4e-8, 2.5e-7 (channels_last rows in 16 splits merged in float64;
    unsplit: 0.76 ulp, 1.5e-7, 1.0e-7, 2.5e-7; with the moments' Welford step per value, before
    2026-12-06: 0.62 ulp and the same otherwise). Pivot-relative lane moments and channels_last sums
    in parts: before them, 128 x 128 planes gave means 2.3 ulps off, variances 2.5e-7, s0 2.3e-7,
    s1 7.1e-7. The channels_last reduce's parts folded in groups: before, one running sum of parts
    per lane left s1 at 9.7e-7 on the 256 x 256 planes."""
    worst = check_reductions_on_large_planes(P, LARGE_PLANES)
    bounds = GPU_REDUCTION_BOUNDS["triton"]
    assert all(worst[k] <= bounds[k] for k in bounds), worst


def test_channels_last_reductions_accurate_in_one_split(monkeypatch):
    """channels_last planes in one program's rows, the longest chains (with enough programs to fill
    the GPU, e.g. N * C / 32 >= 528 on an H200, nothing is split): the same bounds."""
    monkeypatch.setattr(tb, "NOMINAL_SMS", 0)
    worst = check_reductions_on_large_planes(P, LARGE_PLANES, formats=(torch.channels_last,))
    bounds = GPU_REDUCTION_BOUNDS["triton"]
    assert all(worst[k] <= bounds[k] for k in bounds), worst


def test_blend_middle_float32():
    check_blend_middle(P, "cpu", 4, 9, torch.float32, tol=2e-5)


def test_op_copies_an_expanded_gradient_once():
    assert copies_in_op("triton") == 1
    # strided x: once per direction (the backward reads the saved input), dy once
    assert copies_in_op("triton", torch.randn(2, 3, 5, 8)[..., ::2]) == 3


def test_middle_reads_and_writes_parameters_in_their_own_dtype():
    # n = 37: the fold's batch loop over more than one vector load (32)
    check_params_in_own_dtype(P, bf16_truncates=True)
    check_params_in_own_dtype(P.direct, n=37, c=3, bf16_truncates=True, dtypes=(torch.bfloat16,))


# Shapes past one tile: C > BLOCK_C (64) and D > BLOCK_K (32). Each in one program and spread over a
# grid, one launch per phase (triton_gate.one_program_max_work 0).
@pytest.mark.parametrize("spread", [False, True])
@pytest.mark.parametrize("n, c, d", [(5, 7, 3), (1, 3, 1), (3, 70, 35)])
def test_gate_middle_matches_reference(n, c, d, spread, monkeypatch):
    from anrl_ext.ops import triton_gate

    if spread:
        monkeypatch.setattr(triton_gate, "ONE_PROGRAM_MAX_WORK", 0)
    check_gate_middle(P, "cpu", n, c, d)


# The spread backward's phases 3 and 4 share a grid, whose programs past one index range run only the
# other phase: (5, 7, 3) has more samples than channel and hidden tiles, (2, 140, 40) fewer.
@pytest.mark.parametrize("n, c, d", [(5, 7, 3), (1, 3, 1), (3, 70, 35), (2, 140, 40)])
def test_gate_spread_over_programs_equals_one_program(n, c, d):
    """The gate one launch per phase over a grid gives the one program's bits: each tile is
    computed by the same function either way."""
    check_gate_launches_equal(P, "cpu", n, c, d)


def test_gate_launch_choice():
    """One program up to triton_gate.one_program_max_work multiply-adds (settable, checked), the limit
    backends.gate_launch_limit gives for Triton (which the spread-equals-one-program tests set)."""
    from anrl_ext.ops import triton_gate
    from anrl_ext.ops.backends import gate_launch_limit

    check_gate_launch_choice(gate_launch_limit("triton"), triton_gate.gate_in_one_program, 2 ** 16)


def test_gate_launches_by_size(launched):
    """Small gates (at most one_program_max_work multiply-adds) launch one program each way,
    larger ones one launch per phase: 3 forward and 4 backward with a hidden layer, 2 and 3
    without."""
    from anrl_ext.ops import triton_gate

    rnd = random_maker("cpu", torch.float64, seed=3)
    for (n, c, d), launches in (((2, 6, 2), (1, 1)), ((32, 70, 12), (3, 4)), ((16, 70, 0), (2, 3))):
        layout = "paper" if d else "sigmoid"
        gate = gate_weights(layout, c, d, rnd)
        work = n * (c * (d or c) * (2 if layout == "paper" else 1) + d * c)
        assert triton_gate.gate_in_one_program(n, c, d, layout == "paper") is (launches == (1, 1)), work
        mean, var = rnd(n, c), rnd(n, c, pos=True)
        launched.clear()
        out = P.gate_blend_forward(mean, var, *gate, *[None] * 6, True, False, 0.1, 1e-5, 99)
        assert launched == ["_gate_forward_kernel"] * launches[0]
        launched.clear()
        P.gate_blend_backward(rnd(n, c), rnd(n, c), mean, var, out[0], out[1], None, *gate, *[None] * 4, out[4],
                              out[5], True, 1e-5, 12)
        assert launched == ["_gate_backward_kernel"] * launches[1]


def test_gate_middle_float32():
    check_gate_middle(P, "cpu", 4, 9, 2, torch.float32, tol=3e-5)
    check_gate_middle(P, "cpu", 3, 70, 35, torch.float32, tol=1e-4, every_affine=False)  # test_gpu's sizes


def test_gate_with_saturated_heads():
    check_gate_saturated_heads(P)


# (37, 2, 3, 3): more samples than one vector load of the batch (32), and than a program's planes
# (32 of 9 values: a second, partial group of samples); (1, 3, 40, 40): a plane over two blocks, so
# programs of block 1 must not write; (5, 3, 32, 33): planes over two blocks, 4 samples a program
# (two groups, the second of one sample); channels_last: the middle and the maps apart (the fold
# takes NCHW only).
@pytest.mark.parametrize("shape, channels_last", [((3, 5, 7, 9), False), ((37, 2, 3, 3), False),
                                                  ((1, 3, 40, 40), False), ((5, 3, 32, 33), False),
                                                  ((2, 4, 3, 5), True)])
def test_blend_apply_matches_reference(shape, channels_last):
    from anrl_ext.ops.triton_blend_apply import fold_rows

    assert (fold_rows(37, 128), fold_rows(1, 1024), fold_rows(5, 1024), fold_rows(3, 128)) == (32, 1, 4, 4)
    check_blend_apply(P, shape, channels_last=channels_last, every_form=shape == (3, 5, 7, 9))


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 2e-5), (torch.bfloat16, 1e-2), (torch.float16, 2e-3)])
def test_blend_apply_low_precision(dtype, tol):
    check_blend_apply(P, (4, 3, 5, 6), dtype=dtype, tol=tol, every_form=False)


def _op_run(x, alpha, params, running):
    xs = x.clone().requires_grad_()
    a = alpha.clone().requires_grad_() if isinstance(alpha, torch.Tensor) else alpha
    ps = [p.clone().requires_grad_() for p in params]
    r = [t.clone() for t in running]
    y = anrl_ext.adaptive_norm(xs, a, *ps, *r, training=True, backend="triton")
    wrt = [xs, *ps] + ([a] if isinstance(a, torch.Tensor) else [])
    return [y, *torch.autograd.grad((y * y.detach().cos()).sum(), wrt), *r]


@pytest.mark.parametrize("alpha_kind", ["nc", "c", "0.3"])
def test_four_launches_equal_six(alpha_kind, monkeypatch):
    """The op with the middle folded into the maps (four launches) against the same op
    with them apart (six): every output, gradient and running buffer."""
    from anrl_ext.ops import fast_blend

    x, alpha, params = make_inputs((3, 4, 5, 6), torch.float64, alpha_kind)
    running = (torch.randn(4, dtype=torch.float64), torch.rand(4, dtype=torch.float64) + 0.5)
    four = _op_run(x, alpha, params, running)
    monkeypatch.setattr(fast_blend, "WHOLE_PASS", False)
    six = _op_run(x, alpha, params, running)
    for a, b in zip(four, six):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


@pytest.fixture
def launched(monkeypatch):
    """Names of the Triton kernels launched (interpreted)."""
    from triton.runtime.interpreter import InterpretedFunction

    names = []
    run = InterpretedFunction.run

    def record(self, *args, **kwargs):
        names.append(self.fn.__name__)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(InterpretedFunction, "run", record)
    return names


def test_op_launches_four_kernels_for_nchw(launched):
    x, alpha, params = make_inputs((2, 3, 4, 5), torch.float64, "nc")
    for alpha_arg in (alpha, 0.3):
        launched.clear()
        xs = x.clone().requires_grad_()
        y = anrl_ext.adaptive_norm(xs, alpha_arg, *params, backend="triton")
        torch.autograd.grad(y.sum(), xs)
        assert launched == ["_moments_kernel", "_blend_affine_kernel", "_reduce_kernel", "_blend_affine2_kernel"]
    launched.clear()  # channels_last: the middle and the maps apart
    xs = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    torch.autograd.grad(anrl_ext.adaptive_norm(xs, alpha, *params, backend="triton").sum(), xs)
    assert launched == ["_moments_nhwc_kernel", "_blend_forward_kernel", "_affine_nhwc_kernel",
                        "_reduce_nhwc_kernel", "_blend_backward_kernel", "_affine2_nhwc_kernel"]


@pytest.mark.parametrize("alpha_kind, dtype, weights, wanted", NATIVE_AUTOGRAD_CASES)
def test_native_autograd_op_equals_the_python_function(alpha_kind, dtype, weights, wanted, monkeypatch):
    """anrl_ext_triton::blend_apply (C++ autograd around the Triton passes) against fast_blend's Python
    Function around the same passes: the same bits for y, every gradient and the running statistics."""
    check_native_autograd_op(alpha_kind, dtype, weights, wanted, monkeypatch, backend="triton")


@pytest.mark.parametrize("gate", ["paper", "sigmoid", "sigmoid2"])
def test_gated_native_autograd_op_equals_the_python_function(gate, monkeypatch):
    """anrl_ext_triton::gate_blend_apply against the Python Function: the same bits first order, and the
    create_graph=True gradients and a second derivative through them."""
    check_gated_native_autograd_op(gate, torch.float64, monkeypatch, backend="triton")


def test_backward_without_dx_launches_no_map(launched):
    """x needing no gradient: the backward op reduces and runs the middle, and writes no dx."""
    x, alpha, params = make_inputs((2, 3, 4, 5), torch.float64, "nc")
    ps = [p.clone().requires_grad_() for p in params]
    y = anrl_ext.adaptive_norm(x, alpha, *ps, backend="triton")
    assert "BlendApply" in y.grad_fn.name()
    launched.clear()
    torch.autograd.grad(y.sum(), ps)
    assert launched == ["_reduce_kernel", "_blend_backward_kernel"]
    layer = anrl_ext.AFNM(3, reduction=1, backend="triton").double()
    y = layer(x)
    assert "GateBlendApply" in y.grad_fn.name()
    launched.clear()
    torch.autograd.grad(y.sum(), list(layer.parameters()))
    assert launched == ["_reduce_kernel", "_gate_backward_kernel"]


@pytest.mark.parametrize("op", ["blend_apply", "gate_blend_apply"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_native_autograd_ops_opcheck(op, channels_last):
    """anrl_ext_triton::blend_apply and ::gate_blend_apply (C++ autograd): schema, fake kernel, autograd
    registration and AOT dispatch."""
    torch.library.opcheck(getattr(torch.ops.anrl_ext_triton, op).default, native_autograd_op_args(op, channels_last))


@pytest.mark.parametrize("needs_dx", [True, False])
def test_pass_ops_opcheck(needs_dx):
    """The passes those Functions call (their kernels: triton_apply_ops.py): schema and fake kernels,
    dx empty without needs_dx."""
    x, w1, _, wb, _, wi, w, _, _, _, rm, rv, *_ = (t.detach() if isinstance(t, torch.Tensor) else t
                                                   for t in native_autograd_op_args("gate_blend_apply", False))
    ops = torch.ops.anrl_ext_triton
    alpha, dy, galpha = torch.rand(3, 4, dtype=x.dtype), torch.randn_like(x), torch.randn(3, 4, dtype=x.dtype)
    utils = ("test_schema", "test_faketensor", "test_aot_dispatch_static")
    y, mean, var, bn_mean, bn_var = ops.blend_apply_forward(x, alpha, 0.0, w, None, w, None, rm, rv, True, True, 0.1,
                                                            1e-5)
    torch.library.opcheck(ops.blend_apply_forward.default,
                          (x, alpha, 0.0, w, None, w, None, rm, rv, True, True, 0.1, 1e-5), test_utils=utils)
    args = (dy, x, mean, var, alpha, 0.0, w, None, w, None, bn_mean, bn_var, True, 1e-5, needs_dx)
    torch.library.opcheck(ops.blend_apply_backward.default, args, test_utils=utils)
    assert (ops.blend_apply_backward(*args)[0].numel() > 0) is needs_dx
    gate_args = (x, w1, None, wb, None, wi, w, None, w, None, rm, rv, True, True, 0.1, 1e-5)
    torch.library.opcheck(ops.gate_blend_apply_forward.default, gate_args, test_utils=utils)
    y, a, hidden, mean, var, bn_mean, bn_var = ops.gate_blend_apply_forward(*gate_args)
    args = (dy, x, mean, var, a, hidden, galpha, w1, None, wb, None, wi, w, None, w, None, bn_mean, bn_var, True,
            1e-5, needs_dx)
    torch.library.opcheck(ops.gate_blend_apply_backward.default, args, test_utils=utils)
    assert (ops.gate_blend_apply_backward(*args)[0].numel() > 0) is needs_dx
