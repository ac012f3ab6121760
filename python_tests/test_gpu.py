"""GPU backends (cuda, triton) on a real GPU. Skipped without one: these run in
benchmarks/gpu_check.sh on a lent machine, not in CI."""
import pytest
import torch

import anrl_ext
from helpers import (MIXED_DTYPES, check_amp_and_channels_last, check_batch_mean_to_one_ulp, check_batched_gradients,
                     check_blend_apply, check_blend_middle, check_compile, check_export, check_func_grad,
                     check_gate_launches_equal, check_gate_middle, check_gate_saturated_heads,
                     check_gated_native_autograd_op, check_graph_replay, check_wide_afnm_layer, check_jit_trace,
                     check_mixed_dtypes, check_native_autograd_op, check_norm_matches_reference,
                     check_params_in_own_dtype, check_reductions_on_large_planes, GPU_REDUCTION_BOUNDS, LARGE_PLANES,
                     check_sync_of_one_process, make_inputs, max_err, oracle, package_op)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU_BACKENDS = [b for b in ("cuda", "triton") if torch.cuda.is_available() and b in anrl_ext.available_backends("cuda")]


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("shape", [(4, 3, 7, 7), (3, 17, 63, 65), (2, 64, 32, 32), (1, 5, 1, 9)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_values_and_gradients_vs_float64(backend, shape, channels_last, dtype):
    check_vs_float64(backend, shape, channels_last, dtype)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("shape", [(3, 17, 63, 65), (1, 5, 1, 9)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_float16_values_and_gradients_vs_float64(backend, shape, channels_last):
    """float16 input (float32 accumulation) on two of the shapes: every kernel has a half path."""
    check_vs_float64(backend, shape, channels_last, torch.float16)


def check_vs_float64(backend, shape, channels_last, dtype):
    x, alpha, params = make_inputs(shape, dtype, "nc", channels_last)
    x = x.cuda().requires_grad_()
    a = alpha.to("cuda", dtype).requires_grad_()
    ps = [p.to("cuda", dtype).requires_grad_() for p in params]
    y = anrl_ext.adaptive_norm(x, a, *ps, backend=backend)
    x64 = x.detach().double().requires_grad_()
    a64 = a.detach().double().requires_grad_()
    p64 = [p.detach().double().requires_grad_() for p in ps]
    y64 = oracle(x64, a64, p64)
    tol = {torch.float32: 1e-4, torch.float16: 2e-3}.get(dtype, 5e-2)
    assert max_err(y, y64) < tol * max(1, y64.abs().max().item())
    g = torch.randn_like(y64)
    for g1, g2 in zip(torch.autograd.grad(y, [x, a, *ps], g.to(dtype)), torch.autograd.grad(y64, [x64, a64, *p64], g)):
        assert max_err(g1, g2) < 20 * tol * max(1, g2.abs().max().item())


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gradcheck_gradgradcheck_float64_cuda(backend):
    x, alpha, params = make_inputs((3, 4, 5, 6), torch.float64, "nc")
    inputs = tuple(t.cuda().requires_grad_() for t in [x, alpha, *params])
    f = lambda *t: anrl_ext.adaptive_norm(*t, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("alpha_kind, dtype, weights, wanted", [
    ("nc", torch.float64, "all", "all"), ("c", torch.bfloat16, "bn only", "weights only"),
    ("0.3", torch.float32, "none", "x only"), ("scalar", torch.float32, "all", "all")])
def test_native_autograd_op_equals_the_python_function_cuda(backend, alpha_kind, dtype, weights, wanted,
                                                            monkeypatch):
    """blend_apply's C++ autograd (backward on autograd's device thread; cuda: no Python, triton: the
    Triton passes' Python only) against the Python Function around the same two calls: the same bits."""
    check_native_autograd_op(alpha_kind, dtype, weights, wanted, monkeypatch, backend=backend, device="cuda")


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("gate", ["paper", "sigmoid2"])
def test_gated_native_autograd_op_equals_the_python_function_cuda(backend, gate, monkeypatch):
    """AFNM's gate_blend_apply on CUDA against the Python Function: same bits first order, and the
    create_graph=True gradients (C++ on the device thread calling back into Python) and a second
    derivative equal."""
    check_gated_native_autograd_op(gate, torch.float64, monkeypatch, backend=backend, device="cuda")


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_alpha_one_and_zero_vs_torch_modules(backend):
    x = torch.randn(8, 16, 20, 20, device="cuda") * 2 + 1
    bn = torch.nn.BatchNorm2d(16).cuda()
    inn = torch.nn.InstanceNorm2d(16, affine=True).cuda()
    rm, rv = torch.zeros(16, device="cuda"), torch.ones(16, device="cuda")
    for _ in range(3):
        y = anrl_ext.adaptive_norm(x, 1.0, bn.weight, bn.bias, None, None, rm, rv, backend=backend)
        assert max_err(y, bn(x)) < 1e-4
    torch.testing.assert_close(rv, bn.running_var)
    y = anrl_ext.adaptive_norm(x, 0.0, None, None, inn.weight, inn.bias, backend=backend)
    assert max_err(y, inn(x)) < 1e-4


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_deterministic_bits(backend):
    x = torch.randn(4, 8, 128, 128, device="cuda", requires_grad=True)
    outs = []
    for _ in range(2):
        y = anrl_ext.adaptive_norm(x, 0.3, backend=backend)
        (g,) = torch.autograd.grad((y * y).sum(), x)
        outs.append((y, g))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


@pytest.mark.skipif("cuda" not in GPU_BACKENDS, reason="needs the CUDA kernels")
@pytest.mark.parametrize("shape", [(2, 3, 128, 130), (3, 17, 63, 65), (2, 64, 128, 128), (1, 40, 1, 9)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_nhwc_moments_early_loads_change_no_bit_cuda(shape, dtype):
    """The CUDA channels_last moments with each part's rows loaded early (since 2026-12-06) and as
    each part is reduced (before): the same arithmetic in the same order, so the same bits."""
    from anrl_ext.ops import native
    from anrl_ext.ops.backends import primitives_for

    x = (torch.randn(shape, device="cuda") * 3 + 100).to(dtype).contiguous(memory_format=torch.channels_last)
    moments = primitives_for("cuda").moments
    early = moments(x)
    try:
        native.cuda_nhwc_moments_early_loads(False)
        late = moments(x)
    finally:
        native.cuda_nhwc_moments_early_loads(True)
    assert all(torch.equal(a, b) for a, b in zip(early, late))


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("shape", [(2, 3, 128, 130), (64, 40, 8, 8)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_reductions_split_and_whole_planes_cuda(backend, shape, channels_last):
    """moments / reduce against float64 where the CUDA kernels split each plane over
    blocks and merge (few large planes) and where one block writes the result (many planes)."""
    from anrl_ext.ops import reference as ref
    from anrl_ext.ops.backends import primitives_for

    P = primitives_for(backend)
    x = torch.randn(shape, device="cuda") * 3 + 1
    dy = torch.randn(shape, device="cuda")
    if channels_last:
        x, dy = x.contiguous(memory_format=torch.channels_last), dy.contiguous(memory_format=torch.channels_last)
    mean, var = P.moments(x)
    rmean, rvar = ref.PRIMITIVES.moments(x.double())
    torch.testing.assert_close(mean.double(), rmean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(var.double(), rvar, atol=1e-5, rtol=1e-5)
    s0, s1 = P.reduce(dy, x, mean)
    r0, r1 = ref.PRIMITIVES.reduce(dy.double(), x.double(), mean.double())
    tol = 1e-6 * shape[2] * shape[3]
    torch.testing.assert_close(s0.double(), r0, atol=tol, rtol=1e-5)
    torch.testing.assert_close(s1.double(), r1, atol=tol, rtol=1e-5)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_large_mean_small_std_cuda(backend):
    x = (torch.randn(4, 3, 64, 64, dtype=torch.float64) * 0.1 + 1e4).float().cuda()
    y = anrl_ext.adaptive_norm(x, 0.5, backend=backend)
    ref = oracle(x.cpu(), 0.5, [torch.ones(3), torch.zeros(3)] * 2)
    assert max_err(y.cpu(), ref) < 2e-2


NAMESPACES = {"cuda": "anrl_ext", "triton": "anrl_ext_triton"}


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("op", ["moments", "affine", "reduce", "affine2"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck_cuda(backend, op, channels_last):
    pytest.importorskip("expecttest")  # torch.library.opcheck needs it
    n, c = 2, 3
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = (torch.randn(n, c, 4, 5, dtype=torch.float64, device="cuda") * 3 + 1).to(memory_format=fmt)
    dy = torch.randn_like(x)
    m, a, b, cc = (torch.randn(n, c, dtype=torch.float64, device="cuda") for _ in range(4))
    args = {"moments": (x,), "affine": (x, m, a, b), "reduce": (dy, x, m), "affine2": (dy, x, m, a, b, cc)}[op]
    args = tuple(t.requires_grad_() for t in args)
    torch.library.opcheck(getattr(getattr(torch.ops, NAMESPACES[backend]), op).default, args)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("gate, affine", [("paper", True), ("sigmoid2", True), ("paper", False)])
def test_afnm_module_matches_reference_backend(backend, gate, affine):
    torch.manual_seed(1)
    ref = anrl_ext.AFNM(24, reduction=4, gate=gate, affine=affine, backend="reference").cuda()
    fused = anrl_ext.AFNM(24, reduction=4, gate=gate, affine=affine, backend=backend).cuda()
    fused.load_state_dict(ref.state_dict())
    x = (torch.randn(6, 24, 19, 23, device="cuda") * 2 + 0.5).requires_grad_()
    for _ in range(3):  # running stats follow
        y_r, a_r = ref(x, return_alpha=True)
        y_f, a_f = fused(x, return_alpha=True)
    assert max_err(y_f, y_r) < 1e-4 and max_err(a_f, a_r) < 1e-5
    torch.testing.assert_close(fused.running_mean, ref.running_mean)
    torch.testing.assert_close(fused.running_var, ref.running_var)
    g = torch.randn_like(y_r)
    grads_r = torch.autograd.grad(y_r, [x, *ref.parameters()], g)
    grads_f = torch.autograd.grad(y_f, [x, *fused.parameters()], g)
    for gf, gr in zip(grads_f, grads_r):
        assert max_err(gf, gr) < 1e-3 * max(1, gr.abs().max().item())
    ref.eval(), fused.eval()
    assert max_err(fused(x), ref(x)) < 1e-4


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_wide_afnm_layer_matches_reference_backend_cuda(backend):
    """C = 512, N = 64 (3.1e6 multiply-adds, under CUDA_GATE_MAX_WORK / TRITON_GATE_MAX_WORK, past
    the one-launch limits): both backends run the gate in their gated middle spread over blocks /
    programs (Triton: through its C++ autograd op's pass operators)."""
    ran = check_wide_afnm_layer(backend, "cuda")
    passes = ["gate_blend_forward", "gate_blend_backward"] if backend == "cuda" else \
        ["gate_blend_apply_forward", "gate_blend_apply_backward"]
    assert all(p in ran for p in passes), ran


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_second_order_through_afnm_matches_reference(backend):
    """The meta-update's shape of derivative: grad of a grad-dependent loss."""
    torch.manual_seed(2)
    results = []
    for b in (backend, "reference"):
        torch.manual_seed(2)
        layer = anrl_ext.AFNM(8, reduction=2, backend=b).cuda().double()
        x = torch.randn(4, 8, 9, 7, device="cuda", dtype=torch.float64) * 2 + 1
        w = torch.randn(8, 8, 3, 3, device="cuda", dtype=torch.float64, requires_grad=True)
        y = layer(torch.nn.functional.conv2d(x, w, padding=1))
        (gw,) = torch.autograd.grad(y.square().mean(), w, create_graph=True)
        outer = torch.autograd.grad(gw.square().sum(), [w, *layer.parameters()], allow_unused=True)
        results.append([t for t in outer if t is not None])
    for gf, gr in zip(*results):
        torch.testing.assert_close(gf, gr, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_torch_compile_on_cuda(backend):
    torch._dynamo.reset()
    compiler = "inductor" if backend == "triton" else "aot_eager"
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), anrl_ext.AFNM(8, reduction=2, backend=backend),
                                torch.nn.ReLU()).cuda()
    x = torch.randn(4, 3, 12, 12, device="cuda")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    y_c = torch.compile(model, backend=compiler, fullgraph=True)(x)
    grads_c = torch.autograd.grad(y_c.square().mean(), list(model.parameters()))
    model.load_state_dict(state)
    y_e = model(x)
    grads_e = torch.autograd.grad(y_e.square().mean(), list(model.parameters()))
    torch.testing.assert_close(y_c, y_e, atol=1e-5, rtol=1e-5)
    for gc, ge in zip(grads_c, grads_e):
        torch.testing.assert_close(gc, ge, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("kind", ["afnm", "bn"])
@pytest.mark.parametrize("input_grad", [True, False])
def test_compiled_layer_is_its_one_op_on_cuda(backend, kind, input_grad):
    """torch.compile traces the layer's one op on CUDA too (test_compile.py): values, gradients and running
    statistics as eager on three shapes, compiled twice at most (aot_eager: Inductor's code generation would
    cost the device check seconds a case; test_torch_compile_on_cuda runs Inductor on Triton)."""
    # not bits: cuDNN's weight gradient of the conv in front may sum in another order each call
    ops = check_compile(backend, kind, True, device="cuda", tol=1e-4, input_grad=input_grad)
    assert ops == {package_op(backend, kind)}, ops


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("training", [False, True])
def test_torch_export_on_cuda(backend, training, tmp_path):
    """Export, save, load, other shapes, running statistics: as on the cpu backend (test_export.py)."""
    check_export(backend, "afnm", training, tmp_path / "model.pt2", device="cuda")


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("training", [False, True])
def test_jit_trace_on_cuda(backend, training):
    check_jit_trace(backend, "afnm", training, device="cuda")


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("kind", ["bn", "in", "half", "bin", "ibn", "afnm"])
def test_every_norm_matches_reference_on_cuda(backend, kind):
    check_norm_matches_reference(kind, True, backend, device="cuda")


@pytest.mark.parametrize("backend", GPU_BACKENDS + ["reference"])
@pytest.mark.parametrize("param_dtype, x_dtype", MIXED_DTYPES)
def test_parameters_in_another_dtype_than_the_input_on_cuda(backend, param_dtype, x_dtype):
    for kind in ("bn", "in", "half", "bin", "ibn", "afnm"):
        check_mixed_dtypes(kind, backend, param_dtype, x_dtype, device="cuda")


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("kind", ["ibn", "afnm"])
def test_func_grad_on_cuda(backend, kind):
    """Inside torch.func.grad the layer runs on the reference backend, on CUDA tensors too."""
    check_func_grad(kind, True, backend, device="cuda")


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kind", ["ibn", "afnm"])
def test_batched_gradients_on_cuda(backend, kind, channels_last):
    """autograd.grad(is_grads_batched=True) through the GPU backward, float64."""
    check_batched_gradients(kind, True, channels_last, backend, device="cuda")


def test_auto_backend_on_cuda_is_a_gpu_backend():
    from anrl_ext.ops.backends import resolve_backend

    x = torch.randn(2, 3, 4, 4, device="cuda")
    assert resolve_backend("auto", x.device) in GPU_BACKENDS


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("n, c", [(5, 7), (1, 3), (2, 300)])
def test_blend_middle_kernels_cuda(backend, n, c):
    """Every alpha form and affine variant on cuda, and on Triton at (5, 7) in float64; Triton's other
    cases keep one (each variant is a compilation: run 4 spent 58 s here, the interpreted tests check
    every variant's arithmetic)."""
    from anrl_ext.ops.backends import primitives_for

    every = backend == "cuda" or (n, c) == (5, 7)
    check_blend_middle(primitives_for(backend), "cuda", n, c, every_form=every)
    check_blend_middle(primitives_for(backend), "cuda", n, c, torch.float32, tol=2e-5, every_form=backend == "cuda")


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_middle_parameters_in_their_own_dtype_cuda(backend):
    """bfloat16 / float16 / float64 weights and buffers next to float32 statistics: read
    and written in place, bit for bit the float32 results rounded once."""
    from anrl_ext.ops.backends import primitives_for

    check_params_in_own_dtype(primitives_for(backend), "cuda")
    check_params_in_own_dtype(primitives_for(backend), "cuda", n=37, c=3, dtypes=(torch.bfloat16,))


@pytest.mark.skipif("triton" not in GPU_BACKENDS, reason="needs a CUDA GPU with triton")
@pytest.mark.parametrize("shape, dtype, tol", [((3, 5, 7, 9), torch.float64, 1e-12),
                                               ((37, 2, 3, 3), torch.float32, 2e-5),
                                               ((1, 3, 40, 40), torch.bfloat16, 1e-2)])
def test_blend_apply_fold_cuda(shape, dtype, tol):
    """Triton's middle folded into the maps (four launches per forward + backward)
    against the reference middle and maps; a subset of forms keeps the compiles few."""
    from anrl_ext.ops.backends import primitives_for

    check_blend_apply(primitives_for("triton"), shape, "cuda", dtype, tol, every_form=False)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_blend_apply_cuda(backend, channels_last):
    """The whole first-order forward and backward in one call each, on the GPU."""
    from anrl_ext.ops.backends import primitives_for

    check_blend_apply(primitives_for(backend), (3, 5, 7, 9), "cuda", channels_last=channels_last,
                      every_form=False)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("n, c, d", [(5, 7, 3), (1, 3, 1), (3, 70, 35), (32, 512, 32)])
def test_gate_middle_kernels_cuda(backend, n, c, d):
    """The gated middle (gate MLP inside the middle kernels: one block / program or, past
    cuda_gate_one_block_max_work / triton_gate.one_program_max_work, spread over blocks / programs:
    (32, 512, 32) on both) against the float64 reference."""
    from anrl_ext.ops.backends import primitives_for

    every = backend == "cuda"  # Triton compiles a kernel per flag set: a subset keeps the check short
    check_gate_middle(primitives_for(backend), "cuda", n, c, d, every_affine=every)
    check_gate_middle(primitives_for(backend), "cuda", n, c, d, torch.float32, tol=1e-4, every_affine=every)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("n, c, d", [(5, 7, 3), (1, 3, 1), (3, 70, 35), (64, 512, 32), (130, 33, 2)])
def test_gate_middle_spread_over_blocks_equals_one_block_cuda(backend, n, c, d):
    """The gated middle spread over blocks (one launch per phase) against the whole gate in one
    block: the same bits on cuda (each output is written by one thread with the same loop either
    way); on Triton (the same tile functions compiled into two kernels) equal to rounding.
    (130, 33, 2): phases of more than one block of 128 threads with a partial last block (cuda),
    more samples than channel tiles (Triton's combined phases)."""
    from anrl_ext.ops.backends import primitives_for

    cuda = backend == "cuda"  # Triton compiles a kernel per flag set and phase: a subset keeps the check short
    check_gate_launches_equal(primitives_for(backend), "cuda", n, c, d, exact=cuda, every_case=cuda)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gate_with_saturated_heads_cuda(backend):
    from anrl_ext.ops.backends import primitives_for

    check_gate_saturated_heads(primitives_for(backend), "cuda")


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("kind, dtype, channels_last, tol", [
    ("afnm", torch.float64, False, 1e-12), ("afnm", torch.float32, True, 1e-5), ("afnm", torch.bfloat16, False, 1e-2),
    ("bin", torch.float32, False, 1e-5)])
def test_synchronised_statistics_of_one_process_cuda(backend, kind, dtype, channels_last, tol):
    """--sync-stats' global-statistics terms on the fused path, in a world of one."""
    check_sync_of_one_process(backend, kind, dtype, channels_last, tol, device="cuda")


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_reductions_on_large_planes_cuda(backend):
    from anrl_ext.ops.backends import primitives_for

    worst = check_reductions_on_large_planes(primitives_for(backend), LARGE_PLANES, "cuda")
    bounds = GPU_REDUCTION_BOUNDS[backend]
    assert all(worst[k] <= bounds[k] for k in bounds), worst


@pytest.mark.skipif("cuda" not in GPU_BACKENDS, reason="needs the cuda backend")
def test_reductions_on_one_block_planes_cuda():
    """Planes enough (4 per SM) that the cuda kernels give each NCHW plane one block, with no split:
    each thread's longest chains (the Triton NCHW kernels never split a plane, so LARGE_PLANES covers
    theirs). channels_last splits these rows 16 times (33 blocks of 32 channels). The same bounds;
    test_cuda_rounding_model.py models one block per plane (splits=1) for both layouts."""
    from anrl_ext.ops.backends import primitives_for

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    worst = check_reductions_on_large_planes(primitives_for("cuda"), [(-(-4 * sms // 16), 16, 256, 256)], "cuda")
    bounds = GPU_REDUCTION_BOUNDS["cuda"]
    assert all(worst[k] <= bounds[k] for k in bounds), worst


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_batch_mean_to_one_ulp_cuda(backend):
    from anrl_ext.ops.backends import primitives_for

    check_batch_mean_to_one_ulp(primitives_for(backend), backend, "cuda")


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_trainer_amp_and_channels_last_cuda(backend):
    """The trainer's --amp (bfloat16 autocast) and --channels-last on the GPU backends."""
    check_amp_and_channels_last(backend, device="cuda")


@pytest.mark.skipif("triton" not in GPU_BACKENDS, reason="needs the triton backend")
@pytest.mark.parametrize("case", ["op", "op channels_last", "op bfloat16 off alignment", "afnm layer", "bn layer"])
def test_triton_cached_launches_equal_kernel_grid_cuda(case, monkeypatch):
    """triton_launch's cached launches give the bits of kernel[grid](...) (values, every gradient,
    running statistics), the second call of each from the cache. On the CPU the recorded launches
    are compared argument by argument (test_triton_fast_launch.py); here the kernels run."""
    from anrl_ext.ops import triton_launch

    dtype = torch.bfloat16 if "bfloat16" in case else torch.float32
    shape = (3, 16, 9, 11)
    base = torch.randn(shape, device="cuda").to(dtype)
    if "off alignment" in case:  # data 2 bytes past a 16-byte boundary
        base = torch.empty(base.numel() + 1, device="cuda", dtype=dtype)[1:].view(shape).copy_(base)
    if "channels_last" in case:
        base = base.contiguous(memory_format=torch.channels_last)
    dy = torch.randn(shape, device="cuda").to(dtype)

    def run(enabled):
        monkeypatch.setattr(triton_launch, "ENABLED", enabled)
        torch.manual_seed(0)
        if "layer" in case:
            layer = (anrl_ext.AFNM(16, reduction=4, backend="triton") if case.startswith("afnm")
                     else anrl_ext.make_norm("bn", 16, backend="triton")).to("cuda")
        outs = []
        for _ in range(2):  # the second call launches from the cache
            x = base.detach().requires_grad_()
            if "layer" in case:
                inputs = [x, *layer.parameters()]
                y = layer(x)
                buffers = list(layer.buffers())
            else:
                g = torch.Generator(device="cuda").manual_seed(1)
                alpha = torch.rand(3, 16, device="cuda", generator=g).requires_grad_()
                params = [torch.randn(16, device="cuda", generator=g).requires_grad_() for _ in range(4)]
                buffers = [torch.zeros(16, device="cuda"), torch.ones(16, device="cuda")]
                inputs = [x, alpha, *params]
                y = anrl_ext.adaptive_norm(x, alpha, *params, *buffers, training=True, backend="triton")
            outs.append([y, *torch.autograd.grad(y, inputs, dy), *[b.clone() for b in buffers]])
        return outs

    for cached, direct in zip(run(True), run(False)):
        assert all(torch.equal(a, b) for a, b in zip(cached, direct))


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("kind", ["op", "afnm", "bn", "ibn"])
def test_cuda_graph_replays_equal_eager_calls_cuda(backend, kind):
    """Forward + backward of the op and of the AFNM (gate in the kernels), BN and IBN layers, captured
    with torch.cuda.graph and replayed on new inputs and weights: the eager call's bits, every output
    written, the running statistics updated by each replay."""
    check_graph_replay(backend, kind, device="cuda")
