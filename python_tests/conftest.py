import os

import pytest
import torch

import anrl_ext

# The Triton tests need TRITON_INTERPRET=1 before triton is imported; they run
# in their own interpreter (see test_triton_interpret.py).
collect_ignore_glob = [] if os.environ.get("TRITON_INTERPRET") == "1" else ["triton_interp/*"]

FUSED_CPU_BACKENDS = [b for b in anrl_ext.available_backends("cpu") if b != "reference"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def fused_backends():
    return FUSED_CPU_BACKENDS
