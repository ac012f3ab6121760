"""benchmarks/deploy_speed.py runs to the end: nine variants that agree, one row each per batch size."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import deploy_speed  # noqa: E402


def test_every_variant_is_timed_for_every_batch(tmp_path):
    out = tmp_path / "speed.md"
    deploy_speed.main(["--batch", "1", "3", "--rounds", "1", "--threads", "1", "--out", str(out)])
    rows = [line for line in out.read_text().splitlines() if line.startswith("| 1 |") or line.startswith("| 3 |")]
    assert len(rows) == 18
    for name in ("PyTorch, fused cpu backend", "PyTorch, reference backend", "torch.export (.pt2) |", "composed layers",
                 "AOTInductor (.pt2 --aoti)", "AOTInductor, reference", "ONNX Runtime (.onnx)",
                 "torch.compile, fused cpu backend", "torch.compile, reference backend"):
        assert sum(name in r for r in rows) == 2, name
    assert all(r.endswith("x |") for r in rows) and rows[0].endswith("| 1.00x |")
