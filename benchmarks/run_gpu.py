"""GPU benchmark table: cuda, triton, eager reference and torch.compile(reference).

    python benchmarks/run_gpu.py [--out DIR] [--repeats 30]

Shapes (32,64,128,128), (32,128,64,64), (32,256,32,32), (64,512,14,14);
float32 and bfloat16; forward, backward (forward+backward minus forward) and
forward+backward; CUDA-event medians; achieved bandwidth of forward+backward
over the 8|X| roofline bytes against a measured device-to-device copy
(`*_separate`: moments, the (N, C) middle and the map called separately, as
before blend_apply_forward / _backward: six operator calls from Python for
cuda instead of two, six launches for triton instead of four). Then the
whole AFNM layer (gate included; gate inside the middle kernels, in PyTorch, and
the chain of small ops) at the largest shape; the op with the backward on the
calling thread (autograd multithreading off); per-call times of the (N, C)
middle kernels and of the four primitives at a tiny, launch-bound shape (the
direct path next to the registered ops). Writes gpu_bench.csv after every case,
so a time limit loses only the cases not yet run.
"""
import argparse
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cases import make_case, write_csv  # noqa: E402

from anrl_ext.ops.reference import adaptive_norm_reference  # noqa: E402

SHAPES = [(32, 64, 128, 128), (32, 128, 64, 64), (32, 256, 32, 32), (64, 512, 14, 14)]


def cuda_time(fn, repeats=30, warmup=3):
    """Median seconds of fn() by CUDA events, after warm-up runs."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return statistics.median(times)


def copy_bandwidth():
    """Device-to-device copy of 1 GiB: bytes read + written per second."""
    src = torch.randn(2**28, device="cuda")
    dst = torch.empty_like(src)
    t = cuda_time(lambda: dst.copy_(src), repeats=20)
    return 2 * src.numel() * 4 / t


def reference(x, alpha, params, running):
    return adaptive_norm_reference(x, alpha, *params, *running, True, 0.1, 1e-5)


def fused(backend, middle_kernels=True, whole_pass=True):
    import anrl_ext
    from anrl_ext.ops import fast_blend

    def fn(x, alpha, params, running):
        fast_blend.ENABLED, fast_blend.WHOLE_PASS = middle_kernels, whole_pass
        try:
            return anrl_ext.adaptive_norm(x, alpha, *params, *running, training=True, backend=backend)
        finally:
            fast_blend.ENABLED, fast_blend.WHOLE_PASS = True, True
    return fn


def op_impls(backends):
    impls = {}
    for b in backends:
        impls[b] = fused(b)
    # moments, the middle and the map called separately (cuda: six operator calls
    # from Python, not two; triton: six launches, not four).
    for b in backends:
        impls[f"{b}_separate"] = fused(b, whole_pass=False)
    # The same kernels with the (N, C) middle as a chain of small PyTorch ops.
    for b in backends:
        impls[f"{b}_chain"] = fused(b, middle_kernels=False)
    impls["reference"] = reference
    # A fresh compile per case: dynamo's cache is keyed on the code object, and
    # eight shape/dtype cases would otherwise hit its recompile limit.
    torch._dynamo.reset()
    impls["compiled_reference"] = torch.compile(reference, dynamic=False)
    return impls


def time_case(fn, x, inputs, call, dy, repeats):
    with torch.no_grad():
        fwd = cuda_time(call, repeats)
    fb = cuda_time(lambda: torch.autograd.grad(call(), inputs, dy), repeats)
    return fwd, fb


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    import anrl_ext

    backends = [b for b in ("cuda", "triton") if b in anrl_ext.available_backends("cuda")]
    bw = copy_bandwidth()
    name = torch.cuda.get_device_name()
    print(f"# {name}, copy bandwidth {bw / 1e9:.0f} GB/s, torch {torch.__version__}, backends {backends}")
    print(f"# forward+backward ms (fraction of copy bandwidth over 8|X| bytes); speed-up of the best fused")
    rows = []
    csv_path = Path(args.out) / "gpu_bench.csv"
    for dtype in (torch.float32, torch.bfloat16):
        for shape in SHAPES:
            x, alpha, params, running, dy = make_case(shape, dtype, "cuda")
            inputs = [x, alpha, *params]
            xbytes = x.numel() * x.element_size()
            res = {}
            for impl, fn in op_impls(backends).items():
                call = lambda fn=fn: fn(x, alpha, params, running)  # noqa: E731
                try:
                    fwd, fb = time_case(fn, x, inputs, call, dy, args.repeats)
                except Exception as exc:  # report and keep going
                    print(f"  {impl} failed on {shape} {dtype}: {type(exc).__name__}: {exc}"[:400])
                    continue
                res[impl] = fb
                rows.append(dict(gpu=name, dtype=str(dtype).split(".")[-1], shape="x".join(map(str, shape)),
                                 what="op", impl=impl, forward_ms=round(fwd * 1e3, 4),
                                 backward_ms=round((fb - fwd) * 1e3, 4), forward_backward_ms=round(fb * 1e3, 4),
                                 fb_bandwidth_fraction=round((8 * xbytes / fb) / bw, 4),
                                 copy_gbps=round(bw / 1e9, 1)))
            write_csv(rows, csv_path, quiet=True)
            line = f"{str(dtype)[6:]:>8} {'x'.join(map(str, shape)):>15}"
            for impl, fb in res.items():
                line += f" | {impl} {fb * 1e3:6.3f} ({100 * 8 * xbytes / fb / bw:3.0f}%)"
            best = [res[b] for b in backends if b in res]
            if best and "reference" in res and "compiled_reference" in res:
                line += f" | best fused {res['reference'] / min(best):.1f}x eager, " \
                        f"{res['compiled_reference'] / min(best):.2f}x compiled"
            print(line, flush=True)
    layer_rows(rows, backends, name, args.repeats, bw)
    thread_rows(rows, backends, name, args.repeats, bw)
    middle_rows(rows, backends, name)
    primitive_rows(rows, backends, name)
    write_csv(rows, csv_path)


def thread_rows(rows, backends, name, repeats, bw):
    """The op at the largest shape with autograd's device threads off: the backward
    runs on the calling thread. Tells whether the backward's host time depends on
    the thread it runs on."""
    shape = SHAPES[0]
    x, alpha, params, running, dy = make_case(shape, torch.float32, "cuda")
    inputs = [x, alpha, *params]
    for b in backends:
        fn = fused(b)
        with torch.autograd.set_multithreading_enabled(False):
            fb = cuda_time(lambda: torch.autograd.grad(fn(x, alpha, params, running), inputs, dy), repeats)
        rows.append(dict(gpu=name, dtype="float32", shape="x".join(map(str, shape)), what="op_backward_same_thread",
                         impl=b, forward_ms="", backward_ms="", forward_backward_ms=round(fb * 1e3, 4),
                         fb_bandwidth_fraction=round((8 * x.numel() * 4 / fb) / bw, 4), copy_gbps=round(bw / 1e9, 1)))
        print(f"op fwd+bwd {'x'.join(map(str, shape))} float32, {b}, backward on the calling thread: "
              f"{fb * 1e3:.3f} ms", flush=True)


def primitive_rows(rows, backends, name, calls=200):
    """Per-call time of the four primitives at 2x8x4x4 (launch-bound): forward =
    moments + affine, backward = reduce + affine2; the direct path (fast_blend's)
    and the registered ops (dispatcher)."""
    from anrl_ext.ops.backends import primitives_for

    x = torch.randn(2, 8, 4, 4, device="cuda")
    m = torch.zeros(2, 8, device="cuda")
    for b in backends:
        ops = primitives_for(b)
        for impl, P in ((b, ops.direct or ops), (f"{b}_op", ops)):
            fwd = per_call(lambda: (P.moments(x), P.affine(x, m, m, m)), calls)
            bwd = per_call(lambda: (P.reduce(x, x, m), P.affine2(x, x, m, m, m, m)), calls)
            rows.append(middle_row(name, "2x8x4x4", "primitive_kernels", impl, fwd, bwd))
            print(f"primitives 2x8x4x4 {impl}: moments+affine {fwd * 1e6:.1f} us, "
                  f"reduce+affine2 {bwd * 1e6:.1f} us per call", flush=True)


def per_call(fn, calls=200):
    """Seconds per fn() over `calls` back-to-back calls (launch-bound work)."""
    return cuda_time(lambda: [fn() for _ in range(calls)], repeats=5, warmup=1) / calls


def layer_rows(rows, backends, name, repeats, bw):
    """The whole AFNM layer (paper gate, running stats) at the largest shape, fwd+bwd."""
    import anrl_ext

    shape = SHAPES[0]
    x = torch.randn(shape, device="cuda", requires_grad=True)
    dy = torch.randn(shape, device="cuda")
    from anrl_ext.ops import fast_blend

    # (impl, backend, middle kernels, gate inside them)
    runs = [(b, b, True, True) for b in backends] + [(f"{b}_gate_torch", b, True, False) for b in backends] \
        + [(f"{b}_chain", b, False, False) for b in backends]
    for impl, backend, middle_kernels, gate_in_kernel in runs + [("reference", "reference", True, True)]:
        layer = anrl_ext.AFNM(shape[1], backend=backend).cuda()
        inputs = [x, *layer.parameters()]
        fast_blend.ENABLED, fast_blend.GATE_IN_KERNEL = middle_kernels, gate_in_kernel
        try:
            t = cuda_time(lambda: torch.autograd.grad(layer(x), inputs, dy), repeats)
        finally:
            fast_blend.ENABLED, fast_blend.GATE_IN_KERNEL = True, True
        rows.append(dict(gpu=name, dtype="float32", shape="x".join(map(str, shape)), what="afnm_layer", impl=impl,
                         forward_ms="", backward_ms="", forward_backward_ms=round(t * 1e3, 4),
                         fb_bandwidth_fraction=round((8 * x.numel() * 4 / t) / bw, 4), copy_gbps=round(bw / 1e9, 1)))
        print(f"AFNM layer fwd+bwd {'x'.join(map(str, shape))} float32, {impl}: {t * 1e3:.3f} ms", flush=True)


def middle_row(gpu, shape, what, impl, fwd, bwd):
    """A CSV row of per-call middle-kernel times (seconds in, ms out)."""
    return dict(gpu=gpu, dtype="float32", shape=shape, what=what, impl=impl, forward_ms=round(fwd * 1e3, 5),
                backward_ms=round(bwd * 1e3, 5), forward_backward_ms=round((fwd + bwd) * 1e3, 5),
                fb_bandwidth_fraction="", copy_gbps="")


def middle_rows(rows, backends, name, calls=200):
    """The (N, C) middle kernels alone: per-call time of blend_forward + blend_backward,
    200 calls back to back, next to a one-element add (the launch floor)."""
    from anrl_ext.ops.backends import primitives_for

    floor = per_call(lambda: torch.add(torch.ones(1, device="cuda"), 1), calls)
    print(f"launch floor (tensor creation + add): {floor * 1e6:.1f} us/call")
    for n, c in ((32, 64), (64, 512)):
        mean, var, s0, s1 = (torch.randn(n, c, device="cuda") for _ in range(4))
        var = var.abs() + 0.1
        alpha, w = torch.rand(n, c, device="cuda"), torch.randn(c, device="cuda")
        rm, rv = torch.zeros(c, device="cuda"), torch.ones(c, device="cuda")
        for b in backends:
            P = primitives_for(b)
            fwd = per_call(lambda: P.blend_forward(mean, var, alpha, 0.0, w, w, w, w, rm, rv, True, True, 0.1,
                                                   1e-5, n * 196))
            bwd = per_call(lambda: P.blend_backward(s0, s1, mean, var, alpha, 0.0, w, w, w, w, mean[0], var[0], True,
                                                    1e-5, 196))
            rows.append(middle_row(name, f"{n}x{c}", "middle_kernels", b, fwd, bwd))
            print(f"middle kernels ({n}, {c}) {b}: blend_forward {fwd * 1e6:.1f} us, "
                  f"blend_backward {bwd * 1e6:.1f} us per call")
            # The gated middle: the paper gate (D = C / 16) inside the same launch.
            d = max(c // 16, 1)
            gate = (torch.randn(d, c, device="cuda"), None, torch.randn(c, d, device="cuda"), None,
                    torch.randn(c, d, device="cuda"))
            out = P.gate_blend_forward(mean, var, *gate, w, w, w, w, rm, rv, True, True, 0.1, 1e-5, n * 196)
            gfwd = per_call(lambda: P.gate_blend_forward(mean, var, *gate, w, w, w, w, rm, rv, True, True, 0.1,
                                                         1e-5, n * 196))
            gbwd = per_call(lambda: P.gate_blend_backward(s0, s1, mean, var, out[0], out[1], None, *gate, w, w, w, w,
                                                          out[4], out[5], True, 1e-5, 196))
            rows.append(middle_row(name, f"{n}x{c}", "gated_middle_kernels", b, gfwd, gbwd))
            print(f"gated middle kernels ({n}, {c}, D={d}) {b}: gate_blend_forward {gfwd * 1e6:.1f} us, "
                  f"gate_blend_backward {gbwd * 1e6:.1f} us per call")


if __name__ == "__main__":
    main()
