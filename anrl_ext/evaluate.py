"""`python -m anrl_ext.evaluate --checkpoint FILE`: score a trained checkpoint on any domain(s).

Uses the checkpoint's own config for the model and data settings; --domains
picks what to score (default: the checkpoint's target domain). Prints and
optionally writes (--out) AUC / EER / HTER, video-level, and APCER per attack
type with ACER where the attack types are known (the synthetic domains know
theirs, the real datasets' naming gives theirs, --attacks names them for any
data); --scores writes every frame's
score (domain, video, label, probability of live, attack type) as CSV, for
analyses of one's own: a video's score is the mean of its frames'.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from . import checkpoint, cli
from .data.attacks import LIVE, read_attack_file, video_attacks
from .data.build import eval_dataset
from .metrics import add_attack_metrics, compute_metrics, describe_attacks, plot_roc


def main(argv=None):
    ap = cli.parser("evaluate", __doc__.splitlines()[0])
    cli.add_checkpoint_arguments(ap)
    ap.add_argument("--domains", default=None, help="domain letters to score, e.g. M or OCIM")
    ap.add_argument("--threshold", type=cli.probability, default=None,
                    help="fixed threshold on the probability of live, in [0, 1] (default: the set's EER)")
    ap.add_argument("--out", default=None, help="write the metrics as JSON here, and a ROC plot next to it (.png)")
    ap.add_argument("--scores", default=None, help="write every frame's score as CSV here: domain, video, label "
                    "(1 live, 0 spoof), score (probability of live), attack (its type; empty where unknown)")
    ap.add_argument("--attacks", default=None, help="CSV with `video` and `attack` columns naming each spoof "
                    "video's attack type (print, replay, ...), for APCER per type and ACER: a --scores file with "
                    "its attack column filled in will do (default: the types the synthetic domains know and the real "
                    "datasets' naming gives)")
    args = ap.parse_args(argv)
    if args.out:
        cli.check_output(ap, "--out", args.out)
    if args.scores:
        cli.check_output(ap, "--scores", args.scores)
    with cli.errors_exit(ap):
        return _evaluate(ap, args)


def _evaluate(ap: argparse.ArgumentParser, args: argparse.Namespace):
    from .train import trainer_from_checkpoint

    trainer, _ = trainer_from_checkpoint(args.checkpoint, args.data, args.device, args.loader_threads)
    cfg = trainer.cfg
    domains = cli.domains(ap, cfg.data, args.domains) if args.domains else [cfg.domains()[1]]
    results, curves, by_type, rows = {}, {}, {}, []
    named = read_attack_file(args.attacks) if args.attacks else None
    datasets = {d: eval_dataset(cfg, [d], scored=True) for d in domains}  # every domain checked before scoring
    attack_types = {d: video_attacks(dataset, named, args.attacks) for d, dataset in datasets.items()}
    for d, dataset in datasets.items():
        s, y, v = trainer.scores(dataset, desc=f"scoring domain {d}")
        results[d] = m = add_attack_metrics(compute_metrics(s, y, args.threshold, v), s, y, v, attack_types[d])
        attack = [LIVE if label else (attack_types[d] or {}).get(video, "") for video, label in zip(v, y)]
        curves[f"domain {d}"] = (s, y)
        if "attacks" in m:  # the ROC of the live frames against each attack type's
            kinds = np.asarray(attack)
            by_type[f"domain {d}"] = {k: (s[(y == 1) | (kinds == k)], y[(y == 1) | (kinds == k)])
                                      for k in m["attacks"]["apcer"]}
        if args.scores:  # float: written exactly (its repr)
            rows += [(d, video, int(label), float(score), a) for video, label, score, a in zip(v, y, s, attack)]
        print(f"domain {d}: AUC {100 * m['auc']:.2f}%  EER {100 * m['eer']:.2f}%  HTER {100 * m['hter']:.2f}% "
              f"(threshold {m['threshold']:.3f})")
        if "attacks" in m:
            print(f"  {describe_attacks(m['attacks'])}")
    if args.out:
        checkpoint.write_text_atomic(args.out, json.dumps(results, indent=2))
        plot_roc(curves, os.path.splitext(args.out)[0] + ".png", title=f"{args.checkpoint}: frame-level ROC",
                 by_type=by_type)
    if args.scores:
        checkpoint.write_csv_atomic(args.scores, [("domain", "video", "label", "score", "attack"), *rows])
        print(f"wrote {len(rows)} frame scores to {args.scores}")
    return results


if __name__ == "__main__":
    main()
