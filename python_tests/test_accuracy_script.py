"""benchmarks/accuracy.py: one row per backend and layout, every error small and finite."""
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import accuracy  # noqa: E402


def test_table_has_every_backend_and_layout(tmp_path):
    out = tmp_path / "accuracy.md"
    text = accuracy.main(["--shape", "3", "4", "9", "11", "--backends", "reference", "cpu", "--out", str(out)])
    assert out.read_text() == text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| reference") or line.startswith("| cpu")]
    assert [r[:2] for r in rows] == [["| reference", "NCHW"], ["| reference", "channels_last"],
                                     ["| cpu", "NCHW"], ["| cpu", "channels_last"]]
    for r in rows:
        errs = [float(v.strip(" |")) for v in r[2:]]
        assert len(errs) == len(accuracy.OUTPUTS)
        assert all(math.isfinite(e) and 0 <= e < 1e-4 for e in errs), r
