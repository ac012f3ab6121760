"""A variant of the Triton channels_last `reduce` that loads each part at once, for timing only.

This is not the package's kernel. `run_gpu.py`'s `primitive_bandwidth_channels_last` rows
time it next to the package's `_reduce_nhwc_kernel` (rows `triton:reduce_part_at_once` at the
package's 8 warps, `..._16w` at 16), so that a lent GPU can decide between them
(benchmarks/results/GPU_NOTES.md, "Tried the same session and not kept").

The variant loads each part's rows of dY and X as two 2-D tiles of `[PART * BLOCK_HW, BLOCK_C]`,
reshapes them to `[PART, BLOCK_HW, BLOCK_C]` and sums over the part axis. The package's kernel
loads the part one `[BLOCK_HW, BLOCK_C]` tile at a time. For sm_90 the variant's loads come
together (float32 at 16 warps, bfloat16 at 8) where the package's spread over 70-80 % of the
loop. Its launch plan (grid, splits, the float64 merge of split sums) is the package's.
"""
import torch
import triton
import triton.language as tl

from anrl_ext.ops import triton_backend as tb
from anrl_ext.ops.primitives import acc_dtype
from anrl_ext.ops.triton_blend import cdiv


@triton.jit
def _reduce_nhwc_part_kernel(dy_ptr, x_ptr, c_ptr, part_ptr, s0_ptr, s1_ptr, C, HW, SEG, BLOCK_HW: tl.constexpr,
                             BLOCK_C: tl.constexpr, ACC: tl.constexpr, PART: tl.constexpr, SPLIT: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    begin = tl.program_id(2) * SEG
    end = tl.minimum(HW, begin + SEG)
    center = tl.load(c_ptr + n * C + c, mask=cmask, other=0.0)
    a0 = tl.zeros([BLOCK_C], dtype=ACC)
    a1 = tl.zeros([BLOCK_C], dtype=ACC)
    part_rows = BLOCK_HW * PART
    group_rows = part_rows * PART
    rows = tl.arange(0, BLOCK_HW * PART)
    for r2 in range(begin, end, group_rows * PART):  # the package kernel's parts and groups
        f0 = tl.zeros([BLOCK_C], dtype=ACC)
        f1 = tl.zeros([BLOCK_C], dtype=ACC)
        for r1 in range(r2, tl.minimum(end, r2 + group_rows * PART), group_rows):
            q0 = tl.zeros([BLOCK_HW, BLOCK_C], dtype=ACC)
            q1 = tl.zeros([BLOCK_HW, BLOCK_C], dtype=ACC)
            for start in range(r1, tl.minimum(end, r1 + group_rows), part_rows):
                hw = start + rows
                mask = (hw < end)[:, None] & cmask[None, :]
                offs = n * HW * C + hw[:, None].to(tl.int64) * C + c[None, :]
                g = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(ACC)
                x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
                d = tl.where(mask, x - center[None, :], 0.0)
                g = tl.reshape(g, (PART, BLOCK_HW, BLOCK_C))
                q0 += tl.sum(g, 0)
                q1 += tl.sum(g * tl.reshape(d, (PART, BLOCK_HW, BLOCK_C)), 0)
            f0 += tl.sum(q0, 0)
            f1 += tl.sum(q1, 0)
        a0 += f0
        a1 += f1
    if SPLIT:
        q = part_ptr + ((n * C + c) * tl.num_programs(2) + tl.program_id(2)) * 2
        tl.store(q, a0, mask=cmask)
        tl.store(q + 1, a1, mask=cmask)
    else:
        tl.store(s0_ptr + n * C + c, a0, mask=cmask)
        tl.store(s1_ptr + n * C + c, a1, mask=cmask)


def reduce(dy: torch.Tensor, x: torch.Tensor, center: torch.Tensor, num_warps: int = tb.WARPS_CL):
    """(sum dY, sum dY * (X - center)) per (n, c) of channels_last dY and X (CUDA, or CPU tensors
    interpreted), by the variant kernel."""
    x, nhwc = tb._dense(x)
    if not nhwc:
        raise ValueError("the part-at-once reduce is the channels_last kernel's variant: give channels_last x")
    dy = tb._like(dy, nhwc)
    center = tb._coef(center, x, "center")
    n, c, h, w = x.shape
    s0 = x.new_empty((n, c), dtype=acc_dtype(x.dtype))
    s1 = torch.empty_like(s0)
    if n * c == 0:
        return s0, s1
    splits, seg = tb._nhwc_splits(n, c, h * w, x.device)
    part = s0.new_empty((n * c, splits, 2)) if splits > 1 else s0
    _reduce_nhwc_part_kernel[(n, cdiv(c, tb.BLOCK_CL), splits)](
        dy, x, center, part, s0, s1, c, h * w, seg, BLOCK_HW=tb.BLOCK_HW, BLOCK_C=tb.BLOCK_CL,
        ACC=tb._acc(x.dtype), PART=tb.PART_CL, SPLIT=splits > 1, num_warps=num_warps)
    if splits > 1:
        tb._merge_sums_kernel[(cdiv(n * c, tb.MERGE_BLOCK),)](part, s0, s1, n * c, splits, BLOCK=tb.MERGE_BLOCK,
                                                              MAX_SPLITS=tb.MAX_SPLITS_CL)
    return s0, s1
