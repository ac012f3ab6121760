"""Host time of one AFNM layer forward+backward at a tiny shape, on the CPU.

    python benchmarks/host_time.py [--calls 2000]
    python benchmarks/host_time.py --launches   # the Triton primitives' launch paths

At 2 x 8 x 4 x 4 the kernels take a few microseconds, so the time per call is
the Python, dispatcher and autograd overhead of the layer: the same code a GPU
run pays in host time before its launches (on a GPU the launches add their own
cost). Side by side in one process, one thread: the gate inside the middle
kernels (the one op gate_blend_apply with C++ autograd, and the same kernels
from the Python autograd.Function), the gate in PyTorch, and the chain of
small ops; then the op
`adaptive_norm` with an (N, C) alpha: one op whose autograd is C++
(blend_apply), one operator call each way (blend_apply_forward / _backward)
from the Python autograd.Function, moments / middle / map called
separately, and the chain; then the fixed-blend layers BN and IBN the same
four ways; then the Python around the op (`adaptive_norm`, its argument
checks in one C++ call and in Python, against its op called directly) and
around the AFNM layer's (the layer against `gate_blend_apply`); then an AFNM
layer with synchronised BN statistics (a world of one): fused, and the chain.
Best of 5 rounds, the modes of a line interleaved.

--launches times the host work of one Triton primitive call with the launch
itself stubbed out (no GPU here): the direct path's bare kernel, the registered
op (triton_op), and wrap_triton called outside triton_op, which dispatches the
launch as a higher-order op (the direct path before 2026-11-28, fourth session).
"""
import argparse
import importlib
import time

import torch

import anrl_ext
from anrl_ext.ops import fast_blend

ADAPTIVE_NORM = importlib.import_module("anrl_ext.ops.adaptive_norm")  # the module: the package exports the function

# (fast_blend.ENABLED, GATE_IN_KERNEL, NATIVE_AUTOGRAD) of the AFNM layer
MODES = {"gate in kernel, C++ autograd": (True, True, True), "gate in kernel": (True, True, False),
         "gate in PyTorch": (True, False, False), "chain of small ops": (False, False, False)}
# (fast_blend.ENABLED, WHOLE_PASS, NATIVE_AUTOGRAD) of the op and the fixed-blend layers
OP_MODES = {"one op, C++ autograd": (True, True, True), "one call each way": (True, True, False),
            "separate calls": (True, False, False), "chain of small ops": (False, True, False)}


def gate_switches(enabled, in_kernel, native):
    """Set the switches MODES names (interleaved resets them after each round)."""
    fast_blend.ENABLED, fast_blend.GATE_IN_KERNEL, fast_blend.NATIVE_AUTOGRAD = enabled, in_kernel, native


def whole_pass_switches(enabled, whole, native):
    """Set the switches OP_MODES names (interleaved resets them after each round)."""
    fast_blend.ENABLED, fast_blend.WHOLE_PASS, fast_blend.NATIVE_AUTOGRAD = enabled, whole, native


def per_call(fn, calls, rounds=5):
    for _ in range(100):
        fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def launch_paths(calls):
    """Host time per Triton primitive call, the kernel launch replaced by a no-op."""
    from torch.library import wrap_triton
    from triton.runtime.jit import JITFunction

    from anrl_ext.ops import triton_backend

    JITFunction.run = lambda self, *args, grid, warmup, **kwargs: None  # this process only
    hop = triton_backend._primitive_functions(wrap_triton)  # the launches as higher-order ops
    x, m = torch.randn(32, 64, 8, 8), torch.zeros(32, 64)
    args = {"moments": (x,), "reduce": (x, x, m), "affine": (x, m, m, m), "affine2": (x, x, m, m, m, m)}
    paths = {"direct (bare kernel)": triton_backend.PRIMITIVES.direct, "registered op": triton_backend.PRIMITIVES,
             "wrap_triton outside triton_op": dict(zip(("moments", "reduce", "affine", "affine2"), hop))}
    print(f"# torch {torch.__version__}, 1 thread, input {tuple(x.shape)}, Triton launch stubbed out")
    for name, a in args.items():
        times = {path: per_call(lambda: (fns[name] if isinstance(fns, dict) else getattr(fns, name))(*a), calls)
                 for path, fns in paths.items()}
        print(f"{name:>8}: " + " | ".join(f"{p} {t * 1e6:6.1f} us" for p, t in times.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--launches", action="store_true", help="time the Triton primitives' launch paths instead")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.launches:
        return launch_paths(args.calls)
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    dy = torch.randn_like(x)
    print(f"# torch {torch.__version__}, 1 thread, AFNM(8, reduction=2), input {tuple(x.shape)}")
    for gate in ("paper", "sigmoid", "sigmoid2"):
        layer = anrl_ext.AFNM(8, reduction=2, gate=gate, backend="cpu")
        inputs = [x, *layer.parameters()]

        def step():
            return torch.autograd.grad(layer(x), inputs, dy)

        print(f"{gate:>8}: " + interleaved(MODES, gate_switches, step, args.calls))
    op_calls(x, dy, args.calls)
    wrapper_calls(x, dy, args.calls)
    for kind in ("bn", "ibn"):
        layer_calls(kind, x, dy, args.calls)
    sync_calls(x, dy, args.calls)


def op_calls(x, dy, calls):
    """adaptive_norm with an (N, C) alpha in the four ways OP_MODES names."""
    n, c = x.shape[:2]
    alpha = torch.rand(n, c, requires_grad=True)
    params = [torch.randn(c, requires_grad=True) for _ in range(4)]
    running = (torch.zeros(c), torch.ones(c))
    inputs = [x, alpha, *params]
    def step():
        y = anrl_ext.adaptive_norm(x, alpha, *params, *running, training=True, backend="cpu")
        return torch.autograd.grad(y, inputs, dy)

    print(f"{'op':>8}: " + interleaved(OP_MODES, whole_pass_switches, step, calls))


def wrapper_calls(x, dy, calls):
    """The Python around the op: `adaptive_norm` (argument checks, backend choice, path choice) against
    its op `blend_apply` called directly, then the AFNM layer against its op `gate_blend_apply` called
    directly (the layer also counts its batch, one in-place add); forward without autograd and
    forward + backward. On a GPU the forward's Python is host time the GPU waits through before the
    first launch."""
    from anrl_ext.ops.backends import primitives_for
    from anrl_ext.ops.fast_blend import gate_arguments

    prims = primitives_for("cpu")
    n, c = x.shape[:2]
    alpha = torch.rand(n, c, requires_grad=True)
    params = [torch.randn(c, requires_grad=True) for _ in range(4)]
    running = (torch.zeros(c), torch.ones(c))

    def op():
        return anrl_ext.adaptive_norm(x, alpha, *params, *running, training=True, backend="cpu")

    # "Python checks": the argument checks in Python, as before 2026-12-07 (FAST_CHECKS = False)
    print(f"{'wrapper':>8}: " + wrapper_line(x, dy, calls, [x, alpha, *params], {
        "adaptive_norm": op, "adaptive_norm, Python checks": op,
        "op direct": lambda: prims.blend_apply(x, alpha, 0.0, *params, *running, True, True, 0.1, 1e-5)},
        python_checks={"adaptive_norm, Python checks"}))
    layer = anrl_ext.AFNM(c, reduction=2, backend="cpu")
    gate = gate_arguments(layer.kernel_gate_slots, layer.gate.weights())
    affines = (layer.bn_weight, layer.bn_bias, layer.in_weight, layer.in_bias)
    print(f"{'layer':>8}: " + wrapper_line(x, dy, calls, [x, *layer.parameters()], {
        "AFNM": lambda: layer(x),
        "op direct": lambda: prims.gate_blend_apply(x, *gate, *affines, layer.running_mean, layer.running_var,
                                                    True, True, 0.1, 1e-5)[0]}))


def wrapper_line(x, dy, calls, inputs, calls_of, python_checks=()):
    """Each call of `calls_of` forward without autograd and forward + backward, interleaved; those named in
    `python_checks` with adaptive_norm's argument checks in Python."""
    modes = {f"{name}{what}": (name, grad) for name in calls_of for what, grad in ((" forward", False),
                                                                                    (" fwd+bwd", True))}
    current = {}

    def switches(name, grad):
        current.update(call=calls_of[name], grad=grad)
        ADAPTIVE_NORM.FAST_CHECKS = name not in python_checks

    def step():
        if current["grad"]:
            return torch.autograd.grad(current["call"](), inputs, dy)
        with torch.no_grad():
            return current["call"]()

    return interleaved(modes, switches, step, calls)


def layer_calls(kind, x, dy, calls):
    """A fixed-blend layer (alpha never reads the means) in the four ways OP_MODES names."""
    layer = anrl_ext.make_norm(kind, x.shape[1], backend="cpu")
    inputs = [x, *layer.parameters()]

    def step():
        return torch.autograd.grad(layer(x), inputs, dy)

    print(f"{kind:>8}: " + interleaved(OP_MODES, whole_pass_switches, step, calls))


def interleaved(modes, switches, step, calls):
    """Best time per call of `step` under each mode's switches, rounds interleaved across the
    modes so that drift of the machine hits all alike; the switches are reset after each."""
    times = dict.fromkeys(modes, float("inf"))
    for _ in range(5):
        for mode, flags in modes.items():
            switches(*flags)
            try:
                times[mode] = min(times[mode], per_call(step, calls // 5, rounds=1))
            finally:
                fast_blend.ENABLED, fast_blend.GATE_IN_KERNEL, fast_blend.WHOLE_PASS = True, True, True
                fast_blend.NATIVE_AUTOGRAD = ADAPTIVE_NORM.FAST_CHECKS = True
    return " | ".join(f"{m} {t * 1e6:6.1f} us" for m, t in times.items())


def sync_calls(x, dy, calls):
    """An AFNM layer with synchronised BN statistics (--sync-stats) from a world of one (the
    gather returns its input, so no collective is timed): the fused path against the chain of
    small ops it took before 2026-12-01, and the same layer unsynchronised."""
    synced = anrl_ext.AFNM(8, reduction=2, backend="cpu")
    synced.gather_stats = lambda mean, var: (mean * 1, var * 1)
    plain = anrl_ext.AFNM(8, reduction=2, backend="cpu")
    layer = {"synced": synced, "plain": plain}
    modes = {"fused, synced": (True, "synced"), "chain of small ops, synced": (False, "synced"),
             "fused, not synced": (True, "plain")}
    current = {}

    def switches(enabled, which):
        fast_blend.ENABLED = enabled
        current["layer"] = layer[which]

    def step():
        m = current["layer"]
        return torch.autograd.grad(m(x), [x, *m.parameters()], dy)

    print(f"{'sync':>8}: " + interleaved(modes, switches, step, calls))


if __name__ == "__main__":
    main()
