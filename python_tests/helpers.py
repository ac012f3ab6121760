"""Shared helpers for the tests: random inputs, the float64 oracle, checks run on several backends and
file writes that fail."""
import contextlib
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch

from anrl_ext import checkpoint
from anrl_ext.ops.primitives import acc_dtype
from anrl_ext.ops.reference import adaptive_norm_reference

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
import cases  # noqa: E402  (benchmarks/cases.py: graph_replay, shared with run_gpu.py)


def make_inputs(shape, dtype=torch.float32, alpha_kind="nc", channels_last=False, scale=2.0, shift=0.5):
    n, c = shape[:2]
    x = (torch.randn(shape, dtype=torch.float64) * scale + shift).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    if alpha_kind == "nc":
        alpha = torch.rand(n, c, dtype=torch.float64)
    elif alpha_kind == "c":
        alpha = torch.rand(c, dtype=torch.float64)
    else:
        alpha = float(alpha_kind)
    params = [torch.randn(c, dtype=torch.float64) * 0.5 + (1.0 if i % 2 == 0 else 0.0) for i in range(4)]
    return x, alpha, params


def oracle(x, alpha, params, running=None, training=True, momentum=0.1, eps=1e-5):
    """float64 reference of adaptive_norm."""
    a = alpha.double() if isinstance(alpha, torch.Tensor) else alpha
    rm, rv = running if running is not None else (None, None)
    return adaptive_norm_reference(x.double(), a, *[p.double() for p in params], rm, rv, training, momentum, eps)


def max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


def spied(prims, names, calls):
    """prims (and its direct set) with each named function appending its name to
    `calls` when called."""
    import dataclasses

    def spy(name, fn):
        def wrapped(*args):
            calls.append(name)
            return fn(*args)
        return wrapped

    direct = prims.direct and spied(prims.direct, names, calls)
    return dataclasses.replace(prims, **{name: spy(name, getattr(prims, name)) for name in names}, direct=direct)


def spy_on_primitives(monkeypatch, names) -> list:
    """The list that every call, from here on, of the named primitives of whichever backend
    `anrl_ext.ops.adaptive_norm` picks appends its name to."""
    import importlib

    from anrl_ext.ops import backends

    adaptive_norm = importlib.import_module("anrl_ext.ops.adaptive_norm")  # the module, not the function
    calls = []
    monkeypatch.setattr(adaptive_norm, "primitives_for",
                        lambda name: spied(backends.primitives_for(name), names, calls))
    return calls


def anrl_ops_run(fn, namespaces=("anrl_ext",)) -> list:
    """The package's operators that run in fn(), from Python or C++, in order (torch profiler); those
    of the given namespaces (anrl_ext_triton: the Triton backend's)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return [e.name.split("::")[1] for e in sorted(prof.events(), key=lambda e: e.time_range.start)
            if e.name.split("::")[0] in namespaces]


# alpha forms x (dtype, weights) x what needs a gradient, for check_native_autograd_op
NATIVE_AUTOGRAD_CASES = [(a, d, w, n) for a in ("nc", "c", "scalar", "0.3")
                         for d, w in ((torch.float64, "all"), (torch.bfloat16, "bn only"), (torch.float32, "none"))
                         for n in ("all", "weights only", "x only")]


def check_native_autograd_op(alpha_kind, dtype, weights, wanted, monkeypatch, backend="cpu", device="cpu"):
    """blend_apply (autograd in C++) against the Python Function around the same two calls: the same bits
    for y, every gradient and the running statistics, with (C,), 0-dim and float alpha (summed to alpha's
    shape, in its dtype), absent weights, and inputs that need no gradient (no dx: no map pass)."""
    import anrl_ext
    from anrl_ext.ops import fast_blend

    x, alpha, params = make_inputs((3, 4, 5, 7), dtype, "nc" if alpha_kind == "scalar" else alpha_kind)
    if alpha_kind == "scalar":
        alpha = torch.tensor(0.7, dtype=torch.float64)
    x = x.to(device)
    alpha = alpha.to(device) if isinstance(alpha, torch.Tensor) else alpha
    params = [p.to(device, dtype) for p in params]
    params = {"all": params, "bn only": params[:2] + [None, None], "none": [None] * 4}[weights]

    def run():
        xs = x.clone().requires_grad_(wanted != "weights only")
        a = alpha.to(dtype).requires_grad_(wanted != "x only") if isinstance(alpha, torch.Tensor) else alpha
        ps = [p.clone().requires_grad_(wanted != "x only") if p is not None else None for p in params]
        running = [torch.zeros(4, dtype=dtype, device=device), torch.ones(4, dtype=dtype, device=device)]
        y = anrl_ext.adaptive_norm(xs, a, *ps, *running, training=True, backend=backend)
        wrt = [t for t in [xs, a, *ps] if isinstance(t, torch.Tensor) and t.requires_grad]
        dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(device, dtype)
        grads = []  # none when nothing needs one (float alpha, no weights, x without grad)
        ops = anrl_ops_run(lambda: grads.extend(torch.autograd.grad(y, wrt, dy) if wrt else []))
        return [y, *grads, *running], ops

    native, ops = run()
    if native[0].requires_grad:  # else no Function at all; the Python Function here would test nothing
        assert "BlendApply" in native[0].grad_fn.name(), native[0].grad_fn.name()
    if backend == "cpu":  # the profiler here records CPU operator calls (Triton's kernels: see its tests)
        assert ("affine2" in ops) is (wanted != "weights only")
    monkeypatch.setattr(fast_blend, "NATIVE_AUTOGRAD", False)
    python, _ = run()
    assert len(native) == len(python)
    for got, want in zip(native, python):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(got, want)


def native_autograd_op_args(op, channels_last):
    """Arguments of blend_apply / gate_blend_apply (either backend's) for opcheck, float64, with gradients
    wanted for x, alpha or the gate, and the weights."""
    f64 = dict(dtype=torch.float64)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 4, 5, 6, **f64).to(memory_format=fmt).requires_grad_()
    w = torch.randn(4, **f64, requires_grad=True)
    running = (torch.zeros(4, **f64), torch.ones(4, **f64))
    if op == "blend_apply":
        alpha = torch.rand(3, 4, **f64, requires_grad=True)
        return (x, alpha, 0.0, w, None, w, None, *running, True, True, 0.1, 1e-5)
    # the paper gate's slots: w1 (D, C), wb and wi (C, D)
    w1, wb, wi = (torch.randn(*shape, **f64, requires_grad=True) for shape in ((2, 4), (4, 2), (4, 2)))
    return (x, w1, None, wb, None, wi, w, None, w, None, *running, True, True, 0.1, 1e-5)


def check_gated_native_autograd_op(gate, dtype, monkeypatch, backend="cpu", device="cpu"):
    """AFNM on cpu / cuda runs gate_blend_apply, whose autograd is C++: y, alpha, the first-order gradients (alpha's
    own gradient included) and the running statistics in the same bits as the Python Function around the same
    kernels; the create_graph=True gradients (C++ calling back into Python) and a second derivative through
    them in the same bits too."""
    import copy

    import anrl_ext
    from anrl_ext.ops import fast_blend

    torch.manual_seed(0)
    layer = anrl_ext.AFNM(6, reduction=2, gate=gate, backend=backend).to(device, dtype)
    with torch.no_grad():
        for p in layer.gate.parameters():
            p.normal_(std=0.5)
    x = torch.randn(3, 6, 5, 7, dtype=dtype).to(device)

    def run():
        m = copy.deepcopy(layer)
        xs = x.clone().requires_grad_()
        y, alpha = m(xs, return_alpha=True)
        wrt = [xs, *m.parameters()]
        loss = (y * y.detach().cos()).sum() + alpha.square().sum()
        first = torch.autograd.grad(loss, wrt, retain_graph=True)
        graph = torch.autograd.grad(loss, wrt, create_graph=True)
        second = torch.autograd.grad(sum(g.square().sum() for g in graph), wrt)
        return y.grad_fn.name(), [y, alpha, *first, m.running_mean, m.running_var], [*graph, *second]

    native_fn, native, native_graph = run()
    monkeypatch.setattr(fast_blend, "NATIVE_AUTOGRAD", False)
    python_fn, python, python_graph = run()
    assert "GateBlendApply" in native_fn and "GateBlendApply" not in python_fn
    for got, want in zip(native, python, strict=True):
        assert got.dtype == want.dtype and torch.equal(got, want)
    for got, want in zip(native_graph, python_graph, strict=True):  # alpha recomputed with the same ops
        assert torch.equal(got, want)


def random_maker(device, dtype, seed):
    """rnd(*shape, pos=False): seeded normal (or uniform in [0.1, 1.1)) tensors, drawn in float64."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, pos=False):
        t = torch.rand(*shape, generator=g, dtype=torch.float64) + 0.1 if pos else \
            torch.randn(*shape, generator=g, dtype=torch.float64)
        return t.to(device, dtype)

    return rnd


# Planes of test_reductions_on_large_planes_cuda, and the worst float32 errors it allows (mean in
# ulps, the rest relative; see check_reductions_on_large_planes). triton: the same planes interpreted
# on the CPU give 0.62 ulp, 1.5e-7, 1.0e-7, 2.5e-7 (triton_interp's test_reductions_accurate_on_large_planes).
# cuda: about twice what benchmarks/cuda_rounding_model.py gives for the kernels' arithmetic (0.62 ulp,
# 1.8e-7, 1.4e-7, 2.5e-7 on an H200's 132 SMs); the model rounds fast-math divisions correctly, the GPU
# does not.
LARGE_PLANES = [(2, 4, 256, 256), (3, 5, 150, 151)]
GPU_REDUCTION_BOUNDS = {"triton": dict(mean=1.5, var=2e-7, s0=2e-7, s1=5e-7),
                        "cuda": dict(mean=1.5, var=4e-7, s0=3e-7, s1=6e-7)}


def check_reductions_on_large_planes(prims, shapes, device="cpu",
                                     formats=(torch.contiguous_format, torch.channels_last)):
    """float32 moments and reduce on large planes in each of `formats`, against float64:
    returns the worst errors (mean in ulps, var relative, s0 and s1 relative to their largest
    value) for the caller's bounds. Checks the float64 path exact up to rounding on the way."""
    gen = torch.Generator().manual_seed(0)
    ulp = torch.finfo(torch.float32).eps * 2  # spacing of float32 in [2, 4), where the means lie
    worst = dict(mean=0.0, var=0.0, s0=0.0, s1=0.0)
    for shape in shapes:
        x64 = torch.randn(shape, generator=gen, dtype=torch.float64) * 0.5 + 3
        dy64 = torch.randn(shape, generator=gen, dtype=torch.float64) + 1
        x, dy = x64.float(), dy64.float()
        mean, var = x.double().mean((2, 3)), x.double().var((2, 3), unbiased=False)
        center = mean.float()
        s0 = dy.double().sum((2, 3))
        s1 = (dy.double() * (x.double() - center.double()[:, :, None, None])).sum((2, 3))
        for fmt in formats:
            xf, dyf = (t.contiguous(memory_format=fmt).to(device) for t in (x, dy))
            m, v = (t.cpu().double() for t in prims.moments(xf))
            r0, r1 = (t.cpu().double() for t in prims.reduce(dyf, xf, center.to(device)))
            worst["mean"] = max(worst["mean"], ((m - mean).abs().max() / ulp).item())
            worst["var"] = max(worst["var"], ((v - var) / var).abs().max().item())
            worst["s0"] = max(worst["s0"], ((r0 - s0).abs().max() / s0.abs().max()).item())
            worst["s1"] = max(worst["s1"], ((r1 - s1).abs().max() / s1.abs().max()).item())
            m64, v64 = (t.cpu() for t in prims.moments(x64.contiguous(memory_format=fmt).to(device)))
            torch.testing.assert_close(m64, x64.mean((2, 3)), rtol=1e-14, atol=0)
            torch.testing.assert_close(v64, x64.var((2, 3), unbiased=False), rtol=1e-12, atol=0)
    return worst


def check_channels_last_accuracy(fn, shape=(36, 8, 64, 64)):
    """fn(x, w) -> y on float32 channels_last CPU input is as accurate against float64 as on
    NCHW input (output, x and w gradients), and keeps the layout. One thread: torch's
    channels_last batch_norm sums row by row in float32, worst on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        x64 = torch.randn(shape, generator=gen, dtype=torch.float64) + 3
        dy64 = torch.randn(shape, generator=gen, dtype=torch.float64) + 3
        w64 = torch.rand(shape[1], generator=gen, dtype=torch.float64) + 0.5

        def grads(dtype, fmt):
            x = x64.to(dtype).contiguous(memory_format=fmt).requires_grad_()
            w = w64.to(dtype).requires_grad_()
            y = fn(x, w)
            assert y.is_contiguous(memory_format=fmt)
            return [y.detach(), *torch.autograd.grad(y, [x, w], dy64.to(dtype).contiguous(memory_format=fmt))]

        exact = grads(torch.float64, torch.contiguous_format)
        errors = {fmt: [((a.double() - e).abs().max() / e.abs().max()).item()
                        for a, e in zip(grads(torch.float32, fmt), exact)]
                  for fmt in (torch.contiguous_format, torch.channels_last)}
    finally:
        torch.set_num_threads(threads)
    nchw, cl = errors[torch.contiguous_format], errors[torch.channels_last]
    for name, e, bound in zip(("y", "dx", "dw"), cl, (1e-6, 1e-6, 1e-3)):
        assert e < bound, (name, errors)
    assert all(e < 10 * max(n, 1e-7) for e, n in zip(cl, nchw)), errors


def check_batch_mean_to_one_ulp(prims, backend, device="cpu", n=64, c=16):
    """The BN mean of n float32 per-sample means near 3 within one ulp of their exact mean, from
    the middle kernel and from the op (constant planes, so the means are exact; momentum 1, so
    the running mean is the batch mean). A plain float32 sum lands several ulps off (observed up
    to 5 at n = 36), and the BN weight gradient moves by sum(dy) * d(mu), so those ulps showed."""
    import anrl_ext

    gen = torch.Generator().manual_seed(0)
    mean = (3 + 0.004 * torch.randn(n, c, generator=gen, dtype=torch.float64)).float()
    var = torch.rand(n, c, generator=gen).add(0.5)
    exact = mean.double().mean(0)
    ulp = torch.finfo(torch.float32).eps * 2  # spacing of float32 in [2, 4)
    out = prims.blend_forward(mean.to(device), var.to(device), None, 0.5, None, None, None, None, None, None,
                              True, False, 0.1, 1e-5, 100)
    x = mean[:, :, None, None].expand(n, c, 3, 5).contiguous().to(device)
    running = [torch.zeros(c, device=device), torch.ones(c, device=device)]
    anrl_ext.adaptive_norm(x, 0.5, None, None, None, None, *running, training=True, momentum=1.0,
                           backend=backend)
    for name, got in (("middle", out[2]), ("op", running[0])):
        err = (got.cpu().double() - exact).abs().max().item()
        assert err <= ulp, (name, err / ulp, "ulps")


def check_blend_middle(prims, device="cpu", n=5, c=7, dtype=torch.float64, tol=1e-12, every_form=True):
    """prims.blend_forward / blend_backward against the reference for every alpha form,
    with and without affine tensors, batch and running statistics. every_form=False keeps
    an (N, C) alpha with all four affine tensors: fewer Triton compilations on a GPU."""
    from anrl_ext.ops import reference as ref

    R = ref.PRIMITIVES
    rnd = random_maker(device, dtype, seed=0)
    mean, var, s0, s1 = rnd(n, c) * 3, rnd(n, c, pos=True), rnd(n, c), rnd(n, c)
    alphas = [None, rnd(n, c).sigmoid(), rnd(c).sigmoid(), rnd(()).sigmoid(), rnd(c, n).sigmoid().t()]
    affines = [[None] * 4, [rnd(c) for _ in range(4)], [rnd(c), None, None, rnd(c)]]
    for alpha in (alphas if every_form else alphas[1:2]):
        for affine in (affines if every_form else affines[1:2]):
            for use_batch in (True, False):
                run = [rnd(c), rnd(c, pos=True)]
                ref_run = [t.clone() for t in run]
                out = prims.blend_forward(mean, var, alpha, 0.4, *affine, *run, use_batch, True, 0.1, 1e-5, 99)
                exp = R.blend_forward(mean, var, alpha, 0.4, *affine, *ref_run, use_batch, True, 0.1, 1e-5, 99)
                for a, b in zip([*out, *run], [*exp, *ref_run]):
                    torch.testing.assert_close(a, b, atol=tol, rtol=tol)
                got = prims.blend_backward(s0, s1, mean, var, alpha, 0.4, *affine, out[2], out[3], use_batch,
                                           1e-5, 12)
                exp = R.blend_backward(s0, s1, mean, var, alpha, 0.4, *affine, exp[2], exp[3], use_batch,
                                       1e-5, 12)
                for a, b in zip(got, exp):
                    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def check_blend_apply(prims, shape, device="cpu", dtype=torch.float64, tol=1e-12, every_form=True,
                      channels_last=False):
    """prims.blend_apply_forward / _backward (the whole first-order forward and backward,
    one call each) against the reference primitives and middle in float64: y, the
    moments, dx, every gradient, the BN statistics and the running buffers."""
    from anrl_ext.ops import reference as ref

    R = ref.PRIMITIVES
    n, c, h, w = shape
    rnd = random_maker(device, torch.float64, seed=1)
    x, dy = (rnd(*shape) * 2 + 0.5).to(dtype), rnd(*shape).to(dtype)
    if channels_last:
        x, dy = x.contiguous(memory_format=torch.channels_last), dy.contiguous(memory_format=torch.channels_last)
    x64, dy64 = x.double(), dy.double()
    mean, var = R.moments(x64)
    s0, s1 = R.reduce(dy64, x64, mean)
    stats_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    alphas = [None, rnd(n, c).sigmoid(), rnd(c).sigmoid(), rnd(()).sigmoid(), rnd(c, n).sigmoid().t()]
    affines = ([None] * 4, [rnd(c) for _ in range(4)], [rnd(c), None, None, rnd(c)])
    cases = [(a, f, b) for a in alphas for f in affines for b in (True, False)] if every_form else \
        [(alphas[1], affines[1], True), (None, affines[2], False)]
    for alpha, affine, use_batch in cases:
        run = [rnd(c), rnd(c, pos=True)]
        ref_run = [t.clone() for t in run]
        run = [t.to(stats_dtype) for t in run]
        low = lambda t: t.to(stats_dtype) if t is not None else None  # noqa: E731
        y, got_mean, got_var, bn_mean, bn_var = prims.blend_apply_forward(
            x, low(alpha), 0.4, *map(low, affine), *run, use_batch, True, 0.1, 1e-5)
        scale, shift, ref_mean, ref_var = R.blend_forward(mean, var, alpha, 0.4, *affine, *ref_run, use_batch, True,
                                                          0.1, 1e-5, n * h * w)
        torch.testing.assert_close(y.double(), R.affine(x64, mean, scale, shift), atol=tol * 10, rtol=tol)
        for got, want in zip((got_mean, got_var, bn_mean, bn_var, *run), (mean, var, ref_mean, ref_var, *ref_run)):
            torch.testing.assert_close(got.double(), want, atol=tol * 10, rtol=tol)
        dx, *grads = prims.blend_apply_backward(dy, x, got_mean, got_var, low(alpha), 0.4, *map(low, affine),
                                                bn_mean, bn_var, use_batch, 1e-5)
        d_alpha, *d_affine, a, b, cc = R.blend_backward(s0, s1, mean, var, alpha, 0.4, *affine, ref_mean, ref_var,
                                                        use_batch, 1e-5, h * w)
        torch.testing.assert_close(dx.double(), R.affine2(dy64, x64, mean, a, b, cc), atol=tol * 10, rtol=tol)
        for got, want in zip(grads, (d_alpha, *d_affine)):
            torch.testing.assert_close(got.double(), want, atol=tol * h * w, rtol=tol)


GATE_LAYOUTS = ("paper", "sigmoid", "sigmoid2")


def gate_weights(layout, c, d, rnd):
    """(w1, b1, wb, bb, wi) of one of the gates in anrl_ext.nn.gates, random, each weight scaled by
    1 / sqrt(fan_in) as nn.Linear's init scales it: unscaled, the heads' inputs grow with C and D
    until both sigmoids of the paper gate round to 0 in float32 and alpha = 0 / 0, in the reference
    too (at C = 512, D = 32)."""
    if layout == "paper":
        return rnd(d, c) / c ** 0.5, None, rnd(c, d) / d ** 0.5, None, rnd(c, d) / d ** 0.5
    if layout == "sigmoid":
        return None, None, rnd(c, c) / c ** 0.5, rnd(c), None
    return rnd(d, c) / c ** 0.5, rnd(d), rnd(c, d) / d ** 0.5, rnd(c), None


def check_gate_middle(prims, device="cpu", n=5, c=7, d=3, dtype=torch.float64, tol=1e-12, every_affine=True):
    """prims.gate_blend_forward / gate_blend_backward against the reference for every
    gate layout, with and without affine tensors and an outside alpha gradient,
    batch and running statistics. every_affine=False keeps one affine variant (all
    four tensors and an alpha gradient): fewer Triton compilations on a GPU."""
    from anrl_ext.ops import reference as ref

    R = ref.PRIMITIVES
    rnd = random_maker(device, dtype, seed=1)
    mean, var, s0, s1 = rnd(n, c), rnd(n, c, pos=True), rnd(n, c), rnd(n, c)
    for layout in GATE_LAYOUTS:
        gate = gate_weights(layout, c, d, rnd)
        variants = [([None] * 4, None), ([rnd(c) for _ in range(4)], rnd(n, c)),
                    ([rnd(c), None, None, rnd(c)], None)]
        for affine, alpha_grad in (variants if every_affine else variants[1:2]):
            for use_batch in (True, False):
                run = [rnd(c), rnd(c, pos=True)]
                ref_run = [t.clone() for t in run]
                out = prims.gate_blend_forward(mean, var, *gate, *affine, *run, use_batch, True, 0.1, 1e-5, 99)
                exp = R.gate_blend_forward(mean, var, *gate, *affine, *ref_run, use_batch, True, 0.1, 1e-5, 99)
                for a, b in zip([*out, *run], [*exp, *ref_run]):
                    torch.testing.assert_close(a, b, atol=tol, rtol=tol)
                got = prims.gate_blend_backward(s0, s1, mean, var, out[0], out[1], alpha_grad, *gate, *affine,
                                                out[4], out[5], use_batch, 1e-5, 12)
                want = R.gate_blend_backward(s0, s1, mean, var, exp[0], exp[1], alpha_grad, *gate, *affine,
                                             exp[4], exp[5], use_batch, 1e-5, 12)
                for a, b in zip(got, want):
                    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def check_gate_launch_choice(limit_of, in_one_launch, default_limit):
    """A gated middle's one-launch limit (limit_of: read, or set and return) against its choice
    in_one_launch(n, c, d, ratio_head): one launch up to the limit in multiply-adds of the gate's
    forward, counted as fast_blend.gate_work counts them; its default; ValueError for a bad limit."""
    import anrl_ext
    from anrl_ext.ops import fast_blend

    default = limit_of()
    assert default == default_limit
    try:
        for kind, c, n in [("paper", 64, 32), ("paper", 512, 64), ("sigmoid", 48, 8), ("sigmoid2", 96, 30)]:
            gate = anrl_ext.AFNM(c, gate=kind).gate
            slots, params = gate.KERNEL_SLOTS, gate.weights()
            work = fast_blend.gate_work(n, slots, params)
            d = params[slots.index("w1")].shape[0] if "w1" in slots else 0
            for limit in (0, work - 1, work, 2 ** 62):
                assert limit_of(limit) == limit
                assert in_one_launch(n, c, d, "wi" in slots) is (work <= limit), (kind, limit)
        for bad in (-1, 1.5, True, "1"):
            with pytest.raises(ValueError, match="work must be an int"):
                limit_of(bad)
    finally:
        limit_of(default)
    assert limit_of() == default


def check_gate_launches_equal(prims, device, n, c, d, exact=True, every_case=True):
    """prims.gate_blend_forward / _backward give the same bits whatever the gated middle's
    one-launch limit (backends.gate_launch_limit): 2^62 runs every gate in one launch (CUDA: one block,
    Triton: one program) and 0 spreads it one launch per phase over a grid; the CPU kernels
    ignore the limit. Every gate layout, with and without affine tensors and an outside alpha
    gradient, batch and running statistics; running statistics compared too. exact=False: equal to
    float32 rounding (a compiler may order one tile function's arithmetic differently in two kernels).
    every_case=False: affine tensors, an outside alpha gradient and batch statistics only (fewer
    Triton compilations)."""
    from anrl_ext.ops.backends import gate_launch_limit

    rnd = random_maker(device, torch.float32, seed=2)
    mean, var, s0, s1 = rnd(n, c), rnd(n, c, pos=True), rnd(n, c), rnd(n, c)
    limit_of = gate_launch_limit(prims.name)
    default = limit_of()
    try:
        for layout in GATE_LAYOUTS:
            gate = gate_weights(layout, c, d, rnd)
            variants = (([None] * 4, None), ([rnd(c) for _ in range(4)], rnd(n, c)))
            for affine, alpha_grad in (variants if every_case else variants[1:]):
                for use_batch in ((True, False) if every_case else (True,)):
                    run0 = [rnd(c), rnd(c, pos=True)]
                    results = []
                    for limit in (2 ** 62, 0):
                        limit_of(limit)
                        run = [t.clone() for t in run0]
                        out = prims.gate_blend_forward(mean, var, *gate, *affine, *run, use_batch, True, 0.1, 1e-5,
                                                       99)
                        back = prims.gate_blend_backward(s0, s1, mean, var, out[0], out[1], alpha_grad, *gate,
                                                         *affine, out[4], out[5], use_batch, 1e-5, 12)
                        results.append([*out, *run, *back])
                    for i, (a, b) in enumerate(zip(*results)):
                        where = f"{layout}, affine {affine[0] is not None}, batch {use_batch}: output {i}"
                        assert (a is None) == (b is None), where
                        if a is not None and exact:
                            assert torch.equal(a, b), where
                        elif a is not None:
                            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=where)
    finally:
        limit_of(default)


def check_wide_afnm_layer(backend, device="cpu"):
    """An AFNM layer whose gate is past the one-block kernels' size (C = 512, N = 64, paper gate: 3.1e6
    multiply-adds) against the reference backend: outputs, alpha, running statistics and gradients.
    Returns the package's operators its forward + backward ran (anrl_ops_run, both namespaces), which
    tell where the gate ran: the gated middle spread over blocks / programs (cuda: gate_blend_forward,
    Triton: gate_blend_apply_forward), or the gate as PyTorch ops (CPU)."""
    import anrl_ext

    torch.manual_seed(4)
    ref = anrl_ext.AFNM(512, gate="paper", backend="reference").to(device)
    fused = anrl_ext.AFNM(512, gate="paper", backend=backend).to(device)
    fused.load_state_dict(ref.state_dict())
    x = (torch.randn(64, 512, 3, 5, device=device) * 2 + 0.5).requires_grad_()
    g = torch.randn_like(x)
    y_r, a_r = ref(x, return_alpha=True)
    grads_r = torch.autograd.grad(y_r, [x, *ref.parameters()], g)
    ops = []

    def step():
        y_f, a_f = fused(x, return_alpha=True)
        ops.append((y_f, a_f, torch.autograd.grad(y_f, [x, *fused.parameters()], g)))

    ran = anrl_ops_run(step, ("anrl_ext", "anrl_ext_triton"))
    y_f, a_f, grads_f = ops[0]
    assert max_err(y_f, y_r) < 1e-4 and max_err(a_f, a_r) < 1e-5
    torch.testing.assert_close(fused.running_mean, ref.running_mean)
    torch.testing.assert_close(fused.running_var, ref.running_var)
    for gf, gr in zip(grads_f, grads_r):
        assert max_err(gf, gr) < 1e-3 * max(1, gr.abs().max().item())
    return ran


def check_gate_saturated_heads(prims, device="cpu"):
    """The paper gate in float32 with both heads saturated low and alpha in (0.2, 0.8): forward and
    backward finite and equal to the float64 reference's. At u near -50 the sigmoids are near 1e-22
    and the square of their sum is below float32's range: squaring 1 / (B + I) made the weight
    gradients NaN. At u near -95 both sigmoids round to 0 in float32: B / (B + I) was 0 / 0."""
    from anrl_ext.ops import reference as ref

    n, c, d = 3, 5, 2
    rnd = random_maker(device, torch.float32, seed=3)
    mean, var, s0, s1 = torch.ones(n, c, device=device), rnd(n, c, pos=True), rnd(n, c), rnd(n, c)
    affine, alpha_grad = [rnd(c) for _ in range(4)], rnd(n, c)
    ch = torch.arange(c, device=device, dtype=torch.float32)
    for level in (-50.0, -95.0):
        # S = 1 and W1 = 1 / C make each hidden unit 1, so u_b = level - ch / 4, u_i = level - 1 + ch / 4.
        w1 = torch.full((d, c), 1.0 / c, device=device)
        wb = ((level - ch / 4) / d)[:, None].expand(c, d).contiguous()
        wi = ((level - 1 + ch / 4) / d)[:, None].expand(c, d).contiguous()
        outs = []
        for prim, dtype in ((prims, torch.float32), (ref.PRIMITIVES, torch.float64)):
            args = [t.to(dtype) for t in (mean, var, w1, wb, wi, *affine, alpha_grad, s0, s1)]
            m, v, w1_, wb_, wi_, bw, bb, iw, ib, ag, g0, g1 = args
            gate = (w1_, None, wb_, None, wi_)
            run = [torch.zeros(c, device=device, dtype=dtype), torch.ones(c, device=device, dtype=dtype)]
            out = prim.gate_blend_forward(m, v, *gate, bw, bb, iw, ib, *run, True, True, 0.1, 1e-5, 99)
            grads = prim.gate_blend_backward(g0, g1, m, v, out[0], out[1], ag, *gate, bw, bb, iw, ib, out[4],
                                             out[5], True, 1e-5, 12)
            outs.append([t for t in (*out, *grads) if t is not None])
        assert 0.2 < outs[1][0].min() and outs[1][0].max() < 0.8  # alpha: the gate is not saturated
        for i, (a, b) in enumerate(zip(*outs)):
            assert torch.isfinite(a).all(), f"u near {level}: output {i} not finite: {a}"
            torch.testing.assert_close(a, b.float(), atol=1e-5, rtol=1e-5, msg=lambda m: f"u near {level}: {m}")


def check_params_in_own_dtype(prims, device="cpu", n=4, c=5, shape_hw=(3, 4), bf16_truncates=False,
                              dtypes=(torch.bfloat16, torch.float16, torch.float64)):
    """alpha, the affine weights and the running buffers in bfloat16 / float16 /
    float64 next to float32 statistics: the middle (and the one-call op, the gated
    middle) read and update them in their own dtype, with the very results of the
    same call on float32 copies (bit for bit: one rounding each way), and return
    each weight's gradient in its weight's dtype. bf16_truncates: Triton's
    interpreter rounds float32 -> bfloat16 toward zero (the GPU to nearest even),
    so bfloat16 outputs may then differ by one unit in the last place."""
    rnd = random_maker(device, torch.float32, seed=2)
    mean, var, s0, s1 = rnd(n, c), rnd(n, c, pos=True), rnd(n, c), rnd(n, c)
    x, dy = rnd(n, c, *shape_hw), rnd(n, c, *shape_hw)
    for dtype in dtypes:
        alpha, weights = rnd(n, c).sigmoid().to(dtype), [rnd(c).to(dtype) for _ in range(4)]
        run = [rnd(c).to(dtype), rnd(c, pos=True).to(dtype)]
        as32 = lambda ts: [t.float() for t in ts]  # noqa: E731
        run32 = as32(run)

        def same(got, want, what):
            assert got.dtype == want.dtype, (dtype, what, got.dtype, want.dtype)
            if bf16_truncates and got.dtype == torch.bfloat16:
                ulp = want.float().abs() * 2.0**-7
                assert bool(((got.float() - want.float()).abs() <= ulp).all()), (what, max_err(got, want))
            else:
                assert torch.equal(got, want), (dtype, what, max_err(got, want))

        out = prims.blend_forward(mean, var, alpha, 0.0, *weights, *run, True, True, 0.1, 1e-5, 99)
        exp = prims.blend_forward(mean, var, alpha.float(), 0.0, *as32(weights), *run32, True, True, 0.1, 1e-5, 99)
        for i, (a, b) in enumerate(zip([*out, *run], [*exp, *(t.to(dtype) for t in run32)])):
            same(a, b, f"blend_forward output {i}")
        got = prims.blend_backward(s0, s1, mean, var, alpha, 0.0, *weights, out[2], out[3], True, 1e-5, 12)
        want = prims.blend_backward(s0, s1, mean, var, alpha.float(), 0.0, *as32(weights), out[2], out[3], True,
                                    1e-5, 12)
        for i, (a, b) in enumerate(zip(got, want)):
            same(a, b.to(dtype) if 1 <= i <= 4 else b, f"blend_backward output {i}")
        if prims.blend_apply_forward is not None:
            run = [rnd(c).to(dtype), rnd(c, pos=True).to(dtype)]
            run32 = as32(run)
            y, m, v, bm, bv = prims.blend_apply_forward(x, alpha, 0.0, *weights, *run, True, True, 0.1, 1e-5)
            ey, *_ = prims.blend_apply_forward(x, alpha.float(), 0.0, *as32(weights), *run32, True, True, 0.1, 1e-5)
            same(y, ey, "blend_apply_forward y")
            for a, b in zip(run, run32):
                same(a, b.to(dtype), "blend_apply_forward running buffer")
            got = prims.blend_apply_backward(dy, x, m, v, alpha, 0.0, *weights, bm, bv, True, 1e-5)
            want = prims.blend_apply_backward(dy, x, m, v, alpha.float(), 0.0, *as32(weights), bm, bv, True, 1e-5)
            for i, (a, b) in enumerate(zip(got, want)):
                same(a, b.to(dtype) if i >= 2 else b, f"blend_apply_backward output {i}")
        gate = gate_weights("paper", c, 2, rnd)
        out = prims.gate_blend_forward(mean, var, *gate, *weights, None, None, True, False, 0.1, 1e-5, 99)
        got = prims.gate_blend_backward(s0, s1, mean, var, out[0], out[1], None, *gate, *weights, out[4], out[5],
                                        True, 1e-5, 12)
        want = prims.gate_blend_backward(s0, s1, mean, var, out[0], out[1], None, *gate, *as32(weights), out[4],
                                         out[5], True, 1e-5, 12)
        for i, (a, b) in enumerate(zip(got, want)):
            same(a, b.to(dtype) if 5 <= i <= 8 else b, f"gate_blend_backward output {i}")


def copies_in_op(backend, x=None):
    """Tensor copies into a dense layout (aten::clone, as `.contiguous()` makes them;
    the torch profiler sees C++ callers too) in one forward + backward of
    adaptive_norm whose output gradient is expanded (y.sum()). Triton's interpreter
    moves its arguments with plain copy_ calls, which this leaves out."""
    import anrl_ext

    x = torch.randn(2, 3, 4, 5) if x is None else x
    x = x.detach().requires_grad_()
    alpha = torch.rand(2, 3, requires_grad=True)
    params = [torch.randn(3, requires_grad=True) for _ in range(4)]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        y = anrl_ext.adaptive_norm(x, alpha, *params, training=True, backend=backend)
        torch.autograd.grad(y.sum(), [x, alpha, *params])
    return [e.name for e in prof.events()].count("aten::clone")


def check_sync_of_one_process(backend, kind="afnm", dtype=torch.float64, channels_last=False, tol=1e-12,
                              device="cpu"):
    """A layer whose synchronised statistics come from a world of one (the gather returns its input)
    must equal the plain layer: output, running statistics, input and parameter gradients. This
    checks the fused path's global-statistics terms (fast_blend._global_stats_terms) in one process."""
    import importlib

    import anrl_ext
    from anrl_ext.nn import make_norm

    adaptive_norm = importlib.import_module("anrl_ext.ops.adaptive_norm")  # the module, not the function
    gathered = []

    def gather_of_one(mean, var):
        gathered.append(mean.shape)
        return mean * 1, var * 1  # a differentiable identity, as a one-process all-gather is

    torch.manual_seed(0)
    make = (lambda: anrl_ext.AFNM(6, reduction=2, backend=backend)) if kind == "afnm" \
        else (lambda: make_norm(kind, 6, backend=backend))
    plain = make().to(device, dtype)
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    synced = make().to(device, dtype)
    synced.load_state_dict(plain.state_dict())
    synced.gather_stats = gather_of_one
    x = (torch.randn(3, 6, 5, 7, dtype=torch.float64) * 2 + 1).to(device, dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    w = torch.randn(x.shape, dtype=torch.float64).to(device, dtype)
    chain = []  # calls of the composed chain of small ops, which the fused paths avoid
    real = adaptive_norm.fused
    outs = []
    for m in (plain, synced):
        xi = x.clone().requires_grad_()
        adaptive_norm.fused = lambda *a: chain.append(1) or real(*a)
        try:
            y = m(xi)
        finally:
            adaptive_norm.fused = real
        (y.double() * w.double()).sum().backward()
        outs.append((y, xi.grad, [p.grad for p in m.parameters()], m.running_mean, m.running_var))
    assert not chain and len(gathered) == 1, (chain, gathered)  # both fused, one gathered
    (y0, g0, p0, rm0, rv0), (y1, g1, p1, rm1, rv1) = outs
    for name, a, b in [("y", y0, y1), ("x grad", g0, g1), ("running_mean", rm0, rm1),
                       ("running_var", rv0, rv1)] + [(f"param {i} grad", a, b) for i, (a, b) in enumerate(zip(p0, p1))]:
        err = max_err(a, b)
        assert err <= tol * max(1.0, a.double().abs().max().item()), f"{kind} {dtype}: {name} differs by {err}"


# The op each layer records when torch.export or torch.compile traces it on a fused backend: its forward's one
# op (AFNM's with the gate inside), or, for bin, whose alpha is a clamp of a parameter, the composed path
# (moments, middle, map).
LAYER_OP = {"afnm": "gate_blend_apply", "bin": "moments", "half": "blend_apply", "ibn": "blend_apply",
            "bn": "blend_apply", "in": "blend_apply"}


def package_op(backend, kind):
    """LAYER_OP[kind] with its namespace (the Triton backend's ops have their own) and overload."""
    namespace = "anrl_ext_triton" if backend == "triton" else "anrl_ext"
    return f"{namespace}.{LAYER_OP[kind]}.default"


def package_ops(ops):
    """The package's operators among `ops`."""
    return {op for op in ops if op.startswith(("anrl_ext.", "anrl_ext_triton."))}


def exported_ops(program):
    """Names of the operators an ExportedProgram's graph calls."""
    return {str(n.target) for n in program.graph.nodes if n.op == "call_function"}


def check_export(backend, kind, training, path, device="cpu", tol=1e-5):
    """torch.export of conv -> `kind` layer -> relu on `backend`, with dynamic batch and spatial sizes, saved
    to `path` and loaded: the loaded program gives the module's outputs on the traced shape and another,
    and (training) the same gradients and running statistics. The graph must call the package's operators;
    returns those it calls (exported_ops)."""
    import copy

    from torch import nn
    from torch.export import Dim

    import anrl_ext

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), anrl_ext.make_norm(kind, 8, backend=backend),
                          nn.ReLU()).to(device)
    with torch.no_grad():  # running statistics away from their initial values, so eval mode reads them
        for _ in range(3):
            model(torch.randn(4, 3, 7, 9, device=device) * 2 + 1)
    model.train(training)
    x = torch.randn(3, 3, 7, 9, device=device)
    program = torch.export.export(copy.deepcopy(model), (x,),
                                  dynamic_shapes=({0: Dim("n", min=2), 2: Dim("h"), 3: Dim("w")},))
    ops = package_ops(exported_ops(program))  # no fallback
    assert ops
    torch.export.save(program, path)
    loaded = torch.export.load(path).module()
    for shape in [(3, 3, 7, 9), (5, 3, 6, 11)]:  # the traced shape and another one
        x = torch.randn(shape, device=device, requires_grad=training)
        got, want = loaded(x), model(x)
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
        if training:  # the program's backward: the ops' autograd, as the module's
            params = dict(loaded.named_parameters())
            names = [name for name, _ in model.named_parameters()]
            dy = torch.randn_like(want)
            got = torch.autograd.grad(got, [x] + [params[name] for name in names], dy)
            want = torch.autograd.grad(want, [x] + [p for _, p in model.named_parameters()], dy)
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w, rtol=tol, atol=tol)
    buffers = dict(loaded.named_buffers())
    for name, want in model.named_buffers():  # training: running statistics updated alike
        if name.endswith(("running_mean", "running_var")):
            torch.testing.assert_close(buffers[name], want, rtol=tol, atol=tol / 10)
    return ops


def recording_backend(graphs, compiler="aot_eager"):
    """A torch.compile backend that appends the operators of each graph Dynamo makes to `graphs` (a set of
    names each) and hands the graph on to `compiler`."""
    inner = torch._dynamo.lookup_backend(compiler)

    def recording(gm, example_inputs):
        graphs.append({str(n.target) for n in gm.graph.nodes if n.op == "call_function"})
        return inner(gm, example_inputs)
    return recording


def check_compile(backend, kind, training, device="cpu", compiler="aot_eager", tol=1e-5, input_grad=True):
    """torch.compile(fullgraph=True) of conv -> `kind` layer -> relu on `backend` (without `input_grad`: the
    layer -> relu on an input that needs no gradient), run on three shapes of other batch and plane sizes:
    each gives the module's outputs, gradients and running statistics; with aot_eager the frame compiles
    twice at most (the second time with dynamic sizes, which the ops' C++ autograd, traced on fake tensors,
    must not fix). Returns the package's operators in Dynamo's graphs."""
    import copy

    from torch import nn

    import anrl_ext

    torch._dynamo.reset()
    torch.manual_seed(0)
    channels = 3 if input_grad else 8
    layers = [nn.Conv2d(3, 8, 3, padding=1)] if input_grad else []
    model = nn.Sequential(*layers, anrl_ext.make_norm(kind, 8, backend=backend), nn.ReLU()).to(device)
    model.train(training)
    twin = copy.deepcopy(model)
    graphs = []
    compiled = torch.compile(model, backend=recording_backend(graphs, compiler), fullgraph=True)
    for shape in [(4, channels, 7, 9), (3, channels, 6, 11), (5, channels, 8, 5)]:
        x = torch.randn(shape, device=device) * 2 + 1
        results = []
        for m, original in ((compiled, model), (twin, twin)):
            xi = x.clone().requires_grad_(input_grad)
            y = m(xi)
            wrt = [xi] * input_grad + list(original.parameters())
            results.append([y, *torch.autograd.grad(y.square().sum(), wrt)])
        for got, want in zip(*results, strict=True):
            torch.testing.assert_close(got, want, rtol=tol, atol=tol)
        for got, want in zip(model.buffers(), twin.buffers(), strict=True):
            torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    # Inductor may lay the conv's output out channels_last with strides fixed at the traced plane size for the
    # backward's custom ops (the composed path's too), so its programs compile once per plane size.
    assert compiler != "aot_eager" or len(graphs) <= 2, f"compiled {len(graphs)} times for three shapes"
    return set().union(*(package_ops(g) for g in graphs))


def check_norm_matches_reference(kind, training, backend, device="cpu"):
    """make_norm(kind) on `backend`: output and gradients (input, every parameter) equal the reference
    backend's in float64."""
    import anrl_ext

    x = torch.randn(3, 8, 6, 5, dtype=torch.float64, device=device) * 2 + 1
    ref = anrl_ext.make_norm(kind, 8, backend="reference").double().to(device)
    with torch.no_grad():  # off the initial values, so that no gradient is trivially 0 or 1
        for p in ref.parameters():
            p.add_(torch.rand_like(p) - 0.5)
    dy = torch.randn_like(x)
    m = anrl_ext.make_norm(kind, 8, backend=backend).double().to(device)
    m.load_state_dict(ref.state_dict())
    results = []
    for layer in (m.train(training), ref.train(training)):
        xi = x.clone().requires_grad_()
        y = layer(xi)
        results.append([y, *torch.autograd.grad(y, [xi, *layer.parameters()], dy, allow_unused=True)])
    for got, want in zip(*results):
        assert (got is None) == (want is None) and (got is None or max_err(got, want) < 1e-10), (kind, backend)


# (parameter dtype, input dtype) pairs nn.BatchNorm2d refuses and the layers take
MIXED_DTYPES = [(torch.float32, torch.float64), (torch.float64, torch.float32), (torch.float64, torch.bfloat16),
                (torch.bfloat16, torch.float64)]


def check_mixed_dtypes(kind, backend, param_dtype, x_dtype, device="cpu"):
    """make_norm(kind) on `backend` with parameters in param_dtype, input in x_dtype (a mix nn.BatchNorm2d
    refuses: "mixed dtype"): the output in x's dtype equals that of the layer converted to x's statistics
    dtype, each parameter's gradient comes in its own dtype and equals the converted layer's, and the
    running statistics follow it in their own."""
    import copy

    import anrl_ext

    torch.manual_seed(0)
    kwargs = {"reduction": 2} if kind == "afnm" else {}
    layer = anrl_ext.make_norm(kind, 6, backend=backend, **kwargs).to(device, param_dtype)
    with torch.no_grad():  # off the initial values, so that the gate and the affines do something
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    converted = copy.deepcopy(layer).to(acc_dtype(x_dtype))
    # bfloat16: a rounding of 2^-8 at each store and in the gate's arithmetic
    tol = max({torch.float64: 1e-6, torch.float32: 1e-5, torch.bfloat16: 2e-2}[t] for t in (x_dtype, param_dtype))
    x = (torch.randn(4, 6, 5, 7, device=device) * 2 + 1).to(x_dtype)
    for training in (True, False):
        if not training:  # eval from the same (rounded) running statistics: this step's rounding only
            with torch.no_grad():
                for name, t in converted.named_buffers():
                    t.copy_(dict(layer.named_buffers())[name])
        outs = []
        for m in (layer, converted):
            xi = x.clone().requires_grad_()
            y = m.train(training)(xi)
            outs.append((y, torch.autograd.grad(y.float().square().sum(), [xi, *m.parameters()])))
        (y, grads), (want_y, want_grads) = outs
        assert y.dtype == x_dtype
        torch.testing.assert_close(y.double(), want_y.double(), rtol=tol, atol=tol)
        for (name, p), g, want in zip(layer.named_parameters(), grads[1:], want_grads[1:]):
            assert g.dtype == p.dtype, name
            # normwise: a bfloat16 gate's backward sums terms of either sign, each rounded to 2^-8
            torch.testing.assert_close(g.double(), want.double(), rtol=tol, atol=tol * want.abs().max().item(),
                                       msg=lambda m, name=name: f"{name}: {m}")
        for name, want in converted.named_buffers():
            got = dict(layer.named_buffers())[name]
            assert got.dtype == (param_dtype if got.is_floating_point() else want.dtype), name
            torch.testing.assert_close(got.double(), want.double(), rtol=tol, atol=tol,
                                       msg=lambda m, name=name: f"{name}: {m}")


def layer_for_func(kind, backend, training, seed=0, device="cpu"):
    """A float64 `kind` layer with random parameters and running statistics; in training without
    running statistics (a torch.func transform cannot update a captured buffer, as with nn.BatchNorm2d)."""
    import anrl_ext

    torch.manual_seed(seed)
    kwargs = {"reduction": 2} if kind == "afnm" else {}
    layer = anrl_ext.make_norm(kind, 6, backend=backend, track_running_stats=not training, **kwargs)
    layer = layer.to(device, torch.float64).train(training)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
        if layer.running_mean is not None:
            layer.running_mean.normal_(), layer.running_var.uniform_(0.5, 2.0)
    return layer


def check_batched_gradients(kind, training, channels_last, backend, device="cpu"):
    """autograd.grad(is_grads_batched=True) through the fused backward (vmap over the gradient,
    as jacobian(vectorize=True) uses it) gives each gradient's own vector-Jacobian product, for x
    and every parameter, to 1e-12 in float64."""
    layer = layer_for_func(kind, backend, training=training, device=device)
    x = torch.randn(2, 6, 4, 3, dtype=torch.float64, device=device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    inputs = [x, *layer.parameters()]
    y = layer(x)
    grads = torch.randn(4, *y.shape, dtype=torch.float64, device=device)
    batched = torch.autograd.grad(y, inputs, grads, is_grads_batched=True, retain_graph=True)
    for i, g in enumerate(grads):
        for got, want in zip(batched, torch.autograd.grad(y, inputs, g, retain_graph=True), strict=True):
            torch.testing.assert_close(got[i], want, atol=1e-12, rtol=1e-12)


def check_func_grad(kind, training, backend, device="cpu"):
    """torch.func.grad of a loss through the layer, over its parameters (functional_call), equals
    plain autograd on the reference backend; outside the transform `backend` runs again."""
    import copy

    from torch.func import functional_call, grad

    from anrl_ext.ops import backends

    layer = layer_for_func(kind, backend, training, device=device)
    ref = copy.deepcopy(layer)
    ref.backend = "reference"
    x = torch.randn(4, 6, 5, 3, dtype=torch.float64, device=device)
    params = {k: v.detach() for k, v in layer.named_parameters()}
    got = grad(lambda p: functional_call(layer, p, (x,)).sin().sum())(params)
    want = torch.autograd.grad(ref(x).sin().sum(), list(ref.parameters()))
    for (name, g), w in zip(got.items(), want):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=1e-12, msg=name)
    assert backends.resolve_backend(backend, x.device) == backend


def check_jit_trace(backend, kind, training, device="cpu", tol=1e-5):
    """torch.jit.trace of conv -> `kind` layer -> relu on `backend`: no TracerWarning, and on another shape
    the traced module gives the module's output and input gradient, and (training) updates the running
    statistics alike."""
    import copy
    import warnings

    from torch import nn

    import anrl_ext

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), anrl_ext.make_norm(kind, 8, backend=backend),
                          nn.ReLU()).to(device)
    with torch.no_grad():  # running statistics away from their initial values, so eval mode reads them
        model(torch.randn(4, 3, 7, 9, device=device) * 2 + 1)
    model.train(training)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(copy.deepcopy(model), torch.randn(3, 3, 7, 9, device=device), check_trace=False)
    tracer_warnings = [f"{w.filename}:{w.lineno}" for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    assert not tracer_warnings, tracer_warnings
    if training:  # tracing ran the layer once, on the copy: start both from the module's running statistics
        traced_buffers = dict(traced.named_buffers())
        for name, want in model.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                traced_buffers[name].copy_(want)
    x = torch.randn(5, 3, 6, 11, device=device, requires_grad=True)  # not the traced shape
    want, got = model(x), traced(x)
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    dy = torch.randn_like(want)
    torch.testing.assert_close(torch.autograd.grad(got, x, dy)[0], torch.autograd.grad(want, x, dy)[0],
                               rtol=tol, atol=tol)
    buffers = dict(traced.named_buffers())
    for name, want_buffer in model.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            torch.testing.assert_close(buffers[name], want_buffer, rtol=tol, atol=tol / 10)


class OpLayer(torch.nn.Module):
    """adaptive_norm with an (N, C) alpha, the four affine weights and running statistics held as a
    layer's parameters and buffers, so that the op and the layers go through the same checks."""

    def __init__(self, backend, n, c):
        super().__init__()
        self.backend = backend
        self.alpha = torch.nn.Parameter(torch.rand(n, c))
        self.weights = torch.nn.ParameterList([torch.randn(c) for _ in range(4)])
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))

    def forward(self, x):
        import anrl_ext

        return anrl_ext.adaptive_norm(x, self.alpha, *self.weights, self.running_mean, self.running_var,
                                      training=True, backend=self.backend)


def check_graph_replay(backend, kind, device="cpu", replays=2):
    """Forward + backward (training mode) of the op (kind "op") or of make_norm(kind), captured in a CUDA
    graph and replayed on new input, output gradient and weights `replays` times: each replay gives, to
    the bit, what an eager call of the layer as it was before the replay gives on those tensors (output,
    the gradients of the input and every parameter, the running statistics after it). The outputs are
    filled with NaN before each replay, so every element must be written by it."""
    import copy

    import anrl_ext

    torch.manual_seed(0)
    n, c, shape = 3, 16, (3, 16, 9, 11)
    if kind == "op":
        layer = OpLayer(backend, n, c)
    else:
        layer = anrl_ext.make_norm(kind, c, backend=backend, **({"reduction": 4} if kind == "afnm" else {}))
    layer = layer.to(device).train()
    x = torch.randn(shape, device=device, requires_grad=True)
    dy = torch.randn(shape, device=device)

    def step():
        y = layer(x)
        return (y, *torch.autograd.grad(y, [x, *layer.parameters()], dy))

    replay, outs = cases.graph_replay(step, device), ()
    for _ in range(replays):
        with torch.no_grad():  # new values in the tensors the graph reads
            x.copy_(torch.randn_like(x) * 2 + 1)
            dy.copy_(torch.randn_like(dy))
            for p in layer.parameters():
                p.add_(0.3 * torch.randn_like(p))
            for t in outs:
                t.fill_(float("nan"))
        eager = copy.deepcopy(layer)
        xe = x.detach().clone().requires_grad_()
        ye = eager(xe)
        want = (ye, *torch.autograd.grad(ye, [xe, *eager.parameters()], dy))
        outs = replay()
        names = ["y", "x", *(name for name, _ in layer.named_parameters())]
        assert len(outs) == len(want) == len(names)
        for name, got, expected in zip(names, outs, want):
            assert torch.equal(got, expected), (backend, kind, name, max_err(got, expected))
        for (name, got), expected in zip(layer.named_buffers(), eager.buffers()):
            assert torch.equal(got, expected), (backend, kind, name)


def trainer_steps(extra, steps=2):
    """A smoke-size Trainer after `steps` iterations: (logs, {(dtype, channels_last)} of AFNM inputs, trainer)."""
    import anrl_ext
    from anrl_ext import config, train

    trainer = train.Trainer(config.load(["--preset", "smoke", *extra]))
    seen = set()

    def record(module, args):
        x = args[0]
        seen.add((x.dtype, x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()))

    for m in trainer.model.modules():
        if isinstance(m, anrl_ext.AFNM):
            m.register_forward_pre_hook(record)
    return [trainer.step() for _ in range(steps)], seen, trainer


def check_amp_and_channels_last(backend, device="cpu"):
    """--amp runs the network in bfloat16 (AFNM gets bfloat16 input; losses, weights, scores stay
    float32) and computes the same function at lower precision; --channels-last keeps AFNM's
    input in channels_last and gives the NCHW run's losses up to summation order."""
    common = ["--backend", backend, "--device", device]
    base, seen, _ = trainer_steps(common)
    assert seen == {(torch.float32, False)}
    def warns_of_amp():  # bfloat16 on a CPU is slow unless it has bfloat16 instructions: the trainer says so
        from anrl_ext.train import cpu_has_bfloat16_instructions

        slow = device == "cpu" and not cpu_has_bfloat16_instructions()
        return pytest.warns(UserWarning, match="--amp on the CPU") if slow else contextlib.nullcontext()

    with warns_of_amp():
        amp, seen, trainer = trainer_steps(common + ["--amp"])
    assert seen == {(torch.bfloat16, False)}
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    # The first step's losses come from the same initial weights and batch (observed: 2e-3 apart).
    for k in ("cls", "dep"):
        assert abs(amp[0][k] - base[0][k]) < 2e-2, (k, amp[0][k], base[0][k])
    assert all(torch.isfinite(torch.tensor(list(logs.values()))).all() for logs in amp)
    scores, _, _ = trainer.scores(trainer.target_set)
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
    for extra in (["--channels-last"], ["--channels-last", "--amp"]):
        amp_on = "--amp" in extra
        with warns_of_amp() if amp_on else contextlib.nullcontext():
            logs, seen, trainer = trainer_steps(common + extra)
        assert seen == {(torch.bfloat16 if amp_on else torch.float32, True)}
        conv = trainer.model.extractor.stem[0].weight
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
        if amp_on:  # bfloat16 roundings differ with the layout: compare the first step, as above
            assert all(abs(logs[0][k] - base[0][k]) < 2e-2 for k in ("cls", "dep")), (logs[0], base[0])
        else:  # float32: the same run up to summation order (observed: every loss within 2e-7, on one
            # thread and on two). Adam's first step turns gradient noise into steps of the full lr, so a
            # gradient error shows here: torch's channels_last batch_norm on the CPU put the meta losses
            # 3e-4 apart on one thread until the reference ran BN in NCHW (reference._batch_norm).
            # On a GPU, cuDNN picks its convolution algorithms per layout and runs them in TF32 by
            # default (torch.backends.cudnn.allow_tf32), 10-bit mantissas: a looser bound, not yet run.
            tol = 2e-5 if device == "cpu" else 1e-2
            for a, b in zip(logs, base):
                assert set(a) == set(b) and all(abs(a[k] - b[k]) < tol for k in a), (a, b)


class _FailingFile:
    """A file with room for `room` bytes: a write past them writes what fits, then raises `error`."""

    def __init__(self, fh, error, room):
        self.fh, self.error, self.room = fh, error, room

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()

    def write(self, data):
        data = bytes(data)
        self.fh.write(data[:self.room])
        if len(data) > self.room:
            self.room = 0
            raise self.error
        self.room -= len(data)
        return len(data)

    def flush(self):
        self.fh.flush()

    def fileno(self):
        return self.fh.fileno()


def fail_atomic_writes(monkeypatch, error, when=lambda tmp: True, room=100):
    """checkpoint.write_atomic's temporary files, where when(their path) says so, fail with `error` once
    `room` bytes are written, as a disk that fills or a kill does."""
    mkstemp, fdopen, failing = tempfile.mkstemp, os.fdopen, set()

    def marking_mkstemp(*args, **kwargs):
        fd, tmp = mkstemp(*args, **kwargs)
        if when(tmp):
            failing.add(fd)
        return fd, tmp

    def failing_fdopen(fd, *args, **kwargs):
        fh = fdopen(fd, *args, **kwargs)
        if fd in failing:
            failing.discard(fd)
            return _FailingFile(fh, error, room)
        return fh

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", marking_mkstemp)
    monkeypatch.setattr(checkpoint.os, "fdopen", failing_fdopen)


def worker_count(most=4):
    """How many processes a test may run side by side: the CPUs this process may use, at most `most`."""
    return max(1, min(most, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def run_side_by_side(runs, tmp_dir, timeout):
    """Start each (argv, env, cwd) of `runs` at once and wait for all: [(returncode, output)], stdout and
    stderr together. Tests that are one long single-threaded child (the Triton interpreter) split it so and
    take every core. The outputs go to files under tmp_dir: pipes read one after the other could fill up."""
    procs = []
    for k, (argv, env, cwd) in enumerate(runs):
        log = open(os.path.join(tmp_dir, f"side_by_side_{k}.log"), "w+")
        procs.append((subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True), log))
    results = []
    try:
        for proc, log in procs:
            proc.wait(timeout=timeout)
            log.seek(0)
            results.append((proc.returncode, log.read()))
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    return results
