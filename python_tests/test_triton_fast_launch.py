"""triton_launch's cached launches pass what kernel[grid](...) passes, and the Triton backend launches
the kernels it should: checked with the launches recorded, not run (benchmarks/recording_driver.py),
in processes of their own with the interpreter off. Kernels compile for sm_90 with the ptxas of the
Triton wheel, so no GPU is needed."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[1]


def run_compiled(args):
    """python args... with the interpreter off (the recording driver needs compiled kernels)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_cached_launches_pass_what_kernel_grid_passes():
    """Every case's launches through the cache against kernel[grid](...): the same compiled kernel,
    grid and arguments, and (VERIFY) the specialisation JITFunction.run would choose. Fails when the
    cache key leaves out a pointer's alignment or an integer's value (checked by mutation)."""
    summary = json.loads(run_compiled(["python_tests/fast_launch_check.py"]).splitlines()[-1])
    assert summary["cases"] == 14
    assert summary["launches_compared"] >= 60
    # the second pass over the cases runs from the cache alone: every compared launch a hit
    assert summary["later_misses"] == 0 and summary["hits"] == summary["launches_compared"]
    assert summary["uncached_checked"]  # a grid function and a tensor keyword take kernel[grid](...)


def test_triton_host_time_script_counts_launches(tmp_path):
    """benchmarks/triton_host_time.py runs, and the backend launches what its design says: four
    kernels per forward + backward of the op and of the fixed-blend layers (moments and the fold each
    way), six for the gated AFNM layer and for channels_last (the middle on its own)."""
    out = tmp_path / "launches.json"
    run_compiled(["benchmarks/triton_host_time.py", "--calls", "5", "--json", str(out)])
    got = {case: r["launches"] for case, r in json.loads(out.read_text()).items()}
    fold = ["_moments_kernel", "_blend_affine_kernel", "_reduce_kernel", "_blend_affine2_kernel"]
    assert got["op forward (no grad)"] == fold[:2]
    assert got["op forward + backward"] == fold
    assert got["BN layer forward + backward"] == fold
    assert got["AFNM layer forward + backward"] == ["_moments_kernel", "_gate_forward_kernel", "_affine_kernel",
                                                    "_reduce_kernel", "_gate_backward_kernel", "_affine2_kernel"]
    assert got["op forward + backward, channels_last"] == [
        "_moments_nhwc_kernel", "_blend_forward_kernel", "_affine_nhwc_kernel", "_reduce_nhwc_kernel",
        "_blend_backward_kernel", "_affine2_nhwc_kernel"]
    for case in ("moments", "reduce", "fold_forward", "fold_backward"):
        assert len(got[case]) == 1
