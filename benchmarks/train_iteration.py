"""One full ANRL training iteration (normal step + second-order meta-train/meta-test)
with the fused cpu backend vs the reference backend: same model, batch and seed.

    python benchmarks/train_iteration.py [--iters 10] [--img-size 64] [--width 0.25]
"""
import argparse
import statistics
import time

import torch

from anrl_ext import config
from anrl_ext.train import Trainer


def time_steps(backend, args):
    cfg = config.load(["--backend", backend, "--img-size", str(args.img_size), "--width", str(args.width),
                       "--batch-size", str(args.batch_size), "--videos-per-class", "4", "--frames-per-video", "2",
                       "--device", args.device])
    trainer = Trainer(cfg)
    for _ in range(2):  # warm-up, render the cache
        trainer.step()
    times = []
    for _ in range(args.iters):
        if args.device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        trainer.step()
        if args.device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fused", default=None, help="fused backend (default: cpu on CPU, cuda on GPU)")
    args = ap.parse_args()
    fused = args.fused or ("cuda" if args.device == "cuda" else "cpu")
    t_fused = time_steps(fused, args)
    t_ref = time_steps("reference", args)
    print(f"one training iteration (normal + second-order meta), img {args.img_size}, width {args.width}, "
          f"batch {args.batch_size}/domain x 3 domains: {fused} {t_fused * 1e3:.0f} ms, reference "
          f"{t_ref * 1e3:.0f} ms, ratio {t_ref / t_fused:.2f}x")


if __name__ == "__main__":
    main()
