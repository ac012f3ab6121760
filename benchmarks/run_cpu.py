"""Side-by-side CPU timings of the AFNM op and the ratios quoted in the README.

    python benchmarks/run_cpu.py [--repeats 10] [--out benchmarks/results/cpu.csv]

Times forward, backward and forward+backward (float32, training mode) for the
fused cpu backend, the eager reference and torch.compile(reference), in one
process, median of --repeats. Also reports the memory roofline: 8|X| bytes
(forward 3|X|, backward 5|X|) at the copy bandwidth measured here, and the
bytes each implementation saves for backward (saved_tensors_hooks).
"""
import argparse
import platform

import torch

from cases import IMPLS, SHAPES, copy_bandwidth, make_case, median_time, write_csv


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default="benchmarks/results/cpu.csv")
    args = ap.parse_args()
    bw = copy_bandwidth()
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, copy bandwidth {bw / 1e9:.2f} GB/s")
    rows = []
    for shape in SHAPES:
        case = make_case(shape)
        x, alpha, params, running, dy = case
        inputs = [x, alpha, *params]
        xbytes = x.numel() * x.element_size()
        res = {}
        for impl in ("fused", "reference", "compiled_reference"):
            fn = IMPLS[impl]("cpu")
            with torch.no_grad():
                fwd = median_time(lambda: fn(x, alpha, params, running), args.repeats)
            fb = median_time(lambda: torch.autograd.grad(fn(x, alpha, params, running), inputs, dy), args.repeats)
            res[impl] = dict(forward=fwd, forward_backward=fb, backward=fb - fwd,
                             saved=saved_bytes(fn, case))
        roofline = 8 * xbytes / bw
        for impl, r in res.items():
            rows.append(dict(shape="x".join(map(str, shape)), impl=impl,
                             forward_ms=r["forward"] * 1e3, backward_ms=r["backward"] * 1e3,
                             forward_backward_ms=r["forward_backward"] * 1e3,
                             saved_for_backward_MB=r["saved"] / 2**20,
                             roofline_fb_ms=roofline * 1e3))
        f, e, c = (res[k]["forward_backward"] for k in ("fused", "reference", "compiled_reference"))
        print(f"{'x'.join(map(str, shape)):>14}  fwd+bwd: fused {f * 1e3:7.1f} ms | eager ref {e * 1e3:7.1f} ms "
              f"({e / f:4.1f}x) | compiled ref {c * 1e3:7.1f} ms ({c / f:4.1f}x) | roofline 8|X| "
              f"{roofline * 1e3:6.1f} ms (fused at {f / roofline:4.2f}x of it) | saved for bwd: fused "
              f"{res['fused']['saved'] / 2**20:.1f} MB, ref {res['reference']['saved'] / 2**20:.1f} MB "
              f"(|X| = {xbytes / 2**20:.0f} MB)")
    # Where the fused time goes: each primitive alone on the first shape.
    from anrl_ext.ops import native

    P = native.PRIMITIVES
    x, _, _, _, dy = make_case(SHAPES[0])
    x = x.detach()
    m = torch.zeros(x.shape[:2])
    parts = {"moments (1 read)": lambda: P.moments(x), "affine (1 read, 1 write)": lambda: P.affine(x, m, m, m),
             "reduce (2 reads)": lambda: P.reduce(dy, x, m),
             "affine2 (2 reads, 1 write)": lambda: P.affine2(dy, x, m, m, m, m)}
    xbytes = x.numel() * x.element_size()
    print(f"primitives at {'x'.join(map(str, SHAPES[0]))}: " + ", ".join(
        f"{k} {median_time(f, args.repeats) * 1e3:.1f} ms" for k, f in parts.items())
        + f"; a copy of |X| into a preallocated buffer takes {2 * xbytes / bw * 1e3:.1f} ms")
    write_csv(rows, args.out)


if __name__ == "__main__":
    main()
