"""GPU benchmark table: cuda, triton, eager reference and torch.compile(reference).

    python benchmarks/run_gpu.py [--out DIR]

Shapes (32,64,128,128), (32,128,64,64), (32,256,32,32), (64,512,14,14);
float32 and bfloat16; forward, backward, forward+backward; CUDA-event
median times; achieved bandwidth over the 8|X| roofline bytes against a
measured device-to-device copy. Writes gpu_bench.csv and prints a table.
"""
import argparse
import os
import statistics
from pathlib import Path

import torch

from cases import IMPLS, make_case, write_csv

SHAPES = [(32, 64, 128, 128), (32, 128, 64, 64), (32, 256, 32, 32), (64, 512, 14, 14)]


def cuda_time(fn, repeats=20):
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
    src = torch.empty(512 * 2**20 // 4, device="cuda")
    dst = torch.empty_like(src)
    t = cuda_time(lambda: dst.copy_(src))
    return 2 * src.numel() * 4 / t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    import anrl_ext

    backends = [b for b in ("cuda", "triton") if b in anrl_ext.available_backends("cuda")]
    bw = copy_bandwidth()
    name = torch.cuda.get_device_name()
    print(f"# {name}, copy bandwidth {bw / 1e9:.0f} GB/s, torch {torch.__version__}, backends {backends}")
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for shape in SHAPES:
            case = make_case(shape, dtype, "cuda")
            x, alpha, params, running, dy = case
            inputs = [x, alpha, *params]
            xbytes = x.numel() * x.element_size()
            impls = {b: IMPLS["fused"](b) for b in backends}
            impls["reference"] = IMPLS["reference"](None)
            impls["compiled_reference"] = IMPLS["compiled_reference"](None)
            res = {}
            for impl, fn in impls.items():
                try:
                    with torch.no_grad():
                        fwd = cuda_time(lambda: fn(x, alpha, params, running), args.repeats)
                    fb = cuda_time(lambda: torch.autograd.grad(fn(x, alpha, params, running), inputs, dy),
                                   args.repeats)
                except Exception as exc:  # report, keep going
                    print(f"  {impl} failed on {shape} {dtype}: {exc}")
                    continue
                res[impl] = (fwd, fb - fwd, fb)
                rows.append(dict(gpu=name, dtype=str(dtype).split(".")[-1], shape="x".join(map(str, shape)),
                                 impl=impl, forward_ms=fwd * 1e3, backward_ms=(fb - fwd) * 1e3,
                                 forward_backward_ms=fb * 1e3,
                                 fb_bandwidth_fraction=(8 * xbytes / fb) / bw))
            line = f"{str(dtype)[6:]:>8} {'x'.join(map(str, shape)):>16}"
            for impl, (f, b, fb) in res.items():
                line += f" | {impl} {fb * 1e3:7.3f} ms ({100 * 8 * xbytes / fb / bw:4.0f}% bw)"
            print(line)
    write_csv(rows, Path(args.out) / "gpu_bench.csv")


if __name__ == "__main__":
    main()
