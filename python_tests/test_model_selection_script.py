"""benchmarks/model_selection.py: its runs' settings, the three choices of a run, the paired report."""
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import model_selection  # noqa: E402


def report(auc, hter, source_hter, heldout_auc):
    return {"paper": {"auc": auc, "hter": hter}, "source": {"hter": source_hter},
            "source_heldout": {"auc": heldout_auc, "hter": 0.1}}


def run(target_aucs, selected_at):
    """A metrics.json evaluated at iterations 10, 20, 30 (the last is the final one)."""
    every = [{"iteration": 10 * (i + 1), "metrics": report(a, 1 - a, 1.1 - a, 0.5 + 0.1 * i)}
             for i, a in enumerate(target_aucs)]
    picked = next(e for e in every if e["iteration"] == selected_at)
    return {"iterations": 30, "metrics": every[-1]["metrics"], "evaluations": every,
            "selected": {"iteration": selected_at, "metrics": picked["metrics"]}}


def test_each_run_is_the_default_anrl_arm_evaluated_periodically():
    s = model_selection.settings(4, SimpleNamespace(protocol="ICM-O", iters=30, every=10, heldout_videos=0))
    assert s == {"protocol": "ICM-O", "seed": 4, "iters": 30, "eval_every": 10, "norm": "afnm", "meta": True}
    larger = model_selection.settings(4, SimpleNamespace(protocol="ICM-O", iters=30, every=10, heldout_videos=48))
    assert larger == {**s, "heldout_videos_per_class": 48}


def test_choices_are_last_selected_and_the_earliest_best_on_the_target():
    picks = model_selection.choices(run([0.7, 0.9, 0.9], selected_at=10))
    assert {c: it for c, (it, _) in picks.items()} == {"last": 30, "selected": 10, "target oracle": 20}
    assert picks["selected"][1]["paper"]["auc"] == 0.7 and picks["last"][1]["paper"]["auc"] == 0.9


def test_summary_pairs_by_seed_and_renders(tmp_path):
    seeds = [2, 0]
    results = [(0, run([0.6, 0.8, 0.7], selected_at=20)), (2, run([0.9, 0.5, 0.6], selected_at=30))]
    values, effects, iterations = model_selection.summarise(results, seeds)
    auc = values["AUC %"]
    assert auc["last"] == pytest.approx([60.0, 70.0]) and auc["selected"] == pytest.approx([60.0, 80.0])
    assert auc["target oracle"] == pytest.approx([90.0, 80.0])
    assert iterations == {"last": [30, 30], "selected": [30, 20], "target oracle": [10, 20]}
    gain = effects["AUC %"]["selected - last"]
    assert gain["diff"] == pytest.approx([0.0, 10.0]) and gain["better"] == 1 and gain["ties"] == 1
    flattery = effects["HTER % (paper)"]["target oracle - selected"]
    assert flattery["diff"] == pytest.approx([-30.0, 0.0]) and flattery["better"] == 1  # lower HTER is better
    args = SimpleNamespace(protocol="OCI-M", iters=30, every=10, heldout_videos=0)
    text = model_selection.render(values, effects, iterations, args, seeds, "cmd")
    assert "held-out source subjects (12 videos per class and source domain;" in text  # the trainer's default
    assert "(48 videos per class" in model_selection.render(values, effects, iterations,
                                                            SimpleNamespace(**{**vars(args), "heldout_videos": 48}),
                                                            seeds, "cmd")
    assert "| selected | " in text and "| 30, 20 | 60.0, 80.0 |" in text
    assert "| AUC % | +5.00 | [" in text and "1 of 2 (1 tied)" in text
    model_selection.plot(results, seeds, tmp_path / "sel.png", "test")
    assert (tmp_path / "sel.png").stat().st_size > 1000
