"""Ablation of the full method on the synthetic leave-one-out task: add one part at a time, paired by seed.

    python benchmarks/ablation.py [--protocol OCI-M [ICM-O ...]] [--seeds 0 1 2 3 4] [--iters 300] [--jobs 2]

The arms, each the one before plus one part:
  bn          --norm bn --no-meta           plain BatchNorm, plain training
  afnm_plain  --norm afnm --no-meta         the AFNM layer, its gates trained with the ordinary loss
  afnm_meta   --norm afnm, lambda1 = lambda2 = 0   + second-order meta-learning of the gates
  afnm        --norm afnm                   + the IDC and ICS losses (the full method)

Runs go to the same folders as benchmarks/bn_vs_afnm.py (runs/bn_vs_afnm/<protocol>), so the
bn and afnm runs of that comparison are reused, and so is any finished run with the same
settings (`--fresh` reruns). Writes benchmarks/results/ablation.md: per protocol, every arm's
mean ± sample std, and each step's paired difference (arm - the arm before) with its 95 % t
interval, Wilcoxon signed-rank p and the seeds where the step helped, and the two training
parts together (afnm - afnm_plain); and docs/ablation.png,
every arm's per-seed AUC on each protocol.
"""
import argparse
import statistics

import bn_vs_afnm
from bn_vs_afnm import METRICS, paired

STEPS = ("bn", "afnm_plain", "afnm_meta", "afnm")
# The paired comparisons: each step, then the two training parts together (full method vs the plain layer)
PAIRS = tuple(zip(STEPS, STEPS[1:])) + (("afnm_plain", "afnm"),)
LABELS = {"bn": "bn (plain training)", "afnm_plain": "afnm, gates trained plainly",
          "afnm_meta": "+ meta-learning of the gates", "afnm": "+ IDC and ICS (full method)"}


def step_effects(v):
    """{column title: [paired summary of b - a for each (a, b) of PAIRS]}."""
    return {title: [paired(v[title][a], v[title][b], higher) for a, b in PAIRS] for title, _, _, higher in METRICS}


def render_protocol(protocol, v, effects):
    """Markdown section of one protocol: the arms' means, then each step's paired effect."""
    lines = [f"### {protocol}", "", "| arm | " + " | ".join(t for t, *_ in METRICS) + " |",
             "|---|" + "---|" * len(METRICS)]
    for arm in STEPS:
        lines.append(f"| {LABELS[arm]} | " + " | ".join(bn_vs_afnm._mean_sd(v[t][arm]) for t, *_ in METRICS) + " |")
    lines += ["", "| step | metric | mean difference | 95 % t interval | seeds where the step helped | "
              "Wilcoxon signed-rank p |", "|---|---|---|---|---|---|"]
    for i, (a, b) in enumerate(PAIRS):
        for t, *_ in METRICS:
            lines.append(f"| {a} → {b} | {t} | " + " | ".join(bn_vs_afnm.effect_cells(effects[t][i])) + " |")
    return "\n".join(lines) + "\n"


def render(per_protocol, args, seeds, command):
    """The whole report: one row per (protocol, step) for AUC, then a section per protocol."""
    lines = [f"`{command}`", "",
             f"{args.iters} iterations, seeds {seeds}. Each step adds one part to the arm before it; its effect is "
             "the per-seed difference (arm - arm before), with its 95 % t interval and Wilcoxon signed-rank p; "
             "the last comparison takes meta-learning and IDC/ICS together (afnm - afnm_plain).", "",
             "| protocol | " + " | ".join(f"AUC % {a}" for a in STEPS) + " | "
             + " | ".join(f"{a} → {b}: AUC difference [95 %], p" for a, b in PAIRS) + " |",
             "|---|" + "---|" * (len(STEPS) + len(PAIRS))]
    for protocol, (v, effects) in per_protocol.items():
        auc = v["AUC %"]
        cells = [f"{statistics.mean(auc[a]):.1f}" for a in STEPS]
        for s in effects["AUC %"]:
            cells.append(f"{s['mean_diff']:+.1f} {bn_vs_afnm.interval(s, 1)}, p = {bn_vs_afnm.p_value(s)}")
        lines.append(f"| {protocol} | " + " | ".join(cells) + " |")
    lines.append("")
    for protocol, (v, effects) in per_protocol.items():
        lines += [render_protocol(protocol, v, effects)]
    return "\n".join(lines)


def plot(per_protocol, seeds, path, title):
    """Every arm's per-seed AUC, one panel per protocol."""
    bn_vs_afnm.plot_arm_aucs({protocol: v["AUC %"] for protocol, (v, _) in per_protocol.items()}, STEPS,
                             ["bn", "plain", "meta", "full"], seeds, path, title)


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--out", default="benchmarks/results/ablation.md", help="the report")
    ap.add_argument("--plot", default="docs/ablation.png", help="every arm's per-seed AUC")
    args, seeds, command = bn_vs_afnm.run_arguments(ap, "ablation.py", argv)
    runs = bn_vs_afnm.run_protocols(args, STEPS, seeds, "ablation runs")
    per_protocol = {protocol: (v, step_effects(v)) for protocol, (v, _, _) in runs.items()}
    every_run = [r for _, results, _ in runs.values() for r in results]
    bn_vs_afnm.write_report(render(per_protocol, args, seeds, command) + bn_vs_afnm.code_note(every_run), args.out,
                            lambda: plot(per_protocol, seeds, args.plot, f"ablation, {args.iters} iterations"),
                            args.plot)


if __name__ == "__main__":
    main()
