"""The benchmark cases compute the same thing for every implementation (so the timed
numbers compare like with like)."""
import sys
from pathlib import Path

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
