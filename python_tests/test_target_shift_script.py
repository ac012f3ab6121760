"""benchmarks/target_shift.py: which style properties it moves and to what, and that its scoring of a run's
network reproduces the run's own target AUC, changes with the style and leaves the styles as they were."""
import dataclasses
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import target_shift  # noqa: E402
from anrl_ext import config, train  # noqa: E402
from anrl_ext.data import synthetic  # noqa: E402


def test_properties_outside_the_sources_range_move_to_the_nearest_value_inside():
    style = synthetic.STYLES
    moved = target_shift.moved_into_sources("C", "MI")
    # C is noisier (0.05) than M (0.02) and I (0.03), darker at the low end, with fewer replays (0.3)
    assert moved["noise"] == max(style["M"].noise, style["I"].noise) == 0.03
    assert moved["light"] == (0.7, 0.9)  # the range's low end clipped to the sources' lowest, the high end kept
    assert moved["replay_share"] == 0.5
    # entry by entry into the sources' box: C's blue gain 1.15 down to M's 1.05, an entry inside kept
    assert moved["color"][2][2] == 1.05 and moved["color"][1] == style["C"].color[1]
    # inside the sources' range: not moved (gamma 1.15 in [1.0, 1.25], blur 1.4 in [0.9, 1.8], ...)
    assert {"gamma", "blur", "down", "jpeg", "spoof_strength"}.isdisjoint(moved)
    # O is sharper and cleaner than both sources: a range entirely above theirs collapses to their top
    moved_o = target_shift.moved_into_sources("O", "MI")
    assert moved_o["jpeg"] == (85, 85) and moved_o["noise"] == 0.02 and moved_o["blur"] == 0.9
    names = list(target_shift.variants("C", "MI"))
    assert names[0] == target_shift.AS_IS and names[-3:] == ["all of these", "M's whole style", "I's whole style"]
    assert target_shift.describe("C", {"noise": 0.03}) == "noise 0.05 → 0.03"
    assert target_shift.describe("C", {"color": moved["color"]}).startswith("color: 6 of 9 entries")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A smoke-size bn_vs_afnm-style run folder of the afnm arm on MI-C: (runs folder, metrics.json)."""
    runs = tmp_path_factory.mktemp("runs")
    out = runs / "afnm_seed0"
    train.run(config.load(["--preset", "smoke", "--protocol", "MI-C", "--out", str(out)]))
    return runs, json.loads((out / "metrics.json").read_text())


def test_scoring_reproduces_the_runs_auc_and_restores_the_style(smoke_run):
    runs, result = smoke_run
    before = synthetic.STYLES["C"]
    changes = {target_shift.AS_IS: {}, "I's whole style": dataclasses.asdict(synthetic.STYLES["I"])}
    aucs = target_shift.score_runs([("afnm", 0, result)], "C", changes, str(runs))
    assert aucs[target_shift.AS_IS]["afnm"] == [100 * result["metrics"]["paper"]["auc"]]
    assert aucs["I's whole style"]["afnm"] != aucs[target_shift.AS_IS]["afnm"]  # other frames, other scores
    assert synthetic.STYLES["C"] is before
    # a run whose recorded AUC is not what its network scores stops the study, naming the checkpoint
    tampered = json.loads(json.dumps(result))
    tampered["metrics"]["paper"]["auc"] += 0.01
    with pytest.raises(SystemExit, match=r"afnm_seed0/checkpoint\.pt: the target as it is scores"):
        target_shift.score_runs([("afnm", 0, tampered)], "C", changes, str(runs))
    with pytest.raises(SystemExit, match=r"afnm_seed1/checkpoint\.pt is missing"):
        target_shift.score_runs([("afnm", 1, result)], "C", changes, str(runs))


def test_report_pairs_by_seed_against_the_target_as_it_is(tmp_path):
    from types import SimpleNamespace

    changes = {target_shift.AS_IS: {}, "noise": {"noise": 0.03}}
    aucs = {target_shift.AS_IS: {"bn": [50.0, 60.0], "afnm": [55.0, 70.0]},
            "noise": {"bn": [52.0, 62.0], "afnm": [65.0, 80.0]}}
    text = target_shift.render(aucs, "C", changes, SimpleNamespace(protocol="MI-C", iters=10), [0, 1], "cmd")
    rows = [r for r in text.splitlines() if r.startswith("| as is") or r.startswith("| noise")]
    assert rows[0].startswith("| as is |  | 55.00 ± 7.07 | 62.50 ± 10.61 | +7.5 [") and rows[0].endswith("|  |  |")
    # afnm - bn: +13 and +18; each arm against the target as it is: bn +2 on both seeds, afnm +10
    assert "| noise | noise 0.05 → 0.03 | 57.00 ± 7.07 | 72.50 ± 10.61 | +15.5 [" in rows[1]
    assert rows[1].endswith("| 2 of 2 | +2.0 [+2.0, +2.0] | +10.0 [+10.0, +10.0] |")
    target_shift.plot(aucs, [0, 1], tmp_path / "shift.png", "test")
    assert (tmp_path / "shift.png").stat().st_size > 1000
