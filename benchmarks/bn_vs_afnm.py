"""First research check: --norm bn vs --norm afnm (meta-learning + IDC + ICS) on the
synthetic leave-one-out task, several seeds, mean and spread of HTER and AUC.

    python benchmarks/bn_vs_afnm.py [--protocol OCI-M] [--seeds 0 1 2] [--iters 300] [--jobs 2]

Runs `python -m anrl_ext.train` once per (norm, seed), --jobs at a time with the
cores split between them, and writes benchmarks/results/bn_vs_afnm.md.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def run_one(norm, seed, args, threads):
    out = Path(args.runs) / f"{norm}_seed{seed}"
    cmd = [sys.executable, "-m", "anrl_ext.train", "--protocol", args.protocol, "--norm", norm, "--seed", str(seed),
           "--iters", str(args.iters), "--out", str(out)]
    if norm == "bn":
        cmd.append("--no-meta")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return norm, seed, json.loads((out / "metrics.json").read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", default="OCI-M")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--runs", default="runs/bn_vs_afnm")
    ap.add_argument("--out", default="benchmarks/results/bn_vs_afnm.md")
    args = ap.parse_args()
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda a: run_one(*a, args, threads),
                                [(n, s) for n in ("bn", "afnm") for s in args.seeds]))
    lines = [f"Protocol {args.protocol}, {args.iters} iterations, seeds {args.seeds}; mean ± std over seeds.", "",
             "| norm | HTER % (paper) | AUC % | HTER % (source threshold) | per-seed AUC % |", "|---|---|---|---|---|"]
    for norm in ("bn", "afnm"):
        ms = [m["metrics"] for n, _, m in results if n == norm]
        f = lambda key, proto: [100 * m[proto][key] for m in ms]  # noqa: E731
        fmt = lambda v: f"{statistics.mean(v):.2f} ± {statistics.pstdev(v):.2f}"  # noqa: E731
        label = "bn (plain training)" if norm == "bn" else "afnm (meta-learning, IDC, ICS)"
        lines.append(f"| {label} | {fmt(f('hter', 'paper'))} | {fmt(f('auc', 'paper'))} | "
                     f"{fmt(f('hter', 'source'))} | {', '.join(f'{a:.1f}' for a in f('auc', 'paper'))} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
