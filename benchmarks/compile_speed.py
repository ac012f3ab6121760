"""The AFNM layer under torch.compile, side by side with the eager layer, on the CPU (or --device cuda).

    python benchmarks/compile_speed.py [--rounds 15] [--shape NxCxHxW ...] [--compiler inductor]
                                       [--out benchmarks/results/compile_cpu.csv]

Forward + backward of one AFNM layer (paper gate, training mode, running statistics) per call, float32, for:
`eager` (the fused backend, one op each way), `compiled` (torch.compile of the layer: Dynamo records its one op,
gate_blend_apply, since 2026-12-07), `compiled_composed` (the same with fast_blend.COMPILE_ONE_OP off: moments,
the middle as PyTorch ops that Inductor fuses, affine, as every compile traced it before), `compiled_reference`
(torch.compile of the layer on the reference backend). Median over --rounds rounds, the four interleaved in each
round, so that a slow spell of a shared machine falls on all of them alike. Ratios are against `eager`.
"""
import argparse
import copy
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cases import parse_shape, under_compile_one_op, write_csv  # noqa: E402

import anrl_ext  # noqa: E402

SHAPES = [(32, 64, 64, 64), (32, 128, 32, 32), (32, 256, 16, 16)]
IMPLS = ("eager", "compiled", "compiled_composed", "compiled_reference")


def layers(channels, device, compiler):
    """impl -> (module, call): the four forms of one AFNM layer, with the same weights."""
    torch._dynamo.reset()
    fused = anrl_ext.AFNM(channels).to(device)
    out = {"eager": (fused, fused)}
    for impl, one_op in (("compiled", True), ("compiled_composed", False)):
        layer = copy.deepcopy(fused)
        out[impl] = (layer, under_compile_one_op(one_op, torch.compile(layer, backend=compiler)))
    reference = anrl_ext.AFNM(channels, backend="reference").to(device)
    reference.load_state_dict(fused.state_dict())
    out["compiled_reference"] = (reference, torch.compile(reference, backend=compiler))
    return out


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--shape", action="append", type=parse_shape, dest="shapes",
                    help="NxCxHxW, repeatable (default: the three CPU shapes of docs/performance.md)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--compiler", default="inductor", help="torch.compile backend (default: inductor)")
    ap.add_argument("--out", default="benchmarks/results/compile_cpu.csv")
    args = ap.parse_args(argv)
    name = torch.cuda.get_device_name() if args.device == "cuda" else (platform.processor() or platform.machine())
    print(f"# {name}, {torch.get_num_threads()} threads, torch {torch.__version__}, {args.compiler}; "
          "AFNM layer forward + backward, ms (vs eager)")
    rows = []
    for shape in args.shapes or SHAPES:
        forms = layers(shape[1], args.device, args.compiler)
        x = torch.randn(shape, device=args.device, requires_grad=True)
        dy = torch.randn(shape, device=args.device)

        def step(module, call):
            torch.autograd.grad(call(x), [x, *module.parameters()], dy)

        for module, call in forms.values():  # compile (twice for the first batch, Dynamo's dynamic retry) and warm
            for _ in range(3):
                step(module, call)
        times = {impl: [] for impl in forms}
        for _ in range(args.rounds):
            for impl, (module, call) in forms.items():
                sync(args.device)
                start = time.perf_counter()
                step(module, call)
                sync(args.device)
                times[impl].append(time.perf_counter() - start)
        median = {impl: statistics.median(t) for impl, t in times.items()}
        line = f"{'x'.join(map(str, shape)):>15}"
        for impl in IMPLS:
            line += f" | {impl} {median[impl] * 1e3:7.2f} ({median['eager'] / median[impl]:.2f}x)"
            rows.append(dict(device=name, shape="x".join(map(str, shape)), impl=impl, compiler=args.compiler,
                             forward_backward_ms=round(median[impl] * 1e3, 4),
                             vs_eager=round(median["eager"] / median[impl], 3)))
        print(line, flush=True)
    write_csv(rows, args.out)


if __name__ == "__main__":
    main()
