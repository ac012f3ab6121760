"""benchmarks/weight_averaging.py: its runs' settings, the two networks of a run, the paired report."""
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import weight_averaging  # noqa: E402


def report(auc, hter):
    return {"paper": {"auc": auc, "hter": hter}, "source": {"hter": hter + 0.1}}


def test_each_run_is_the_default_anrl_arm_with_ema():
    s = weight_averaging.settings(3, SimpleNamespace(protocol="ICM-O", iters=30, ema=0.95))
    assert s == {"protocol": "ICM-O", "seed": 3, "iters": 30, "ema": 0.95, "norm": "afnm", "meta": True}


def test_summary_pairs_the_average_with_the_last_weights_of_the_same_run(tmp_path):
    seeds = [1, 0]
    results = [(0, {"metrics": report(0.8, 0.2), "metrics_unaveraged": report(0.7, 0.3)}),
               (1, {"metrics": report(0.6, 0.5), "metrics_unaveraged": report(0.65, 0.4)})]
    values, effects = weight_averaging.summarise(results, seeds)
    assert values["AUC %"] == {"last": pytest.approx([65.0, 70.0]), "average": pytest.approx([60.0, 80.0])}
    auc = effects["AUC %"]
    assert auc["diff"] == pytest.approx([-5.0, 10.0]) and auc["better"] == 1
    hter = effects["HTER % (paper)"]
    assert hter["diff"] == pytest.approx([10.0, -10.0]) and hter["better"] == 1  # lower HTER is better
    args = SimpleNamespace(protocol="OCI-M", iters=30, ema=0.95)
    text = weight_averaging.render(values, effects, args, seeds, "python benchmarks/weight_averaging.py")
    assert "| average | " in text and "--ema 0.95" in text and "seeds where the average is better" in text
    weight_averaging.plot(values, seeds, tmp_path / "w.png", "test")
    assert (tmp_path / "w.png").stat().st_size > 1000


def test_ema_out_of_range_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        weight_averaging.main(["--ema", "1", "--seeds", "0"])
    assert exit_.value.code == 2 and "--ema must be in (0, 1), got 1.0" in capsys.readouterr().err
