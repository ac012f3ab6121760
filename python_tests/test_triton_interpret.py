"""Run the Triton backend's tests in an interpreter with TRITON_INTERPRET=1.

The variable must be set before triton is first imported, so the tests run in
a subprocess rather than in this pytest process. The interpreter runs on one
core, and these tests are the suite's longest: pytest-xdist spreads them over
the cores, up to four workers.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import worker_count

HERE = Path(__file__).parent


def test_triton_backend_under_interpreter():
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1")
    for name in [k for k in env if k == "ANRL_TEST_SHARD" or k.startswith("PYTEST_XDIST")]:
        del env[name]  # all of them here, whatever share of the suite this process runs
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(worker_count()),
         str(HERE / "triton_interp")],
        cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
