"""benchmarks/domain_gap.py: its runs' settings, the cached cross-domain scores, the per-seed gap statistics."""
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import domain_gap  # noqa: E402


def test_each_run_trains_on_one_domain_plainly():
    s = domain_gap.settings("I", 5, SimpleNamespace(iters=30))
    assert s == {"sources": "I", "target": "O", "norm": "bn", "meta": False, "iters": 30, "seed": 5}


def test_cross_domain_scores_are_kept_until_the_run_changes(tmp_path, monkeypatch):
    (tmp_path / "metrics.json").write_text("{}")
    calls = []

    def evaluate(cmd, **kwargs):
        calls.append(cmd)
        domains = cmd[cmd.index("--domains") + 1]
        out = Path(cmd[cmd.index("--out") + 1])
        out.write_text(json.dumps({d: {"auc": 0.5 + 0.1 * i} for i, d in enumerate(domains)}))
        return SimpleNamespace(returncode=0, stderr="")

    monkeypatch.setattr(domain_gap.training_runs.subprocess, "run", evaluate)
    assert domain_gap.cross_domain(tmp_path, ["C", "M"], 1) == {"C": 0.5, "M": pytest.approx(0.6)}
    assert domain_gap.cross_domain(tmp_path, ["C", "M"], 1) == {"C": 0.5, "M": pytest.approx(0.6)}
    assert len(calls) == 1 and "--checkpoint" in calls[0]
    later = (tmp_path / "cross_domain.json").stat().st_mtime + 10
    os.utime(tmp_path / "metrics.json", (later, later))  # the run was redone: score it again
    domain_gap.cross_domain(tmp_path, ["C", "M"], 1)
    assert len(calls) == 2
    monkeypatch.setattr(domain_gap.training_runs.subprocess, "run", lambda cmd, **kw: SimpleNamespace(returncode=4, stderr="bad"))
    with pytest.raises(RuntimeError, match="(?s)--domains OI.*exit 4.*bad"):
        domain_gap.cross_domain(tmp_path, ["O", "I"], 1)  # domains not in the kept file


def rows_for(seeds):
    """Fake runs: in-domain AUC 0.9 - 0.01 * seed, every cross-domain AUC 0.6 on seed 0 and 0.95 on seed 1."""
    rows = []
    for s in seeds:
        for d in domain_gap.DOMAINS:
            cross = {o: (0.6 if s == 0 else 0.95) for o in domain_gap.DOMAINS if o != d}
            rows.append((d, s, 0.9 - 0.01 * s, cross, {"code": None}))
    return rows


def test_gap_is_in_domain_minus_mean_cross_domain_by_seed(tmp_path):
    seeds = [0, 1]
    per_domain, overall = domain_gap.summarise(rows_for(seeds)[::-1], seeds)  # order of rows does not matter
    o = per_domain["O"]
    assert o["in"] == pytest.approx([90.0, 89.0]) and o["cross"]["C"] == pytest.approx([60.0, 95.0])
    assert o["gap"]["diff"] == pytest.approx([30.0, -6.0]) and o["gap"]["better"] == 1
    assert overall["diff"] == pytest.approx([30.0, -6.0]) and overall["mean_diff"] == pytest.approx(12.0)
    text = domain_gap.render(per_domain, overall, SimpleNamespace(iters=7), seeds, "cmd")
    assert "| O | 89.50 ± 0.71 | - | 77.50 ± 24.75 |" in text
    assert "| +12.00 | [" in text and "| 1 of 2 |" in text
    assert "+12.00 points" in text and "(by seed: +30.0, -6.0)" in text
    domain_gap.plot(per_domain, seeds, tmp_path / "gap.png", "test")
    assert (tmp_path / "gap.png").stat().st_size > 1000
