"""Which attacks does each arm miss on the target? bn and afnm, scored per attack type (print, replay) on
the synthetic target, as it is and with its style moved into the sources' range.

    python benchmarks/attack_types.py --protocol MI-C [--seeds 0 1 2 3 4 5] [--iters 300]

Trains (or reuses) the runs of bn_vs_afnm.py, the same folders and settings, then scores each run's
network on its target (target_shift.py's scoring: the target as it is must reproduce each run's recorded
AUC) and reports, per attack type, the video-level AUC of the live videos against that type alone and
its APCER at the target's EER threshold, with BPCER and ACER (anrl_ext.metrics.attack_metrics). Rows:
the target as it is, with every property outside the sources' range moved into it ("all of these" of
target_shift.py), and in each source's whole style.

Writes benchmarks/results/attack_types_<protocol>.md (each arm's mean ± sample std over seeds, and the
per-type AUC difference afnm - bn paired by seed) with its .json, and the plot
docs/attack_types_<protocol>.png.
"""
import bn_vs_afnm
import target_shift
from anrl_ext.metrics import add_attack_metrics, compute_metrics


def by_attack_type(s, y, v, attack_types) -> dict:
    """attack_metrics at the target's EER threshold (the paper protocol's), in %, for score_runs."""
    m = add_attack_metrics(compute_metrics(s, y, None, v), s, y, v, attack_types)["attacks"]
    return {"auc": {k: 100 * a for k, a in m["auc"].items()}, "apcer": {k: 100 * a for k, a in m["apcer"].items()},
            "count": m["count"], "bpcer": 100 * m["bpcer"], "acer": 100 * m["acer"]}


def studied_variants(target: str, sources) -> dict:
    """target_shift's variants but the single properties: as is, all moved (where more than one moves), each
    source's whole style."""
    every = target_shift.variants(target, sources)
    moved = target_shift.moved_into_sources(target, sources)
    return {name: changes for name, changes in every.items() if name not in moved or len(moved) == 1}


def attack_kinds(scores) -> list:
    """The attack types met in any run of any variant, in name order."""
    return sorted({k for arms in scores.values() for runs in arms.values() for r in runs for k in r["auc"]})


def _cell(runs, *keys) -> str:
    """mean ± sd over seeds of r[keys...]; a type some run lacks (no video of it) is left out of those runs."""
    values = [_get(r, keys) for r in runs]
    values = [x for x in values if x is not None]
    if not values:
        return "n/a"
    text = bn_vs_afnm._mean_sd(values)
    return text if len(values) == len(runs) else f"{text} ({len(values)} runs)"


def _get(record, keys):
    for k in keys:
        if k not in record:
            return None
        record = record[k]
    return record


def render(scores, target: str, changes_by_variant: dict, args, seeds, command) -> str:
    kinds = attack_kinds(scores)
    lines = [f"`{command}`", "",
             f"Protocol {args.protocol}, {args.iters} iterations, seeds {seeds}: the networks of bn_vs_afnm.py's "
             f"runs, scored on target {target} per attack type (video level, %, mean ± sample std over seeds). "
             "AUC: the live videos against that type's alone. APCER, BPCER and ACER at the target's EER threshold "
             "(ACER: the worst type's APCER plus BPCER, halved).", "",
             f"| target rendered with | arm | videos {' / '.join(kinds)} | "
             + " | ".join(f"AUC {k}" for k in kinds) + " | " + " | ".join(f"APCER {k}" for k in kinds)
             + " | BPCER | ACER |", "|---|---|---|" + "---|" * (2 * len(kinds) + 2)]
    for name in changes_by_variant:
        for arm in bn_vs_afnm.NORMS:
            runs = scores[name][arm]
            counts = " / ".join(_counts(runs, k) for k in kinds)
            cells = [name, arm, counts, *(_cell(runs, "auc", k) for k in kinds),
                     *(_cell(runs, "apcer", k) for k in kinds), _cell(runs, "bpcer"), _cell(runs, "acer")]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "AUC per attack type, afnm - bn, paired by seed (95 % t interval), and the seeds where afnm is "
              "higher:", "", "| target rendered with | " + " | ".join(f"{k}" for k in kinds) + " |",
              "|---|" + "---|" * len(kinds)]
    for name in changes_by_variant:
        cells = [name]
        for k in kinds:
            bn, afnm = (_values(scores[name][arm], "auc", k) for arm in bn_vs_afnm.NORMS)
            if None in bn + afnm:
                cells.append("n/a")
                continue
            d = bn_vs_afnm.paired(bn, afnm)
            cells.append(f"{d['mean_diff']:+.1f} {bn_vs_afnm.interval(d, 1)}, {d['better']} of {len(d['diff'])}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _values(runs, *keys) -> list:
    return [_get(r, keys) for r in runs]


def _counts(runs, kind) -> str:
    """How many videos of `kind` the target has: one number when every run saw the same."""
    seen = sorted({r["count"].get(kind, 0) for r in runs})
    return str(seen[0]) if len(seen) == 1 else "-".join(map(str, (seen[0], seen[-1])))


def plot(scores, seeds, path, title):
    """Per variant and attack type, each arm's per-seed AUC of live against that type."""
    kinds = attack_kinds(scores)
    aucs = {f"{name}: {k}": {arm: [r["auc"].get(k, float("nan")) for r in scores[name][arm]]
                             for arm in bn_vs_afnm.NORMS}
            for name in scores for k in kinds}
    target_shift.plot(aucs, seeds, path, title)


def main(argv=None):
    target_shift.rescoring_study(__doc__, argv, "attack_types.py", studied_variants, by_attack_type, render, plot,
                                 ", AUC of live against each attack type")


if __name__ == "__main__":
    main()
