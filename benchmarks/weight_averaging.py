"""Weight averaging (--ema) against the last weights of the same run, over seeds.

    python benchmarks/weight_averaging.py [--protocol OCI-M] [--ema 0.99] [--seeds 0 1 2 3 4] [--iters 300]
                                          [--jobs 2]

Each seed: the default ANRL run (AFNM, meta-learning, IDC, ICS) with `--ema DECAY`. The average
does not change training, so one run holds both networks, trained on the same batches: its
metrics.json scores the average ("metrics") and the last weights ("metrics_unaveraged"), the
pair compared here on the target domain (video level). Runs go to
runs/weight_averaging/<protocol>/ema<decay>_seed<k> and are reused when their settings match
(training_runs.py). Writes benchmarks/results/weight_averaging.md (mean ± sample std, the paired
differences average - last with 95 % t intervals and Wilcoxon p) and docs/weight_averaging.png.
"""
import argparse

import bn_vs_afnm
import training_runs
from bn_vs_afnm import METRICS, effect_cells, paired

NETWORKS = ("last", "average")


def settings(seed, args):
    """The trainer settings of the run with this seed: the default ANRL arm with --ema args.ema."""
    return {"protocol": args.protocol, "seed": seed, "iters": args.iters, "ema": args.ema, **bn_vs_afnm.ARMS["afnm"]}


def run_one(seed, args, threads):
    """(seed, metrics.json) of the run for this seed, reused when present and matching."""
    return seed, training_runs.run_one(f"{args.runs}/ema{args.ema}_seed{seed}", settings(seed, args), args, threads)


def networks(result):
    """{network: metrics} of one run's metrics.json."""
    return {"last": result["metrics_unaveraged"], "average": result["metrics"]}


def summarise(results, seeds):
    """Per metric (in %, seeds in order): each network's values, and the paired summary average - last."""
    by_seed = {s: networks(r) for s, r in results}
    values = {title: {n: [100 * by_seed[s][n][proto][key] for s in seeds] for n in NETWORKS}
              for title, proto, key, _ in METRICS}
    effects = {title: paired(values[title]["last"], values[title]["average"], higher)
               for title, _, _, higher in METRICS}
    return values, effects


def render(values, effects, args, seeds, command):
    lines = [f"`{command}`", "",
             f"Protocol {args.protocol}, ANRL (AFNM, meta-learning, IDC, ICS), {args.iters} iterations, "
             f"`--ema {args.ema}`; seeds {seeds}. Target domain, video level; mean ± sample std over seeds. "
             "*last*: the weights after the last iteration; *average*: their exponential moving average "
             "(parameters and BN running statistics), from the same run.", ""]
    lines += bn_vs_afnm.metric_table(values, NETWORKS, "network")
    lines += ["", "Paired by seed, average - last (HTER: lower is better, AUC: higher is better):", "",
              "| metric | mean difference | 95 % t interval | seeds where the average is better "
              "| Wilcoxon signed-rank p |", "|---|---|---|---|---|"]
    lines += [f"| {t} | " + " | ".join(effect_cells(effects[t])) + " |" for t, *_ in METRICS]
    return "\n".join(lines) + "\n"


def plot(values, seeds, path, title):
    def draw(ax, v, seeds, panel_title):
        bn_vs_afnm.seed_lines(ax, [v[n] for n in NETWORKS], list(NETWORKS), seeds, panel_title)

    bn_vs_afnm._save_panels([(values[t], t) for t, *_ in METRICS], seeds, path, title, draw)


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    bn_vs_afnm.one_protocol_report_arguments(ap, "weight_averaging", "the per-seed values of both networks")
    ap.add_argument("--ema", type=float, default=0.99, help="--ema of each run")
    args, seeds, command = training_runs.parse_run_arguments(ap, "weight_averaging.py", argv,
                                                             "runs/weight_averaging/{protocol}", "seed")
    if not 0 < args.ema < 1:
        ap.error(f"--ema must be in (0, 1), got {args.ema}")
    args.runs = args.runs.format(protocol=args.protocol)
    results = training_runs.run_jobs(seeds, lambda s, threads: run_one(s, args, threads), args.jobs,
                                     "weight-averaging runs")
    values, effects = summarise(results, seeds)
    text = render(values, effects, args, seeds, command) + bn_vs_afnm.code_note(results)
    title = f"{args.protocol}, {args.iters} iterations, --ema {args.ema}"
    bn_vs_afnm.write_report(text, args.out, lambda: plot(values, seeds, args.plot, title), args.plot)


if __name__ == "__main__":
    main()
