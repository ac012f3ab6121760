"""The benchmark cases compute the same thing for every implementation (so the timed
numbers compare like with like)."""
import csv
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from cases import IMPLS, make_case, step  # noqa: E402

from conftest import FUSED_CPU_BACKENDS  # noqa: E402


def test_fused_and_reference_cases_agree():
    case = make_case((4, 6, 5, 7), torch.float64)
    ref = step(IMPLS["reference"](None), case, "forward_backward")
    for backend in FUSED_CPU_BACKENDS:
        got = step(IMPLS["fused"](backend), case, "forward_backward")
        for a, b in zip(got, ref):
            torch.testing.assert_close(a, b)


def test_train_iteration_formats_runs_every_setting(capsys):
    """benchmarks/train_iteration.py --formats (tiny): one time per trainer setting, all printed."""
    import train_iteration

    times = train_iteration.main(["--formats", "--iters", "1", "--img-size", "32", "--width", "0.125",
                                  "--batch-size", "2"])
    assert list(times) == list(train_iteration.FORMATS) and all(t > 0 for t in times.values())
    out = capsys.readouterr().out
    assert all(name in out for name in train_iteration.FORMATS)


def test_run_cpu_table_in_bfloat16(tmp_path, capsys):
    """benchmarks/run_cpu.py --dtype bfloat16 on a small shape: the three implementations timed in
    bfloat16, one CSV row each, the roofline taken over bfloat16's bytes."""
    import run_cpu

    rows = run_cpu.main(["--dtype", "bfloat16", "--repeats", "1", "--shape", "2x3x4x5",
                         "--out", str(tmp_path / "cpu.csv")])
    assert [r["impl"] for r in rows] == ["fused", "reference", "compiled_reference"]
    with open(tmp_path / "cpu.csv") as f:
        written = list(csv.DictReader(f))
    assert [r["dtype"] for r in written] == ["bfloat16"] * 3 and all(float(r["forward_backward_ms"]) > 0
                                                                     for r in written)
    # saved for backward: the fused op keeps x (2 bytes a value) and (N, C) statistics
    assert float(written[0]["saved_for_backward_MB"]) * 2**20 < 2 * 2 * 3 * 4 * 5 * 2
    assert "page_faults_per_fwd_bwd" in written[0]
    assert "bfloat16" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        run_cpu.main(["--shape", "2x3x4"])
