"""Model selection on held-out source subjects (training-domain validation): the trainer keeps
the network of its best periodic evaluation in best.pt. The target domain never takes part."""
from __future__ import annotations

import os
from typing import Optional

import torch

from . import checkpoint
from .data.lists import DataError

BEST_FILE = "best.pt"
CRITERION = "source_heldout: lowest HTER, then highest AUC; a tie goes to the later evaluation"


def at_least_as_good(report: dict, kept: Optional[dict]) -> bool:
    """Whether `report` (Trainer.evaluate's) is no worse than the kept record on the held-out
    source subjects: lower HTER, then higher AUC. A tie counts as good: the later model has
    trained longer on the same evidence."""
    if kept is None:
        return True
    new, old = report["source_heldout"], kept["metrics"]["source_heldout"]
    return (new["hter"], -new["auc"]) <= (old["hter"], -old["auc"])


def check_same_heldout(state: Optional[dict], heldout: str, where: str) -> None:
    """DataError if a resumed run's earlier evaluations (`state`: its selection state) were scored
    on other held-out source videos than `heldout` (a fingerprint): picks across them would not
    compare. Checkpoints older than the fingerprint are not checked."""
    if state and state["evaluations"] and state.get("heldout", heldout) != heldout:
        raise DataError(f"--resume {where}: the held-out source videos are not those its "
                        f"{len(state['evaluations'])} evaluation(s) were scored on, so the data or the options "
                        "that choose them changed since (data prepared again, an edited list or subjects.txt, "
                        "--heldout-subject-every, or --seed on the synthetic data); resume with the data and "
                        "options it had (the run's config.yaml), or start a new run")


class BestOnSourceHeldout:
    """Every evaluation's metrics so far, and the best one's network weights mirrored to
    `<out>/best.pt`.

    state_dict() goes into the run's checkpoint.pt, so that a resumed run picks from its own
    history: on construction from it best.pt is rewritten, or removed when there is no pick
    (a file left by an earlier run, or by iterations after the checkpoint that the resumed
    run does again, would not match)."""

    def __init__(self, out: str, config: dict, state: Optional[dict] = None, heldout: str = ""):
        self.path = os.path.join(out, BEST_FILE)
        self.config, self.heldout = config, heldout  # heldout: data.build.fingerprint of the scored set
        self.record = state["best"] if state else None  # {'iteration', 'metrics', 'model'}
        self.evaluations = list(state["evaluations"]) if state else []  # [{'iteration', 'metrics'}]
        if self.record is not None:
            self._write()
        elif os.path.exists(self.path):
            os.unlink(self.path)

    def state_dict(self) -> dict:
        return {"best": self.record, "evaluations": self.evaluations, "heldout": self.heldout}

    def offer(self, iteration: int, report: dict, model: torch.nn.Module) -> bool:
        """Record this evaluation; keep (and write) its network if it is at least as good as the
        kept one."""
        self.evaluations.append({"iteration": iteration, "metrics": report})
        if not at_least_as_good(report, self.record):
            return False
        weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        self.record = {"iteration": iteration, "metrics": report, "model": weights}
        self._write()
        return True

    def summary(self) -> Optional[dict]:
        """The kept evaluation for metrics.json (no weights), or None before the first."""
        if self.record is None:
            return None
        return {"iteration": self.record["iteration"], "criterion": CRITERION, "checkpoint": self.path,
                "metrics": self.record["metrics"]}

    def _write(self) -> None:
        # A checkpoint anrl_ext.evaluate / export / predict read as they read checkpoint.pt.
        checkpoint.save_atomic({"model": self.record["model"], "config": self.config,
                                "iteration": self.record["iteration"], "selected_by": CRITERION,
                                "metrics": self.record["metrics"]}, self.path)
