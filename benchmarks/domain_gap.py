"""In-domain vs cross-domain AUC on the synthetic benchmark, over seeds: is it a real DG problem?

    python benchmarks/domain_gap.py [--seeds 0 1 2 3 4] [--iters 300] [--jobs 2] [--fresh] [--same-commit]

For each domain D and seed: train a plain network (BatchNorm, no meta-learning, no IDC/ICS) on D
alone, then score unseen subjects of D (in-domain) and every other domain (cross-domain,
`python -m anrl_ext.evaluate`). The gap of a run is its in-domain AUC minus its mean cross-domain
AUC. Runs go to runs/domain_gap/<D>_seed<k> and are reused when their settings match (see
training_runs.py). Writes benchmarks/results/domain_gap.md (every AUC as mean ± sample std over
seeds; each training domain's gap with its 95 % t interval over seeds, Wilcoxon signed-rank p and the
seeds where in-domain AUC is higher; the gap averaged over the four domains, by seed), the per-run
values as .json next to it, and docs/domain_gap.png (the mean AUC matrix, and every run's gap).
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

import bn_vs_afnm
import training_runs
from anrl_ext import figures
from anrl_ext.data import DOMAINS


def settings(domain, seed, args):
    """The trainer settings of the run on `domain` alone (--target only names a domain to score at the end)."""
    other = [o for o in DOMAINS if o != domain]
    return {"sources": domain, "target": other[0], "norm": "bn", "meta": False, "iters": args.iters, "seed": seed}


def cross_domain(out, domains, threads):
    """{domain: AUC} of the checkpoint in `out` on each of `domains`, kept in out/cross_domain.json
    (recomputed when the run is newer than it)."""
    scores, run = Path(out) / "cross_domain.json", Path(out) / "metrics.json"
    if not (scores.exists() and scores.stat().st_mtime >= run.stat().st_mtime
            and set(domains) <= set(json.loads(scores.read_text()))):
        cmd = [sys.executable, "-m", "anrl_ext.evaluate", "--checkpoint", str(Path(out) / "checkpoint.pt"),
               "--domains", "".join(domains), "--out", str(scores)]
        training_runs.run_command(cmd, threads)
    every = json.loads(scores.read_text())
    return {d: every[d]["auc"] for d in domains}


def run_one(domain, seed, args, threads):
    """One row: (domain, seed, in-domain AUC, {other domain: AUC}, metrics.json of the run)."""
    out = Path(args.runs) / f"{domain}_seed{seed}"
    result = training_runs.run_one(out, settings(domain, seed, args), args, threads)
    cross = cross_domain(out, [o for o in DOMAINS if o != domain], threads)
    return domain, seed, result["metrics"]["source_heldout"]["auc"], cross, result


def summarise(rows, seeds):
    """Per training domain (in %, in seed order): in-domain AUC, each cross AUC, the mean cross AUC and the
    paired summary of in-domain minus mean cross-domain; and the gap averaged over domains, by seed."""
    by = {(d, s): (in_auc, cross) for d, s, in_auc, cross, *_ in rows}
    per_domain = {}
    for d in DOMAINS:
        in_auc = [100 * by[(d, s)][0] for s in seeds]
        cross = {o: [100 * by[(d, s)][1][o] for s in seeds] for o in DOMAINS if o != d}
        mean_cross = [statistics.mean(c[i] for c in cross.values()) for i in range(len(seeds))]
        per_domain[d] = {"in": in_auc, "cross": cross, "mean_cross": mean_cross,
                         "gap": bn_vs_afnm.paired(mean_cross, in_auc)}
    gap_by_seed = [statistics.mean(per_domain[d]["gap"]["diff"][i] for d in DOMAINS) for i in range(len(seeds))]
    overall = bn_vs_afnm.paired([0.0] * len(seeds), gap_by_seed)
    return per_domain, overall


def render(per_domain, overall, args, seeds, command):
    sd = bn_vs_afnm._mean_sd
    lines = [f"`{command}`", "",
             f"{args.iters} iterations, seeds {seeds}: a plain network (BN, no meta-learning, no IDC/ICS) trained "
             "on one domain, scored on unseen subjects of that domain and on the other three (video-level AUC %, "
             "mean ± sample std over seeds). Gap: in-domain AUC minus the mean cross-domain AUC, by seed.", "",
             "| trained on | AUC on unseen subjects, same domain | " + " | ".join(f"AUC on {o}" for o in DOMAINS)
             + " | mean cross-domain AUC | gap | gap 95 % t interval | seeds with in-domain AUC higher "
               "| Wilcoxon signed-rank p |", "|---" * (len(DOMAINS) + 7) + "|"]
    for d, s in per_domain.items():
        cells = [sd(s["cross"][o]) if o in s["cross"] else "-" for o in DOMAINS]
        lines.append(f"| {d} | {sd(s['in'])} | " + " | ".join(cells) + f" | {sd(s['mean_cross'])} | "
                     + " | ".join(bn_vs_afnm.effect_cells(s["gap"])) + " |")
    lines += ["", f"Gap averaged over the four training domains: {overall['mean_diff']:+.2f} points, 95 % t interval "
              f"{bn_vs_afnm.interval(overall)} over seeds; positive on {overall['better']} of "
              f"{len(overall['diff'])} seeds (by seed: " + ", ".join(f"{g:+.1f}" for g in overall["diff"]) + ")."]
    return "\n".join(lines) + "\n"


def plot(per_domain, seeds, path, title):
    """Left: the mean AUC matrix (rows: trained on, columns: scored on, diagonal: unseen subjects of the
    training domain). Right: every seed's gap per training domain, a bar at each mean."""
    mean = [[statistics.mean(s["in"] if o == d else s["cross"][o]) for o in DOMAINS] for d, s in per_domain.items()]
    fig, (left, right) = figures.pyplot().subplots(1, 2, figsize=(9, 3.8))
    im = left.imshow(mean, cmap="viridis", vmin=min(40, min(map(min, mean))), vmax=100)
    for i, row in enumerate(mean):
        for j, v in enumerate(row):
            left.text(j, i, f"{v:.0f}", ha="center", va="center", color="w" if v < 75 else "k", fontsize=9)
    left.set_xticks(range(len(DOMAINS)), DOMAINS)
    left.set_yticks(range(len(DOMAINS)), list(per_domain))
    left.set_xlabel("scored on")
    left.set_ylabel("trained on")
    left.set_title("mean AUC % (diagonal: unseen subjects)", fontsize=10)
    fig.colorbar(im, ax=left, fraction=0.046)
    for x, s in enumerate(per_domain.values()):
        gaps = s["gap"]["diff"]
        right.scatter([x] * len(gaps), gaps, color=f"C{x}", zorder=2)
        right.hlines(statistics.mean(gaps), x - 0.2, x + 0.2, color="k", lw=2, zorder=3)
    right.axhline(0, color="0.6", lw=1, zorder=1)
    right.set_xticks(range(len(per_domain)), list(per_domain))
    right.set_xlabel("trained on")
    right.set_title("gap: in-domain - mean cross-domain AUC", fontsize=10)
    bn_vs_afnm.save_figure(fig, path, title + f" (dots: seeds {seeds}, bars: means)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--out", default="benchmarks/results/domain_gap.md", help="the report (and .json next to it)")
    ap.add_argument("--plot", default="docs/domain_gap.png", help="the AUC matrix and the gaps")
    args, seeds, command = training_runs.parse_run_arguments(ap, "domain_gap.py", argv, "runs/domain_gap", "domain")
    todo = [(d, s) for s in seeds for d in DOMAINS]
    rows = training_runs.run_jobs(todo, lambda job, threads: run_one(*job, args, threads), args.jobs,
                                  "domain-gap runs")
    per_domain, overall = summarise(rows, seeds)
    text = render(per_domain, overall, args, seeds, command) + bn_vs_afnm.code_note(rows)
    bn_vs_afnm.write_report(text, args.out, lambda: plot(per_domain, seeds, args.plot,
                                                          f"domain gap, {args.iters} iterations"), args.plot)
    Path(args.out).with_suffix(".json").write_text(json.dumps(
        [{"trained_on": d, "seed": s, "in_domain_auc": a, "cross_domain_auc": c} for d, s, a, c, _ in rows], indent=1))


if __name__ == "__main__":
    main()
