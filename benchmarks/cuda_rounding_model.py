"""The CUDA reductions' float32 arithmetic, replayed in order on the CPU.

    python benchmarks/cuda_rounding_model.py [--sms 132] [--splits 1]

The CUDA `moments` and `reduce` kernels (`kernels/afnm_cuda.cu`) run only on
a GPU. This model does their arithmetic in the same order with the same
roundings: each thread's loop over its 16-byte packs (the same index
pattern, the same split of planes over blocks as `num_splits` picks for a
GPU of `--sms` multiprocessors), the warp shuffle trees, the block merge and
the merge of the splits. nvcc contracts `a * b + c` into one fused
multiply-add; the model rounds those once. It is a model, not a
measurement: `--use_fast_math` divides approximately (within 2 ulps of each
quotient) where the model rounds correctly, and nvcc may contract
differently. It prints the worst float32 errors against float64 on the
planes of `test_reductions_on_large_planes_cuda`, for the kernels as they
are and as they were (without the pivot, the plane's first value subtracted
before the Welford updates; with fewer fold levels for channels_last rows;
without a pack's own sums in the NCHW reduce), and so gives that test's
`cuda` bounds a basis until a GPU runs it.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

THREADS, WARP, ROWS_PER_BLOCK, ROW_PART, ROW_LEVELS = 256, 32, 8, 8, 3  # kThreads, kWarp, kRowsPerBlock, kRowPart, kRowLevels


class _Arith:
    """Arithmetic in the accumulator type: float32 (fused multiply-add rounded once) or float64."""

    def __init__(self, dtype):
        self.dtype = dtype

    def fma(self, a, b, c):
        if self.dtype == np.float64:
            return a * b + c  # no wider type to hold the exact product; the model rounds twice here
        return (a.astype(np.float64) * b + c).astype(np.float32)

    def zeros(self, shape, n=3):
        """n zero arrays: a Welford state (mean, m2, count) by default, or n sums."""
        return tuple(np.zeros(shape, self.dtype) for _ in range(n))

    def welford_add(self, s, x, valid):
        mean, m2, count = s
        count1 = count + self.dtype(1)
        delta = x - mean
        mean1 = mean + delta / count1
        m21 = self.fma(delta, x - mean1, m2)
        return tuple(np.where(valid, new, old) for new, old in zip((mean1, m21, count1), s))

    def chan_merge(self, a, b):
        n = a[2] + b[2]
        delta = b[0] - a[0]
        wb = b[2] / np.where(n == 0, self.dtype(1), n)
        mean = self.fma(delta, wb, a[0])
        m2 = self.fma(delta * delta * a[2], wb, a[1] + b[1])
        return tuple(np.where(n == 0, old, new) for new, old in zip((mean, m2, n), a))

    def warp_tree(self, s, merge):
        """__shfl_down_sync tree over the last axis (32 lanes); lane 0 holds the result."""
        s = [np.array(t) for t in s]
        for off in (16, 8, 4, 2, 1):
            merged = merge(tuple(t[..., :WARP - off] for t in s), tuple(t[..., off:] for t in s))
            for t, m in zip(s, merged):
                t[..., :WARP - off] = m
        return tuple(t[..., 0] for t in s)

    def block_tree(self, s, merge):
        """block_merge / block_sum2 over the last axis (256 threads): warps, then warp 0."""
        warps = self.warp_tree(tuple(t.reshape(*t.shape[:-1], THREADS // WARP, WARP) for t in s), merge)
        padded = tuple(np.concatenate([t, np.zeros((*t.shape[:-1], WARP - t.shape[-1]), self.dtype)], -1)
                       for t in warps)
        return self.warp_tree(padded, merge)

    def add(self, a, b):
        return tuple(x + y for x, y in zip(a, b))


SPLIT_ELEMENTS, MAX_NHWC_SPLITS = 4096, 16  # kSplitElements, kMaxNhwcSplits


def num_splits(blocks, m, sms, min_seg=SPLIT_ELEMENTS, cap=None):
    want = (4 * sms + blocks - 1) // blocks
    return max(1, min(want, max(1, min(m // min_seg, cap or m))))


def splits_of(n, c, m, sms, nhwc):
    """The kernels' splits per plane: NCHW blocks are planes, channels_last blocks (sample, WARP channels)."""
    if nhwc:
        return num_splits(n * -(-c // WARP), m, sms, SPLIT_ELEMENTS // WARP, MAX_NHWC_SPLITS)
    return num_splits(n * c, m, sms)


def _vec(m, seg, itemsize):
    vec = 16 // itemsize
    while vec > 1 and m % vec:
        vec //= 2
    return vec if seg % vec == 0 else 1


def _thread_indices(m, splits, seg, vec, paired):
    """[split][thread] -> the plane offsets one thread reads, in order (the NCHW kernels' loops)."""
    step = THREADS * vec
    table = []
    for s in range(splits):
        begin, end = s * seg, min(m, s * seg + seg)
        row = []
        for t in range(THREADS):
            i, seq = begin + t * vec, []
            if paired and vec > 1:  # moments: two packs per iteration
                while i + step + vec <= end:
                    seq += [*range(i, i + vec), *range(i + step, i + step + vec)]
                    i += 2 * step
            while i < end:
                seq += list(range(i, min(end, i + vec)))
                i += step
            row.append(seq)
        table.append(row)
    depth = max(len(seq) for row in table for seq in row)
    out = np.full((splits, THREADS, depth), -1, np.int64)
    for s, row in enumerate(table):
        for t, seq in enumerate(row):
            out[s, t, :len(seq)] = seq
    return out


def _thread_rows(m, splits, seg):
    """[split][row thread][step] -> the rows one thread of the channels_last kernels reads."""
    depth = max(len(range(s * seg + y, min(m, s * seg + seg), ROWS_PER_BLOCK))
                for s in range(splits) for y in range(ROWS_PER_BLOCK))
    out = np.full((splits, ROWS_PER_BLOCK, depth), -1, np.int64)
    for s in range(splits):
        for y in range(ROWS_PER_BLOCK):
            rows = list(range(s * seg + y, min(m, s * seg + seg), ROWS_PER_BLOCK))
            out[s, y, :len(rows)] = rows
    return out


def _row_loop(steps, row_part, zero, step, join, levels=ROW_LEVELS):
    """A channels_last thread's loop over its rows: one running state (row_part None), or parts of
    row_part rows, `levels - 1` levels of folds that each join row_part results of the level
    below, and those into the running state (`fold_parts` in moments.h; test_fold_parts.py checks
    that the C++ builds this tree); each fold starts from zero."""
    if row_part is None:
        state = zero()
        for k in range(steps):
            state = step(state, k)
        return state

    def fold(k0, level):  # level 0: one part; level l: row_part folds of level l - 1
        state = zero()
        if level == 0:
            for k in range(k0, min(steps, k0 + row_part)):
                state = step(state, k)
            return state
        span = row_part ** level
        for k in range(k0, min(steps, k0 + row_part * span), span):
            state = join(state, fold(k, level - 1))
        return state

    state = zero()
    for k0 in range(0, steps, row_part ** levels):
        state = join(state, fold(k0, levels - 1))
    return state


class CudaReductionModel:
    """`moments` and `reduce` with the CUDA kernels' order of operations (float32 and float64 input)."""

    def __init__(self, pivot=True, sms=132, row_part=ROW_PART, row_levels=ROW_LEVELS, pack_sums=True,
                 splits=None, double_merge=True):
        self.pivot, self.sms, self.row_part, self.row_levels = pivot, sms, row_part, row_levels
        self.pack_sums, self.double_merge = pack_sums, double_merge
        self.splits = splits  # None: as the kernels pick them for `sms`; 1: every plane one block

    def _setup(self, x):
        n, c, h, w = x.shape
        dtype = np.float64 if x.dtype == torch.float64 else np.float32
        splits = self.splits or splits_of(n, c, h * w, self.sms, nhwc=not x.is_contiguous())
        return n, c, h * w, _Arith(dtype), dtype, splits, -(-h * w // splits)

    def moments(self, x):
        n, c, m, ar, dtype, splits, seg = self._setup(x)
        if x.is_contiguous():
            xs = x.reshape(n * c, m).numpy().astype(dtype)
            idx = _thread_indices(m, splits, seg, _vec(m, seg, x.element_size()), paired=True)
            pivot = xs[:, :1, None] if self.pivot else dtype(0)
            s = ar.zeros((n * c, splits, THREADS))
            for k in range(idx.shape[-1]):
                s = ar.welford_add(s, xs[:, idx[..., k].clip(0)] - pivot, idx[..., k] >= 0)
            part = ar.block_tree(s, ar.chan_merge)  # (planes, splits)
            pivot = xs[:, 0] if self.pivot else dtype(0)
        else:  # channels_last: thread (channel, row offset), then thread row 0 merges the other 7 in order
            xs = x.permute(0, 2, 3, 1).reshape(n, m, c).numpy().astype(dtype)
            rows = _thread_rows(m, splits, seg)
            pivot = xs[:, None, None, 0, :] if self.pivot else dtype(0)
            s = _row_loop(rows.shape[-1], self.row_part, lambda: ar.zeros((n, splits, ROWS_PER_BLOCK, c)),
                          lambda s, k: ar.welford_add(s, xs[:, rows[..., k].clip(0), :] - pivot,
                                                      (rows[..., k] >= 0)[None, :, :, None]),
                          ar.chan_merge, self.row_levels)
            part = tuple(t[:, :, 0] for t in s)
            for y in range(1, ROWS_PER_BLOCK):
                part = ar.chan_merge(part, tuple(t[:, :, y] for t in s))
            part = tuple(t.transpose(0, 2, 1).reshape(n * c, splits) for t in part)
            pivot = xs[:, 0, :].reshape(n * c) if self.pivot else dtype(0)
        if splits == 1 or not self.double_merge:  # the block stores its result / the merge in float
            total = tuple(t[:, 0] for t in part)  # merge_moments_kernel's first merge, into zeros, is exact
            for j in range(1, splits):
                total = ar.chan_merge(total, tuple(t[:, j] for t in part))
            mean, m2, count = total
            return (torch.from_numpy(np.asarray(mean + pivot)).reshape(n, c),
                    torch.from_numpy(np.asarray(m2 / count)).reshape(n, c))
        wide = _Arith(np.float64)  # merge_moments_kernel merges in double, then rounds once
        part = tuple(t.astype(np.float64) for t in part)
        total = tuple(t[:, 0] for t in part)  # its first merge, into zeros, is exact
        for j in range(1, splits):
            total = wide.chan_merge(total, tuple(t[:, j] for t in part))
        mean, m2, count = total
        return (torch.from_numpy(np.asarray(mean + np.asarray(pivot, dtype=np.float64)).astype(dtype)).reshape(n, c),
                torch.from_numpy(np.asarray(m2 / count).astype(dtype)).reshape(n, c))

    def reduce(self, dy, x, center):
        n, c, m, ar, dtype, splits, seg = self._setup(x)
        cen = center.numpy().astype(dtype).reshape(n * c)
        if x.is_contiguous():
            xs, gs = (t.reshape(n * c, m).numpy().astype(dtype) for t in (x, dy))
            vec = _vec(m, seg, x.element_size())
            idx = _thread_indices(m, splits, seg, vec, paired=False)
            pack = vec if self.pack_sums else 1  # every pack is whole: _vec divides m and seg
            a0, a1 = ar.zeros((n * c, splits, THREADS), 2)
            for k0 in range(0, idx.shape[-1], pack):  # a pack's sums from zero, then into the thread's
                p0, p1 = ar.zeros((n * c, splits, THREADS), 2)
                for k in range(k0, k0 + pack):
                    i, valid = idx[..., k].clip(0), idx[..., k] >= 0
                    g = gs[:, i]
                    p0 = np.where(valid, p0 + g, p0)
                    p1 = np.where(valid, ar.fma(g, xs[:, i] - cen[:, None, None], p1), p1)
                a0, a1 = a0 + p0, a1 + p1
            part = ar.block_tree((a0, a1), ar.add)
        else:
            xs, gs = (t.permute(0, 2, 3, 1).reshape(n, m, c).numpy().astype(dtype) for t in (x, dy))
            rows = _thread_rows(m, splits, seg)
            cen4 = cen.reshape(n, 1, 1, c)

            def step(sums, k):
                r, valid = rows[..., k].clip(0), (rows[..., k] >= 0)[None, :, :, None]
                g = gs[:, r, :]
                return np.where(valid, sums[0] + g, sums[0]), np.where(valid, ar.fma(g, xs[:, r, :] - cen4, sums[1]), sums[1])

            a0, a1 = _row_loop(rows.shape[-1], self.row_part,
                               lambda: ar.zeros((n, splits, ROWS_PER_BLOCK, c), 2),
                               step, ar.add, self.row_levels)
            part = (a0[:, :, 0], a1[:, :, 0])
            for y in range(1, ROWS_PER_BLOCK):
                part = ar.add(part, (a0[:, :, y], a1[:, :, y]))
            part = tuple(t.transpose(0, 2, 1).reshape(n * c, splits) for t in part)
        s0, s1 = (t[:, 0].astype(np.float64 if self.double_merge else dtype) for t in part)
        for j in range(1, splits):  # merge_sums_kernel adds the splits to 0 in order, in double
            s0, s1 = s0 + part[0][:, j], s1 + part[1][:, j]
        return (torch.from_numpy(s0.astype(dtype)).reshape(n, c),
                torch.from_numpy(s1.astype(dtype)).reshape(n, c))


def modelled_errors(model):
    """Worst errors of the modelled kernels on the planes of `test_reductions_on_large_planes_cuda`,
    as `check_reductions_on_large_planes` measures them (it also checks the float64 path exact)."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "python_tests"))
    from helpers import LARGE_PLANES, check_reductions_on_large_planes

    return check_reductions_on_large_planes(model, LARGE_PLANES)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sms", type=int, default=132, help="multiprocessors (H100 SXM / H200: 132)")
    p.add_argument("--splits", type=int, default=None,
                   help="splits per plane instead of the kernels' pick (1: one block per plane, the longest chains)")
    args = p.parse_args(argv)
    lines = ["| CUDA kernels (model) | mean (ulps) | var | s0 | s1 |", "|---|---|---|---|---|"]
    variants = {"before: Welford at full magnitude, one chain per channels_last thread":
                CudaReductionModel(pivot=False, sms=args.sms, row_part=None, pack_sums=False, splits=args.splits,
                                   double_merge=False),
                f"pivot-relative Welford, channels_last rows in parts and groups of {ROW_PART}, float merges":
                CudaReductionModel(pivot=True, sms=args.sms, row_levels=2, pack_sums=False, splits=args.splits,
                                   double_merge=False),
                "now: + channels_last parts three levels deep, NCHW reduce pack sums, merges in double":
                CudaReductionModel(pivot=True, sms=args.sms, splits=args.splits)}
    for name, model in variants.items():
        worst = modelled_errors(model)
        lines.append(f"| {name} | {worst['mean']:.2f} | {worst['var']:.1e} | {worst['s0']:.1e} | {worst['s1']:.1e} |")
    print("\n".join(lines))
    return worst


if __name__ == "__main__":
    main()
