"""GPU benchmark table: cuda, triton, eager reference and torch.compile(reference).

    python benchmarks/run_gpu.py [--out DIR] [--repeats 30]
    python benchmarks/run_gpu.py --device cpu --backends cpu --smoke   # every section, tiny, on the CPU
    python benchmarks/run_gpu.py --sections op graph                    # only those parts of the table
    python benchmarks/run_gpu.py --skip op --append                     # the others, added to the CSV

Shapes (32,64,128,128), (32,128,64,64), (32,256,32,32), (64,512,14,14);
float32 and bfloat16; forward, backward (forward+backward minus forward) and
forward+backward; CUDA-event medians; achieved bandwidth of forward+backward
over the 8|X| roofline bytes against a measured device-to-device copy
(`*_separate`: moments, the (N, C) middle and the map called separately, as
before blend_apply_forward / _backward: six operator calls from Python for
cuda instead of two, six launches for triton instead of four;
`*_python_function`: the two calls of the cuda / triton op from the Python
autograd.Function, as before the op's autograd moved into C++ (cuda 2026-12-05,
triton 2026-12-06);
`triton_kernel_grid`: the triton op's launches through `kernel[grid](...)`, not
triton_launch's cache of compiled kernels). Then the
whole AFNM layer (gate included; gate inside the middle kernels, in PyTorch, and
the chain of small ops) at the largest shape; the op with the backward on the
calling thread (autograd multithreading off); the op's host time at the
largest shape in parts (`op_host_time`: forward call, grad call, autograd's
hand-over to the op's backward, inside it, after it); per-call times of the (N, C)
middle kernels and of the four primitives at a tiny, launch-bound shape (the
direct path next to the registered ops); each primitive alone at the largest
shape (`primitive_bandwidth`: forward_ms is the time per call,
fb_bandwidth_fraction its own bytes over that time against the copy); the op under torch.profiler
(`op_profile`: host time, autograd's hand-over, GPU busy / idle, and a Chrome trace of each
implementation, profile_<impl>.json.gz); the op's forward + backward replayed from a CUDA graph
(`op_graphed`, and the AFNM layer's `afnm_layer_graphed`: the kernels without host time per call); the op
under torch.compile (`op_compiled`: its one op traced, the composed path traced, the eager op).
Writes gpu_bench.csv after every case, so a time limit loses only the cases not yet run.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cases import graph_replay, make_case, median_time, read_csv, under_compile_one_op, write_csv  # noqa: E402

from anrl_ext.ops.reference import adaptive_norm_reference  # noqa: E402

SHAPES = [(32, 64, 128, 128), (32, 128, 64, 64), (32, 256, 32, 32), (64, 512, 14, 14)]
DTYPES = (torch.float32, torch.bfloat16)
DEVICE = "cuda"  # --device cpu (with --smoke) runs every section on the CPU: a check of this script, not a table
MIDDLE_SIZES = ((32, 64), (64, 512))
COPY_ELEMENTS = 2**28  # 1 GiB of float32
SMOKE = False  # --smoke: one call where a timing loops over many
OUT_DIR = Path("benchmarks/results")  # --out: the CSV and the profiler traces
CSV_NAME = "gpu_bench.csv"  # in OUT_DIR, rewritten after every case and section


def cuda_time(fn, repeats=30, warmup=3):
    """Median seconds of fn(): CUDA events on the GPU (the CPU clock with --device cpu). --smoke: one
    warm-up call (a cached launch still runs in the timed calls after it), since its times mean nothing."""
    warmup = 1 if SMOKE else warmup
    if DEVICE != "cuda":
        return median_time(fn, repeats, warmup)
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
    src = torch.randn(COPY_ELEMENTS, device=DEVICE)
    dst = torch.empty_like(src)
    t = cuda_time(lambda: dst.copy_(src), repeats=20)
    return 2 * src.numel() * 4 / t


def fraction(value):
    """A bandwidth fraction for the CSV, to four significant digits: four decimals would round a tiny
    (--smoke) or slow case to 0."""
    return float(f"{value:.4g}")


def fb_row(name, shape, what, impl, seconds, bw):
    """A CSV row of the op's forward + backward at `shape`, float32, taking `seconds` a call."""
    return dict(gpu=name, dtype="float32", shape="x".join(map(str, shape)), what=what, impl=impl, forward_ms="",
                backward_ms="", forward_backward_ms=round(seconds * 1e3, 4),
                fb_bandwidth_fraction=fraction(8 * fb_bytes(shape) / seconds / bw), copy_gbps=round(bw / 1e9, 1))


def fb_bytes(shape):
    """|X| of a float32 input of `shape`: the 8|X| roofline counts it eight times."""
    n, c, h, w = shape
    return n * c * h * w * 4


def fb_summary(times, shape, bw):
    """impl time (fraction of the copy bandwidth over 8|X|) | ... for a line of the log."""
    return " | ".join(f"{impl} {t * 1e3:.3f} ms ({100 * 8 * fb_bytes(shape) / t / bw:.0f}%)"
                      for impl, t in times.items())


def reference(x, alpha, params, running):
    return adaptive_norm_reference(x, alpha, *params, *running, True, 0.1, 1e-5)


def fused(backend, middle_kernels=True, whole_pass=True, native=True, cached_launches=True, fold_tile=None):
    import anrl_ext
    from anrl_ext.ops import fast_blend

    launch = fold = None
    if backend == "triton":
        from anrl_ext.ops import triton_blend_apply as fold
        from anrl_ext.ops import triton_launch as launch
    tile = fold.FOLD_TILE if fold is not None else None

    def fn(x, alpha, params, running):
        fast_blend.ENABLED, fast_blend.WHOLE_PASS, fast_blend.NATIVE_AUTOGRAD = middle_kernels, whole_pass, native
        if launch is not None:
            launch.ENABLED = cached_launches
            fold.FOLD_TILE = tile if fold_tile is None else fold_tile
        try:
            return anrl_ext.adaptive_norm(x, alpha, *params, *running, training=True, backend=backend)
        finally:
            fast_blend.ENABLED, fast_blend.WHOLE_PASS, fast_blend.NATIVE_AUTOGRAD = True, True, True
            if launch is not None:
                launch.ENABLED, fold.FOLD_TILE = True, tile
    return fn


def native_autograd(backend):
    """Whether the backend's whole-pass op has its autograd in C++ (blend_apply: cpu, cuda, and triton
    with anrl_ext._C built)."""
    from anrl_ext.ops.backends import primitives_for

    return primitives_for(backend).blend_apply is not None


def op_impls(backends, compile_reference=True):
    impls = {}
    for b in backends:
        impls[b] = fused(b)
    # The same two calls from the Python autograd.Function (before 2026-12-05; Triton's before 2026-12-06).
    for b in backends:
        if native_autograd(b):
            impls[f"{b}_python_function"] = fused(b, native=False)
    # Triton's launches through kernel[grid](...) rather than triton_launch's cache (before 2026-12-05).
    if "triton" in backends:
        impls["triton_kernel_grid"] = fused("triton", cached_launches=False)
    # moments, the middle and the map called separately (cuda: six operator calls
    # from Python, not two; triton: six launches, not four).
    for b in backends:
        impls[f"{b}_separate"] = fused(b, whole_pass=False)
    # The same kernels with the (N, C) middle as a chain of small PyTorch ops.
    for b in backends:
        impls[f"{b}_chain"] = fused(b, middle_kernels=False)
    impls["reference"] = reference
    if compile_reference:
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


def main(argv=None):
    global SHAPES, DTYPES, DEVICE, MIDDLE_SIZES, COPY_ELEMENTS, SMOKE, OUT_DIR
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--backends", nargs="+", help="default: cuda and triton, those available on the device")
    ap.add_argument("--smoke", action="store_true",
                    help="one tiny shape, float32, no torch.compile, one warm-up and 2 repeats: checks that every "
                         "section runs")
    ap.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS), metavar="SECTION",
                    help="which parts to run, in the table's order (default: all): " + ", ".join(SECTIONS))
    ap.add_argument("--skip", nargs="+", choices=list(SECTIONS), default=[], metavar="SECTION",
                    help="run every section of --sections but these")
    ap.add_argument("--append", action="store_true",
                    help="keep the rows already in the output's gpu_bench.csv (a table run in parts, as "
                         "gpu_check.sh runs it)")
    args = ap.parse_args(argv)
    import anrl_ext

    DEVICE = args.device
    SMOKE = args.smoke
    OUT_DIR = Path(args.out)
    if args.smoke:
        SHAPES, DTYPES, MIDDLE_SIZES, COPY_ELEMENTS, args.repeats = [(2, 32, 5, 7)], (torch.float32,), \
            ((2, 32),), 2**16, 2
    backends = args.backends or [b for b in ("cuda", "triton") if b in anrl_ext.available_backends(DEVICE)]
    bw = copy_bandwidth()
    name = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu"
    print(f"# {name}, copy bandwidth {bw / 1e9:.0f} GB/s, torch {torch.__version__}, backends {backends}")
    print("# forward+backward ms (fraction of copy bandwidth over 8|X| bytes); speed-up of the best fused")
    csv_path = OUT_DIR / CSV_NAME
    rows = read_csv(csv_path) if args.append and csv_path.exists() else []
    # Each section writes the CSV when it is done: a failure or the time limit in
    # a later one keeps the rows of those before it.
    for key in (s for s in SECTIONS if s in args.sections and s not in args.skip):
        start = time.perf_counter()
        try:
            SECTIONS[key](rows, backends, name, args.repeats, bw)
        except Exception as exc:  # report and keep going
            print(f"  {SECTIONS[key].__name__} failed: {type(exc).__name__}: {exc}"[:400], flush=True)
            if args.smoke:
                raise
        if rows:  # none where the only section failed at once
            write_csv(rows, csv_path, quiet=True)
        print(f"# section {key}: {time.perf_counter() - start:.1f} s", flush=True)
    print(f"wrote {csv_path}" if rows else "no rows")


def op_table(rows, backends, name, repeats, bw):
    """The headline rows ("op"): every shape and dtype, each implementation's forward and forward+backward;
    the CSV after each case."""
    for dtype in DTYPES:
        for shape in SHAPES:
            x, alpha, params, running, dy = make_case(shape, dtype, DEVICE)
            inputs = [x, alpha, *params]
            xbytes = x.numel() * x.element_size()
            res = {}
            for impl, fn in op_impls(backends, compile_reference=not SMOKE).items():
                call = lambda fn=fn: fn(x, alpha, params, running)  # noqa: E731
                try:
                    fwd, fb = time_case(fn, x, inputs, call, dy, repeats)
                except Exception as exc:  # report and keep going
                    print(f"  {impl} failed on {shape} {dtype}: {type(exc).__name__}: {exc}"[:400])
                    continue
                res[impl] = fb
                rows.append(dict(gpu=name, dtype=str(dtype).split(".")[-1], shape="x".join(map(str, shape)),
                                 what="op", impl=impl, forward_ms=round(fwd * 1e3, 4),
                                 backward_ms=round((fb - fwd) * 1e3, 4), forward_backward_ms=round(fb * 1e3, 4),
                                 fb_bandwidth_fraction=fraction(8 * xbytes / fb / bw),
                                 copy_gbps=round(bw / 1e9, 1)))
            write_csv(rows, OUT_DIR / CSV_NAME, quiet=True)
            line = f"{str(dtype)[6:]:>8} {'x'.join(map(str, shape)):>15}"
            for impl, fb in res.items():
                line += f" | {impl} {fb * 1e3:6.3f} ({100 * 8 * xbytes / fb / bw:3.0f}%)"
            best = [res[b] for b in backends if b in res]
            if best and "reference" in res and "compiled_reference" in res:
                line += f" | best fused {res['reference'] / min(best):.1f}x eager, " \
                        f"{res['compiled_reference'] / min(best):.2f}x compiled"
            print(line, flush=True)


def thread_rows(rows, backends, name, repeats, bw):
    """The op at the largest shape with autograd's device threads off: the backward
    runs on the calling thread. Tells whether the backward's host time depends on
    the thread it runs on."""
    shape = SHAPES[0]
    x, alpha, params, running, dy = make_case(shape, torch.float32, DEVICE)
    inputs = [x, alpha, *params]
    for b in backends:
        fn = fused(b)
        with torch.autograd.set_multithreading_enabled(False):
            fb = cuda_time(lambda: torch.autograd.grad(fn(x, alpha, params, running), inputs, dy), repeats)
        rows.append(fb_row(name, shape, "op_backward_same_thread", b, fb, bw))
        print(f"op fwd+bwd {'x'.join(map(str, shape))} float32, {b}, backward on the calling thread: "
              f"{fb * 1e3:.3f} ms", flush=True)


def pipelined_rows(rows, backends, name, repeats, bw, calls=20):
    """The op's forward + backward at the largest shape (float32), `calls` of them back to back between
    two events, per call: the host queues each call while the GPU runs the one before, as layers do in a
    network, so host time shows only where it exceeds the GPU's. The headline rows ("op") time one call,
    host time and all. The eager and compiled references the same way, side by side. --smoke: 2 calls (the
    interpreted Triton op takes ~2 s a call on the CPU; 20 made this section most of the smoke test's time)."""
    calls = 2 if SMOKE else calls
    shape = SHAPES[0]
    x, alpha, params, running, dy = make_case(shape, torch.float32, DEVICE)
    inputs = [x, alpha, *params]
    impls = {impl: fn for impl, fn in op_impls(backends, compile_reference=not SMOKE).items()
             if impl in (*backends, *(f"{b}_python_function" for b in backends), "triton_kernel_grid", "reference",
                         "compiled_reference")}

    def run(fn):
        for _ in range(calls):
            torch.autograd.grad(fn(x, alpha, params, running), inputs, dy)

    res = {}
    for impl, fn in impls.items():
        res[impl] = cuda_time(lambda fn=fn: run(fn), max(repeats // 3, 2)) / calls
        rows.append(fb_row(name, shape, "op_pipelined", impl, res[impl], bw))
    print(f"op fwd+bwd {'x'.join(map(str, shape))} float32, {calls} calls back to back, per call: "
          + fb_summary(res, shape, bw), flush=True)


def compiled_fused(backend, one_op):
    """torch.compile of the fused op on `backend`, tracing its one op (`one_op`, since 2026-12-07) or the
    composed path (moments, the middle as PyTorch ops that Inductor fuses, affine). --smoke: the aot_eager
    backend (no Inductor code generation on the CPU)."""
    compiled = torch.compile(fused(backend), dynamic=False, backend="aot_eager" if SMOKE else "inductor")
    return under_compile_one_op(one_op, compiled)


def compiled_rows(rows, backends, name, repeats, bw):
    """The op under torch.compile at the largest shape (float32), forward + backward (`op_compiled`): each
    backend's compiled op tracing its one op (`<backend>`) and the composed path (`<backend>_composed`), side
    by side with the eager op (`<backend>_eager`). A user who compiles a model gets one of the first two.
    torch.compile(reference) at this shape: the "op" rows (another compile would cost the table seconds)."""
    shape = SHAPES[0]
    x, alpha, params, running, dy = make_case(shape, torch.float32, DEVICE)
    inputs = [x, alpha, *params]
    torch._dynamo.reset()
    impls = {}
    for b in backends:
        impls[b] = compiled_fused(b, one_op=True)
        if not (b == "triton" and DEVICE == "cpu"):  # interpreted, the composed path's triton_op does not trace
            impls[f"{b}_composed"] = compiled_fused(b, one_op=False)
        impls[f"{b}_eager"] = fused(b)
    res = {}
    for impl, fn in impls.items():
        try:
            res[impl] = cuda_time(lambda fn=fn: torch.autograd.grad(fn(x, alpha, params, running), inputs, dy),
                                  repeats)
        except Exception as exc:  # report and keep going
            print(f"  op_compiled {impl} failed: {type(exc).__name__}: {exc}"[:400], flush=True)
            continue
        rows.append(fb_row(name, shape, "op_compiled", impl, res[impl], bw))
    print(f"op fwd+bwd {'x'.join(map(str, shape))} float32 under torch.compile: " + fb_summary(res, shape, bw),
          flush=True)


def graph_rows(rows, backends, name, repeats, bw):
    """The op's forward + backward at the largest and the smallest planes (float32) captured in a CUDA
    graph and replayed (`op_graphed`; Triton's fold kernels also one plane block a program, as before
    2026-12-06: `triton_one_plane_block`): no host work per call, so the kernels alone, back to back,
    as a user gets them by capturing a host-bound model with torch.cuda.graph; the eager reference (and
    at the largest shape the compiled one) captured the same way, side by side. Then the whole AFNM
    layer (paper gate, inside the middle kernels) the same way (`afnm_layer_graphed`): the gated middle
    kernels' own time, which the eager `afnm_layer` rows mix with the layer's host time. Not the issue's
    target, which is one eager call. On the CPU (--smoke), which has no CUDA graphs, the plain calls."""
    import anrl_ext

    for shape in dict.fromkeys((SHAPES[-1], SHAPES[0])):  # the op at the smallest planes too
        x, alpha, params, running, dy = make_case(shape, torch.float32, DEVICE)
        inputs = [x, alpha, *params]
        # torch.compile at the largest shape only: each compile costs the table seconds
        impls = {impl: fn for impl, fn in op_impls(backends, compile_reference=not SMOKE and shape == SHAPES[0]).items()
                 if impl in (*backends, "reference", "compiled_reference")}
        if "triton" in backends:  # the fold kernels mapping one block of one plane a program (before 2026-12-06)
            impls["triton_one_plane_block"] = fused("triton", fold_tile=0)
        steps = {impl: (lambda fn=fn, x=x, alpha=alpha, params=params, running=running, inputs=inputs, dy=dy:
                        torch.autograd.grad(fn(x, alpha, params, running), inputs, dy))
                 for impl, fn in impls.items()}
        graph_group(rows, name, bw, shape, "op_graphed", steps, repeats)
    # the layer at the largest shape: x and dy of the last case

    def layer_step(layer):
        return lambda: torch.autograd.grad(layer(x), [x, *layer.parameters()], dy)

    layer_steps = {f"afnm_layer_{b}": layer_step(anrl_ext.AFNM(shape[1], backend=b).to(DEVICE)) for b in backends}
    graph_group(rows, name, bw, shape, "afnm_layer_graphed", layer_steps, repeats)


def graph_group(rows, name, bw, shape, what, steps, repeats):
    """Rows `what` of each step (forward + backward at `shape`, float32) captured and replayed."""
    res = {}
    for impl, step in steps.items():
        try:
            replay = graph_replay(step, DEVICE)
            res[impl] = cuda_time(replay, repeats)
        except Exception as exc:  # report and keep going
            print(f"  {impl} in a CUDA graph failed: {type(exc).__name__}: {exc}"[:400], flush=True)
            if SMOKE:
                raise
            continue
        finally:
            replay = None  # the graph and its memory pool go with the last reference
        rows.append(fb_row(name, shape, what, impl, res[impl], bw))
    print(f"{what} fwd+bwd {'x'.join(map(str, shape))} float32, replayed from a CUDA graph: "
          + fb_summary(res, shape, bw), flush=True)


def host_rows(rows, backends, name, repeats, bw):
    """Where the op's host time goes at the largest shape (float32), on autograd's device
    thread and on the calling thread: the forward call, the `torch.autograd.grad` call
    (the whole backward's host time: the GPU work is queued, not waited for), and, for the
    Python autograd.Function (`*_python_function` where the backend's op has its autograd in
    C++), its parts: from the call to the entry of the op's backward() (autograd's hand-over),
    inside backward() (Python and the kernel calls), and from its return to grad()'s.
    perf_counter: the forward's median, and the call with the median backward, in parts; the GPU is
    synchronised between calls, outside the timings."""
    import time

    from anrl_ext.ops import fast_blend

    shape = SHAPES[0]
    x, alpha, params, running, dy = make_case(shape, torch.float32, DEVICE)
    inputs = [x, alpha, *params]
    sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)
    original = fast_blend._FastBlend.__dict__["backward"]
    marks = []

    def timed_backward(ctx, *grads):
        marks.append(time.perf_counter())
        out = original.__func__(ctx, *grads)
        marks.append(time.perf_counter())
        return out

    variants = {b: fused(b) for b in backends}
    variants.update({f"{b}_python_function": fused(b, native=False) for b in backends if native_autograd(b)})
    fast_blend._FastBlend.backward = staticmethod(timed_backward)
    try:
        for b, fn in variants.items():
            for threads in ("device thread", "calling thread"):
                samples = []
                with torch.autograd.set_multithreading_enabled(threads == "device thread"):
                    for _ in range(max(repeats, 3) + 3):  # the first three warm up
                        sync()
                        marks.clear()
                        t0 = time.perf_counter()
                        y = fn(x, alpha, params, running)
                        t1 = time.perf_counter()
                        sync()
                        t2 = time.perf_counter()
                        torch.autograd.grad(y, inputs, dy)
                        t3 = time.perf_counter()
                        # No marks: the backward is C++ (blend_apply), no Python Function to time inside.
                        entry, exit_ = marks or (float("nan"), float("nan"))
                        samples.append((t1 - t0, t3 - t2, entry - t2, exit_ - entry, t3 - exit_))
                # The forward's median; the backward of the call with the median backward time, and that
                # call's parts: they add up to it, where medians of each part alone need not.
                kept = samples[3:]
                call = sorted(kept, key=lambda sample: sample[1])[len(kept) // 2]
                parts = [statistics.median(sample[0] for sample in kept) * 1e3, *(v * 1e3 for v in call[1:])]
                impl = b if threads == "device thread" else f"{b}_same_thread"
                names = ("forward", "backward") + (("handover", "in_backward", "after_backward") if marks else ())
                for what, value in zip(names, parts):
                    rows.append(dict(gpu=name, dtype="float32", shape="x".join(map(str, shape)), what="op_host_time",
                                     impl=f"{impl}:{what}", forward_ms=round(value, 4), backward_ms="",
                                     forward_backward_ms="", fb_bandwidth_fraction="", copy_gbps=round(bw / 1e9, 1)))
                split = f" = hand-over {parts[2]:.3f} + in backward() {parts[3]:.3f} + after {parts[4]:.3f}" \
                    if marks else ""
                print(f"host time {'x'.join(map(str, shape))} float32 {b}, backward on the {threads}: forward "
                      f"{parts[0]:.3f} ms, backward {parts[1]:.3f} ms{split}", flush=True)
    finally:
        fast_blend._FastBlend.backward = original


def profile_rows(rows, backends, name, repeats, bw, calls=3):
    """The op's forward + backward at the largest shape (float32) under torch.profiler, `calls` times
    after a warm-up, for each fused backend and its Python Function, and the AFNM layer's
    (`afnm_layer_<backend>`, paper gate): a Chrome trace each (profile_<impl>.json.gz under --out;
    open in Perfetto or chrome://tracing) with the host's operators and launches on every thread next
    to the GPU's kernels, its busiest operators (profile_<impl>.txt), and medians over the calls
    (`op_profile` rows, ms): `host` the call on the calling thread (forward and
    torch.autograd.grad), `handover` from the grad call to the first event on another thread
    (autograd's device thread; nan where the backward runs on the calling thread), `gpu_busy` the
    GPU's summed kernel and copy time, `gpu_span` from the call to the GPU's last end, `gpu_idle`
    their difference: the time the GPU waited on the host."""
    import gzip
    import math

    import anrl_ext
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, record_function

    shape = SHAPES[0]
    x, alpha, params, running, dy = make_case(shape, torch.float32, DEVICE)
    sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEVICE == "cuda" else [])
    ops = {b: fused(b) for b in backends}
    ops.update({f"{b}_python_function": fused(b, native=False) for b in backends if native_autograd(b)})
    # impl -> (forward, the inputs its backward differentiates)
    variants = {impl: (lambda fn=fn: fn(x, alpha, params, running), [x, alpha, *params]) for impl, fn in ops.items()}
    for b in backends:
        layer = anrl_ext.AFNM(shape[1], backend=b).to(DEVICE)
        variants[f"afnm_layer_{b}"] = (lambda layer=layer: layer(x), [x, *layer.parameters()])
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for impl, (forward, inputs) in variants.items():
        for _ in range(3):
            torch.autograd.grad(forward(), inputs, dy)
        sync()
        with profile(activities=activities) as prof:
            for i in range(calls):
                with record_function(f"op call {i}"):
                    y = forward()
                    with record_function(f"grad call {i}"):
                        torch.autograd.grad(y, inputs, dy)
                sync()
        trace = OUT_DIR / f"profile_{impl}.json"
        prof.export_chrome_trace(str(trace))
        with open(trace, "rb") as src, gzip.open(f"{trace}.gz", "wb") as dst:
            dst.write(src.read())
        trace.unlink()
        (OUT_DIR / f"profile_{impl}.txt").write_text(
            prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
        events = list(prof.events())
        # The ranges also come back as GPU-side annotations of the same names: host events only for the
        # marks, and no annotation among the GPU's work.
        is_mark = lambda e: e.name.startswith(("op call ", "grad call "))  # noqa: E731
        marks = {e.name: e for e in events if is_mark(e) and e.device_type == DeviceType.CPU}
        gpu = [e for e in events if e.device_type == DeviceType.CUDA and not is_mark(e)]
        parts = {p: [] for p in ("host", "handover", "gpu_busy", "gpu_span", "gpu_idle")}
        for i in range(calls):
            call, grad = marks[f"op call {i}"], marks[f"grad call {i}"]
            start = call.time_range.start
            stop = marks[f"op call {i + 1}"].time_range.start if i + 1 < calls else math.inf
            other = [e.time_range.start for e in events if e.device_type == DeviceType.CPU and e.thread != call.thread
                     and grad.time_range.start <= e.time_range.start <= grad.time_range.end]
            kernels = [e for e in gpu if start <= e.time_range.start < stop]
            busy = sum(e.time_range.elapsed_us() for e in kernels)
            span = max(e.time_range.end for e in kernels) - start if kernels else math.nan
            parts["host"].append(call.time_range.elapsed_us())
            parts["handover"].append(min(other) - grad.time_range.start if other else math.nan)
            parts["gpu_busy"].append(busy if kernels else math.nan)
            parts["gpu_span"].append(span)
            parts["gpu_idle"].append(span - busy)
        summary = {p: statistics.median(v) / 1e3 for p, v in parts.items()}
        for part, value in summary.items():
            rows.append(dict(gpu=name, dtype="float32", shape="x".join(map(str, shape)), what="op_profile",
                             impl=f"{impl}:{part}", forward_ms=round(value, 4), backward_ms="",
                             forward_backward_ms="", fb_bandwidth_fraction="", copy_gbps=round(bw / 1e9, 1)))
        print(f"profile {'x'.join(map(str, shape))} float32 {impl}: "
              + ", ".join(f"{p} {v:.3f} ms" for p, v in summary.items()) + f" (trace {trace.name}.gz)", flush=True)


def primitive_rows(rows, backends, name, repeats, bw, calls=200):
    """Per-call time of the four primitives at 2x8x4x4 (launch-bound): forward =
    moments + affine, backward = reduce + affine2; the direct path (fast_blend's)
    and the registered ops (dispatcher)."""
    from anrl_ext.ops.backends import primitives_for

    x = torch.randn(2, 8, 4, 4, device=DEVICE)
    m = torch.zeros(2, 8, device=DEVICE)
    for b in backends:
        ops = primitives_for(b)
        for impl, P in ((b, ops.direct or ops), (f"{b}_op", ops)):
            fwd = per_call(lambda: (P.moments(x), P.affine(x, m, m, m)), calls)
            bwd = per_call(lambda: (P.reduce(x, x, m), P.affine2(x, x, m, m, m, m)), calls)
            rows.append(middle_row(name, "2x8x4x4", "primitive_kernels", impl, fwd, bwd))
            print(f"primitives 2x8x4x4 {impl}: moments+affine {fwd * 1e6:.1f} us, "
                  f"reduce+affine2 {bwd * 1e6:.1f} us per call", flush=True)


def bandwidth_rows(rows, backends, name, repeats, bw, calls=20):
    """Each primitive alone at the largest shape, float32 and bfloat16, NCHW and channels_last
    (`primitive_bandwidth_channels_last`: the NHWC kernels), calls back to back (GPU-bound):
    which kernel falls short of the copy bandwidth. Bytes moved: moments |X|, reduce 2|X|
    (dY, X), affine 2|X|, affine2 3|X|. Triton's rows add `moments_welford`, its moments
    kernels as they were until 2026-12-06 (benchmarks/triton_welford_moments.py), and CUDA's
    channels_last rows `moments_late_loads`, its walk of then (each part loaded as it is reduced)."""
    from anrl_ext.ops.backends import primitives_for

    shape = SHAPES[0]
    for dtype in DTYPES:
        for layout, fmt in (("", torch.contiguous_format), ("_channels_last", torch.channels_last)):
            x = torch.randn(shape, device=DEVICE, dtype=dtype).contiguous(memory_format=fmt)
            dy = torch.randn_like(x)
            m = torch.rand(shape[:2], device=DEVICE)
            xbytes = x.numel() * x.element_size()
            for b in backends:
                ops = primitives_for(b)
                P = ops.direct or ops
                kernels = {"moments": (lambda: P.moments(x), 1), "reduce": (lambda: P.reduce(dy, x, m), 2),
                           "affine": (lambda: P.affine(x, m, m, m), 2),
                           "affine2": (lambda: P.affine2(dy, x, m, m, m, m), 3)}
                if b == "triton":  # the Welford kernels of before 2026-12-06, side by side
                    import triton_welford_moments

                    kernels["moments_welford"] = (lambda: triton_welford_moments.moments(x), 1)
                if b == "triton" and layout:  # a variant loading each part at once, 8 and 16 warps
                    import triton_reduce_part_at_once as part_at_once

                    for suffix, warps in (("", 8), ("_16w", 16)):
                        kernels["reduce_part_at_once" + suffix] = (
                            lambda warps=warps: part_at_once.reduce(dy, x, m, num_warps=warps), 2)
                if b == "cuda" and layout:  # the channels_last walk of before 2026-12-06, side by side
                    kernels["moments_late_loads"] = (nhwc_moments_late_loads(lambda: P.moments(x)), 1)
                line = f"primitives alone {'x'.join(map(str, shape))} {str(dtype)[6:]}{layout} {b}:"
                for kernel, (fn, passes) in kernels.items():
                    try:
                        t = per_call(fn, calls)
                    except Exception as exc:  # a benchmark-only variant must not cost the rows after it
                        if SMOKE:
                            raise
                        print(f"  {b}:{kernel} failed: {type(exc).__name__}: {exc}"[:400], flush=True)
                        continue
                    frac = passes * xbytes / t / bw
                    rows.append(dict(gpu=name, dtype=str(dtype).split(".")[-1], shape="x".join(map(str, shape)),
                                     what="primitive_bandwidth" + layout, impl=f"{b}:{kernel}",
                                     forward_ms=round(t * 1e3, 4), backward_ms="", forward_backward_ms="",
                                     fb_bandwidth_fraction=fraction(frac), copy_gbps=round(bw / 1e9, 1)))
                    line += f" {kernel} {t * 1e6:.0f} us ({100 * frac:.0f}%)"
                print(line, flush=True)


def nhwc_moments_late_loads(fn):
    """fn run with the CUDA channels_last moments loading each part as it is reduced (the kernel
    until 2026-12-06; anrl_ext.ops.native.cuda_nhwc_moments_early_loads)."""
    from anrl_ext.ops import native

    def run():
        native.cuda_nhwc_moments_early_loads(False)
        try:
            return fn()
        finally:
            native.cuda_nhwc_moments_early_loads(True)
    return run


def per_call(fn, calls=200):
    """Seconds per fn() over `calls` back-to-back calls (launch-bound work)."""
    calls = 1 if SMOKE else calls
    return cuda_time(lambda: [fn() for _ in range(calls)], repeats=1 if SMOKE else 5, warmup=1) / calls


def layer_rows(rows, backends, name, repeats, bw):
    """The whole AFNM layer (paper gate, running stats) at the largest shape, fwd+bwd."""
    import anrl_ext

    shape = SHAPES[0]
    x = torch.randn(shape, device=DEVICE, requires_grad=True)
    dy = torch.randn(shape, device=DEVICE)
    from anrl_ext.ops import fast_blend

    # (impl, backend, middle kernels, gate inside them, C++ autograd where the backend has it)
    runs = [(b, b, True, True, True) for b in backends] \
        + [(f"{b}_python_function", b, True, True, False) for b in backends if native_autograd(b)] \
        + [(f"{b}_gate_torch", b, True, False, True) for b in backends] \
        + [(f"{b}_chain", b, False, False, True) for b in backends]
    for impl, backend, middle_kernels, gate_in_kernel, native in runs + [("reference", "reference", True, True, True)]:
        layer = anrl_ext.AFNM(shape[1], backend=backend).to(DEVICE)
        inputs = [x, *layer.parameters()]
        fast_blend.ENABLED, fast_blend.GATE_IN_KERNEL, fast_blend.NATIVE_AUTOGRAD = middle_kernels, gate_in_kernel, \
            native
        try:
            t = cuda_time(lambda: torch.autograd.grad(layer(x), inputs, dy), repeats)
        finally:
            fast_blend.ENABLED, fast_blend.GATE_IN_KERNEL, fast_blend.NATIVE_AUTOGRAD = True, True, True
        rows.append(fb_row(name, shape, "afnm_layer", impl, t, bw))
        print(f"AFNM layer fwd+bwd {'x'.join(map(str, shape))} float32, {impl}: {t * 1e3:.3f} ms", flush=True)


def middle_row(gpu, shape, what, impl, fwd, bwd):
    """A CSV row of per-call middle-kernel times (seconds in, ms out)."""
    return dict(gpu=gpu, dtype="float32", shape=shape, what=what, impl=impl, forward_ms=round(fwd * 1e3, 5),
                backward_ms=round(bwd * 1e3, 5), forward_backward_ms=round((fwd + bwd) * 1e3, 5),
                fb_bandwidth_fraction="", copy_gbps="")


def middle_rows(rows, backends, name, repeats, bw, calls=200):
    """The (N, C) middle kernels alone: per-call time of blend_forward + blend_backward,
    200 calls back to back, next to a one-element add (the launch floor)."""
    from anrl_ext.ops.backends import primitives_for

    floor = per_call(lambda: torch.add(torch.ones(1, device=DEVICE), 1), calls)
    print(f"launch floor (tensor creation + add): {floor * 1e6:.1f} us/call")
    for n, c in MIDDLE_SIZES:
        mean, var, s0, s1 = (torch.randn(n, c, device=DEVICE) for _ in range(4))
        var = var.abs() + 0.1
        alpha, w = torch.rand(n, c, device=DEVICE), torch.randn(c, device=DEVICE)
        rm, rv = torch.zeros(c, device=DEVICE), torch.ones(c, device=DEVICE)
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
            gate = (torch.randn(d, c, device=DEVICE), None, torch.randn(c, d, device=DEVICE), None,
                    torch.randn(c, d, device=DEVICE))
            for what, limit in gate_launches(b):
                out = P.gate_blend_forward(mean, var, *gate, w, w, w, w, rm, rv, True, True, 0.1, 1e-5, n * 196)
                default = set_gate_launch(b, limit)
                try:
                    gfwd = per_call(lambda: P.gate_blend_forward(mean, var, *gate, w, w, w, w, rm, rv, True, True,
                                                                 0.1, 1e-5, n * 196))
                    gbwd = per_call(lambda: P.gate_blend_backward(s0, s1, mean, var, out[0], out[1], None, *gate, w,
                                                                  w, w, w, out[4], out[5], True, 1e-5, 196))
                finally:
                    set_gate_launch(b, default)
                rows.append(middle_row(name, f"{n}x{c}", what, b, gfwd, gbwd))
                print(f"{what.replace('_', ' ')} ({n}, {c}, D={d}) {b}: gate_blend_forward {gfwd * 1e6:.1f} us, "
                      f"gate_blend_backward {gbwd * 1e6:.1f} us per call")


def gate_launches(backend):
    """(row name, one-launch limit) of the gated middle timings: the default launch, and for cuda and
    Triton each of their two launches forced (the whole gate in one block / program; one launch per
    phase over many). --smoke times them on the cpu backend too, which ignores the setting: the rows'
    code runs in CI."""
    rows = [("gated_middle_kernels", None)]
    if backend in ("cuda", "triton") or (SMOKE and backend == "cpu"):
        rows += [("gated_middle_kernels_one_block", 2 ** 62), ("gated_middle_kernels_per_phase", 0)]
    return rows


def set_gate_launch(backend, limit):
    """Set the backend's gated middle one-launch limit (CUDA: one block, Triton: one program; the cpu
    kernels share CUDA's setting and ignore it) and return the one before; None: leave it, return None."""
    if limit is None:
        return None
    from anrl_ext.ops.backends import gate_launch_limit

    limit_of = gate_launch_limit(backend)
    before = limit_of()
    limit_of(limit)
    return before


# --sections: the table's parts, in the order they run. The profiler last: its CUDA activity tracing could
# slow the launches of timings after it. The CUDA graph captures next to last: a capture that fails could
# leave the device in an error state.
SECTIONS = {"op": op_table, "layer": layer_rows, "thread": thread_rows, "host": host_rows,
            "pipelined": pipelined_rows, "middle": middle_rows, "primitive": primitive_rows,
            "bandwidth": bandwidth_rows, "compiled": compiled_rows, "graph": graph_rows, "profile": profile_rows}

if __name__ == "__main__":
    main()
