"""benchmarks/compile_speed.py on a short run: every form of the layer timed, the composed form really the
composed program."""
import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_form_is_timed(tmp_path):
    out = tmp_path / "compile.csv"
    proc = subprocess.run([sys.executable, "benchmarks/compile_speed.py", "--rounds", "2", "--shape", "2x8x5x7",
                           "--shape", "3x8x4x6", "--compiler", "aot_eager", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TORCH_LOGS": "graph_code"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["shape"], r["impl"]) for r in rows] == [
        (shape, impl) for shape in ("2x8x5x7", "3x8x4x6")
        for impl in ("eager", "compiled", "compiled_composed", "compiled_reference")]
    assert all(float(r["forward_backward_ms"]) > 0 for r in rows)
    assert all(float(r["vs_eager"]) == 1.0 for r in rows if r["impl"] == "eager")
    # Dynamo's graphs: the one op for `compiled`, moments / affine for `compiled_composed`
    log = proc.stdout + proc.stderr
    assert "torch.ops.anrl_ext.gate_blend_apply.default" in log and "torch.ops.anrl_ext.moments.default" in log
