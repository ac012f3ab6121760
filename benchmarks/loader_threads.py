"""Reading frames in the background (--loader-threads) against reading them in the training loop.

    python benchmarks/loader_threads.py [--img-size 256] [--batch-size 10] [--width 0.25] [--rounds 6]
                                        [--threads 0 1 2] [--device cpu]

Writes a prepared dataset of synthetic frames (PNG face crops of --img-size, as `python -m anrl_ext.prepare`
writes them, with depth maps for the live ones) to a temporary folder; then, for each thread count, one Trainer
on it, all in one process and timed round by round in turn (so that a slower moment of the machine falls on
each alike), median over the rounds:

  load       one iteration's batches, two in a row with no training between (the loader's pace: what a GPU
             that trains faster than that would wait for each iteration)
  iteration  one whole training iteration (Algorithm 1), reading included
  scoring    scoring the target domain (Trainer.scores)

Every count gives the same batches (python_tests/test_data.py checks that); only the time differs. Each figure
is printed with its ratio to --threads' first count.
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import torch

from anrl_ext import config
from anrl_ext.data.synthetic import render
from anrl_ext.train import Trainer

DOMAINS = "OCIM"


def write_prepared(root: Path, size: int, videos: int, frames: int) -> None:
    """ROOT/<domain>/{real,fake}.txt with frames/<video>/<i>.png and, for live frames, depth/<video>/<i>.png."""
    for d in DOMAINS:
        for list_name, live, raw in (("real.txt", True, 0), ("fake.txt", False, 1)):
            lines = []
            for v in range(videos):
                kind = "live" if live else "spoof"
                for f in range(frames):
                    rgb, depth, _ = render(d, live, 1000 * DOMAINS.index(d) + v + (0 if live else 500), f, size=size,
                                           depth_size=size)
                    path = f"frames/{kind}{v}/{f:04d}.png"
                    (root / d / path).parent.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(root / d / path), rgb[..., ::-1])
                    if live:
                        (root / d / "depth" / f"{kind}{v}").mkdir(parents=True, exist_ok=True)
                        cv2.imwrite(str(root / d / "depth" / f"{kind}{v}" / f"{f:04d}.png"),
                                    (depth * 255).clip(0, 255).astype("uint8"))
                    lines.append(f"{path} {raw}\n")
            (root / d / list_name).write_text("".join(lines))


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    synchronize(device)
    t = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--img-size", type=int, default=256, help="side of the frames and of the network's input")
    ap.add_argument("--batch-size", type=int, default=10, help="frames per source domain per iteration")
    ap.add_argument("--width", type=float, default=0.25, help="the network's channel multiplier")
    ap.add_argument("--rounds", type=int, default=6, help="timed rounds (each count once per round)")
    ap.add_argument("--threads", type=int, nargs="+", default=[0, 1, 2], help="--loader-threads counts to compare")
    ap.add_argument("--videos", type=int, default=4, help="videos per class and domain")
    ap.add_argument("--frames", type=int, default=6, help="frames per video")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_prepared(root, args.img_size, args.videos, args.frames)
        trainers = {}
        for n in args.threads:
            cfg = config.load(["--data", str(root), "--img-size", str(args.img_size), "--batch-size",
                               str(args.batch_size), "--width", str(args.width), "--device", args.device,
                               "--loader-threads", str(n), "--frames-per-video", str(args.frames),
                               "--out", str(root / "unused")])
            trainers[n] = Trainer(cfg)
            trainers[n].step()  # warm-up (and the loader started)
        times = {(n, what): [] for n in args.threads for what in ("load", "iteration", "scoring")}
        for _ in range(args.rounds):
            for n, trainer in trainers.items():
                for _ in range(2):  # with a loader, what it read ahead during the last step (up to two iterations)
                    trainer.next_batches()
                times[n, "load"].append(timed(lambda: [trainer.next_batches() for _ in range(2)], args.device) / 2)
                times[n, "iteration"].append(timed(trainer.step, args.device))
                times[n, "scoring"].append(timed(lambda: trainer.scores(trainer.target_set), args.device))
        for trainer in trainers.values():
            trainer.close()
    first = args.threads[0]
    print(f"{args.img_size}x{args.img_size} frames, batch {args.batch_size} x 3 source domains, width {args.width}, "
          f"{args.device}, torch threads {torch.get_num_threads()}, median of {args.rounds} rounds")
    print(f"{'loader threads':>14} | {'load (ms)':>16} | {'iteration (ms)':>16} | {'scoring (ms)':>16}")
    for n in args.threads:
        cells = []
        for what in ("load", "iteration", "scoring"):
            t, t0 = statistics.median(times[n, what]), statistics.median(times[first, what])
            cells.append(f"{t * 1e3:8.1f} ({t0 / t:4.2f}x)")
        print(f"{n:>14} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
