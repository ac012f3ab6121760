import os

import pytest
import torch

import anrl_ext

# The Triton tests need TRITON_INTERPRET=1 before triton is imported; they run
# in their own interpreter (see test_triton_interpret.py).
collect_ignore_glob = [] if os.environ.get("TRITON_INTERPRET") == "1" else ["triton_interp/*"]

FUSED_CPU_BACKENDS = [b for b in anrl_ext.available_backends("cpu") if b != "reference"]


def shard_of(spec: str):
    """(i, n) of ANRL_TEST_SHARD=i/n, 0 <= i < n; a UsageError naming the variable otherwise."""
    try:
        i, n = (int(part) for part in spec.split("/"))
    except ValueError:
        i, n = -1, 0
    if not 0 <= i < n:
        raise pytest.UsageError(f"ANRL_TEST_SHARD={spec!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return i, n


def pytest_collection_modifyitems(config, items):
    """ANRL_TEST_SHARD=i/n keeps every n-th collected test from the i-th: n processes run the whole
    selection between them (benchmarks/gpu_check.sh runs the GPU tests so, where pytest-xdist may be
    missing). Round robin in collection order spreads each test's parametrisations across the shards."""
    spec = os.environ.get("ANRL_TEST_SHARD")
    if not spec:
        return
    i, n = shard_of(spec)
    keep = [item for k, item in enumerate(items) if k % n == i]
    config.hook.pytest_deselected(items=[item for k, item in enumerate(items) if k % n != i])
    items[:] = keep


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def fused_backends():
    return FUSED_CPU_BACKENDS
