"""Does AFNM's gate adapt? The AFNM layer against the same blend with alpha fixed at 0.5, paired by seed.

    python benchmarks/gate_study.py [--protocol OCI-M [ICM-O ...]] [--seeds 0 1 2 3 4] [--iters 300] [--jobs 2]

Arms, both trained plainly (no meta step, as ablation.py's afnm_plain):
  half        --norm half --no-meta   alpha = 0.5 in every layer: BN and IN averaged, no gate
  afnm_plain  --norm afnm --no-meta   the AFNM layer, its gates trained with the rest of the network

Runs go to the folders of bn_vs_afnm.py / ablation.py (runs/bn_vs_afnm/<protocol>), so finished
afnm_plain runs with the same settings are reused. For every afnm_plain run the gate report
(python -m anrl_ext.gate_report, all four domains; cached as gates.json in the run folder) says
how far its alphas moved: the mean and largest |alpha - 0.5| of a channel, the spread of a layer's
alpha over frames, the largest difference of a channel's mean alpha between two domains, the
layers whose alpha never left 0.5, and the gates' hidden units that are positive on some frame
(a gate whose hidden units are all 0 gets no gradient).
Writes benchmarks/results/gate_study.md and docs/gate_study.png.
"""
import argparse
import contextlib
import io
import json
import statistics
from pathlib import Path

import bn_vs_afnm
from bn_vs_afnm import METRICS, paired

from anrl_ext import gate_report

ARMS = ("half", "afnm_plain")


def gate_movement(run_dir):
    """How far the AFNM gates of one run moved from alpha = 0.5 (see the module docstring)."""
    path = Path(run_dir) / "gates.json"
    checkpoint = Path(run_dir) / "checkpoint.pt"
    if not path.exists() or path.stat().st_mtime < checkpoint.stat().st_mtime:
        with contextlib.redirect_stdout(io.StringIO()):
            gate_report.main(["--checkpoint", str(checkpoint), "--domains", "OCIM", "--out", str(path)])
    return movement(json.loads(path.read_text()))


def movement(stats):
    """Summary of a gate report: every (domain, class) weighs the same."""
    names = [layer["name"] for layer in stats["layers"]]
    channels = {n: gate_report.channel_alpha(stats, n) for n in names}
    dev = [abs(a - 0.5) for n in names for a in channels[n]]
    return {"mean_dev": statistics.mean(dev), "max_dev": max(dev),
            "frame_sd": statistics.mean(gate_report.frame_spread(stats, n) for n in names),
            "domain_gap": max(gate_report.domain_gap(stats, n) for n in names),
            "still_layers": sum(all(abs(a - 0.5) < 1e-6 for a in channels[n]) for n in names),
            "layers": len(names),
            "live_units": sum(layer.get("live_hidden_units", 0) for layer in stats["layers"]),
            "hidden_units": sum(layer.get("hidden_units", 0) for layer in stats["layers"])}


def render(per_protocol, args, seeds, command):
    lines = [f"`{command}`", "",
             f"{args.iters} iterations, seeds {seeds}. AUC: mean over seeds, and the paired difference "
             "afnm_plain - half with its 95 % t interval and Wilcoxon signed-rank p. Gate movement of the "
             "afnm_plain runs: median over seeds (range).", "",
             "| protocol | AUC % half | AUC % afnm_plain | difference [95 %], p | seeds where afnm_plain is better "
             "| mean \\|alpha - 0.5\\| | largest \\|alpha - 0.5\\| | alpha spread over frames "
             "| largest domain difference | layers still at 0.5 | live hidden units of the gates |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for protocol, (v, effect, moves) in per_protocol.items():
        auc = v["AUC %"]

        def med(key, fmt="{:.4f}"):
            xs = [m[key] for m in moves]
            return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"

        lines.append(f"| {protocol} | {statistics.mean(auc['half']):.1f} | {statistics.mean(auc['afnm_plain']):.1f} "
                     f"| {effect['mean_diff']:+.1f} {bn_vs_afnm.interval(effect, 1)}, p = {bn_vs_afnm.p_value(effect)} "
                     f"| {effect['better']} of {len(effect['diff'])} | {med('mean_dev')} | {med('max_dev', '{:.3f}')} "
                     f"| {med('frame_sd', '{:.5f}')} | {med('domain_gap')} "
                     f"| {med('still_layers', '{:.0f}')} of {moves[0]['layers']} "
                     f"| {med('live_units', '{:.0f}')} of {moves[0]['hidden_units']} |")
    pooled = paired([a for v, _, _ in per_protocol.values() for a in v["AUC %"]["half"]],
                    [a for v, _, _ in per_protocol.values() for a in v["AUC %"]["afnm_plain"]])
    lines += ["", f"All protocols pooled ({len(pooled['diff'])} pairs): AUC difference afnm_plain - half "
                  f"{pooled['mean_diff']:+.2f} {bn_vs_afnm.interval(pooled)}, Wilcoxon p = "
                  f"{bn_vs_afnm.p_value(pooled)}, afnm_plain better on {pooled['better']} of {len(pooled['diff'])}.", ""]
    for protocol, (v, _, _) in per_protocol.items():
        lines += [f"### {protocol}", "", "| arm | " + " | ".join(t for t, *_ in METRICS) + " |",
                  "|---|" + "---|" * len(METRICS)]
        for arm in ARMS:
            lines.append(f"| {arm} | " + " | ".join(bn_vs_afnm._mean_sd(v[t][arm]) for t, *_ in METRICS) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(per_protocol, seeds, path, title):
    """Both arms' per-seed AUC, one panel per protocol."""
    bn_vs_afnm.plot_arm_aucs({protocol: v["AUC %"] for protocol, (v, _, _) in per_protocol.items()}, ARMS,
                             list(ARMS), seeds, path, title)


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--out", default="benchmarks/results/gate_study.md", help="the report")
    ap.add_argument("--plot", default="docs/gate_study.png", help="per-seed AUC of both arms")
    args, seeds, command = bn_vs_afnm.run_arguments(ap, "gate_study.py", argv)
    runs = bn_vs_afnm.run_protocols(args, ARMS, seeds, "half vs afnm_plain runs")
    per_protocol = {protocol: (v, paired(v["AUC %"]["half"], v["AUC %"]["afnm_plain"]),
                               [gate_movement(Path(a.runs) / f"afnm_plain_seed{s}") for s in seeds])
                    for protocol, (v, _, a) in runs.items()}
    every_run = [r for _, results, _ in runs.values() for r in results]
    bn_vs_afnm.write_report(render(per_protocol, args, seeds, command) + bn_vs_afnm.code_note(every_run), args.out,
                            lambda: plot(per_protocol, seeds, args.plot, f"half vs afnm_plain, {args.iters} iterations"),
                            args.plot)
    return per_protocol


if __name__ == "__main__":
    main()
