"""`python -m anrl_ext.summarize [RUN ...]`: HTER and AUC of finished runs, over seeds, per task and setting.

Reads the metrics.json of every run under the given folders (default: runs)
and groups the runs that trained the same way on the same task, differing
only in --seed. For each group it prints the number of runs, their seeds and
each metric's mean and standard deviation over them (in %), as a Markdown
table whose settings column holds the trainer options that tell the groups
apart; options shared by every run, where they are not the default, are
printed once above it. --csv writes the table, with the half-width of each
mean's 95 % confidence interval (Student's t) beside its sd; --plot draws it (one panel
per metric, a bar per setting and task, a dot per run). Folders that hold a
checkpoint.pt but no metrics.json (runs stopped or still going) are listed
and left out, as are runs that lack the scores asked for.
"""
from __future__ import annotations

import json
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from . import checkpoint, cli, figures, run_records
from .config import Config

METRICS = ("hter", "auc", "eer", "apcer", "bpcer", "tpr@fpr=1%", "acer")
# Metrics a run has only where its target's attack types are known (synthetic data, the datasets' naming).
BY_ATTACK_TYPE = ("acer",)
# --scores: which of metrics.json's score sets; the key it has there
SCORES = {"paper": "paper", "source": "source", "heldout": "source_heldout"}
# --weights: which network's scores; where metrics.json keeps them, and what a run needs to have them
WEIGHTS = {"final": (("metrics",), "always there"),
           "unaveraged": (("metrics_unaveraged",), "only runs trained with --ema"),
           "selected": (("selected", "metrics"), "only runs trained with --eval-every")}
# Told apart by the task column, or they are what varies within a group.
NOT_SETTINGS = ("seed", "protocol", "sources", "target")


class RunError(Exception):
    """A metrics.json that cannot be summarised: the message names the file."""


@dataclass
class Run:
    path: Path  # its metrics.json
    task: str
    seed: int
    settings: dict  # every trainer setting but NOT_SETTINGS, run_records.IGNORED and those asked to ignore
    scores: Dict[str, float]
    result: dict  # the whole metrics.json


@dataclass
class Group:
    task: str
    settings: dict
    runs: List[Run] = field(default_factory=list)

    def values(self, metric: str) -> List[float]:
        return [r.scores[metric] for r in self.runs]


def find_results(paths: Sequence[str]) -> Tuple[List[Path], List[Path]]:
    """(every metrics.json under `paths`, each once; folders with a checkpoint.pt and no metrics.json).
    A path may be a run folder, a folder of runs at any depth, or a metrics.json."""
    found, unfinished = {}, {}
    for p in map(Path, paths):
        if not p.exists():
            raise RunError(f"{p}: no such file or folder")
        if p.is_file():
            found.setdefault(p.resolve(), p)
            continue
        for f in sorted(p.rglob("metrics.json")):
            found.setdefault(f.resolve(), f)
        for ckpt in sorted(p.rglob("checkpoint.pt")):
            if not (ckpt.parent / "metrics.json").exists():
                unfinished.setdefault(ckpt.parent.resolve(), ckpt.parent)
    return list(found.values()), list(unfinished.values())


def read_run(path: Path, scores: str, weights: str, metrics: Sequence[str] = METRICS,
             ignore: Sequence[str] = ()) -> Run | None:
    """One run's record, less the settings in `ignore`; None when it lacks the asked-for network's scores
    (see WEIGHTS) or one of `metrics`."""
    try:
        result = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path}: cannot read it as JSON ({e})") from None
    missing = [k for k in ("task", "config", "metrics") if not isinstance(result, dict) or k not in result]
    if missing:
        raise RunError(f"{path}: not a metrics.json written by python -m anrl_ext.train (no {', '.join(missing)})")
    report = result
    for key in WEIGHTS[weights][0]:
        report = report.get(key) if isinstance(report, dict) else None
    if report is None:
        return None
    report = report.get(SCORES[scores])  # None in runs made before the held-out sources were scored
    if not isinstance(report, dict) or any(m not in report for m in metrics):
        return None
    not_numbers = [f"{m} {report[m]!r}" for m in metrics
                   if isinstance(report[m], bool) or not isinstance(report[m], (int, float))]
    if not_numbers or not isinstance(result["config"], dict):  # an edited file
        raise RunError(f"{path}: " + (f"its {SCORES[scores]} scores are not numbers ({', '.join(not_numbers)})"
                                      if not_numbers else "its config is not a mapping of settings"))
    settings = run_records.stored_settings(result)
    return Run(path, result["task"], settings["seed"],
               {k: v for k, v in settings.items() if k not in NOT_SETTINGS and k not in ignore},
               {m: 100 * report[m] for m in metrics}, result)


def group_runs(runs: Sequence[Run]) -> List[Group]:
    """Runs of the same task and settings together; groups ordered by task, then by the settings that
    differ between them."""
    groups: Dict[tuple, Group] = {}
    for r in runs:
        # settings are scalars, in the trainer's order; as a tuple, 1 and 1.0 (a YAML `lr: 1`) are one value
        key = (r.task, tuple(sorted(r.settings.items())))
        groups.setdefault(key, Group(r.task, r.settings)).runs.append(r)
    for g in groups.values():
        g.runs.sort(key=lambda r: (r.seed, str(r.path)))
    varying = varying_settings(list(groups.values()))

    def order(value):  # numbers by value (300 before 1000), then text, then unset
        if isinstance(value, (int, float)):
            return 0, value, ""
        return (2, 0, "") if value is None else (1, 0, str(value))

    return sorted(groups.values(), key=lambda g: (g.task, [order(g.settings[k]) for k in varying]))


def varying_settings(groups: Sequence[Group]) -> List[str]:
    """The settings whose value differs between groups, in the trainer's order."""
    return [k for k in groups[0].settings if len({g.settings[k] for g in groups}) > 1]


def shared_non_defaults(groups: Sequence[Group], varying: Sequence[str]) -> dict:
    """The settings every run has in common where they differ from the trainer's defaults."""
    defaults = asdict(Config())
    return {k: v for k, v in groups[0].settings.items() if k not in varying and v != defaults.get(k)}


def seed_list(seeds: Sequence[int]) -> str:
    """Seeds as ranges, and those counted more than once: [0, 1, 2, 4, 4] -> '0-2, 4; repeated: 4'."""
    def ranges(values):
        parts, values = [], sorted(set(values))
        i = 0
        while i < len(values):
            j = i
            while j + 1 < len(values) and values[j + 1] == values[j] + 1:
                j += 1
            parts.append(str(values[i]) if j == i else f"{values[i]}-{values[j]}")
            i = j + 1
        return ", ".join(parts)

    repeated = repeated_seeds(seeds)
    return ranges(seeds) + (f"; repeated: {ranges(repeated)}" if repeated else "")


def repeated_seeds(seeds: Sequence[int]) -> List[int]:
    """The seeds that occur more than once, in order."""
    return sorted(s for s in set(seeds) if list(seeds).count(s) > 1)


def spread(values: Sequence[float]) -> Tuple[float, float | None]:
    """(mean, sample standard deviation); no deviation for a single run."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def ci95_half_width(values: Sequence[float]) -> float | None:
    """Half the width of the 95 % confidence interval of the mean (Student's t with n - 1 degrees of
    freedom, the runs taken as independent draws); None for a single run. With 3 seeds it is 2.48 sd."""
    if len(values) < 2:
        return None
    from scipy.stats import t

    return float(t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / len(values) ** 0.5


def mean_sd_text(values: Sequence[float]) -> str:
    mean, sd = spread(values)
    return f"{mean:.2f}" if sd is None else f"{mean:.2f} ± {sd:.2f}"


def setting_text(group: Group, varying: Sequence[str]) -> str:
    flags = run_records.as_flags({k: group.settings[k] for k in varying})
    # an option unset in one group (None) and set in another: say so rather than print nothing
    unset = [f"--{k.replace('_', '-')} unset" for k in varying if group.settings[k] is None]
    return " ".join(flags + unset) or "(every run's)"


def render(groups: Sequence[Group], metrics: Sequence[str], scores: str, weights: str,
           ignore: Sequence[str] = ()) -> str:
    """The Markdown report: shared settings, the table, which code made the runs."""
    varying = varying_settings(groups)
    shared = run_records.as_flags(shared_non_defaults(groups, varying))
    runs = [r for g in groups for r in g.runs]
    lines = [f"{len(runs)} run{'s' * (len(runs) != 1)}; {scores} scores of the {weights} network, "
             f"in %, mean ± standard deviation over runs.",
             "Every run: " + (" ".join(shared) if shared else "the trainer's defaults") +
             (" (and the settings below)" if varying else "") + "." +
             (f" Not telling runs apart: {' '.join('--' + k.replace('_', '-') for k in ignore)}." if ignore else ""),
             "",
             "| task | settings | runs | seeds | " + " | ".join(f"{m.upper()} (%)" for m in metrics) + " |",
             "|---|---|---:|---|" + "---:|" * len(metrics)]
    for g in groups:
        cells = [g.task, setting_text(g, varying), str(len(g.runs)), seed_list([r.seed for r in g.runs])]
        lines.append("| " + " | ".join(cells + [mean_sd_text(g.values(m)) for m in metrics]) + " |")
    lines += ["", run_records.code_line(r.result for r in runs)]
    return "\n".join(lines) + "\n"


def write_csv(groups: Sequence[Group], metrics: Sequence[str], path: str) -> None:
    """One row per group: task, settings (the distinguishing options), runs, seeds, and per metric the mean,
    the sample sd and the half-width of the mean's 95 % confidence interval (empty for one run)."""
    varying = varying_settings(groups)
    rows = [["task", "settings", "runs", "seeds"] +
            [f"{m}_{s}_percent" for m in metrics for s in ("mean", "sd", "ci95")]]
    for g in groups:
        stats = [(*spread(g.values(m)), ci95_half_width(g.values(m))) for m in metrics]
        rows.append([g.task, setting_text(g, varying), len(g.runs), seed_list([r.seed for r in g.runs])] +
                    ["" if v is None else f"{v:.4f}" for values in stats for v in values])
    checkpoint.write_csv_atomic(path, rows)


def plot_formats() -> List[str]:
    """The extensions --plot can be written with: matplotlib's image formats."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return ["." + ext for ext in FigureCanvasAgg.get_supported_filetypes()]


def plot(groups: Sequence[Group], metrics: Sequence[str], path: str, title: str) -> None:
    """One panel per metric: per task a bar (mean) per setting, a dot per run."""
    plt = figures.pyplot()

    varying = varying_settings(groups)
    tasks = list(dict.fromkeys(g.task for g in groups))
    labels = list(dict.fromkeys(setting_text(g, varying) for g in groups))
    width = 0.8 / len(labels)
    fig, axes = plt.subplots(1, len(metrics), figsize=(1.2 + (1.0 + 0.5 * len(labels)) * len(tasks) * len(metrics),
                                                        3.8), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        in_legend = set()
        for g in groups:
            k = labels.index(setting_text(g, varying))
            x = tasks.index(g.task) - 0.4 + width * (k + 0.5)
            values = g.values(m)
            ax.bar(x, statistics.fmean(values), width * 0.9, color=f"C{k % 10}",
                   label=None if k in in_legend else labels[k])
            in_legend.add(k)
            ax.plot([x] * len(values), values, "o", color="black", markersize=3)
        ax.set_xticks(range(len(tasks)), tasks)
        ax.set_ylabel(f"{m.upper()} (%)")
        ax.grid(axis="y", alpha=0.3)
    if len(labels) > 1:
        axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    checkpoint.save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)


def summarize(paths: Sequence[str], scores: str = "paper", weights: str = "final",
              metrics: Sequence[str] = ("hter", "auc"), ignore: Sequence[str] = (), log=None) -> List[Group]:
    """The groups of the runs under `paths`, runs that differ only in the settings in `ignore` together;
    what is left out is said on `log` (default: stderr). Raises RunError."""
    log = log or sys.stderr
    found, unfinished = find_results(paths)
    for folder in unfinished:
        print(f"left out, unfinished (checkpoint.pt, no metrics.json): {folder}", file=log)
    asked = f"{scores} scores ({', '.join(metrics)}) of the {weights} network"
    runs, lacking = [], []
    for path in found:
        run = read_run(path, scores, weights, metrics, ignore)
        (runs if run is not None else lacking).append(run or path)
    if lacking:
        why = WEIGHTS[weights][1] + ("; acer only where the target's attack types are known, by this version or "
                                     "later" if set(metrics) & set(BY_ATTACK_TYPE) else "")
        print(f"left out, {len(lacking)} run{'s' * (len(lacking) != 1)} without {asked} ({why}): "
              + ", ".join(map(str, lacking)), file=log)
    if not runs:
        where = ", ".join(map(str, paths))
        raise RunError(f"no finished run with {asked} under {where}"
                       if found else f"no metrics.json under {where}")
    groups = group_runs(runs)
    varying = varying_settings(groups)
    for g in groups:
        seeds = [r.seed for r in g.runs]
        for s in repeated_seeds(seeds):
            print(f"note: seed {s} of {g.task} {setting_text(g, varying)} is counted {seeds.count(s)} times: "
                  + ", ".join(str(r.path) for r in g.runs if r.seed == s), file=log)
    return groups


def main(argv=None):
    ap = cli.parser("summarize", __doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", default=["runs"],
                    help="run folders, folders of runs (searched at any depth) or metrics.json files (default: runs)")
    ap.add_argument("--scores", choices=SCORES, default="paper",
                    help="paper: the target, threshold at its EER (the paper's protocol); source: the target, "
                         "threshold from held-out source subjects; heldout: the held-out source subjects "
                         "(default: paper)")
    ap.add_argument("--weights", choices=WEIGHTS, default="final",
                    help="final: the network a run delivers (with --ema, the average); unaveraged: the last "
                         "weights of an --ema run; selected: best.pt of an --eval-every run (default: final)")
    ap.add_argument("--metrics", nargs="+", choices=METRICS, default=["hter", "auc"], metavar="METRIC",
                    help=f"columns, of {', '.join(METRICS)} (default: hter auc)".replace("%", "%%"))
    ap.add_argument("--ignore", nargs="+", default=[], metavar="SETTING", type=lambda t: t.replace("-", "_"),
                    choices=[k for k in asdict(Config()) if k not in NOT_SETTINGS + run_records.IGNORED],
                    help="trainer settings that do not tell runs apart, e.g. backend device: runs that differ "
                         "only in them are one group")
    ap.add_argument("--csv", default=None, help="also write the table here")
    ap.add_argument("--plot", default=None, help="also draw it here (.png, .pdf, .svg, ...)")
    args = ap.parse_args(argv)
    if args.csv:
        cli.check_output(ap, "--csv", args.csv)
    if args.plot:
        cli.check_output(ap, "--plot", args.plot, formats=plot_formats())
    try:
        groups = summarize(args.runs, args.scores, args.weights, args.metrics, args.ignore)
    except RunError as e:
        raise SystemExit(f"{ap.prog}: error: {e}") from None
    print(render(groups, args.metrics, args.scores, args.weights, args.ignore), end="")
    with cli.errors_exit(ap):  # a disk that fills while writing them
        if args.csv:
            write_csv(groups, args.metrics, args.csv)
        if args.plot:
            plot(groups, args.metrics, args.plot, f"{args.scores} scores of the {args.weights} network, "
                                                  f"{sum(len(g.runs) for g in groups)} runs")
    return groups


if __name__ == "__main__":
    main()
