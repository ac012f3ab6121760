"""Model selection on held-out source subjects (best.pt) against the last network, and against
picking on the target, over seeds.

    python benchmarks/model_selection.py [--protocol OCI-M] [--every 50] [--seeds 0 1 2 3 4] [--iters 300] [--jobs 2]
                                         [--heldout-videos N]

Each seed: the default ANRL run (AFNM, meta-learning, IDC, ICS) with `--eval-every N`, which
evaluates every N iterations and keeps best.pt, chosen on held-out source subjects. Compared on
the target domain (video level):
* selected: best.pt, the training-domain validation pick, a choice a deployed system can make;
* last: the network after the last iteration;
* target oracle: the evaluation with the highest target AUC (the earliest of a tie). Not a model
  selection at all, since it looks at the target; shown for how much picking on the target
  flatters a result.
Runs go to runs/model_selection/<protocol>/seed<k> and are reused when their settings match
(training_runs.py). Writes benchmarks/results/model_selection.md (mean ± sample std of each choice,
the paired differences selected - last and target oracle - selected with 95 % t intervals and
Wilcoxon p) and docs/model_selection.png (each seed's AUC on the target and on held-out source
subjects over the evaluations, the picks marked).
"""
import argparse

import bn_vs_afnm
import training_runs
from anrl_ext import figures
from anrl_ext.config import Config
from bn_vs_afnm import METRICS, effect_cells, paired

CHOICES = ("last", "selected", "target oracle")


def settings(seed, args):
    """The trainer settings of the run with this seed: the default ANRL arm, evaluated every args.every."""
    heldout = {"heldout_videos_per_class": args.heldout_videos} if args.heldout_videos else {}
    return {"protocol": args.protocol, "seed": seed, "iters": args.iters, "eval_every": args.every,
            **heldout, **bn_vs_afnm.ARMS["afnm"]}


def run_one(seed, args, threads):
    """(seed, metrics.json) of the run for this seed, reused when present and matching."""
    out = f"{args.runs}/seed{seed}"
    return seed, training_runs.run_one(out, settings(seed, args), args, threads)


def choices(result):
    """{choice: (iteration, metrics)} of one run's metrics.json."""
    every = result["evaluations"]
    oracle = max(every, key=lambda e: (e["metrics"]["paper"]["auc"], -e["iteration"]))
    return {"last": (result["iterations"], result["metrics"]),
            "selected": (result["selected"]["iteration"], result["selected"]["metrics"]),
            "target oracle": (oracle["iteration"], oracle["metrics"])}


def summarise(results, seeds):
    """Per metric (in %, seeds in order): each choice's values, and the paired summaries of
    selected - last and target oracle - selected; and each choice's iteration by seed."""
    by_seed = {s: choices(r) for s, r in results}
    values = {title: {c: [100 * by_seed[s][c][1][proto][key] for s in seeds] for c in CHOICES}
              for title, proto, key, _ in METRICS}
    effects = {title: {"selected - last": paired(values[title]["last"], values[title]["selected"], higher),
                       "target oracle - selected": paired(values[title]["selected"], values[title]["target oracle"],
                                                          higher)}
               for title, _, _, higher in METRICS}
    iterations = {c: [by_seed[s][c][0] for s in seeds] for c in CHOICES}
    return values, effects, iterations


def render(values, effects, iterations, args, seeds, command):
    heldout = Config(heldout_videos_per_class=args.heldout_videos).heldout_videos()
    lines = [f"`{command}`", "",
             f"Protocol {args.protocol}, ANRL (AFNM, meta-learning, IDC, ICS), {args.iters} iterations, evaluated "
             f"every {args.every} and at the end; seeds {seeds}. Target domain, video level; mean ± sample std "
             f"over seeds. *selected*: best.pt, picked on held-out source subjects ({heldout} videos per class and "
             "source domain; lowest HTER, then highest AUC). "
             "*target oracle*: the evaluation with the highest target AUC, which no deployed system can pick.", ""]
    lines += bn_vs_afnm.metric_table(values, CHOICES, "network",
                                     {"iteration by seed": {c: ", ".join(map(str, iterations[c])) for c in CHOICES}})
    for pair in ("selected - last", "target oracle - selected"):
        better = pair.split(" - ")[0]
        lines += ["", f"Paired by seed, {pair} (HTER: lower is better, AUC: higher is better):", "",
                  f"| metric | mean difference | 95 % t interval | seeds where {better} is better "
                  "| Wilcoxon signed-rank p |", "|---|---|---|---|---|"]
        lines += [f"| {t} | " + " | ".join(effect_cells(effects[t][pair])) + " |" for t, *_ in METRICS]
    return "\n".join(lines) + "\n"


def plot(results, seeds, path, title):
    """Per seed, the AUC over the evaluations on the target (left) and on held-out source subjects
    (right); the selected evaluation circled, the target oracle crossed."""
    fig, axes = figures.pyplot().subplots(1, 2, figsize=(9, 3.6), sharex=True)
    by_seed = dict(results)
    for i, s in enumerate(seeds):
        every, picks = by_seed[s]["evaluations"], choices(by_seed[s])
        its = [e["iteration"] for e in every]
        for ax, proto in zip(axes, ("paper", "source_heldout")):
            auc = {e["iteration"]: 100 * e["metrics"][proto]["auc"] for e in every}
            ax.plot(its, [auc[t] for t in its], color=f"C{i}", lw=1, label=f"seed {s}")
            sel, orc = picks["selected"][0], picks["target oracle"][0]
            ax.scatter([sel], [auc[sel]], s=70, facecolors="none", edgecolors=f"C{i}", zorder=3)
            ax.scatter([orc], [auc[orc]], marker="x", color=f"C{i}", zorder=3)
    axes[0].set_title("AUC % on the target", fontsize=10)
    axes[1].set_title("AUC % on held-out source subjects", fontsize=10)
    for ax in axes:
        ax.set_xlabel("iteration")
    axes[1].legend(fontsize=7, loc="lower right")
    bn_vs_afnm.save_figure(fig, path, title + " (o: selected on held-out sources, x: target oracle)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    bn_vs_afnm.one_protocol_report_arguments(ap, "model_selection", "the AUC curves and the picks")
    ap.add_argument("--every", type=int, default=50, help="--eval-every of each run")
    ap.add_argument("--heldout-videos", type=int, default=0,
                    help="--heldout-videos-per-class of each run (0: the trainer's default)")
    args, seeds, command = training_runs.parse_run_arguments(ap, "model_selection.py", argv,
                                                             "runs/model_selection/{protocol}", "seed")
    if args.every < 1:
        ap.error("--every must be at least 1")
    if args.heldout_videos < 0:
        ap.error("--heldout-videos must be at least 0")
    args.runs = args.runs.format(protocol=args.protocol)
    results = training_runs.run_jobs(seeds, lambda s, threads: run_one(s, args, threads), args.jobs,
                                     "model-selection runs")
    values, effects, iterations = summarise(results, seeds)
    text = render(values, effects, iterations, args, seeds, command) + bn_vs_afnm.code_note(results)
    bn_vs_afnm.write_report(text, args.out, lambda: plot(results, seeds, args.plot,
                                                         f"{args.protocol}, every {args.every} iterations"), args.plot)


if __name__ == "__main__":
    main()
