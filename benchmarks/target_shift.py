"""Which of the target domain's properties do the sources fail to cover? bn and afnm, scored on the
synthetic target with one property of its style moved into the sources' range.

    python benchmarks/target_shift.py --protocol MI-C [--seeds 0 1 2 3 4 5] [--iters 300]

Trains (or reuses) the runs of bn_vs_afnm.py, the same folders and settings, then scores each run's
network on its target domain rendered again with one property of the target's style
(`anrl_ext.data.synthetic.STYLES`: colour matrix, light, noise, ...) moved to the nearest value inside
the range the source domains span, one property at a time, then all of them at once, then in each
source domain's whole style. A property already inside the sources' range is left out. Only the style
changes (camera, scene, how visible the attacks are and how many are replays): the videos, subjects
and frame seeds are the target's own. Scoring the
target as it is reproduces each run's recorded AUC (checked; a mismatch stops the script: the code or
the runs changed since).

Writes benchmarks/results/target_shift_<protocol>.md (video-level AUC per variant: each arm's mean,
the paired difference afnm - bn, and each arm's change from the target as it is) and the plot
docs/target_shift_<protocol>.png.
"""
import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import numpy as np

import bn_vs_afnm
import training_runs
from anrl_ext import config, figures, provenance, run_records
from anrl_ext.data import synthetic
from anrl_ext.data.build import eval_dataset
from anrl_ext.metrics import compute_metrics
from anrl_ext.train import trainer_from_checkpoint

# Style fields that hold a (low, high) range to draw from: moved as an interval, not entry by entry.
RANGES = ("light", "jpeg")
AS_IS = "as is"


def clip_entries(value, low, high):
    """`value` (a number or nested tuples of them) with each entry clipped into [low, high] entry-wise."""
    if isinstance(value, tuple):
        return tuple(clip_entries(v, lo, hi) for v, lo, hi in zip(value, low, high))
    return min(max(value, low), high)


def entrywise(values, pick):
    """pick() over the sources' values of one field, entry by entry (numbers or nested tuples)."""
    if isinstance(values[0], tuple):
        return tuple(entrywise([v[i] for v in values], pick) for i in range(len(values[0])))
    return pick(values)


def moved_into_sources(target: str, sources) -> dict:
    """{field: value} for every field of the target's style outside the range the sources span, with
    the nearest value inside it: a (low, high) range clipped into [lowest low, highest high] of the
    sources, any other field clipped entry by entry into the sources' [min, max] of that entry."""
    style = synthetic.STYLES[target]
    moved = {}
    for field in dataclasses.fields(synthetic.DomainStyle):
        value = getattr(style, field.name)
        theirs = [getattr(synthetic.STYLES[s], field.name) for s in sources]
        if field.name in RANGES:
            low, high = min(r[0] for r in theirs), max(r[1] for r in theirs)
            inside = tuple(min(max(v, low), high) for v in value)
        else:
            inside = clip_entries(value, entrywise(theirs, min), entrywise(theirs, max))
        if inside != value:
            moved[field.name] = inside
    return moved


def variants(target: str, sources) -> dict:
    """{name: style changes}: the target as it is, each property moved alone, all of them, each source's style."""
    moved = moved_into_sources(target, sources)
    out = {AS_IS: {}}
    out.update({name: {name: value} for name, value in moved.items()})
    if len(moved) > 1:
        out["all of these"] = dict(moved)
    for s in sources:
        out[f"{s}'s whole style"] = dataclasses.asdict(synthetic.STYLES[s])
    return out


def describe(target: str, changes: dict) -> str:
    """What a row changes, for the table: 'noise 0.05 → 0.03'; a matrix by its entries that move; several
    properties by their names; a whole style by its row's name alone."""
    if len(changes) == len(dataclasses.fields(synthetic.DomainStyle)):
        return "every property"
    if len(changes) != 1:
        return ", ".join(changes)
    (name, value), = changes.items()
    old = getattr(synthetic.STYLES[target], name)
    if len(flat(old)) > 4:
        moves = [abs(a - b) for a, b in zip(flat(old), flat(value)) if a != b]
        return f"{name}: {len(moves)} of {len(flat(old))} entries, by up to {max(moves):g}"
    return f"{name} {fmt(old)} → {fmt(value)}"


def flat(value) -> list:
    """The numbers of a number or nested tuples, in order."""
    return [x for v in value for x in flat(v)] if isinstance(value, tuple) else [value]


def fmt(value) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(fmt(v) for v in value) + ")"
    return f"{value:g}"


def target_scores(trainer, target: str, changes: dict):
    """(frame scores, labels, video ids, {spoof video: attack type}) of `trainer`'s network on the target
    rendered with `changes`."""
    original = synthetic.STYLES[target]
    synthetic.STYLES[target] = dataclasses.replace(original, **changes)
    try:  # the dataset renders lazily, and a video's attack type follows replay_share: all while the style is in place
        data = eval_dataset(trainer.cfg, [target], scored=True)
        s, y, v = trainer.scores(data, desc=f"scoring {target}")
        return s, y, v, data.attack_types()
    finally:
        synthetic.STYLES[target] = original


def video_auc(s, y, v, attack_types) -> float:
    """Video-level AUC % (the paper protocol's): score_runs' default measure."""
    return 100 * compute_metrics(s, y, None, v)["auc"]


def score_runs(results, target: str, changes_by_variant: dict, runs: str, measure=video_auc) -> dict:
    """{variant: {arm: per-seed measure(*target_scores)}} over [(arm, seed, metrics.json)], in the order
    given; by default the video-level AUC %."""
    out = {name: {} for name in changes_by_variant}
    for arm, seed, result in results:
        ckpt = Path(runs) / f"{arm}_seed{seed}" / "checkpoint.pt"
        if not ckpt.exists():
            raise SystemExit(f"{ckpt} is missing: its run finished but its checkpoint is gone; rerun it "
                             "(--fresh reruns every run)")
        trainer, _ = trainer_from_checkpoint(str(ckpt))
        for name, changes in changes_by_variant.items():
            scored = target_scores(trainer, target, changes)
            auc = video_auc(*scored) / 100
            if name == AS_IS and abs(auc - result["metrics"]["paper"]["auc"]) > 1e-9:
                raise SystemExit(f"{ckpt}: the target as it is scores AUC {auc:.6f}, its run recorded "
                                 f"{result['metrics']['paper']['auc']:.6f}: the code or the run changed since")
            out[name].setdefault(arm, []).append(measure(*scored))
    return out


def render(aucs, target: str, changes_by_variant: dict, args, seeds, command) -> str:
    lines = [f"`{command}`", "",
             f"Protocol {args.protocol}, {args.iters} iterations, seeds {seeds}: the networks of bn_vs_afnm.py's "
             f"runs, scored on target {target} with one property of its style moved into the sources' range "
             "(video-level AUC %, mean ± sample std over seeds; differences paired by seed, with their 95 % t "
             "interval).", "",
             "| target rendered with | change | AUC % bn | AUC % afnm | afnm - bn | seeds afnm higher "
             "| bn vs as is | afnm vs as is |", "|---|---|---|---|---|---|---|---|"]
    base = aucs[AS_IS]
    for name, changes in changes_by_variant.items():
        a = aucs[name]
        s = bn_vs_afnm.paired(a["bn"], a["afnm"])
        cells = [name, describe(target, changes), bn_vs_afnm._mean_sd(a["bn"]), bn_vs_afnm._mean_sd(a["afnm"]),
                 f"{s['mean_diff']:+.1f} {bn_vs_afnm.interval(s, 1)}", f"{s['better']} of {len(s['diff'])}"]
        for arm in bn_vs_afnm.NORMS:
            d = bn_vs_afnm.paired(base[arm], a[arm])
            cells.append("" if name == AS_IS else f"{d['mean_diff']:+.1f} {bn_vs_afnm.interval(d, 1)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(aucs, seeds, path, title):
    """Each variant's per-seed AUC of both arms (dots) and their means (bars)."""
    plt = figures.pyplot()
    names = list(aucs)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 1.5), 3.8))
    for k, arm in enumerate(bn_vs_afnm.NORMS):
        xs = np.arange(len(names)) + (k - 0.5) * 0.3
        for x, name in zip(xs, names):
            v = aucs[name][arm]
            ax.scatter([x] * len(v), v, color=f"C{k}", s=14, alpha=0.7, label=arm if x == xs[0] else None)
            ax.hlines(statistics.mean(v), x - 0.12, x + 0.12, color=f"C{k}", lw=2.5)
    ax.axhline(50, color="0.7", lw=1, ls="--")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("target AUC % (video level)")
    ax.legend(fontsize=8)
    bn_vs_afnm.save_figure(fig, path, title + f" (dots: seeds {seeds}, bars: means)")


def rescoring_study(doc: str, argv, script: str, variants_of, measure, render, plot, what: str):
    """The main of a study that scores bn_vs_afnm.py's runs of a protocol again on their target: the options
    (`doc`: the script's docstring), the runs trained or reused, each variant of variants_of(target, sources)
    scored with `measure`, the report render(scores, target, changes, args, seeds, command) written with its
    .json, and plot(scores, seeds, path, title) drawn (`what` ends the title)."""
    name = Path(script).stem
    ap = argparse.ArgumentParser(description=" ".join(doc.split("\n\n")[0].split()))
    ap.add_argument("--protocol", default="MI-C", help="the leave-one-out protocol, e.g. MI-C")
    ap.add_argument("--out", default=f"benchmarks/results/{name}_{{protocol}}.md", help="the report")
    ap.add_argument("--plot", default=f"docs/{name}_{{protocol}}.png", help="the figure")
    args, seeds, command = training_runs.parse_run_arguments(ap, script, argv, "runs/bn_vs_afnm/{protocol}", "arm")
    if args.protocol not in config.PROTOCOLS:
        ap.error(f"unknown protocol {args.protocol!r}; choose from {sorted(config.PROTOCOLS)}")
    sources, target = config.PROTOCOLS[args.protocol]
    args = bn_vs_afnm.for_protocol(args, args.protocol)
    results = bn_vs_afnm.run_all(bn_vs_afnm.NORMS, seeds, args, f"{args.protocol}: bn vs afnm runs")
    changes = variants_of(target, sources)
    scores = score_runs(results, target, changes, args.runs, measure)
    scored_by = f"Scored by: {run_records.code_label({'code': provenance.code_version()})}.\n"
    bn_vs_afnm.write_report(render(scores, target, changes, args, seeds, command) + bn_vs_afnm.code_note(results)
                            + scored_by,
                            args.out, lambda: plot(scores, seeds, args.plot, f"{args.protocol}: target {target}{what}"),
                            args.plot)
    Path(args.out).with_suffix(".json").write_text(json.dumps(scores, indent=1) + "\n")


def main(argv=None):
    rescoring_study(__doc__, argv, "target_shift.py", variants, video_auc, render, plot,
                    " with one property in the sources' range")


if __name__ == "__main__":
    main()
