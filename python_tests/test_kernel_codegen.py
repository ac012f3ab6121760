"""What the GPU compilers make of the kernels for sm_90, checked without a GPU
(benchmarks/kernel_report.py): no register spills, 16-byte loads on the
float32 fast paths, no integer division in the Triton plane kernels.

Speed is the lent-GPU benchmark's job; these catch the code-generation
regressions that cost speed on any GPU and that no CPU test would see.
"""
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import kernel_report  # noqa: E402

pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1",
                                reason="the interpreter replaces the compiler")
NVCC = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")


@pytest.fixture(scope="module")
def cuda_kernels(tmp_path_factory):
    if not os.path.exists(NVCC) or shutil.which("c++filt") is None:
        pytest.skip("needs nvcc (CUDA_HOME) and c++filt")
    obj = tmp_path_factory.mktemp("sm90") / "afnm_cuda.o"
    kernel_report.compile_cuda(kernel_report.ROOT / "kernels" / "afnm_cuda.cu", 90, obj)
    return kernel_report.cuda_kernels(obj)


def test_no_cuda_kernel_spills(cuda_kernels):
    assert len(cuda_kernels) > 40, sorted(cuda_kernels)
    spilled = {name: k["local"] for name, k in cuda_kernels.items() if k["local"] or k["stack"]}
    assert not spilled


@pytest.mark.parametrize("kernel", ["moments_nchw_kernel", "reduce_nchw_kernel", "affine_kernel", "affine2_kernel"])
def test_cuda_float_paths_load_16_bytes(cuda_kernels, kernel):
    k = cuda_kernels[f"{kernel}<float, float, 4>"]
    assert k["ldg128"] >= 1, k["ldg128"]
    if kernel.startswith("affine"):
        assert k["stg128"] >= 1


def test_cuda_moments_keeps_two_loads_in_flight(cuda_kernels):
    """The main loop issues both 16-byte loads before it uses either."""
    sass = cuda_kernels["moments_nchw_kernel<float, float, 4>"]["sass"]
    loads = [i for i, line in enumerate(sass) if "LDG.E.128" in line]
    assert any(b == a + 1 for a, b in zip(loads, loads[1:])), loads


@pytest.mark.parametrize("scalar", ["float", "BFloat16", "Half"])
def test_cuda_nhwc_reductions_fit_their_blocks_per_sm(cuda_kernels, scalar):
    """The channels_last reductions' launch bounds: reduce 40 registers at most (kNhwcBlocksPerSm, 6
    blocks of 256 threads share an SM's 64K registers; without the bound ptxas took 48), moments 48
    (kNhwcMomentsBlocksPerSm, 5 blocks: it holds the next part's rows too)."""
    assert cuda_kernels[f"reduce_nhwc_kernel<{scalar}, float>"]["regs"] <= 65536 // (6 * 256)
    assert cuda_kernels[f"moments_nhwc_kernel<{scalar}, float, true>"]["regs"] <= 65536 // (5 * 256) // 8 * 8
    # the walk until 2026-12-06, kept for side-by-side timings, with its bound of then
    assert cuda_kernels[f"moments_nhwc_kernel<{scalar}, float, false>"]["regs"] <= 65536 // (6 * 256)


@pytest.mark.parametrize("scalar", ["float", "BFloat16"])
def test_cuda_nhwc_moments_loads_the_next_part_before_the_updates(cuda_kernels, scalar):
    """strided_moments (moments.h): every load of the main loop (the next part's rows) is issued
    before the part's first Welford update (its mean times 1/2, a constant once the part is whole).
    Before 2026-12-06 the part's own loads were spread among its updates (the `false` variant, whose
    smallest loop with loads is its ragged tail's: no constant update there, and the check fails)."""
    loop = kernel_report.main_loop(cuda_kernels[f"moments_nhwc_kernel<{scalar}, float, true>"]["sass"])
    body = loop["body"]
    loads = [i for i, t in enumerate(body) if "LDG" in t]
    updates = [i for i, t in enumerate(body) if t.startswith("FFMA") and ", 0.5, " in t]
    assert len(loads) >= 8 and updates, loop
    assert max(loads) < min(updates), (loads, updates)


@pytest.fixture(scope="module")
def triton_report():
    return kernel_report.triton_kernels(90)


def test_triton_plane_kernels_vectorise_without_spills(triton_report):
    assert len(triton_report) == 20
    for name, k in triton_report.items():
        assert k["spill"] == 0, (name, k)
        # 16-byte loads, where a tile gives a thread 16 bytes: the channels_last reduce's 8 warps
        # give a thread 4 values of each [32, 32] tile, in bfloat16 8 bytes (ld.global.v2); the
        # moments load a part of 8 tiles as one, 16 bytes
        wide = "ld.global.v2" if name == "_reduce_nhwc_kernel bf16" else "ld.global.v4"
        assert any(op.startswith(wide) for op in k["loads"]), (name, k)
        # the fold divides once per program for its channel, the channels_last maps for their tile
        assert k["int_div"] <= (1 if "_blend_" in name or "_affine" in name and "_nhwc" in name else 0), (name, k)


def test_triton_moments_loops_load_parts_at_once(triton_report):
    """The moments' main loops (NCHW and channels_last) load a part of each lane's values at once
    and reduce it without a division per value: at most 10 sm_90 instructions per float32 value
    loaded (a Welford step per value took 19-20, before 2026-12-06), every load in the first quarter
    of the loop (47 % and 77 % with the loads of one tile at a time), in at most 96 registers (a
    part loaded as a 3-D tile took 248 and shared-memory shuffles under Triton 3.6)."""
    for name in ("_moments_kernel fp32", "_moments_nhwc_kernel fp32"):
        loop = triton_report[name]["loop"]
        assert loop["instructions"] / (loop["bytes"] / 4) <= 10, (name, loop)
        assert loop["load_span"] <= 0.25, (name, loop)
        assert triton_report[name]["regs"] <= 96, (name, triton_report[name]["regs"])


def test_triton_fold_programs_share_the_channel_work(triton_report):
    """The fold kernels (the one-call op's maps with the (N, C) middle inside) map ROWS planes of a
    channel a program, FOLD_TILE values (32 a thread at 4 warps), so the channel's work (the batch
    walk, its sums, the weights: about 450 instructions) is shared: at most 35 sm_90 instructions
    per value at 32 x 64 x 128 x 128 float32 (one plane block a program, before 2026-12-06: 64
    forward, 66 backward)."""
    from anrl_ext.ops import triton_blend_apply

    per_thread = triton_blend_apply.FOLD_TILE // (32 * 4)
    for name in ("_blend_affine_kernel fp32", "_blend_affine2_kernel fp32"):
        assert triton_report[name]["instructions"] / per_thread <= 35, (name, triton_report[name]["instructions"])
