"""benchmarks/ablation.py: the arms' training flags, the step-by-step paired effects, the report."""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import ablation  # noqa: E402
import bn_vs_afnm  # noqa: E402
import training_runs  # noqa: E402


def metrics(auc, hter, source_hter):
    return {"metrics": {"paper": {"auc": auc, "hter": hter}, "source": {"hter": source_hter}}}


def launched_command(arm, monkeypatch, tmp_path):
    """The command run_one starts for `arm` (the launch is made to fail so nothing trains)."""
    seen = []

    def fake_run(cmd, **kwargs):
        seen.append(cmd)
        return SimpleNamespace(returncode=1, stderr="stopped by the test")

    monkeypatch.setattr(training_runs.subprocess, "run", fake_run)
    args = SimpleNamespace(protocol="OCM-I", iters=5, runs=str(tmp_path), fresh=False)
    with pytest.raises(RuntimeError, match="stopped by the test"):
        bn_vs_afnm.run_one(arm, 0, args, 1)
    return " ".join(seen[0])


def test_each_arm_trains_with_its_own_flags(monkeypatch, tmp_path):
    plain = launched_command("afnm_plain", monkeypatch, tmp_path)
    assert "--norm afnm --no-meta" in plain
    meta = launched_command("afnm_meta", monkeypatch, tmp_path)
    assert "--norm afnm" in meta and "--lambda-idc 0.0 --lambda-ics 0.0" in meta and "--no-meta" not in meta
    full = launched_command("afnm", monkeypatch, tmp_path)
    assert "--norm afnm --meta" in full and "--lambda" not in full  # the full method: the default lambdas
    assert "--norm bn" in launched_command("bn", monkeypatch, tmp_path)


def test_full_run_is_not_reused_for_the_arm_without_idc_ics(monkeypatch, tmp_path):
    args = SimpleNamespace(protocol="OCI-M", iters=10, runs=str(tmp_path), fresh=False)
    # a finished full-method run stored under the afnm_meta name (e.g. by hand) has the wrong lambdas
    (tmp_path / "afnm_meta_seed0").mkdir()
    full = dict(metrics(0.9, 0.1, 0.1), config=bn_vs_afnm.settings("afnm", 0, args))
    (tmp_path / "afnm_meta_seed0" / "metrics.json").write_text(json.dumps(full))
    monkeypatch.setattr(training_runs.subprocess, "run", lambda cmd, **kw: SimpleNamespace(returncode=2, stderr="x"))
    with pytest.raises(RuntimeError, match="lambda-idc 0.0"):
        bn_vs_afnm.run_one("afnm_meta", 0, args, 1)


def test_step_effects_compare_each_arm_with_the_one_before(tmp_path):
    seeds = [0, 1, 2]
    auc = {"bn": [0.50, 0.60, 0.55], "afnm_plain": [0.60, 0.62, 0.65], "afnm_meta": [0.70, 0.61, 0.75],
           "afnm": [0.72, 0.65, 0.75]}
    results = [(arm, s, metrics(auc[arm][i], 0.5 - auc[arm][i] / 2, 0.3)) for arm in auc for i, s in enumerate(seeds)]
    v = bn_vs_afnm.values(results, ablation.STEPS, seeds)
    effects = ablation.step_effects(v)
    steps = effects["AUC %"]
    assert [s["diff"] for s in steps] == [pytest.approx([10, 2, 10]), pytest.approx([10, -1, 10]),
                                          pytest.approx([2, 4, 0]), pytest.approx([12, 3, 10])]
    assert [s["better"] for s in steps] == [3, 2, 2, 3] and steps[2]["ties"] == 1
    # HTER falls where AUC rises: the same seeds count as helped
    assert [s["better"] for s in effects["HTER % (paper)"]] == [3, 2, 2, 3]
    text = ablation.render({"OCI-M": (v, effects)}, SimpleNamespace(iters=10), seeds, "cmd")
    row = next(line for line in text.splitlines() if line.startswith("| OCI-M |"))
    assert row.startswith("| OCI-M | 55.0 | 62.3 | 68.7 | 70.7 | +7.3 [")
    assert "| afnm_meta → afnm | AUC % | +2.00 | [" in text and "| 2 of 3 (1 tied) |" in text
    assert "| afnm_plain → afnm | AUC % | +8.33 | [" in text and row.endswith(", p = 0.250 |")  # exact p, 3 seeds
    ablation.plot({"OCI-M": (v, effects), "ICM-O": (v, effects)}, seeds, tmp_path / "abl.png", "test")
    assert (tmp_path / "abl.png").stat().st_size > 1000


def test_one_seed_has_no_interval_or_p():
    s = bn_vs_afnm.paired([60.0], [70.0])
    assert s["mean_diff"] == 10.0 and s["better"] == 1
    assert all(x != x for x in (*s["ci95"], s["wilcoxon_p"]))  # NaN
    assert bn_vs_afnm.effect_cells(s) == ["+10.00", "n/a (one seed)", "1 of 1", "n/a"]
