"""First research check: --norm bn vs --norm afnm (meta-learning + IDC + ICS) on the
synthetic leave-one-out task, several seeds, paired by seed.

    python benchmarks/bn_vs_afnm.py [--protocol OCI-M [ICM-O ...]] [--seeds 0 1 2 3 4] [--iters 300] [--jobs 2]

Runs `python -m anrl_ext.train` once per (norm, seed), --jobs at a time with the
cores split between them; a run whose metrics.json already holds the same
settings (every trainer setting, defaults included) is reused (`--fresh` reruns
everything, `--same-commit` every run the current commit did not make), so an
interrupted comparison resumes; each report ends with the commits its runs come from. Writes benchmarks/results/bn_vs_afnm_<protocol>.md (mean ± sample std per norm,
and the per-seed differences afnm - bn with a 95 % t interval and a Wilcoxon
signed-rank p-value) and a paired per-seed plot, docs/bn_vs_afnm_<protocol>.png;
with several protocols also one table over all of them (bn_vs_afnm.md) and a
plot of every protocol's per-seed AUC (docs/bn_vs_afnm.png).
"""
import argparse
import statistics
from pathlib import Path

from scipy import stats

import training_runs
from anrl_ext import figures, run_records

NORMS = ("bn", "afnm")
LABELS = {"bn": "bn (plain training)", "afnm": "afnm (meta-learning, IDC, ICS)"}
# Every arm a comparison can run: the trainer settings it differs in from the defaults.
# (IDC and ICS enter only the meta step, so the plain arms train without them.)
ARMS = {"bn": {"norm": "bn", "meta": False},
        "afnm_plain": {"norm": "afnm", "meta": False},
        "half": {"norm": "half", "meta": False},
        "afnm_meta": {"norm": "afnm", "meta": True, "lambda_idc": 0.0, "lambda_ics": 0.0},
        "afnm": {"norm": "afnm", "meta": True}}
# (column title, protocol in metrics.json, key, whether higher is better)
METRICS = (("HTER % (paper)", "paper", "hter", False), ("AUC %", "paper", "auc", True),
           ("HTER % (source threshold)", "source", "hter", False))


def settings(arm, seed, args):
    """The trainer settings of `arm`'s run with this seed (the rest are the defaults)."""
    return {"protocol": args.protocol, "seed": seed, "iters": args.iters, **ARMS[arm]}


def run_one(arm, seed, args, threads):
    """(arm, seed, metrics.json) of the trainer's run for (arm, seed), reused when present and matching."""
    out = Path(args.runs) / f"{arm}_seed{seed}"
    return arm, seed, training_runs.run_one(out, settings(arm, seed, args), args, threads)


def run_all(arms, seeds, args, desc):
    """run_one for every (arm, seed), args.jobs at a time with the cores split between them."""
    todo = [(a, s) for s in seeds for a in arms]
    return training_runs.run_jobs(todo, lambda job, threads: run_one(*job, args, threads), args.jobs, desc)


def run_protocols(args, arms, seeds, what):
    """{protocol: (per-seed values of `arms`, the runs' results, the protocol's args)} for every protocol
    of args, each arm and seed run or reused."""
    out = {}
    for protocol in dict.fromkeys(args.protocol):
        a = for_protocol(args, protocol)
        results = run_all(arms, seeds, a, f"{protocol}: {what}")
        out[protocol] = (values(results, arms, seeds), results, a)
    return out


def for_protocol(args, protocol):
    """A copy of args for one protocol, its {protocol} placeholders filled in."""
    a = argparse.Namespace(**vars(args))
    a.protocol = protocol
    for name in ("runs", "out", "plot"):
        if getattr(a, name, None):
            setattr(a, name, getattr(args, name).format(protocol=protocol))
    return a


def paired(bn, afnm, higher_is_better=True):
    """Summary of per-seed values (in %) of two arms, paired by position (seed): the differences afnm - bn,
    and in "better" the number of seeds where the second arm (afnm) is better."""
    diff = [a - b for a, b in zip(afnm, bn)]
    n = len(diff)
    mean = statistics.mean(diff)
    if n > 1:
        sd = statistics.stdev(diff)
        half = stats.t.ppf(0.975, n - 1) * sd / n ** 0.5
        p = stats.wilcoxon(diff).pvalue if any(diff) else 1.0
    else:
        half, p = float("nan"), float("nan")
    return {"bn": bn, "afnm": afnm, "diff": diff, "mean_diff": mean, "ci95": (mean - half, mean + half),
            "wilcoxon_p": p, "better": sum((d > 0) if higher_is_better else (d < 0) for d in diff),
            "ties": sum(d == 0 for d in diff)}


def values(results, arms, seeds):
    """{column title: {arm: per-seed values in %}} from [(arm, seed, metrics.json)], in seed order."""
    by = {(a, s): r["metrics"] for a, s, r in results}
    return {title: {a: [100 * by[(a, s)][proto][key] for s in seeds] for a in arms} for title, proto, key, _ in METRICS}


def summarise(results, seeds):
    """{column title: paired summary} from [(norm, seed, metrics.json)], in seed order."""
    v = values(results, NORMS, seeds)
    return {title: paired(*[v[title][n] for n in NORMS], higher) for title, _, _, higher in METRICS}


def interval(s, digits=2):
    """The difference's 95 % interval as text; one seed has none."""
    if len(s["diff"]) < 2:
        return "n/a (one seed)"
    lo, hi = s["ci95"]
    return f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"


def p_value(s):
    return f"{s['wilcoxon_p']:.3f}" if len(s["diff"]) > 1 else "n/a"


def effect_cells(s):
    """Table cells of one paired summary: mean difference, interval, seeds where the second arm is better, p."""
    return [f"{s['mean_diff']:+.2f}", interval(s),
            f"{s['better']} of {len(s['diff'])}" + (f" ({s['ties']} tied)" if s["ties"] else ""), p_value(s)]


def _mean_sd(v):
    return f"{statistics.mean(v):.2f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.2f}"


def metric_table(values, rows, first, extra=None):
    """Markdown lines of a table with a row per name in `rows`: each metric's mean ± sample std, the
    `extra` columns ({title: {row: text}}), then the per-seed AUC."""
    extra = extra or {}
    lines = [f"| {first} | " + " | ".join([t for t, *_ in METRICS] + list(extra)) + " | per-seed AUC % |",
             "|---|" + "---|" * (len(METRICS) + len(extra) + 1)]
    for r in rows:
        cells = [_mean_sd(values[t][r]) for t, *_ in METRICS] + [column[r] for column in extra.values()]
        lines.append(f"| {r} | " + " | ".join(cells) + " | " + ", ".join(f"{a:.1f}" for a in values["AUC %"][r])
                     + " |")
    return lines


def render(summary, args, seeds, command):
    lines = [f"`{command}`", "",
             f"Protocol {args.protocol}, {args.iters} iterations, seeds {seeds}; mean ± sample std over seeds.", "",
             "| norm | " + " | ".join(t for t, *_ in METRICS) + " | per-seed AUC % |",
             "|---|" + "---|" * (len(METRICS) + 1)]
    for norm in NORMS:
        cells = [_mean_sd(summary[t][norm]) for t, *_ in METRICS]
        lines.append(f"| {LABELS[norm]} | " + " | ".join(cells) + " | "
                     + ", ".join(f"{a:.1f}" for a in summary["AUC %"][norm]) + " |")
    lines += ["", "Paired by seed, afnm - bn (HTER: lower is better, AUC: higher is better):", "",
              "| metric | mean difference | 95 % t interval | seeds where afnm is better | Wilcoxon signed-rank p |",
              "|---|---|---|---|---|"]
    for t, *_ in METRICS:
        lines.append(f"| {t} | " + " | ".join(effect_cells(summary[t])) + " |")
    return "\n".join(lines) + "\n"


def seed_lines(ax, columns, names, seeds, title):
    """Per-seed values of several arms side by side, a line joining each seed's values, a bar at each mean."""
    xs = range(len(columns))
    for i, seed in enumerate(seeds):
        ax.plot(xs, [c[i] for c in columns], color="0.6", lw=1, zorder=1)
        ax.annotate(str(seed), (len(columns) - 1 + 0.04 * len(columns), columns[-1][i]), fontsize=7,
                    va="center", color="0.4")
    for x, c in zip(xs, columns):
        ax.scatter([x] * len(c), c, color=f"C{x}", zorder=2)
        ax.hlines(statistics.mean(c), x - 0.15, x + 0.15, color="k", lw=2, zorder=3)
    ax.set_xticks(list(xs), names)
    ax.set_xlim(-0.4, len(columns) - 0.6)
    ax.set_title(title, fontsize=10)


def _paired_panel(ax, s, seeds, title):
    seed_lines(ax, [s[n] for n in NORMS], list(NORMS), seeds, title)


def save_figure(fig, path, title):
    """Title `fig`, lay it out, write it to `path` (its folder made) and close it."""
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    figures.pyplot().close(fig)


def _save_panels(panels, seeds, path, title, draw=_paired_panel):
    """One panel per (data, panel title), side by side, each drawn by draw(ax, data, seeds, panel title)."""
    fig, axes = figures.pyplot().subplots(1, len(panels), figsize=(max(5.5, 4 * len(panels)), 3.6), squeeze=False)
    for ax, (s, panel_title) in zip(axes[0], panels):
        draw(ax, s, seeds, panel_title)
    save_figure(fig, path, title + " (dots: seeds, bars: means)")


def plot_arm_aucs(aucs, arms, names, seeds, path, title):
    """Every arm's per-seed AUC, one panel per protocol; aucs: {protocol: {arm: per-seed AUC}}."""
    def draw(ax, auc, seeds, panel_title):
        seed_lines(ax, [auc[a] for a in arms], names, seeds, panel_title)

    _save_panels([(auc, f"{protocol}: AUC %") for protocol, auc in aucs.items()], seeds, path, title, draw)


def plot(summary, seeds, path, title):
    """Every metric of one protocol."""
    _save_panels([(summary[t], t) for t, *_ in METRICS], seeds, path, title)


def plot_overview(summaries, seeds, path, title):
    """Video-level AUC of every protocol."""
    _save_panels([(s["AUC %"], f"{protocol}: AUC %") for protocol, s in summaries.items()], seeds, path, title)


def render_overview(summaries, args, seeds, command):
    """One row per protocol: both norms' mean AUC and HTER, and the paired difference."""
    lines = [f"`{command}`", "",
             f"{args.iters} iterations, seeds {seeds}; per protocol: mean over seeds, and the paired "
             "difference afnm - bn with its 95 % t interval and Wilcoxon signed-rank p.", "",
             "| protocol | AUC % bn / afnm | AUC difference | p | HTER % (paper) bn / afnm | HTER difference | p "
             "| seeds where afnm has the higher AUC |", "|---|---|---|---|---|---|---|---|"]
    for protocol, summary in summaries.items():
        cells = []
        for t in ("AUC %", "HTER % (paper)"):
            s = summary[t]
            cells += [f"{statistics.mean(s['bn']):.1f} / {statistics.mean(s['afnm']):.1f}",
                      f"{s['mean_diff']:+.1f} {interval(s, 1)}", p_value(s)]
        auc = summary["AUC %"]
        lines.append(f"| {protocol} | " + " | ".join(cells) + f" | {auc['better']} of {len(auc['diff'])} |")
    return "\n".join(lines) + "\n"


def compare(protocol, args, seeds, command):
    """Run (or reuse) both norms on every seed of one protocol; write its report and plot."""
    a = for_protocol(args, protocol)  # one folder and one report per protocol
    results = run_all(NORMS, seeds, a, f"{protocol}: bn vs afnm runs")
    summary = summarise(results, seeds)
    write_report(render(summary, a, seeds, command) + code_note(results), a.out,
                 lambda: plot(summary, seeds, a.plot, f"{protocol}, {args.iters} iterations"), a.plot)
    return summary, results


def code_note(results):
    """The report's last paragraph: which code made the runs of [(arm, seed, metrics.json)]."""
    return "\n" + run_records.code_line([r for *_, r in results]) + "\n"


def write_report(text, path, draw, figure):
    """Print the markdown report, write it to `path`, then draw its figure."""
    print(text)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
    draw()
    print(f"wrote {path} and {figure}")


def one_protocol_report_arguments(ap, name, figure):
    """Add --protocol (one), --out (benchmarks/results/<name>.md) and --plot (docs/<name>.png,
    which shows `figure`) to the parser of a one-protocol study."""
    ap.add_argument("--protocol", default="OCI-M", help="the leave-one-out protocol")
    ap.add_argument("--out", default=f"benchmarks/results/{name}.md", help="the report")
    ap.add_argument("--plot", default=f"docs/{name}.png", help=figure)


def run_arguments(ap, script, argv):
    """Add the options every comparison script shares; return (args, unique seeds, the command line)."""
    ap.add_argument("--protocol", nargs="+", default=["OCI-M"], help="one or more leave-one-out protocols")
    return training_runs.parse_run_arguments(ap, script, argv, "runs/bn_vs_afnm/{protocol}", "arm")


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--out", default="benchmarks/results/bn_vs_afnm_{protocol}.md", help="report of each protocol")
    ap.add_argument("--plot", default="docs/bn_vs_afnm_{protocol}.png", help="figure of each protocol")
    ap.add_argument("--overview", default="benchmarks/results/bn_vs_afnm.md",
                    help="with several protocols: one table over all of them")
    ap.add_argument("--overview-plot", default="docs/bn_vs_afnm.png",
                    help="with several protocols: every protocol's per-seed AUC")
    args, seeds, command = run_arguments(ap, "bn_vs_afnm.py", argv)
    compared = {p: compare(p, args, seeds, command) for p in dict.fromkeys(args.protocol)}
    summaries = {p: summary for p, (summary, _) in compared.items()}
    if len(summaries) > 1:
        every_run = [r for _, results in compared.values() for r in results]
        write_report(render_overview(summaries, args, seeds, command) + code_note(every_run), args.overview,
                     lambda: plot_overview(summaries, seeds, args.overview_plot, f"bn vs afnm, {args.iters} iterations"),
                     args.overview_plot)


if __name__ == "__main__":
    main()
