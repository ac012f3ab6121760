"""benchmarks/attack_types.py: its per-type scores are evaluate's (attack_metrics at the EER threshold), its
rows are target_shift's variants but the single properties, and its report's cells are the runs' means and
paired differences."""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import attack_types  # noqa: E402
import target_shift  # noqa: E402
from anrl_ext import config, evaluate, train  # noqa: E402


def test_rows_are_the_target_as_is_all_moved_and_each_sources_style():
    assert list(attack_types.studied_variants("C", "MI")) == [target_shift.AS_IS, "all of these", "M's whole style",
                                                             "I's whole style"]
    assert attack_types.studied_variants("C", "MI")["all of these"] == target_shift.moved_into_sources("C", "MI")


def test_per_type_scores_are_evaluates(tmp_path):
    """On a smoke run of MI-C: the target as it is scored per attack type gives evaluate's report on C, in %."""
    out = tmp_path / "afnm_seed0"
    train.run(config.load(["--preset", "smoke", "--protocol", "MI-C", "--out", str(out)]))
    result = json.loads((out / "metrics.json").read_text())
    scores = target_shift.score_runs([("afnm", 0, result)], "C", {target_shift.AS_IS: {}}, str(tmp_path),
                                     measure=attack_types.by_attack_type)
    mine, = scores[target_shift.AS_IS]["afnm"]
    theirs = evaluate.main(["--checkpoint", str(out / "checkpoint.pt"), "--domains", "C"])["C"]["attacks"]
    assert mine["count"] == theirs["count"] and sum(mine["count"].values()) == 3  # the smoke target's spoof videos
    for key in ("auc", "apcer"):
        assert mine[key] == {k: pytest.approx(100 * v, abs=1e-9) for k, v in theirs[key].items()}
    assert (mine["bpcer"], mine["acer"]) == (pytest.approx(100 * theirs["bpcer"]), pytest.approx(100 * theirs["acer"]))


def run(auc_print, auc_replay, count_print, apcer=(10.0, 20.0), bpcer=30.0):
    return {"auc": {"print": auc_print, "replay": auc_replay}, "apcer": {"print": apcer[0], "replay": apcer[1]},
            "count": {"print": count_print, "replay": 24 - count_print}, "bpcer": bpcer,
            "acer": (max(apcer) + bpcer) / 2}


def test_report_cells(tmp_path):
    changes = {target_shift.AS_IS: {}, "all of these": {"noise": 0.03}}
    scores = {target_shift.AS_IS: {"bn": [run(50.0, 60.0, 19), run(60.0, 70.0, 19)],
                                   "afnm": [run(40.0, 80.0, 19), run(50.0, 90.0, 19)]},
              "all of these": {"bn": [run(50.0, 60.0, 10), run(60.0, 70.0, 14)],
                               "afnm": [{**run(70.0, 0, 24), "auc": {"print": 70.0}, "apcer": {"print": 10.0},
                                         "count": {"print": 24}}, run(80.0, 90.0, 14)]}}
    text = attack_types.render(scores, "C", changes, SimpleNamespace(protocol="MI-C", iters=10), [0, 1], "cmd")
    lines = text.splitlines()
    assert "| target rendered with | arm | videos print / replay | AUC print | AUC replay | APCER print | " \
           "APCER replay | BPCER | ACER |" in lines
    assert "| as is | afnm | 19 / 5 | 45.00 ± 7.07 | 85.00 ± 7.07 | 10.00 ± 0.00 | 20.00 ± 0.00 | 30.00 ± 0.00 | " \
           "25.00 ± 0.00 |" in lines
    # the video counts differ between runs (each seed draws its own data): their range; a run without
    # replays is left out of the replay cells, which say over how many runs
    assert any(line.startswith("| all of these | bn | 10-14 / 10-14 |") for line in lines)
    assert any(line.startswith("| all of these | afnm | 14-24 / 0-10 | 75.00 ± 7.07 | 90.00 ± 0.00 (1 runs) |")
               for line in lines)
    # paired differences afnm - bn: prints -10 on both seeds as is; replays +20 on both
    assert "| as is | -10.0 [-10.0, -10.0], 0 of 2 | +20.0 [+20.0, +20.0], 2 of 2 |" in lines
    assert "| all of these | +20.0 [+20.0, +20.0], 2 of 2 | n/a |" in lines
    attack_types.plot(scores, [0, 1], tmp_path / "types.png", "test")
    assert (tmp_path / "types.png").stat().st_size > 1000
