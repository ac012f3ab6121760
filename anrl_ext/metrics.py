"""Face anti-spoofing metrics and the two evaluation protocols.

Convention: label 1 = live (bona fide), 0 = spoof (attack); a higher score
means more likely live. APCER = attacks accepted as live; BPCER = live
rejected; HTER = (APCER + BPCER) / 2 at a threshold (accept if score >= t).
Per attack type (ISO/IEC 30107-3's presentation attack instrument species:
print, replay, ...), APCER of each type, and ACER = (the worst type's APCER
+ BPCER) / 2, as the OULU-NPU protocols report it.

Protocols:
  "paper":  threshold at the target set's own EER point, as the published
            tables do (optimistic, but comparable with them).
  "source": threshold fixed beforehand at the EER point of held-out
            source-domain data: what a deployed system would see.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from . import checkpoint, figures


def _check(scores, labels) -> Tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.shape[0]} vs {y.shape[0]}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (spoof) or 1 (live)")
    if y.size == 0 or y.min() == y.max():
        raise ValueError("need both live (1) and spoof (0) samples")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    return s, y.astype(np.int64)


def roc_curve(scores, labels):
    """(fpr, tpr, thresholds) with one point per distinct score, ties handled."""
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / y.sum()]
    fpr = np.r_[0.0, fps / (len(y) - y.sum())]
    return fpr, tpr, np.r_[np.inf, s[distinct]]


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (ties count one half)."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.trapezoid(tpr, fpr))


def apcer_bpcer(scores, labels, threshold: float) -> Tuple[float, float]:
    s, y = _check(scores, labels)
    accept = s >= threshold
    return float(accept[y == 0].mean()), float((~accept[y == 1]).mean())


def eer(scores, labels) -> Tuple[float, float]:
    """(equal error rate, threshold): the candidate threshold where APCER and BPCER are closest."""
    s, y = _check(scores, labels)
    cands = np.unique(s)
    cands = np.r_[cands, cands[-1] + 1.0]
    spoof, live = np.sort(s[y == 0]), np.sort(s[y == 1])
    apcer = 1 - np.searchsorted(spoof, cands, side="left") / len(spoof)  # spoof with s >= t
    bpcer = np.searchsorted(live, cands, side="left") / len(live)  # live with s < t
    i = int(np.argmin(np.abs(apcer - bpcer)))
    return float((apcer[i] + bpcer[i]) / 2), float(cands[i])


def hter(scores, labels, threshold: float) -> Tuple[float, float, float]:
    """(HTER, APCER, BPCER) at `threshold`."""
    a, b = apcer_bpcer(scores, labels, threshold)
    return (a + b) / 2, a, b


def tpr_at_fpr(scores, labels, fpr: float) -> float:
    """Largest TPR reachable with FPR (spoof acceptance) <= fpr."""
    f, t, _ = roc_curve(scores, labels)
    ok = f <= fpr + 1e-12
    return float(t[ok].max())


def video_average(scores, labels, video_ids: Sequence[str]):
    """Average frame scores per video; a video's frames must share one label."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    vids = np.asarray(video_ids)
    if len(vids) != len(s):
        raise ValueError(f"video_ids has {len(vids)} entries for {len(s)} scores")
    uniq, inv = np.unique(vids, return_inverse=True)
    sums = np.bincount(inv, weights=s)
    counts = np.bincount(inv)
    lab = np.zeros(len(uniq), dtype=np.int64)
    lab[inv] = y
    if (np.bincount(inv, weights=y) / counts != lab).any():
        raise ValueError("a video has frames with different labels")
    return sums / counts, lab


def compute_metrics(scores, labels, threshold: Optional[float] = None,
                    video_ids: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """AUC, EER and HTER/APCER/BPCER at `threshold` (default: this set's EER threshold)."""
    if video_ids is not None:
        scores, labels = video_average(scores, labels, video_ids)
    e, t_eer = eer(scores, labels)
    t = t_eer if threshold is None else float(threshold)
    h, a, b = hter(scores, labels, t)
    return {"auc": roc_auc(scores, labels), "eer": e, "hter": h, "apcer": a, "bpcer": b,
            "threshold": t, "tpr@fpr=1%": tpr_at_fpr(scores, labels, 0.01)}


def attack_metrics(scores, labels, attacks: Sequence[str], threshold: float,
                   video_ids: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """APCER of each attack type at `threshold`, BPCER, and ACER = (max APCER + BPCER) / 2.

    `attacks` holds each sample's attack type (anything for live samples: it is not read). With
    `video_ids`, videos are scored (a video's frames must share one label and one attack type). Returns
    {"apcer": {type: APCER}, "count": {type: how many spoof samples or videos}, "auc": {type: AUC of the
    live samples against that type's}, "bpcer", "acer", "worst": the type of the largest APCER}.
    """
    s, y = _check(scores, labels)
    kinds = np.asarray(attacks, dtype=object).ravel()
    if len(kinds) != len(s):
        raise ValueError(f"attacks has {len(kinds)} entries for {len(s)} scores")
    unnamed = [i for i in np.flatnonzero(y == 0) if not (isinstance(kinds[i], str) and kinds[i])]
    if unnamed:
        raise ValueError(f"{len(unnamed)} of the {int((y == 0).sum())} spoof samples have no attack type (the "
                         f"first: sample {unnamed[0]})")
    if video_ids is not None:
        vids = np.asarray(video_ids)
        s, y = video_average(s, y, vids)
        _, first, inv = np.unique(vids, return_index=True, return_inverse=True)
        mixed = (kinds != kinds[first][inv]) & (np.asarray(labels).ravel() == 0)
        if mixed.any():
            raise ValueError(f"video {str(vids[mixed][0])!r} has frames of different attack types")
        kinds = kinds[first]
    accept = s >= threshold
    apcer, count, auc = {}, {}, {}
    for kind in sorted(set(kinds[y == 0])):
        of_kind = (y == 0) & (kinds == kind)
        apcer[kind], count[kind] = float(accept[of_kind].mean()), int(of_kind.sum())
        auc[kind] = roc_auc(s[of_kind | (y == 1)], y[of_kind | (y == 1)])
    bpcer = float((~accept[y == 1]).mean())
    worst = max(apcer, key=apcer.get)  # the first of equal ones, in name order
    return {"apcer": apcer, "count": count, "auc": auc, "bpcer": bpcer, "acer": (apcer[worst] + bpcer) / 2,
            "worst": worst}


def add_attack_metrics(m: Dict, scores, labels, video_ids, attack_of: Optional[Dict[str, str]]) -> Dict:
    """compute_metrics' dict `m` of these scores, with "attacks" (attack_metrics at m's threshold) and "acer"
    added where `attack_of` ({video: attack type} of every spoof video) is given; `m` as it is where not."""
    if attack_of is not None:
        kinds = ["" if label else attack_of[video] for video, label in zip(video_ids, np.asarray(labels).ravel())]
        m["attacks"] = attack_metrics(scores, labels, kinds, m["threshold"], video_ids)
        m["acer"] = m["attacks"]["acer"]
    return m


def describe_attacks(report: Dict) -> str:
    """One line of attack_metrics' report: each type's APCER, AUC against live and video count; BPCER, ACER."""
    count = report["count"]
    each = "; ".join(f"{kind}: APCER {100 * a:.2f}%, AUC {100 * report['auc'][kind]:.2f}% "
                     f"({count[kind]} video{'s' * (count[kind] != 1)})" for kind, a in report["apcer"].items())
    return f"{each}; BPCER {100 * report['bpcer']:.2f}%, ACER {100 * report['acer']:.2f}%"


def protocol_report(target_scores, target_labels, source_scores, source_labels,
                    target_videos=None, source_videos=None) -> Dict[str, Dict[str, float]]:
    """Both protocols: 'paper' (target EER threshold) and 'source' (threshold from source data)."""
    if source_videos is not None:
        source_scores, source_labels = video_average(source_scores, source_labels, source_videos)
    _, t_src = eer(source_scores, source_labels)
    return {"paper": compute_metrics(target_scores, target_labels, None, target_videos),
            "source": compute_metrics(target_scores, target_labels, t_src, target_videos)}


def plot_roc(curves: Dict[str, Tuple[np.ndarray, np.ndarray]], path: str, title: str = "ROC",
             by_type: Optional[Dict[str, Dict[str, Tuple[np.ndarray, np.ndarray]]]] = None) -> None:
    """Save ROC curves {name: (scores, labels)} as a PNG; with `by_type` ({name: {attack type: (scores,
    labels)}}: a curve's live samples and one type's attacks), those too, in the curve's colour, dashed."""
    plt = figures.pyplot()

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    dashes = ("--", "-.", ":", (0, (5, 1, 1, 1)))
    for i, (name, (s, y)) in enumerate(curves.items()):
        f, t, _ = roc_curve(s, y)
        ax.plot(f, t, color=f"C{i}", label=f"{name} (AUC {roc_auc(s, y):.3f})")
        for k, (kind, (ks, ky)) in enumerate((by_type or {}).get(name, {}).items()):
            f, t, _ = roc_curve(ks, ky)
            ax.plot(f, t, color=f"C{i}", ls=dashes[k % len(dashes)], lw=1,
                    label=f"{name}, live vs {kind} (AUC {roc_auc(ks, ky):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("FPR (spoof accepted)")
    ax.set_ylabel("TPR (live accepted)")
    ax.set_title(title, fontsize=9, wrap=True)  # wrapped: evaluate's names the checkpoint's path
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    checkpoint.save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
