"""benchmarks/bn_vs_afnm.py: its paired statistics, and that it reuses finished runs."""
import json
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import bn_vs_afnm  # noqa: E402
import training_runs  # noqa: E402


def metrics(auc, hter, source_hter):
    return {"metrics": {"paper": {"auc": auc, "hter": hter}, "source": {"hter": source_hter}}}


def test_paired_statistics_by_seed():
    bn = [60.0, 55.0, 70.0, 40.0, 52.0]
    afnm = [71.0, 54.0, 78.0, 49.0, 66.0]
    s = bn_vs_afnm.paired(bn, afnm)
    diff = [11.0, -1.0, 8.0, 9.0, 14.0]
    assert s["diff"] == diff and s["better"] == 4 and s["ties"] == 0
    assert bn_vs_afnm.paired(bn, afnm, higher_is_better=False)["better"] == 1  # e.g. HTER
    assert s["mean_diff"] == pytest.approx(8.2)
    # the 95 % interval is the one-sample t interval of the differences
    lo, hi = stats.t.interval(0.95, 4, loc=8.2, scale=statistics.stdev(diff) / 5 ** 0.5)
    assert s["ci95"] == pytest.approx((lo, hi))
    # exact two-sided signed-rank p for ranks {1-} and {2..5+}: 2 * 2 / 32
    assert s["wilcoxon_p"] == pytest.approx(0.125)


def test_summary_pairs_runs_by_seed_and_renders(tmp_path):
    seeds = [3, 1]
    results = [("afnm", 1, metrics(0.8, 0.2, 0.3)), ("bn", 3, metrics(0.5, 0.4, 0.45)),
               ("bn", 1, metrics(0.6, 0.3, 0.35)), ("afnm", 3, metrics(0.7, 0.25, 0.4))]
    summary = bn_vs_afnm.summarise(results, seeds)
    auc = summary["AUC %"]
    assert auc["bn"] == pytest.approx([50.0, 60.0]) and auc["afnm"] == pytest.approx([70.0, 80.0])
    assert summary["HTER % (paper)"]["diff"] == pytest.approx([-15.0, -10.0])
    args = SimpleNamespace(protocol="OCI-M", iters=10)
    text = bn_vs_afnm.render(summary, args, seeds, "python benchmarks/bn_vs_afnm.py --iters 10")
    assert "| AUC % | +20.00 |" in text and "| HTER % (paper) | -12.50 |" in text
    assert text.count("2 of 2") == 3  # afnm better on both seeds: higher AUC, lower HTER
    bn_vs_afnm.plot(summary, seeds, tmp_path / "pairs.png", "test")
    assert (tmp_path / "pairs.png").stat().st_size > 1000
    # the table over protocols: one row each, in order, means and paired differences
    worse = bn_vs_afnm.summarise([("afnm", 1, metrics(0.5, 0.3, 0.3)), ("bn", 3, metrics(0.9, 0.1, 0.1)),
                                  ("bn", 1, metrics(0.7, 0.2, 0.2)), ("afnm", 3, metrics(0.8, 0.2, 0.2))], seeds)
    overview = bn_vs_afnm.render_overview({"OCI-M": summary, "ICM-O": worse}, args, seeds, "cmd")
    rows = [line for line in overview.splitlines() if line.startswith("| OCI-M") or line.startswith("| ICM-O")]
    assert len(rows) == 2
    assert rows[0].startswith("| OCI-M | 55.0 / 75.0 | +20.0 [") and rows[0].endswith("| 2 of 2 |")
    assert rows[1].startswith("| ICM-O | 80.0 / 65.0 | -15.0 [") and rows[1].endswith("| 0 of 2 |")
    assert "| 15.0 / 25.0 | +10.0 [" in rows[1]  # HTER: bn mean, afnm mean, difference
    bn_vs_afnm.plot_overview({"OCI-M": summary, "ICM-O": worse}, seeds, tmp_path / "all.png", "test")
    assert (tmp_path / "all.png").stat().st_size > 1000


def test_finished_runs_are_reused_and_mismatched_ones_rerun(tmp_path, monkeypatch):
    args = SimpleNamespace(protocol="OCI-M", iters=10, runs=str(tmp_path), fresh=False)
    out = tmp_path / "afnm_seed2"
    out.mkdir()
    stored = dict(metrics(0.9, 0.1, 0.1), config=bn_vs_afnm.settings("afnm", 2, args))
    (out / "metrics.json").write_text(json.dumps(stored))
    launched = []

    def failing_run(cmd, **kwargs):
        launched.append(cmd)
        return SimpleNamespace(returncode=3, stderr="training failed here")

    monkeypatch.setattr(training_runs.subprocess, "run", failing_run)
    assert bn_vs_afnm.run_one("afnm", 2, args, 1)[2] == stored and launched == []
    # other settings (here more iterations) start the run again; its failure names the command
    args.iters = 20
    with pytest.raises(RuntimeError, match=r"(?s)--iters 20.*exit 3.*training failed here"):
        bn_vs_afnm.run_one("afnm", 2, args, 1)
    assert len(launched) == 1
