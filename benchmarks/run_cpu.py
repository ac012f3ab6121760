"""Side-by-side CPU timings of the AFNM op and the ratios quoted in docs/performance.md.

    python benchmarks/run_cpu.py [--repeats 10] [--dtype float32] [--shape NxCxHxW ...]
                                 [--out benchmarks/results/cpu.csv]

Times forward, backward and forward+backward (training mode, float32 unless
--dtype says bfloat16 or float16) for the fused cpu backend, the eager
reference and torch.compile(reference), in one process, median of --repeats.
Also reports the memory roofline: 8|X| bytes (forward 3|X|, backward 5|X|) at
the copy bandwidth measured here, and the bytes each implementation saves for
backward (saved_tensors_hooks).
"""
import argparse
import platform
import resource

import torch

from cases import IMPLS, SHAPES, copy_bandwidth, make_case, median_time, parse_shape, write_csv

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def saved_bytes(fn, case):
    x, alpha, params, running, dy = case
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x, alpha, params, running)
    return total


def minor_faults():
    """Page faults of this process so far: fresh output pages are faulted in and zeroed on first
    write, which costs about as much as a kernel's pass over them."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                    help="of x, alpha, the weights and the running statistics")
    ap.add_argument("--shape", action="append", type=parse_shape, dest="shapes",
                    help="NxCxHxW, repeatable (default: the three shapes of docs/performance.md)")
    ap.add_argument("--out", default="benchmarks/results/cpu.csv")
    args = ap.parse_args(argv)
    dtype = DTYPES[args.dtype]
    shapes = args.shapes or SHAPES
    bw = copy_bandwidth()
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, copy bandwidth {bw / 1e9:.2f} GB/s, {args.dtype}")
    rows = []
    for shape in shapes:
        case = make_case(shape, dtype)
        x, alpha, params, running, dy = case
        inputs = [x, alpha, *params]
        xbytes = x.numel() * x.element_size()
        res = {}
        for impl in ("fused", "reference", "compiled_reference"):
            fn = IMPLS[impl]("cpu")
            with torch.no_grad():
                fwd = median_time(lambda: fn(x, alpha, params, running), args.repeats)
            fb = median_time(lambda: torch.autograd.grad(fn(x, alpha, params, running), inputs, dy), args.repeats)
            faults = minor_faults()  # in three more calls, after the warm-up ones
            for _ in range(3):
                torch.autograd.grad(fn(x, alpha, params, running), inputs, dy)
            faults = (minor_faults() - faults) / 3
            res[impl] = dict(forward=fwd, forward_backward=fb, backward=fb - fwd,
                             saved=saved_bytes(fn, case), faults=faults)
        roofline = 8 * xbytes / bw
        for impl, r in res.items():
            rows.append(dict(shape="x".join(map(str, shape)), dtype=args.dtype, impl=impl,
                             forward_ms=r["forward"] * 1e3, backward_ms=r["backward"] * 1e3,
                             forward_backward_ms=r["forward_backward"] * 1e3,
                             saved_for_backward_MB=r["saved"] / 2**20, page_faults_per_fwd_bwd=r["faults"],
                             roofline_fb_ms=roofline * 1e3))
        f, e, c = (res[k]["forward_backward"] for k in ("fused", "reference", "compiled_reference"))
        print(f"{'x'.join(map(str, shape)):>14}  fwd+bwd: fused {f * 1e3:7.1f} ms | eager ref {e * 1e3:7.1f} ms "
              f"({e / f:4.1f}x) | compiled ref {c * 1e3:7.1f} ms ({c / f:4.1f}x) | roofline 8|X| "
              f"{roofline * 1e3:6.1f} ms (fused at {f / roofline:4.2f}x of it) | saved for bwd: fused "
              f"{res['fused']['saved'] / 2**20:.1f} MB, ref {res['reference']['saved'] / 2**20:.1f} MB "
              f"(|X| = {xbytes / 2**20:.0f} MB) | page faults a fwd+bwd: fused {res['fused']['faults']:.0f}")
    # Where the fused time goes: each primitive alone on the first shape.
    from anrl_ext.ops import native

    P = native.PRIMITIVES
    x, _, _, _, dy = make_case(shapes[0], dtype)
    x = x.detach()
    m = torch.zeros(x.shape[:2])
    parts = {"moments (1 read)": lambda: P.moments(x), "affine (1 read, 1 write)": lambda: P.affine(x, m, m, m),
             "reduce (2 reads)": lambda: P.reduce(dy, x, m),
             "affine2 (2 reads, 1 write)": lambda: P.affine2(dy, x, m, m, m, m)}
    xbytes = x.numel() * x.element_size()
    print(f"primitives at {'x'.join(map(str, shapes[0]))}: " + ", ".join(
        f"{k} {median_time(f, args.repeats) * 1e3:.1f} ms" for k, f in parts.items())
        + f"; a copy of |X| into a preallocated buffer takes {2 * xbytes / bw * 1e3:.1f} ms")
    write_csv(rows, args.out)
    return rows


if __name__ == "__main__":
    main()
