"""The Triton `moments` kernels as they were until 2026-12-06: a Welford step per value.

Kept for one purpose: `run_gpu.py`'s `primitive_bandwidth` rows time them side by side
with the package's kernels (`triton:moments_welford`), so that a lent GPU shows in one
run what loading a part of each lane's values at once, and reducing it in two passes over
registers, changed (anrl_ext/ops/triton_backend.py). Same launch plan (grid, splits, the
float64 merge of split states) as the package's; not used by the package.
"""
import torch
import triton
import triton.language as tl

from anrl_ext.ops import triton_backend as tb
from anrl_ext.ops.primitives import acc_dtype
from anrl_ext.ops.triton_blend import cdiv, plane_block


@triton.jit
def _welford_step(count, mean, m2, x, mask):
    """Each lane's Welford update with its value of x where mask is set."""
    count += mask.to(x.dtype)
    delta = tl.where(mask, x - mean, 0.0)
    mean += delta / tl.maximum(count, 1.0)
    m2 += delta * tl.where(mask, x - mean, 0.0)
    return count, mean, m2


@triton.jit
def _moments_welford_kernel(x_ptr, mean_ptr, var_ptr, M, BLOCK: tl.constexpr, ACC: tl.constexpr):
    p = tl.program_id(0).to(tl.int64)
    base = x_ptr + p * M
    pivot = tl.load(base).to(ACC)
    count = tl.zeros([BLOCK], dtype=ACC)
    mean = tl.zeros([BLOCK], dtype=ACC)
    m2 = tl.zeros([BLOCK], dtype=ACC)
    for start in range(0, M, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < M
        x = tl.load(base + offs, mask=mask, other=0.0).to(ACC) - pivot
        count, mean, m2 = _welford_step(count, mean, m2, x, mask)
    # Merge the lanes: the count-weighted mean of lane means, then M2 plus the
    # spread of the lane means around it (exact, and stable: no E[x^2] - E[x]^2).
    mean_all = tl.sum(count * mean, 0) / M
    d = mean - mean_all
    tl.store(mean_ptr + p, pivot + mean_all)
    tl.store(var_ptr + p, (tl.sum(m2, 0) + tl.sum(count * d * d, 0)) / M)


@triton.jit
def _moments_nhwc_welford_kernel(x_ptr, part_ptr, mean_ptr, var_ptr, C, HW, SEG, BLOCK_HW: tl.constexpr,
                                 BLOCK_C: tl.constexpr, ACC: tl.constexpr, PART: tl.constexpr, SPLIT: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    begin = tl.program_id(2) * SEG  # this split's rows (see _nhwc_splits)
    end = tl.minimum(HW, begin + SEG)
    base = x_ptr + n * HW * C
    pivot = tl.load(base + c, mask=cmask, other=0.0).to(ACC)  # the sample's first row (see _moments_welford_kernel)
    count = tl.zeros([BLOCK_HW, BLOCK_C], dtype=ACC)
    mean = tl.zeros([BLOCK_HW, BLOCK_C], dtype=ACC)
    m2 = tl.zeros([BLOCK_HW, BLOCK_C], dtype=ACC)
    # Each lane sees HW / BLOCK_HW rows (512 at 128 x 128): Welford over parts of
    # PART tiles, Chan-merged into the lane's state, keeps its float32 chains short.
    for start in range(begin, end, BLOCK_HW * PART):
        pc = tl.zeros([BLOCK_HW, BLOCK_C], dtype=ACC)
        pm = tl.zeros([BLOCK_HW, BLOCK_C], dtype=ACC)
        pq = tl.zeros([BLOCK_HW, BLOCK_C], dtype=ACC)
        for j in tl.static_range(PART):
            hw = start + j * BLOCK_HW + tl.arange(0, BLOCK_HW)
            mask = (hw < end)[:, None] & cmask[None, :]
            x = tl.load(base + hw[:, None].to(tl.int64) * C + c[None, :], mask=mask, other=0.0).to(ACC)
            pc, pm, pq = _welford_step(pc, pm, pq, x - pivot[None, :], mask)
        total = count + pc
        wb = pc / tl.maximum(total, 1.0)
        delta = pm - mean
        mean += delta * wb
        m2 += pq + delta * delta * count * wb
        count = total
    rows = tl.sum(count, 0)  # the same lane merge as _moments_welford_kernel
    mean_all = tl.sum(count * mean, 0) / tl.maximum(rows, 1.0)  # rows = 0 only in masked channels
    d = mean - mean_all[None, :]
    m2_all = tl.sum(m2, 0) + tl.sum(count * d * d, 0)
    if SPLIT:  # this split's state, relative to the pivot; _merge_moments_kernel finishes
        q = part_ptr + ((n * C + c) * tl.num_programs(2) + tl.program_id(2)) * 3
        tl.store(q, mean_all, mask=cmask)
        tl.store(q + 1, m2_all, mask=cmask)
        tl.store(q + 2, rows, mask=cmask)
    else:
        tl.store(mean_ptr + n * C + c, pivot + mean_all, mask=cmask)
        tl.store(var_ptr + n * C + c, m2_all / HW, mask=cmask)


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(n, c) mean and biased variance of a 4-D CUDA (or interpreted CPU) tensor, NCHW or
    channels_last, by the Welford kernels."""
    x, channels_last = tb._dense(x)
    n, c, h, w = x.shape
    mean = x.new_empty((n, c), dtype=acc_dtype(x.dtype))
    var = torch.empty_like(mean)
    if n * c == 0:
        return mean, var
    if channels_last:
        splits, seg = tb._nhwc_splits(n, c, h * w, x.device)
        part = mean.new_empty((n * c, splits, 3)) if splits > 1 else mean
        _moments_nhwc_welford_kernel[(n, cdiv(c, tb.BLOCK_CL), splits)](
            x, part, mean, var, c, h * w, seg, BLOCK_HW=tb.BLOCK_HW, BLOCK_C=tb.BLOCK_CL, ACC=tb._acc(x.dtype),
            PART=tb.PART_CL, SPLIT=splits > 1, num_warps=tb.WARPS_CL)
        if splits > 1:
            tb._merge_moments_kernel[(cdiv(n * c, tb.MERGE_BLOCK),)](
                part, x, mean, var, n * c, c, h * w, splits, BLOCK=tb.MERGE_BLOCK, MAX_SPLITS=tb.MAX_SPLITS_CL)
    else:
        _moments_welford_kernel[(n * c,)](x, mean, var, h * w, BLOCK=plane_block(h * w), ACC=tb._acc(x.dtype))
    return mean, var
