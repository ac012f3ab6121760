"""pytest-benchmark suite: fused cpu backend vs eager and compiled reference.

    python -m pytest benchmarks/test_bench_afnm_cpu.py --benchmark-only \
        --benchmark-group-by=param:shape,param:mode

Ratios for docs/performance.md come from benchmarks/run_cpu.py, which times all three
side by side in one process and adds the memory roofline.
"""
import pytest
import torch

from cases import IMPLS, SHAPES, make_case, step

import anrl_ext

pytestmark = pytest.mark.skipif("cpu" not in anrl_ext.available_backends("cpu"), reason="no cpu backend")


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("mode", ["forward", "backward", "forward_backward"])
@pytest.mark.parametrize("impl", ["fused", "reference", "compiled_reference"])
def test_afnm_cpu(benchmark, shape, mode, impl):
    fn = IMPLS[impl]("cpu")
    case = make_case(shape)
    x, alpha, params, running, dy = case
    if mode == "backward":
        def setup():
            y = fn(x, alpha, params, running)
            return (y,), {}

        benchmark.pedantic(lambda y: torch.autograd.grad(y, [x, alpha, *params], dy), setup=setup,
                           rounds=8, warmup_rounds=2)
    else:
        step(fn, case, mode)  # warm up / compile
        benchmark(step, fn, case, mode)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_afnm_cpu_low_precision(benchmark, dtype, impl):
    """Forward + backward at the first shape with x, alpha and the weights in bfloat16 / float16
    (`python benchmarks/run_cpu.py --dtype bfloat16` for the whole table)."""
    fn = IMPLS[impl]("cpu")
    case = make_case(SHAPES[0], dtype)
    step(fn, case, "forward_backward")
    benchmark(step, fn, case, "forward_backward")
