"""Host time of the Triton backend, per call, on a machine with no GPU.

    python benchmarks/triton_host_time.py [--calls 2000] [--json launches.json]

Each case runs the Triton backend on CPU tensors (2 x 8 x 4 x 4, one thread) with
`recording_driver`: its kernels compile for sm_90 and every launch is recorded instead of
run, so the time per call is the host work of the calls as a GPU host does it, short of Triton's
C launcher and the CUDA driver's launch (a constant per launch, which adds to each figure here).
On a GPU the Triton backend is bound by this time (benchmarks/results/GPU_NOTES.md, run 4).
Side by side, rounds interleaved: the backend as it runs (launches through triton_launch's
cache, the op's autograd in C++: anrl_ext_triton::blend_apply / gate_blend_apply) and through
`kernel[grid](...)` (triton_launch.ENABLED = False, as before 2026-12-05); for the whole-op
cases also with fast_blend's Python Function around the same passes (NATIVE_AUTOGRAD = False,
as before 2026-12-06) and the cpu backend (C++ autograd and kernels, its tiny kernels
included), for scale. Also printed: the launches of one call, by kernel. Best of 5 rounds.
The first call of each case compiles its kernels (about a second each).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recording_driver  # noqa: E402

LAUNCHES = recording_driver.install()

import torch  # noqa: E402

import anrl_ext  # noqa: E402
from anrl_ext.ops import fast_blend, triton_backend, triton_blend_apply, triton_gate, triton_launch  # noqa: E402
from host_time import per_call  # noqa: E402

SHAPE = (2, 8, 4, 4)


# column -> (backend, triton_launch.ENABLED, fast_blend.NATIVE_AUTOGRAD)
COLUMNS = {"triton": ("triton", True, True), "triton, kernel[grid]": ("triton", False, True),
           "triton, Python Function": ("triton", True, False), "cpu backend": ("cpu", True, True)}


def interleaved(fn, columns, calls):
    """Best microseconds per call of fn(backend) in each column, rounds interleaved across them."""
    best = dict.fromkeys(columns, float("inf"))
    try:
        for _ in range(5):
            for column in columns:
                backend, triton_launch.ENABLED, fast_blend.NATIVE_AUTOGRAD = COLUMNS[column]
                best[column] = min(best[column], per_call(lambda: fn(backend), max(1, calls // 5), rounds=1))
    finally:
        triton_launch.ENABLED = fast_blend.NATIVE_AUTOGRAD = True
    return {column: round(t * 1e6, 1) for column, t in best.items()}


def cases():
    """name -> (function of a backend name, or None where only Triton's own calls are timed)."""
    n, c = SHAPE[:2]
    x = torch.randn(SHAPE, requires_grad=True)
    x_cl = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    dy = torch.randn(SHAPE)
    alpha = torch.rand(n, c, requires_grad=True)
    params = [torch.randn(c, requires_grad=True) for _ in range(4)]
    running = (torch.zeros(c), torch.ones(c))

    def op(backend, inp=x):
        return anrl_ext.adaptive_norm(inp, alpha, *params, *running, training=True, backend=backend)

    def op_forward(backend):
        with torch.no_grad():
            return op(backend)

    def op_step(backend, inp=x):
        return torch.autograd.grad(op(backend, inp), [inp, alpha, *params], dy)

    layers = {}

    def layer_step(kind):
        def step(backend):
            key = (kind, backend)
            if key not in layers:
                layers[key] = anrl_ext.AFNM(c, reduction=2, backend=backend) if kind == "afnm" else \
                    anrl_ext.make_norm(kind, c, backend=backend)
            layer = layers[key]
            return torch.autograd.grad(layer(x), [x, *layer.parameters()], dy)
        return step

    # Triton's calls alone, below the op: the package's Python of each and its launch.
    xd = x.detach()
    mean, var = torch.randn(n, c), torch.rand(n, c) + 0.5
    w = [p.detach() for p in params]
    a = alpha.detach()
    direct = triton_backend.PRIMITIVES.direct

    # The gated middle alone at run 4's large gate (N, C, D) = (64, 512, 32), paper gate: forward +
    # backward in one program each way, and one launch per phase (3 + 4 launches).
    gn, gc, gd = 64, 512, 32
    gmean, gvar, gs0, gs1 = torch.randn(gn, gc), torch.rand(gn, gc) + 0.5, torch.randn(gn, gc), torch.randn(gn, gc)
    gate = (torch.randn(gd, gc) / gc ** 0.5, None, torch.randn(gc, gd) / gd ** 0.5, None,
            torch.randn(gc, gd) / gd ** 0.5)

    def gated_middle(limit):
        def run(backend):
            default = triton_gate.one_program_max_work()
            triton_gate.one_program_max_work(limit)
            try:
                out = direct.gate_blend_forward(gmean, gvar, *gate, *[None] * 6, True, False, 0.1, 1e-5, 99)
                return direct.gate_blend_backward(gs0, gs1, gmean, gvar, out[0], out[1], None, *gate, *[None] * 4,
                                                  out[4], out[5], True, 1e-5, 12)
            finally:
                triton_gate.one_program_max_work(default)
        return run

    return {
        "op forward (no grad)": op_forward,
        "op forward + backward": op_step,
        "op forward + backward, channels_last": lambda b: op_step(b, x_cl),
        "AFNM layer forward + backward": layer_step("afnm"),
        "BN layer forward + backward": layer_step("bn"),
        "moments": lambda b: direct.moments(xd),
        "reduce": lambda b: direct.reduce(dy, xd, mean),
        "fold_forward": lambda b: triton_blend_apply.fold_forward(xd, mean, var, a, 0.0, *w, *running, True, True,
                                                                  0.1, 1e-5),
        "fold_backward": lambda b: triton_blend_apply.fold_backward(dy, xd, mean, var, mean, var, a, 0.0, *w, mean[0],
                                                                    var[0], True, 1e-5),
        "gated middle 64x512 D=32, one program": gated_middle(2 ** 62),
        "gated middle 64x512 D=32, per phase": gated_middle(0),
    }


WHOLE = ("op forward (no grad)", "op forward + backward", "op forward + backward, channels_last",
         "AFNM layer forward + backward", "BN layer forward + backward")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--json", help="write {case: {us: {column: time}, launches: [kernel, ...]}} here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    recording_driver.allow_triton_on_cpu_tensors()
    print(f"# torch {torch.__version__}, triton {__import__('triton').__version__}, 1 thread, input {SHAPE}, "
          "launches recorded (compiled for sm_90, not run)")
    results = {}
    for name, fn in cases().items():
        fn("triton")  # compiles
        LAUNCHES.clear()
        fn("triton")
        launched = LAUNCHES.names()
        LAUNCHES.enabled = False
        try:
            times = interleaved(fn, list(COLUMNS) if name in WHOLE else list(COLUMNS)[:2], args.calls)
        finally:
            LAUNCHES.enabled = True
        results[name] = {"us": times, "launches": launched}
        print(f"{name:>38}: " + " | ".join(f"{column} {t:6.1f} us" for column, t in times.items())
              + f" | {len(launched)} launches: {', '.join(launched)}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
