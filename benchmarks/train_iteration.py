"""One full ANRL training iteration (normal step + second-order meta-train/meta-test)
with the fused backend vs the reference backend: same model, batch and seed.

    python benchmarks/train_iteration.py [--iters 10] [--img-size 64] [--width 0.25]
    python benchmarks/train_iteration.py --formats   # fused backend: NCHW / channels_last x float32 / --amp

--formats times the fused backend in the trainer's four memory-format and
precision settings (--channels-last, --amp) side by side in one process,
interleaved round by round, each against the first (NCHW, float32).
"""
import argparse
import statistics
import time

import torch

from anrl_ext import config
from anrl_ext.train import Trainer

FORMATS = {"NCHW float32": [], "channels_last float32": ["--channels-last"], "NCHW amp (bf16)": ["--amp"],
           "channels_last amp (bf16)": ["--channels-last", "--amp"]}


def make_trainer(backend, args, extra=()):
    cfg = config.load(["--backend", backend, "--img-size", str(args.img_size), "--width", str(args.width),
                       "--batch-size", str(args.batch_size), "--videos-per-class", "4", "--frames-per-video", "2",
                       "--device", args.device, *extra])
    trainer = Trainer(cfg)
    for _ in range(2):  # warm-up, render the cache
        trainer.step()
    return trainer


def timed_step(trainer, device):
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    trainer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def time_steps(backend, args, extra=()):
    trainer = make_trainer(backend, args, extra)
    return statistics.median(timed_step(trainer, args.device) for _ in range(args.iters))


def time_formats(backend, args):
    """Median iteration time of each FORMATS setting, the settings stepped in turn (interleaved rounds)."""
    trainers = {name: make_trainer(backend, args, extra) for name, extra in FORMATS.items()}
    times = {name: [] for name in trainers}
    for _ in range(args.iters):
        for name, trainer in trainers.items():
            times[name].append(timed_step(trainer, args.device))
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fused", default=None, help="fused backend (default: cpu on CPU, cuda on GPU)")
    ap.add_argument("--formats", action="store_true", help="time the fused backend in the four format settings")
    args = ap.parse_args(argv)
    fused = args.fused or ("cuda" if args.device == "cuda" else "cpu")
    setting = (f"img {args.img_size}, width {args.width}, batch {args.batch_size}/domain x 3 domains, "
               f"{args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    if args.formats:
        times = time_formats(fused, args)
        first = times["NCHW float32"]
        print(f"one training iteration (normal + second-order meta), {fused} backend, {setting}, "
              f"interleaved rounds, median of {args.iters}:")
        for name, t in times.items():
            print(f"  {name:26} {t * 1e3:8.0f} ms  {first / t:.2f}x")
        return times
    t_fused = time_steps(fused, args)
    t_ref = time_steps("reference", args)
    print(f"one training iteration (normal + second-order meta), {setting}: {fused} {t_fused * 1e3:.0f} ms, "
          f"reference {t_ref * 1e3:.0f} ms, ratio {t_ref / t_fused:.2f}x")
    return {fused: t_fused, "reference": t_ref}


if __name__ == "__main__":
    main()
