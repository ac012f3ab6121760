"""benchmarks/cuda_rounding_model.py: the CUDA reductions' arithmetic replayed on the CPU.

The model gives test_gpu.py's `cuda` accuracy bounds their basis until a GPU runs them, so it
must follow the kernels: the same constants, every element visited once (float64 exact), and
bounds that the kernels' arithmetic meets, tight enough that the arithmetic before the pivot
and the row parts would fail them."""
import re
import sys
from pathlib import Path

import torch
from helpers import GPU_REDUCTION_BOUNDS, LARGE_PLANES, check_reductions_on_large_planes

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import cuda_rounding_model as model  # noqa: E402


def test_model_uses_the_kernels_constants():
    source = (ROOT / "kernels" / "afnm_cuda.cu").read_text()
    constants = {k: int(v) for k, v in re.findall(r"constexpr int(?:64_t)? (k\w+) = (\d+);", source)}
    modelled = dict(kThreads=model.THREADS, kWarp=model.WARP, kRowsPerBlock=model.ROWS_PER_BLOCK,
                    kRowPart=model.ROW_PART, kRowLevels=model.ROW_LEVELS, kSplitElements=model.SPLIT_ELEMENTS,
                    kMaxNhwcSplits=model.MAX_NHWC_SPLITS)
    assert {k: constants.get(k) for k in modelled} == modelled
    # the splits as splits_of picks them
    assert "num_splits(N * ((C + kWarp - 1) / kWarp), M, kSplitElements / kWarp, kMaxNhwcSplits)" in source
    assert "num_splits(N * C, M, kSplitElements, M)" in source
    assert "const int64_t want = (4 * sm_count() + blocks - 1) / blocks;" in source
    # the merges of split planes in double (CudaReductionModel's double_merge)
    assert "Moments<double> m{0, 0, 0};" in source and "double a = 0, b = 0;" in source
    # channels_last: parts of kRowPart rows in fold_parts' tree (test_fold_parts.py checks it is _row_loop's)
    assert "fold_parts<kRowPart, kRowLevels, State>(first, end, kPartRows," in source
    # moments' walk with the next part loaded early: the same arithmetic (test_row_walk.py)
    assert "strided_moments<kRowPart, kRowLevels, kRowsPerBlock>(" in source
    assert "p0 += gi;" in source and "a0 += p0;" in source  # NCHW reduce: a pack's sums, then the thread's
    assert "static_cast<acc_t>(xp[0])" in source and "x[n * M * C + c]" in source  # the pivots modelled


def test_kernels_arithmetic_within_the_gpu_bounds():
    worst = model.modelled_errors(model.CudaReductionModel())
    bounds = GPU_REDUCTION_BOUNDS["cuda"]
    assert all(worst[k] <= bounds[k] / 1.5 for k in bounds), worst


def test_bounds_catch_the_old_arithmetic():
    """Welford at full magnitude and one float32 chain per channels_last thread (the kernels up to
    2026-12-02): the model puts the means and s1 outside the bounds."""
    worst = model.modelled_errors(model.CudaReductionModel(pivot=False, row_part=None, double_merge=False))
    bounds = GPU_REDUCTION_BOUNDS["cuda"]
    assert worst["mean"] > bounds["mean"] and worst["s1"] > bounds["s1"], worst


def test_split_planes_are_modelled():
    """The kernels' splits (`num_splits` in afnm_cuda.cu): a plane's blocks in NCHW, a (sample, 32
    channels) block's rows in channels_last, 4 blocks per SM, channels_last at most 16 splits.
    Split paths (the merge launch is modelled) and one block per plane, the longest chain per
    thread, are exact in float64 (checked inside modelled_errors) and meet the GPU bounds with room."""
    assert model.num_splits(8, 256 * 256, 132) == 16 and model.num_splits(8, 256 * 256, 1) == 1
    # 32 x 64 x 128 x 128: 2048 planes, one block each; channels_last 64 blocks, split 9 times
    assert model.splits_of(32, 64, 128 * 128, 132, nhwc=False) == 1
    assert model.splits_of(32, 64, 128 * 128, 132, nhwc=True) == 9
    assert model.splits_of(2, 4, 256 * 256, 132, nhwc=True) == 16  # 264 wanted, the cap
    bounds = GPU_REDUCTION_BOUNDS["cuda"]
    worst = model.modelled_errors(model.CudaReductionModel(splits=1))
    assert all(worst[k] <= bounds[k] / 1.5 for k in bounds), worst


def test_one_split_needs_the_third_fold_level_and_pack_sums():
    """With one split, two fold levels (the kernels of 2026-12-02's first change) leave the
    channels_last mean at ~1.45 ulps, and the NCHW reduce without a pack's own sums chains M / 256
    products per thread (s1 ~4.9e-7 at 256 x 256): both above the one-split bounds of the test above."""
    bounds = GPU_REDUCTION_BOUNDS["cuda"]
    two_levels = model.modelled_errors(model.CudaReductionModel(splits=1, row_levels=2))
    assert two_levels["mean"] > bounds["mean"] / 1.5, two_levels
    no_pack_sums = model.CudaReductionModel(splits=1, pack_sums=False)
    nchw = check_reductions_on_large_planes(no_pack_sums, LARGE_PLANES, formats=(torch.contiguous_format,))
    assert nchw["s1"] > bounds["s1"] / 1.5, nchw
