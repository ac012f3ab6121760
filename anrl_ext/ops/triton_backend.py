"""Triton kernels of the four primitives (backend="triton").

One program per (n, c) plane for the reductions (a Welford state per lane,
Chan-merged across lanes at the end; never E[x^2] - E[x]^2), a 2-D grid (plane, block) for the
elementwise maps. Registered with `torch.library.triton_op` so torch.compile
can trace them; autograd composes from the same kernels as on every backend.
On CPU tensors they run under TRITON_INTERPRET=1 (set before importing
triton), which is how CI checks them. channels_last inputs are read in place
by NHWC variants of the kernels (tiles along C); other strided inputs are
made NCHW contiguous first.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton
from triton.runtime.jit import JITFunction

from . import triton_apply_ops, triton_blend, triton_blend_apply, triton_gate
from .triton_blend import BLOCK, as_dtype, cdiv, plane_block
from .triton_launch import fast
from .primitives import Primitives, acc_dtype, output_memory_format, register_autograd

NS = "anrl_ext_triton"


def _acc(dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


# The loops keep per-lane partial results (a Welford state, or sums) and reduce
# across lanes once at the end: a block-wide reduction inside the loop would
# serialise every chunk on a barrier. Moments are taken relative to a pivot (the
# plane's first value), so the lane means and their merge are of the size of the
# spread and the mean is rounded once, when the pivot is added back (lane means
# at the plane mean's magnitude put float32 means up to 2.3 ulps off).
#
# The moments kernels load a part of PART values per lane as one tile (its loads
# issued together, in flight at once) and take the part's mean and M2 in two passes
# over registers, then Chan-merge it into the lane's state: one division per lane
# and part. A Welford step per value (until 2026-12-06) divided once per value and
# chained every update on the last: about 20 sm_90 instructions per float32 value
# against 8, with one or two 16-byte loads in flight per thread where the part has
# all of its own (python benchmarks/kernel_report.py). Whole parts need no
# masks (every lane has PART values); the one partial part at the end is masked.
@triton.jit
def _merge_equal_counts(ma, qa, na, mb, qb, nb):
    """Chan's merge of lane states (mean, M2) of na and nb > 0 values, float32 counts that are the
    same on every lane: one weight for the tile, in the states' dtype."""
    na = na.to(ma.dtype)
    wb = nb.to(ma.dtype) / (na + nb.to(ma.dtype))
    delta = mb - ma
    return ma + delta * wb, qa + qb + delta * delta * (na * wb)


@triton.jit
def _merge_whole_part(mean, m2, done, x, PART: tl.constexpr):
    """Each lane's (mean, M2) of `done` values with part x ([PART, lanes...], pivot-relative,
    every value valid) merged in."""
    pm = tl.sum(x, 0) * (1.0 / PART)
    d = x - tl.expand_dims(pm, 0)
    return _merge_equal_counts(mean, m2, done, pm, tl.sum(d * d, 0), tl.full([], PART, tl.float32))


@triton.jit
def _merge_masked_part(count, mean, m2, x, mask):
    """Each lane's (count, mean, M2) with the values of part x ([PART, lanes...], pivot-relative,
    zero where mask is off) merged in."""
    pc = tl.sum(mask.to(x.dtype), 0)
    pm = tl.sum(x, 0) / tl.maximum(pc, 1.0)
    d = tl.where(mask, x - tl.expand_dims(pm, 0), 0.0)
    total = count + pc
    wb = pc / tl.maximum(total, 1.0)
    delta = pm - mean
    return total, mean + delta * wb, m2 + tl.sum(d * d, 0) + delta * delta * count * wb


@triton.jit
def _moments_kernel(x_ptr, mean_ptr, var_ptr, M, BLOCK: tl.constexpr, ACC: tl.constexpr, PART: tl.constexpr):
    p = tl.program_id(0).to(tl.int64)
    base = x_ptr + p * M
    pivot = tl.load(base).to(ACC)
    mean = tl.zeros([BLOCK], dtype=ACC)
    m2 = tl.zeros([BLOCK], dtype=ACC)
    idx = tl.arange(0, PART)[:, None] * BLOCK + tl.arange(0, BLOCK)[None, :]  # lane: idx % BLOCK
    step = BLOCK * PART
    whole = M // step * step
    done = 0.0  # values in each lane's state: whole parts, the same on every lane
    for start in range(0, whole, step):
        x = tl.load(base + start + idx).to(ACC) - pivot
        mean, m2 = _merge_whole_part(mean, m2, done, x, PART)
        done += PART
    count = tl.zeros([BLOCK], dtype=ACC) + done
    if whole < M:
        offs = whole + idx
        mask = offs < M
        x = tl.where(mask, tl.load(base + offs, mask=mask, other=0.0).to(ACC) - pivot, 0.0)
        count, mean, m2 = _merge_masked_part(count, mean, m2, x, mask)
    # Merge the lanes: the count-weighted mean of lane means, then M2 plus the
    # spread of the lane means around it (exact, and stable: no E[x^2] - E[x]^2).
    mean_all = tl.sum(count * mean, 0) / M
    d = mean - mean_all
    tl.store(mean_ptr + p, pivot + mean_all)
    tl.store(var_ptr + p, (tl.sum(m2, 0) + tl.sum(count * d * d, 0)) / M)


# Values per lane in a part of the NCHW moments (at most): 2 x 1024 lanes of a
# 128 x 128 plane are 16 float32 values a thread of 4 warps, four 16-byte loads in
# flight; 48 registers for sm_90 (4 values: 91, the SM holding half the programs,
# for 6.4 instructions a value against 8.1).
PART_NCHW = 2


def plane_parts(m: int, block: int) -> int:
    """PART of an NCHW moments launch: PART_NCHW, or fewer (a power of two) for planes of
    fewer than PART_NCHW * block values, whose one part would be mostly masked."""
    return min(PART_NCHW, 1 << (cdiv(m, block) - 1).bit_length())


@triton.jit
def _reduce_kernel(dy_ptr, x_ptr, c_ptr, s0_ptr, s1_ptr, M, BLOCK: tl.constexpr, ACC: tl.constexpr):
    p = tl.program_id(0).to(tl.int64)
    center = tl.load(c_ptr + p)
    a0 = tl.zeros([BLOCK], dtype=ACC)
    a1 = tl.zeros([BLOCK], dtype=ACC)
    for start in range(0, M, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < M
        g = tl.load(dy_ptr + p * M + offs, mask=mask, other=0.0).to(ACC)
        x = tl.load(x_ptr + p * M + offs, mask=mask, other=0.0).to(ACC)
        a0 += g
        a1 += g * tl.where(mask, x - center, 0.0)
    tl.store(s0_ptr + p, tl.sum(a0, 0))
    tl.store(s1_ptr + p, tl.sum(a1, 0))


@triton.jit
def _affine_kernel(x_ptr, m_ptr, s_ptr, t_ptr, y_ptr, M, BLOCK: tl.constexpr):
    p = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    m = tl.load(m_ptr + p)
    s = tl.load(s_ptr + p)
    t = tl.load(t_ptr + p)
    x = tl.load(x_ptr + p * M + offs, mask=mask, other=0.0).to(m.dtype)
    y = (x - m) * s + t
    tl.store(y_ptr + p * M + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _affine2_kernel(dy_ptr, x_ptr, m_ptr, a_ptr, b_ptr, c_ptr, out_ptr, M, BLOCK: tl.constexpr):
    p = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    m = tl.load(m_ptr + p)
    a = tl.load(a_ptr + p)
    b = tl.load(b_ptr + p)
    c = tl.load(c_ptr + p)
    g = tl.load(dy_ptr + p * M + offs, mask=mask, other=0.0).to(m.dtype)
    x = tl.load(x_ptr + p * M + offs, mask=mask, other=0.0).to(m.dtype)
    out = a * g + (x - m) * b + c
    tl.store(out_ptr + p * M + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


# channels_last (NHWC in memory): one program per (sample, block of channels)
# walks H*W in tiles of [BLOCK_HW, BLOCK_C], loads contiguous along C; the maps
# take one tile each (see map_tiles). The reductions sum in parts of PART_CL
# tiles (see _moments_nhwc_kernel).
BLOCK_HW, BLOCK_CL, PART_CL = 32, 32, 8
# The reductions run 8 warps a program: 4 per-lane values of each [32, 32] tile,
# not 8. At 4 warps the Triton 3.6 of the GPU image spilled 96 bytes of the
# float32 reduce (48 in bfloat16) and 3.8 took 104 registers; at 8, 48-80
# registers and no spills in either (python benchmarks/kernel_report.py).
WARPS_CL = 8


@triton.jit
def _moments_nhwc_kernel(x_ptr, part_ptr, mean_ptr, var_ptr, C, HW, SEG, BLOCK_HW: tl.constexpr,
                         BLOCK_C: tl.constexpr, ACC: tl.constexpr, PART: tl.constexpr, SPLIT: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    begin = tl.program_id(2) * SEG  # this split's rows (see _nhwc_splits)
    end = tl.minimum(HW, begin + SEG)
    base = x_ptr + n * HW * C
    pivot = tl.load(base + c, mask=cmask, other=0.0).to(ACC)  # the sample's first row (see _moments_kernel)
    mean = tl.zeros([BLOCK_HW, BLOCK_C], dtype=ACC)
    m2 = tl.zeros([BLOCK_HW, BLOCK_C], dtype=ACC)
    # A part is PART tiles of [BLOCK_HW, BLOCK_C], each lane's PART rows BLOCK_HW apart (lane:
    # row % BLOCK_HW and channel): its rows load as one [PART * BLOCK_HW, BLOCK_C] tile, reshaped
    # to [PART, BLOCK_HW, BLOCK_C] (a thread holds its lanes' PART rows, the sums over them stay
    # in the thread; loaded as 3-D, Triton 3.6 spread the part axis over threads and warps:
    # 248 registers and shared-memory shuffles for sm_90). Whole parts and a masked last one as
    # in _moments_kernel. Channels past C load zeros and are not stored.
    # Whole parts are merged PART to a group, the groups into the lane's state: float32 chains of
    # PART and HW / (BLOCK_HW * PART^2) merges (8 and 32 on a 256 x 256 plane in one program),
    # where one chain of 256 merges took the variance on the GPU test's planes 1.3x as far off.
    part_rows = tl.arange(0, BLOCK_HW * PART)
    step = BLOCK_HW * PART
    whole = begin + (end - begin) // step * step
    done = 0.0  # values in each lane's state: whole groups, the same on every lane
    for first in range(begin, whole, step * PART):
        group_mean = tl.zeros([BLOCK_HW, BLOCK_C], dtype=ACC)
        group_m2 = tl.zeros([BLOCK_HW, BLOCK_C], dtype=ACC)
        in_group = 0.0
        for start in range(first, tl.minimum(whole, first + step * PART), step):
            hw = start + part_rows
            x = tl.load(base + hw[:, None].to(tl.int64) * C + c[None, :], mask=cmask[None, :], other=0.0).to(ACC)
            x = tl.reshape(x - pivot[None, :], (PART, BLOCK_HW, BLOCK_C))
            group_mean, group_m2 = _merge_whole_part(group_mean, group_m2, in_group, x, PART)
            in_group += PART
        mean, m2 = _merge_equal_counts(mean, m2, done, group_mean, group_m2, in_group)
        done += in_group
    count = tl.zeros([BLOCK_HW, BLOCK_C], dtype=ACC) + done
    if whole < end:
        hw = whole + part_rows
        mask = (hw < end)[:, None] & cmask[None, :]
        x = tl.where(mask, tl.load(base + hw[:, None].to(tl.int64) * C + c[None, :], mask=mask, other=0.0).to(ACC)
                     - pivot[None, :], 0.0)
        count, mean, m2 = _merge_masked_part(count, mean, m2, tl.reshape(x, (PART, BLOCK_HW, BLOCK_C)),
                                             tl.reshape(mask, (PART, BLOCK_HW, BLOCK_C)))
    rows = tl.sum(count, 0)  # the same lane merge as _moments_kernel
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


@triton.jit
def _reduce_nhwc_kernel(dy_ptr, x_ptr, c_ptr, part_ptr, s0_ptr, s1_ptr, C, HW, SEG, BLOCK_HW: tl.constexpr,
                        BLOCK_C: tl.constexpr, ACC: tl.constexpr, PART: tl.constexpr, SPLIT: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    begin = tl.program_id(2) * SEG  # this split's rows (see _nhwc_splits)
    end = tl.minimum(HW, begin + SEG)
    center = tl.load(c_ptr + n * C + c, mask=cmask, other=0.0)
    # Each lane's rows in parts of PART tiles (as in _moments_nhwc_kernel), PART
    # parts to a group, a group's lanes summed per channel (a tree), groups
    # PART at a time, then into the channel's sums: float32 chains of PART,
    # PART, log2(BLOCK_HW), PART and HW / (BLOCK_HW * PART^3); at 256 x 256:
    # 8, 8, 5, 8 and 4, where one running sum per lane chained 256 parts.
    # Only the part and the group are per-lane tiles: a third tile-sized sum
    # took 134 registers a thread for sm_90, this 104 (float32, 4 warps, triton
    # 3.8; 72 with one running sum). At WARPS_CL warps: 64-80, no spills.
    a0 = tl.zeros([BLOCK_C], dtype=ACC)
    a1 = tl.zeros([BLOCK_C], dtype=ACC)
    part_rows = BLOCK_HW * PART
    group_rows = part_rows * PART
    for r2 in range(begin, end, group_rows * PART):
        f0 = tl.zeros([BLOCK_C], dtype=ACC)
        f1 = tl.zeros([BLOCK_C], dtype=ACC)
        for r1 in range(r2, tl.minimum(end, r2 + group_rows * PART), group_rows):
            q0 = tl.zeros([BLOCK_HW, BLOCK_C], dtype=ACC)
            q1 = tl.zeros([BLOCK_HW, BLOCK_C], dtype=ACC)
            for start in range(r1, tl.minimum(end, r1 + group_rows), part_rows):
                p0 = tl.zeros([BLOCK_HW, BLOCK_C], dtype=ACC)
                p1 = tl.zeros([BLOCK_HW, BLOCK_C], dtype=ACC)
                for j in tl.static_range(PART):
                    hw = start + j * BLOCK_HW + tl.arange(0, BLOCK_HW)
                    mask = (hw < end)[:, None] & cmask[None, :]
                    offs = n * HW * C + hw[:, None].to(tl.int64) * C + c[None, :]
                    g = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(ACC)
                    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
                    p0 += g
                    p1 += g * tl.where(mask, x - center[None, :], 0.0)
                q0 += p0
                q1 += p1
            f0 += tl.sum(q0, 0)
            f1 += tl.sum(q1, 0)
        a0 += f0
        a1 += f1
    if SPLIT:  # this split's sums; _merge_sums_kernel adds the splits in order
        q = part_ptr + ((n * C + c) * tl.num_programs(2) + tl.program_id(2)) * 2
        tl.store(q, a0, mask=cmask)
        tl.store(q + 1, a1, mask=cmask)
    else:
        tl.store(s0_ptr + n * C + c, a0, mask=cmask)
        tl.store(s1_ptr + n * C + c, a1, mask=cmask)


# Merges of a split plane's states, one row per (n, c): the splits as a tile
# joined in a tree (tl.reduce), the same order every run (no atomics), in
# float64 (a few flops per plane). In float32 the merge's roundings took the
# interpreted channels_last variance on the GPU test's planes to 1.8e-7 (a
# chain) or 2.5e-7 (a tree) against a bound of 2e-7; in float64, 1.2e-7.
@triton.jit
def _chan_merge(ma, qa, ca, mb, qb, cb):
    """Chan's merge of two Welford states (mean, M2, count); an empty state is exact."""
    total = ca + cb
    wb = cb / tl.maximum(total, 1.0)
    delta = mb - ma
    return ma + delta * wb, qa + qb + delta * delta * ca * wb, total


@triton.jit
def _merge_moments_kernel(part_ptr, x_ptr, mean_ptr, var_ptr, NC, C, HW, SPLITS, BLOCK: tl.constexpr,
                          MAX_SPLITS: tl.constexpr):
    p = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    on = p < NC
    s = tl.arange(0, MAX_SPLITS)
    mask = on[:, None] & (s < SPLITS)[None, :]
    q = part_ptr + (p.to(tl.int64) * SPLITS * 3)[:, None] + s[None, :] * 3
    mean, m2, count = tl.reduce((tl.load(q, mask=mask, other=0.0).to(tl.float64),
                                 tl.load(q + 1, mask=mask, other=0.0).to(tl.float64),
                                 tl.load(q + 2, mask=mask, other=0.0).to(tl.float64)), 1, _chan_merge)
    n = (p // C).to(tl.int64)
    pivot = tl.load(x_ptr + n * HW * C + p % C, mask=on, other=0.0).to(tl.float64)
    tl.store(mean_ptr + p, (pivot + mean).to(mean_ptr.dtype.element_ty), mask=on)
    tl.store(var_ptr + p, (m2 / HW).to(var_ptr.dtype.element_ty), mask=on)


@triton.jit
def _merge_sums_kernel(part_ptr, s0_ptr, s1_ptr, NC, SPLITS, BLOCK: tl.constexpr, MAX_SPLITS: tl.constexpr):
    p = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    on = p < NC
    s = tl.arange(0, MAX_SPLITS)
    mask = on[:, None] & (s < SPLITS)[None, :]
    q = part_ptr + (p.to(tl.int64) * SPLITS * 2)[:, None] + s[None, :] * 2
    s0 = tl.sum(tl.load(q, mask=mask, other=0.0).to(tl.float64), 1)
    s1 = tl.sum(tl.load(q + 1, mask=mask, other=0.0).to(tl.float64), 1)
    tl.store(s0_ptr + p, s0.to(s0_ptr.dtype.element_ty), mask=on)
    tl.store(s1_ptr + p, s1.to(s1_ptr.dtype.element_ty), mask=on)


# The channels_last maps walk tiles of [rows, channels] as the reductions do: each
# element's channel is its tile column, so no element divides (a flat walk takes
# n and c from index // HWC and index % C, 64-bit divisions per element), and
# the coefficients are loaded once per tile column instead of gathered per element.
def map_tiles(c: int) -> tuple[int, int]:
    """(rows, channels) of a channels_last map tile: BLOCK elements, channels a power of
    two from 4 (a 16-byte float32 load) to 64, as few masked lanes as C allows."""
    block_c = min(64, max(4, 1 << (c - 1).bit_length()))
    return BLOCK // block_c, block_c


@triton.jit
def _tile_nhwc(HW, C, BLOCK_HW: tl.constexpr, BLOCK_C: tl.constexpr):
    """This program's tile: element offsets, their mask, and the coefficient indices n * C + c."""
    row_blocks = tl.cdiv(HW, BLOCK_HW)
    n = tl.program_id(0) // row_blocks  # once per program
    hw = (tl.program_id(0) % row_blocks) * BLOCK_HW + tl.arange(0, BLOCK_HW)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = c < C
    offs = n.to(tl.int64) * HW * C + hw[:, None].to(tl.int64) * C + c[None, :]
    return offs, (hw < HW)[:, None] & cmask[None, :], n * C + c, cmask


@triton.jit
def _affine_nhwc_kernel(x_ptr, m_ptr, s_ptr, t_ptr, y_ptr, C, HW, BLOCK_HW: tl.constexpr, BLOCK_C: tl.constexpr):
    offs, mask, p, cmask = _tile_nhwc(HW, C, BLOCK_HW, BLOCK_C)
    m = tl.load(m_ptr + p, mask=cmask, other=0.0)[None, :]
    s = tl.load(s_ptr + p, mask=cmask, other=0.0)[None, :]
    t = tl.load(t_ptr + p, mask=cmask, other=0.0)[None, :]
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(m.dtype)
    tl.store(y_ptr + offs, ((x - m) * s + t).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _affine2_nhwc_kernel(dy_ptr, x_ptr, m_ptr, a_ptr, b_ptr, c_ptr, out_ptr, C, HW, BLOCK_HW: tl.constexpr,
                         BLOCK_C: tl.constexpr):
    offs, mask, p, cmask = _tile_nhwc(HW, C, BLOCK_HW, BLOCK_C)
    m = tl.load(m_ptr + p, mask=cmask, other=0.0)[None, :]
    a = tl.load(a_ptr + p, mask=cmask, other=0.0)[None, :]
    b = tl.load(b_ptr + p, mask=cmask, other=0.0)[None, :]
    c = tl.load(c_ptr + p, mask=cmask, other=0.0)[None, :]
    g = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(m.dtype)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(m.dtype)
    out = a * g + (x - m) * b + c
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


# A channels_last reduction program covers one sample's rows of BLOCK_CL channels;
# with few of them (32 x 64 x 128 x 128 has 64) the GPU would sit mostly idle, so a
# sample's rows are split over programs, as the CUDA kernels split theirs: about 4
# programs per SM, whole parts of BLOCK_HW * PART_CL rows each, at most 16 splits
# (a power of two: the merge's tile). CPU tensors (the interpreter)
# are split as for NOMINAL_SMS, an H100 / H200, so CI runs the GPU's path.
MAX_SPLITS_CL, NOMINAL_SMS, MERGE_BLOCK = 16, 132, 64


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return NOMINAL_SMS
    return _cuda_sm_count(device.index if device.index is not None else torch.cuda.current_device())


@functools.lru_cache(maxsize=None)
def _cuda_sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _nhwc_splits(n: int, c: int, hw: int, device: torch.device) -> tuple[int, int]:
    """(splits, rows per split) of a channels_last reduction: no split is empty."""
    part_rows = BLOCK_HW * PART_CL
    programs = n * cdiv(c, BLOCK_CL)
    want = cdiv(4 * _sm_count(device), programs)
    splits = max(1, min(want, MAX_SPLITS_CL, hw // part_rows))
    seg = cdiv(cdiv(hw, splits), part_rows) * part_rows
    return cdiv(hw, seg), seg


def _check(x: torch.Tensor, name: str = "x") -> None:
    if x.dim() != 4:
        raise ValueError(f"anrl_ext: {name} must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"anrl_ext: {name} must be a floating-point tensor, got {x.dtype}")


def _coef(t: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    if t.shape != x.shape[:2]:
        raise ValueError(f"anrl_ext: {name} must have shape (N, C) = {tuple(x.shape[:2])}, got {tuple(t.shape)}")
    return as_dtype(t, acc_dtype(x.dtype))


def _dense(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """x in a layout the kernels read without gaps: channels_last stays as it is
    (no copy), anything else becomes NCHW contiguous. Returns (x, channels_last)."""
    if output_memory_format(x) == torch.channels_last:
        return x, True
    return x.contiguous(), False


def _like(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """t in the layout of its partner tensor (dy follows x)."""
    return t.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _primitive_functions(launch):
    """moments, reduce, affine and affine2 launching their kernels through `launch`.

    The registered ops use wrap_triton, so torch.compile can trace their launches
    (inside triton_op an eager call still gets the bare kernel). The eager direct
    path launches through triton_launch.fast, which keeps each specialisation's
    compiled kernel: wrap_triton outside triton_op dispatches every launch as a
    higher-order op, ~170 us of host time per launch on a 2-core x86 host
    (`python benchmarks/host_time.py --launches`), more than the launch.
    """

    def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check(x)
        x, nhwc = _dense(x)
        n, c, h, w = x.shape
        mean = x.new_empty((n, c), dtype=acc_dtype(x.dtype))
        var = torch.empty_like(mean)
        if n * c and nhwc:
            splits, seg = _nhwc_splits(n, c, h * w, x.device)
            part = mean.new_empty((n * c, splits, 3)) if splits > 1 else mean
            launch(_moments_nhwc_kernel)[(n, cdiv(c, BLOCK_CL), splits)](
                x, part, mean, var, c, h * w, seg, BLOCK_HW=BLOCK_HW, BLOCK_C=BLOCK_CL, ACC=_acc(x.dtype),
                PART=PART_CL, SPLIT=splits > 1, num_warps=WARPS_CL)
            if splits > 1:
                launch(_merge_moments_kernel)[(cdiv(n * c, MERGE_BLOCK),)](
                    part, x, mean, var, n * c, c, h * w, splits, BLOCK=MERGE_BLOCK, MAX_SPLITS=MAX_SPLITS_CL)
        elif n * c:
            block = plane_block(h * w)
            launch(_moments_kernel)[(n * c,)](x, mean, var, h * w, BLOCK=block, ACC=_acc(x.dtype),
                                              PART=plane_parts(h * w, block))
        return mean, var

    def reduce(dy: torch.Tensor, x: torch.Tensor, center: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check(x)
        if dy.shape != x.shape or dy.dtype != x.dtype:
            raise ValueError(f"anrl_ext: grad and x must match, got {tuple(dy.shape)}/{dy.dtype} and "
                             f"{tuple(x.shape)}/{x.dtype}")
        x, nhwc = _dense(x)
        dy = _like(dy, nhwc)
        center = _coef(center, x, "center")
        n, c, h, w = x.shape
        s0 = x.new_empty((n, c), dtype=acc_dtype(x.dtype))
        s1 = torch.empty_like(s0)
        if n * c and nhwc:
            splits, seg = _nhwc_splits(n, c, h * w, x.device)
            part = s0.new_empty((n * c, splits, 2)) if splits > 1 else s0
            launch(_reduce_nhwc_kernel)[(n, cdiv(c, BLOCK_CL), splits)](
                dy, x, center, part, s0, s1, c, h * w, seg, BLOCK_HW=BLOCK_HW, BLOCK_C=BLOCK_CL,
                ACC=_acc(x.dtype), PART=PART_CL, SPLIT=splits > 1, num_warps=WARPS_CL)
            if splits > 1:
                launch(_merge_sums_kernel)[(cdiv(n * c, MERGE_BLOCK),)](part, s0, s1, n * c, splits,
                                                                         BLOCK=MERGE_BLOCK, MAX_SPLITS=MAX_SPLITS_CL)
        elif n * c:
            launch(_reduce_kernel)[(n * c,)](dy, x, center, s0, s1, h * w, BLOCK=plane_block(h * w),
                                             ACC=_acc(x.dtype))
        return s0, s1

    def affine(x: torch.Tensor, center: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        _check(x)
        x, nhwc = _dense(x)
        m, s, t = (_coef(v, x, k) for v, k in ((center, "center"), (scale, "scale"), (shift, "shift")))
        n, c, h, w = x.shape
        y = torch.empty_like(x)  # keeps x's layout
        if x.numel() and nhwc:
            rows, cols = map_tiles(c)
            launch(_affine_nhwc_kernel)[(n * cdiv(h * w, rows), cdiv(c, cols))](
                x, m, s, t, y, c, h * w, BLOCK_HW=rows, BLOCK_C=cols)
        elif x.numel():
            block = plane_block(h * w)
            launch(_affine_kernel)[(n * c, cdiv(h * w, block))](x, m, s, t, y, h * w, BLOCK=block)
        return y

    def affine2(dy: torch.Tensor, x: torch.Tensor, center: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                c: torch.Tensor) -> torch.Tensor:
        _check(x)
        x, nhwc = _dense(x)
        dy = _like(dy, nhwc)
        m, pa, pb, pc = (_coef(v, x, k) for v, k in ((center, "center"), (a, "a"), (b, "b"), (c, "c")))
        n, ch, h, w = x.shape
        out = torch.empty_like(x)
        if x.numel() and nhwc:
            rows, cols = map_tiles(ch)
            launch(_affine2_nhwc_kernel)[(n * cdiv(h * w, rows), cdiv(ch, cols))](
                dy, x, m, pa, pb, pc, out, ch, h * w, BLOCK_HW=rows, BLOCK_C=cols)
        elif x.numel():
            block = plane_block(h * w)
            launch(_affine2_kernel)[(n * ch, cdiv(h * w, block))](dy, x, m, pa, pb, pc, out, h * w, BLOCK=block)
        return out

    return moments, reduce, affine, affine2


def _traceable(kernel):
    """wrap_triton(kernel) for a compiled kernel; the interpreter's kernel itself.

    Under TRITON_INTERPRET=1 `triton.jit` gives an InterpretedFunction, which
    needs no tracing; torch 2.14's wrap_triton passes it through, torch 2.11's
    (the lent GPU image's, scripts/gpu_image_rehearsal.sh) raises on it.
    """
    return wrap_triton(kernel) if isinstance(kernel, JITFunction) else kernel


# Registered ops (torch.compile, autograd of the composed path) ...
moments, reduce, affine, affine2 = (triton_op(f"{NS}::{fn.__name__}", mutates_args=())(fn)
                                   for fn in _primitive_functions(_traceable))

# ... and the plain functions with direct launches (triton_launch.fast) for the eager
# first-order path, which is their autograd itself: a dispatcher round trip costs
# more host time than a launch.
_direct_moments, _direct_reduce, _direct_affine, _direct_affine2 = _primitive_functions(fast)


def _blend_apply_forward(x, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, running_mean, running_var,
                         use_batch_stats, update_running, momentum, eps):
    """moments, then the middle folded into affine: two launches (torch.ops.anrl_ext.blend_apply_forward).
    Inputs the fold does not take (channels_last, empty) get the middle and affine apart."""
    _check(x)
    x, _ = _dense(x)  # a strided x is copied once, not by each pass
    mean, var = _direct_moments(x)
    middle = (alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, running_mean, running_var,
              use_batch_stats, update_running, momentum, eps)
    if triton_blend_apply.fits(x):
        y, bn_mean, bn_var = triton_blend_apply.fold_forward(x, mean, var, *middle)
    else:
        count = x.shape[0] * x.shape[2] * x.shape[3]
        scale, shift, bn_mean, bn_var = triton_blend.blend_forward(mean, var, *middle, count)
        y = _direct_affine(x, mean, scale, shift)
    return y, mean, var, bn_mean, bn_var


def _blend_apply_backward(dy, x, mean, var, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, bn_mean,
                          bn_var, use_batch_stats, eps):
    """reduce, then the middle folded into affine2: two launches (torch.ops.anrl_ext.blend_apply_backward)."""
    _check(x)
    x, nhwc = _dense(x)
    dy = _like(dy, nhwc)  # once, not in each pass (an expanded gradient would be copied twice)
    s0, s1 = _direct_reduce(dy, x, mean)
    middle = (alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, bn_mean, bn_var, use_batch_stats, eps)
    if triton_blend_apply.fits(x):
        return triton_blend_apply.fold_backward(dy, x, s0, s1, mean, var, *middle)
    d_alpha, *d_affine, a, b, c = triton_blend.blend_backward(s0, s1, mean, var, *middle, x.shape[2] * x.shape[3])
    return (_direct_affine2(dy, x, mean, a, b, c), d_alpha, *d_affine)


_MIDDLE = (triton_blend.blend_forward, triton_blend.blend_backward, triton_gate.gate_blend_forward,
           triton_gate.gate_blend_backward)
_APPLY = dict(blend_apply_forward=_blend_apply_forward, blend_apply_backward=_blend_apply_backward)
_DIRECT = Primitives("triton_direct", _direct_moments, _direct_affine, _direct_reduce, _direct_affine2, *_MIDDLE,
                     **_APPLY)
# blend_apply / gate_blend_apply: the passes above under autograd in C++ (triton_apply_ops; None without _C)
PRIMITIVES = Primitives("triton", moments, affine, reduce, affine2, *_MIDDLE, **_APPLY, direct=_DIRECT,
                        **triton_apply_ops.register(_DIRECT, _dense, _like))
register_autograd(lambda name: f"{NS}::{name}", PRIMITIVES)
