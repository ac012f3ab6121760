"""`losses.png` of a training run: its loss curves from log.csv and, with --eval-every, its evaluations."""
from __future__ import annotations

import csv
import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from . import checkpoint, figures

# log.csv's loss columns (the trainer writes them in this order), as the panels name them
LOSS_TITLES = {
    "cls": "classification (cross-entropy)",
    "dep": "depth (MSE)",
    "trn": "meta-train total (L_trn)",
    "val": "meta-test total (L_val)",
    "idc": "IDC (inter-domain compatible)",
    "ics": "ICS (inter-class separable)",
}


def read_log(path: str) -> Dict[str, np.ndarray]:
    """log.csv's columns as float arrays (an empty cell, a loss the step did not compute, is nan)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return {}
    header, body = rows[0], [r for r in rows[1:] if r]
    return {name: np.array([float(r[i]) if i < len(r) and r[i] else math.nan for r in body])
            for i, name in enumerate(header)}


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to `window` values (fewer at the start), nan-aware: the curve a noisy loss is read by."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    # sums and counts of the finite values before each index: one pass, not a loop over a long run's log
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    end = np.arange(1, len(values) + 1)
    start = np.maximum(0, end - window)
    count = counts[end] - counts[start]
    return np.divide(sums[end] - sums[start], count, out=np.full(len(values), math.nan), where=count > 0)


def plot_training(log_path: str, path: str, evaluations: Sequence[dict] = (), selected: Optional[int] = None,
                  title: str = "training") -> List[str]:
    """Save the run's loss curves (each raw and its moving average, one panel per loss it logged) and, given
    `evaluations` ([{'iteration', 'metrics'}] of --eval-every), the HTER of the held-out sources and the target
    at each, the `selected` iteration marked; returns the panels' names."""
    plt = figures.pyplot()

    log = read_log(log_path)
    iters = log.get("iter", np.array([]))
    losses = [k for k in LOSS_TITLES if k in log and np.isfinite(log[k]).any()]
    panels = losses + (["evaluations"] if evaluations else [])
    if not panels:
        raise ValueError(f"{log_path}: no loss was logged")
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    window = max(1, len(iters) // 20)
    for ax, name in zip(axes.flat, panels):
        if name == "evaluations":
            _plot_evaluations(ax, evaluations, selected)
            continue
        if window > 1:
            ax.plot(iters, log[name], color="C0", alpha=0.3, lw=0.8, label="each iteration")
            ax.plot(iters, moving_average(log[name], window), color="C0", lw=1.6, label=f"mean of the last {window}")
            ax.legend(fontsize=7)
        else:  # a short run: the raw curve alone
            ax.plot(iters, log[name], color="C0", lw=1.2)
        ax.set_title(LOSS_TITLES[name], fontsize=9)
        ax.set_xlabel("iteration")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    checkpoint.save_figure_atomic(fig, path, dpi=100)
    plt.close(fig)
    return panels


def _plot_evaluations(ax, evaluations: Sequence[dict], selected: Optional[int]) -> None:
    at = [e["iteration"] for e in evaluations]
    for protocol, label in (("source_heldout", "held-out sources"), ("paper", "target (at its EER threshold)")):
        hter = [100 * e["metrics"][protocol]["hter"] if protocol in e["metrics"] else math.nan for e in evaluations]
        ax.plot(at, hter, marker="o", ms=3, label=label)
    if selected is not None:
        ax.axvline(selected, color="k", ls=":", lw=0.8, label=f"selected ({selected})")
    ax.set_title("HTER at each evaluation (%)", fontsize=9)
    ax.set_xlabel("iteration")
    ax.legend(fontsize=7)
