"""Every Triton kernel compiles for an NVIDIA sm_90 GPU (PTX and cubin), here on the CPU.

The interpreter (TRITON_INTERPRET=1, triton_interp/) checks what the kernels
compute, but not that Triton's GPU compiler accepts them: a construct the
interpreter runs can still fail to lower. This compiles each kernel ahead of
time for an H100 / H200 target with Triton's own ptxas, no GPU needed: float32,
bfloat16 and float16 inputs with float32 statistics, float64 with float64, the
middle's parameters also in bfloat16 (with bfloat16 and with float64 input), and
the flag constexprs (HAS_*, USE_BATCH, UPDATE) all on and all off; the gate kernels
in each PHASE (one program, and each phase over a grid).
"""
import os

import pytest

triton = pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1",
                                reason="the interpreter replaces the compiler")

# Pointers to tensors in the input's dtype; every other pointer is a statistic,
# except the middle's parameters (alpha, affine weights, running buffers and the
# weights' gradients), read and written in the caller's dtype: compiled below
# with bfloat16 parameters too.
INPUT_POINTERS = {"x_ptr", "dy_ptr", "y_ptr", "out_ptr", "dx_ptr"}
PARAM_POINTERS = {"alpha_ptr", "bw_ptr", "bb_ptr", "iw_ptr", "ib_ptr", "rm_ptr", "rv_ptr", "dgb_ptr", "dbb_ptr",
                  "dgi_ptr", "dbi_ptr"}
# In the gate kernels bb_ptr is the gate's bias and alpha_ptr the gate's output
# (statistics); the BN bias and its gradient are bbn_ptr / dbbn_ptr.
GATE_PARAM_POINTERS = PARAM_POINTERS - {"alpha_ptr", "bb_ptr", "dbb_ptr"} | {"bbn_ptr", "dbbn_ptr"}
TILES = {"BLOCK": 128, "BLOCK_N": 32, "ROWS": 4, "BLOCK_HW": 32, "BLOCK_C": 32, "BLOCK_K": 16, "PART": 8,
         "MAX_SPLITS": 16}
DTYPES = [("fp32", "fp32"), ("bf16", "fp32"), ("fp16", "fp32"), ("fp64", "fp64")]


def kernels():
    from triton.runtime.jit import JITFunction

    from anrl_ext.ops import triton_backend, triton_blend, triton_blend_apply, triton_gate

    found = {}
    for module in (triton_backend, triton_blend, triton_blend_apply, triton_gate):
        for name, obj in vars(module).items():
            if isinstance(obj, JITFunction) and name.endswith("_kernel"):
                found[f"{module.__name__.rsplit('.', 1)[-1]}.{name}"] = obj
    return found


def launch_warps(kernel):
    """The num_warps its launcher passes (Triton's default 4 unless it says otherwise)."""
    from anrl_ext.ops import triton_backend, triton_gate

    if kernel in (triton_backend._moments_nhwc_kernel, triton_backend._reduce_nhwc_kernel):
        return triton_backend.WARPS_CL
    if kernel.__name__.startswith("_gate"):
        return triton_gate.NUM_WARPS
    return 4


def phases(kernel):
    """The PHASE values of a gate kernel (0: the whole gate in one program, then one per phase);
    (None,) for a kernel without PHASE."""
    if not any(p.name == "PHASE" for p in kernel.params):
        return (None,)
    return tuple(range(4 if kernel.__name__ == "_gate_forward_kernel" else 5))


def source(kernel, input_type, stats_type, flags, param_type=None, phase=0):
    import triton.language as tl
    from triton.compiler import ASTSource

    signature, constexprs = {}, {}
    for p in kernel.params:
        if p.is_constexpr:
            signature[p.name] = "constexpr"
            if p.name == "ACC":
                constexprs[p.name] = tl.float64 if stats_type == "fp64" else tl.float32
            elif p.name in TILES:
                constexprs[p.name] = TILES[p.name]
            elif p.name == "PHASE":
                constexprs[p.name] = phase
            else:
                constexprs[p.name] = flags
        elif p.name.endswith("_ptr"):
            params = GATE_PARAM_POINTERS if kernel.__name__.startswith("_gate") else PARAM_POINTERS
            kind = input_type if p.name in INPUT_POINTERS else param_type if param_type and p.name in params \
                else stats_type
            signature[p.name] = "*" + kind
        elif p.name.endswith(("_hi", "_lo")):
            signature[p.name] = "fp32"
        else:
            signature[p.name] = "i32"
    return ASTSource(fn=kernel, signature=signature, constexprs=constexprs)


def test_every_kernel_is_listed():
    names = set(kernels())
    assert len(names) == 16, sorted(names)  # a new kernel must show up here (and compile below)
    assert {"triton_blend_apply._blend_affine_kernel", "triton_gate._gate_backward_kernel"} <= names


@pytest.mark.parametrize("name", sorted(kernels()))
def test_kernel_compiles_for_sm90(name):
    from triton.backends.compiler import GPUTarget

    kernel = kernels()[name]
    has_inputs = any(p.name in INPUT_POINTERS for p in kernel.params)
    for input_type, stats_type in DTYPES if has_inputs else [("fp32", "fp32"), ("fp64", "fp64")]:
        for flags in (True, False):
            for phase in phases(kernel):  # each of a gate kernel's phases
                compiled = triton.compile(source(kernel, input_type, stats_type, flags, phase=phase),
                                          target=GPUTarget("cuda", 90, 32),
                                          options=dict(num_warps=launch_warps(kernel)))
                assert compiled.asm["cubin"], (name, input_type, flags, phase)
    if any(p.name in PARAM_POINTERS | GATE_PARAM_POINTERS for p in kernel.params):
        # a bfloat16 model's weights, with bfloat16 input and with float64 input (float64 statistics)
        for (input_type, stats_type), flags in [(types, flags) for types in (("bf16", "fp32"), ("fp64", "fp64"))
                                                for flags in (True, False)]:
            compiled = triton.compile(source(kernel, input_type, stats_type, flags, param_type="bf16"),
                                      target=GPUTarget("cuda", 90, 32), options=dict(num_warps=launch_warps(kernel)))
            assert compiled.asm["cubin"], (name, "bf16 parameters", input_type, flags)


def benchmark_kernels():
    """The benchmark-only kernels that run_gpu.py times next to the package's, with the warps it
    launches them at: the moments of before 2026-12-06 and the channels_last reduce variant."""
    import sys
    from pathlib import Path

    from triton.runtime.jit import JITFunction

    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    import triton_reduce_part_at_once
    import triton_welford_moments

    from anrl_ext.ops import triton_backend

    warps = {"_moments_welford_kernel": (4,), "_moments_nhwc_welford_kernel": (triton_backend.WARPS_CL,),
             "_reduce_nhwc_part_kernel": (8, 16)}
    found = {}
    for module in (triton_welford_moments, triton_reduce_part_at_once):
        for name, obj in vars(module).items():
            if isinstance(obj, JITFunction) and name.endswith("_kernel"):
                found[f"{module.__name__}.{name}"] = (obj, warps[name])
    return found


@pytest.mark.parametrize("name", sorted(benchmark_kernels()))
def test_benchmark_kernel_compiles_for_sm90(name):
    """A benchmark-only kernel that failed to compile on the lent GPU would cost its table rows."""
    from triton.backends.compiler import GPUTarget

    kernel, warps = benchmark_kernels()[name]
    for input_type, stats_type in DTYPES:
        for flags in (True, False):
            for num_warps in warps:
                compiled = triton.compile(source(kernel, input_type, stats_type, flags),
                                          target=GPUTarget("cuda", 90, 32), options=dict(num_warps=num_warps))
                assert compiled.asm["cubin"], (name, input_type, flags, num_warps)
