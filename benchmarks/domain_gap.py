"""In-domain vs cross-domain AUC on the synthetic benchmark: is it a real DG problem?

For each domain D: train a plain network (BatchNorm, no meta-learning, no
IDC/ICS) on D alone, then score unseen subjects of D (in-domain) and every
other domain (cross-domain).

    python benchmarks/domain_gap.py [--iters 150] [--out benchmarks/results/domain_gap.md]
"""
import argparse
import json
import statistics
import tempfile
from pathlib import Path

from anrl_ext import config, evaluate, train
from anrl_ext.data import DOMAINS


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/domain_gap.md")
    args = ap.parse_args()
    rows, gaps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for d in DOMAINS:
            other = [o for o in DOMAINS if o != d]
            out = Path(tmp) / d
            res = train.run(config.load(["--sources", d, "--target", other[0], "--norm", "bn", "--no-meta",
                                         "--iters", str(args.iters), "--seed", str(args.seed), "--out", str(out)]))
            in_auc = res["metrics"]["source_heldout"]["auc"]
            cross = evaluate.main(["--checkpoint", str(out / "checkpoint.pt"), "--domains", "".join(other)])
            cross_aucs = [cross[o]["auc"] for o in other]
            rows.append((d, in_auc, {o: cross[o]["auc"] for o in other}))
            gaps.append(in_auc - statistics.mean(cross_aucs))
    lines = ["| trained on | AUC on unseen subjects, same domain | " + " | ".join(f"AUC on {o}" for o in DOMAINS)
             + " | mean cross-domain AUC |", "|---" * (len(DOMAINS) + 3) + "|"]
    for d, in_auc, cross in rows:
        cells = [f"{100 * cross[o]:.1f}" if o in cross else "-" for o in DOMAINS]
        lines.append(f"| {d} | {100 * in_auc:.1f} | " + " | ".join(cells)
                     + f" | {100 * statistics.mean(cross.values()):.1f} |")
    text = "\n".join(lines) + f"\n\nmean gap (in-domain minus cross-domain AUC): {100 * statistics.mean(gaps):.1f} points\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
