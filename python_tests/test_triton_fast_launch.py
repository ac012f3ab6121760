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
    way), six for the gated AFNM layer and for channels_last (the middle on its own); the large gated
    middle in one program each way, or 3 + 4 launches per phase."""
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
    assert got["gated middle 64x512 D=32, one program"] == ["_gate_forward_kernel", "_gate_backward_kernel"]
    assert got["gated middle 64x512 D=32, per phase"] == ["_gate_forward_kernel"] * 3 + ["_gate_backward_kernel"] * 4


def test_launch_key_in_cpp_equals_the_python_key():
    """anrl_ext._C.launch_key (the key every cached launch computes) builds the tuple triton_launch's Python
    `_python_key` builds, entry for entry, and raises KeyError where it does: tensors of several dtypes, a
    Parameter, views 4 and 8 bytes off 16-byte alignment, ints (0, 1, 16, negative, past 64 bits), bools,
    floats and None."""
    import enum

    import torch

    from anrl_ext.ops import native, triton_launch

    if not native.is_built():
        pytest.skip("anrl_ext._C not built")
    assert triton_launch._key is native._C.launch_key  # the one the launches use
    x = torch.randn(40)
    args = (x, x[1:], x[2:], x[4:], x.bfloat16(), x.double()[1:], torch.nn.Parameter(torch.ones(3)),
            torch.empty(0, dtype=torch.int32), 0, 1, 16, -7, 2 ** 70, True, False, 0.5, float("nan"), None)
    got, want = native._C.launch_key(args), triton_launch._python_key(args)
    assert got == want and hash(got) == hash(want)
    assert [type(e) for e in got] == [type(e) for e in want]
    assert got[1][1] == x[1:].data_ptr() & 15 == (x.data_ptr() + 4) & 15  # the view's own address
    assert native._C.launch_key(()) == ()

    class Small(enum.IntEnum):
        ONE = 1

    for other in ("text", 1j, Small.ONE, [1], torch.float32):
        with pytest.raises(KeyError):
            triton_launch._python_key((x, other))
        with pytest.raises(KeyError):
            native._C.launch_key((x, other))
