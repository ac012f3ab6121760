"""ANRL_TEST_SHARD (conftest.py): benchmarks/gpu_check.sh runs the GPU tests in several pytest
processes, each keeping every n-th test. Checked here on the collection of test_gpu.py: the shards
are disjoint, together they are the whole, and their sizes differ by at most one."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def collected(shard=None):
    env = {k: v for k, v in os.environ.items() if k != "ANRL_TEST_SHARD"}
    if shard is not None:
        env["ANRL_TEST_SHARD"] = shard
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "python_tests/test_gpu.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    return proc, [line for line in proc.stdout.splitlines() if "::" in line]


def test_shards_split_the_gpu_tests():
    proc, whole = collected()
    assert proc.returncode == 0 and len(whole) > 20, proc.stdout[-2000:] + proc.stderr[-2000:]
    shards = [collected(f"{i}/3")[1] for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(whole)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    # round robin: each test's parametrisations go to different shards
    assert shards[0][:2] == [whole[0], whole[3]]


def test_a_bad_shard_is_a_usage_error():
    for spec in ("3/3", "1", "a/b", "-1/2"):
        proc, _ = collected(spec)
        assert proc.returncode == 4 and "ANRL_TEST_SHARD" in proc.stderr + proc.stdout, (spec, proc.stderr)
