"""Where the AFNM gate should run on the CPU: inside the middle kernel or in PyTorch.

    python benchmarks/gate_cpu.py [--repeats 15] [--out benchmarks/results/gate_cpu.csv]

Times the whole AFNM layer (paper gate, C // 16 hidden units, training mode)
forward+backward on the cpu backend, side by side in one run, with the gate's
MLP inside gate_blend_forward / _backward and with it in PyTorch (autograd
over BLAS calls). Best of `repeats`. The crossover sets
anrl_ext.ops.fast_blend.CPU_GATE_MAX_WORK.
"""
import argparse
import csv
import os
import platform
import time

import torch

import anrl_ext
from anrl_ext.ops import fast_blend

SHAPES = [(32, 64, 32, 32), (16, 128, 16, 16), (32, 128, 16, 16), (32, 256, 8, 8), (64, 256, 8, 8),
          (32, 512, 8, 8), (64, 512, 14, 14)]


def best_time(fn, repeats):
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default="benchmarks/results/gate_cpu.csv")
    args = ap.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    rows = []
    limit = fast_blend.CPU_GATE_MAX_WORK
    try:
        for shape in SHAPES:
            x = torch.randn(shape, requires_grad=True)
            dy = torch.randn(shape)
            times = {}
            for where, in_kernel in (("kernel", True), ("pytorch", False)):
                layer = anrl_ext.AFNM(shape[1], backend="cpu")
                inputs = [x, *layer.parameters()]
                fast_blend.GATE_IN_KERNEL = in_kernel
                fast_blend.CPU_GATE_MAX_WORK = 2 ** 62  # measure the kernel at every size
                times[where] = best_time(lambda: torch.autograd.grad(layer(x), inputs, dy), args.repeats)
            gate = anrl_ext.AFNM(shape[1]).gate
            work = fast_blend.gate_work(shape[0], gate.KERNEL_SLOTS, tuple(gate.parameters()))
            rows.append(dict(shape="x".join(map(str, shape)), gate_work=work,
                             kernel_ms=round(times["kernel"] * 1e3, 3), pytorch_ms=round(times["pytorch"] * 1e3, 3),
                             speedup=round(times["pytorch"] / times["kernel"], 3)))
            print(f"{rows[-1]['shape']:>14}  gate work {work:>8}: gate in kernel {rows[-1]['kernel_ms']:8.3f} ms | "
                  f"in PyTorch {rows[-1]['pytorch_ms']:8.3f} ms | {rows[-1]['speedup']:.2f}x", flush=True)
    finally:
        fast_blend.GATE_IN_KERNEL, fast_blend.CPU_GATE_MAX_WORK = True, limit
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
