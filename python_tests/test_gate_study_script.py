"""benchmarks/gate_study.py: the half arm's flags, the gate-movement summary, the report."""
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import bn_vs_afnm  # noqa: E402
import gate_study  # noqa: E402
from test_ablation_script import launched_command, metrics  # noqa: E402


def test_half_arm_trains_the_fixed_blend_plainly(monkeypatch, tmp_path):
    assert "--norm half --no-meta" in launched_command("half", monkeypatch, tmp_path)


def report(channel_means, frame_std=0.0):
    """A gate report with layers 'a' (2 channels) and 'b' (1 channel): channel_means[domain][class][layer]."""
    return {"layers": [{"name": "a", "kind": "AFNM", "channels": 2, "hidden_units": 3, "live_hidden_units": 2},
                       {"name": "b", "kind": "AFNM", "channels": 1, "hidden_units": 1, "live_hidden_units": 0}],
            "domains": {d: {cls: {layer: {"channel_means": means, "frame_std": frame_std, "mean": 0, "frames": 1}
                                  for layer, means in layers.items()} for cls, layers in by_class.items()}
                        for d, by_class in channel_means.items()}}


def test_movement_of_the_gates():
    stats = report({"O": {"live": {"a": [0.6, 0.5], "b": [0.5]}, "spoof": {"a": [0.4, 0.5], "b": [0.5]}},
                    "M": {"live": {"a": [0.7, 0.3], "b": [0.5]}, "spoof": {"a": [0.7, 0.3], "b": [0.5]}}},
                   frame_std=0.01)
    m = gate_study.movement(stats)
    # channel means over the four (domain, class) groups: a = [0.6, 0.4], b = [0.5]
    assert m["mean_dev"] == pytest.approx((0.1 + 0.1 + 0.0) / 3)
    assert m["max_dev"] == pytest.approx(0.1) and m["frame_sd"] == pytest.approx(0.01)
    # per domain: O a = [0.5, 0.5], M a = [0.7, 0.3] -> largest gap 0.2; b never moved
    assert m["domain_gap"] == pytest.approx(0.2)
    assert m["still_layers"] == 1 and m["layers"] == 2 and (m["live_units"], m["hidden_units"]) == (2, 4)


def test_report_pairs_the_arms_by_seed(tmp_path):
    seeds = [0, 1, 2]
    auc = {"half": [0.80, 0.70, 0.90], "afnm_plain": [0.82, 0.69, 0.95]}
    results = [(arm, s, metrics(auc[arm][i], 0.2, 0.3)) for arm in auc for i, s in enumerate(seeds)]
    v = bn_vs_afnm.values(results, gate_study.ARMS, seeds)
    effect = bn_vs_afnm.paired(v["AUC %"]["half"], v["AUC %"]["afnm_plain"])
    assert effect["diff"] == pytest.approx([2, -1, 5]) and effect["better"] == 2
    moves = [{"mean_dev": 0.01 * k, "max_dev": 0.1, "frame_sd": 1e-4, "domain_gap": 2e-3, "still_layers": k,
              "layers": 10, "live_units": 10 + k, "hidden_units": 22} for k in (1, 2, 3)]
    text = gate_study.render({"OCI-M": (v, effect, moves)}, SimpleNamespace(iters=10), seeds, "cmd")
    row = next(line for line in text.splitlines() if line.startswith("| OCI-M |"))
    assert row.startswith("| OCI-M | 80.0 | 82.0 | +2.0 [") and "| 2 of 3 |" in row
    assert "| 0.0200 (0.0100-0.0300) |" in row and row.endswith("| 2 (1-3) of 10 | 12 (11-13) of 22 |")
    assert "All protocols pooled (3 pairs): AUC difference afnm_plain - half +2.00" in text
    gate_study.plot({"OCI-M": (v, effect, moves)}, seeds, tmp_path / "g.png", "test")
    assert (tmp_path / "g.png").stat().st_size > 1000


def test_gate_movement_of_a_run_is_cached(tmp_path):
    from test_gate_report import saved_trainer

    saved_trainer(tmp_path)  # a fresh AFNM network: every alpha is 0.5
    m = gate_study.gate_movement(tmp_path)
    assert m["mean_dev"] < 1e-6 and m["still_layers"] == m["layers"] == 10 and m["hidden_units"] == 10  # smoke width: one unit a gate
    stamp = (tmp_path / "gates.json").stat().st_mtime_ns
    assert gate_study.gate_movement(tmp_path) == m and (tmp_path / "gates.json").stat().st_mtime_ns == stamp
