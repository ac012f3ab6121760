"""float32 accuracy of the AFNM op against float64, per backend and memory format.

    python benchmarks/accuracy.py [--shape 16 8 128 128] [--threads 1] [--backends reference cpu]

One forward and backward of `adaptive_norm` with an (N, C) alpha and all four
affine tensors, on data of mean 3 and std 0.5 (dY: mean 1). Each entry is
max |float32 - float64| / max |float64| over the tensor, the float64 result
taken from the reference backend on NCHW input. The float32 `reference`
backend (PyTorch's own kernels) is the yardstick: a fused backend should be
no further from float64 than it.
"""
import argparse
from pathlib import Path

import torch

import anrl_ext

OUTPUTS = ("y", "dx", "d bn_weight", "d bn_bias", "d in_weight", "d in_bias")


def _run(inputs, dtype, backend, channels_last):
    x64, dy64, alpha64, weights64 = inputs
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = x64.to(dtype).contiguous(memory_format=fmt).requires_grad_()
    weights = [w.to(dtype).requires_grad_() for w in weights64]
    y = anrl_ext.adaptive_norm(x, alpha64.to(dtype), *weights, backend=backend)
    grads = torch.autograd.grad(y, [x, *weights], dy64.to(dtype).contiguous(memory_format=fmt))
    return [y.detach(), *grads]


def errors(shape, backends, seed=0):
    """{(backend, layout): [relative error of each of OUTPUTS]} for float32 against float64."""
    g = torch.Generator().manual_seed(seed)
    n, c = shape[:2]
    inputs = (torch.randn(shape, generator=g, dtype=torch.float64) * 0.5 + 3,
              torch.randn(shape, generator=g, dtype=torch.float64) + 1,
              torch.rand(n, c, generator=g, dtype=torch.float64),
              [torch.rand(c, generator=g, dtype=torch.float64) + 0.5 for _ in range(4)])
    exact = _run(inputs, torch.float64, "reference", False)
    table = {}
    for backend in backends:
        for layout in ("NCHW", "channels_last"):
            got = _run(inputs, torch.float32, backend, layout == "channels_last")
            table[backend, layout] = [((a.double() - e).abs().max() / e.abs().max()).item()
                                      for a, e in zip(got, exact)]
    return table


def markdown(table, shape, threads):
    lines = [f"float32 against float64, input {'x'.join(map(str, shape))}, {threads} thread(s), "
             f"torch {torch.__version__}", "",
             "| backend | layout | " + " | ".join(OUTPUTS) + " |",
             "|---|---|" + "---|" * len(OUTPUTS)]
    for (backend, layout), errs in table.items():
        lines.append(f"| {backend} | {layout} | " + " | ".join(f"{e:.1e}" for e in errs) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[16, 8, 128, 128])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backends", nargs="+", default=None,
                        help="default: the CPU backends that need no interpreter (reference, cpu)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (markdown)")
    args = parser.parse_args(argv)
    backends = args.backends or [b for b in anrl_ext.available_backends("cpu") if b != "triton"]
    torch.set_num_threads(args.threads)
    text = markdown(errors(tuple(args.shape), backends), args.shape, args.threads)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return text


if __name__ == "__main__":
    main()
