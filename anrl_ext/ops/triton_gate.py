"""Triton kernels of the gated middle (backend="triton"): gate_blend_forward and
gate_blend_backward, the AFNM gate MLP and the (N, C) middle. The same math as
csrc/include/anrl_ext/gate.h (CPU and CUDA) and
`reference.gate_blend_forward_reference` / `gate_blend_backward_reference`.

The gate mixes channels, so its phases run one after another:

    forward : hidden z (n, j tile) -> alpha (n, c tile) -> blend (c tile)
    backward: blend backward, d alpha (c tile) -> g_b, g_i (n, c tile)
              -> head weight gradients (c tile, k tile), input gradient (n, k tile)
              -> W1 / b1 gradients (c tile, j tile), the means' gradient (n, c tile)

A small gate runs in one program, one launch each way, with a barrier between
phases (as the CUDA kernel does in one block); a larger one (past
ONE_PROGRAM_MAX_WORK) one launch per phase over a grid of its tiles. Either
way each tile is computed by the same @triton.jit function. Dot products run
over tiles (BLOCK_C x BLOCK_K), so sums associate differently from the C++
loops: equal to rounding, not bitwise. Each output is written once, in a fixed
order, so two runs give the same bits.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from . import native
from .primitives import weight_grads
from .triton_launch import fast
from .triton_blend import (_blend_backward_tile, _blend_forward_tile, _joined, _split, _vector, params,
                           running_buffers, stats, unbias, write_back)

BLOCK_C = 64  # channels per tile
BLOCK_K = 32  # reduction width per tile
NUM_WARPS = 8  # one program may do all the work: give it a full block
# Gates of at most this many multiply-adds (forward) run in one program, one launch each way;
# larger ones one launch per phase over a grid of tiles (3 forward, 4 backward with a hidden
# layer). Run 4 (H200) measured one program at about 1.3 ns per multiply-add forward + backward
# (32 us over the plain middle at 24,576); the 5 extra launches cost ~60 us of host work on a
# 2-core x86 (benchmarks/triton_host_time.py, 2026-12-06), likely more on that GPU's slower host:
# they pay off from ~5e4-8e4 multiply-adds. CUDA's launches cost less host time: its limit is 2^15.
# one_program_max_work(0) spreads every gate, (2**62) runs every gate in one program.
ONE_PROGRAM_MAX_WORK = 2 ** 16


@triton.jit
def _sigmoid(u):
    return 1.0 / (1.0 + tl.exp(-u))


@triton.jit
def _sigmoid_ratio(ub, ui):
    """B / (B + I) and I / (B + I) of B = sig(u_b), I = sig(u_i), finite where both sigmoids
    round to 0 (gate.h's sigmoid_ratio: scaled by e^m, m = min(0, u_b, u_i))."""
    m = tl.minimum(tl.minimum(ub, ui), 0.0)
    p = tl.exp(m)
    eb = tl.exp(m - ub)
    ei = tl.exp(m - ui)
    den = 2.0 * p + eb + ei
    return (p + ei) / den, (p + eb) / den


@triton.jit
def _heads(n, c, cmask, zero, in_ptr, wb_ptr, bb_ptr, wi_ptr, K, HAS_BB: tl.constexpr, HAS_WI: tl.constexpr,
           BLOCK_K: tl.constexpr):
    """u_b, u_i of sample n at the channels c (u_i = 0 without a ratio head)."""
    ub = tl.load(bb_ptr + c, mask=cmask, other=0.0) if HAS_BB else zero
    ui = zero
    for k0 in range(0, K, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        kmask = k < K
        zin = tl.load(in_ptr + n * K + k, mask=kmask, other=0.0)
        wmask = cmask[:, None] & kmask[None, :]
        ub += tl.sum(tl.load(wb_ptr + c[:, None] * K + k[None, :], mask=wmask, other=0.0) * zin[None, :], axis=1)
        if HAS_WI:
            ui += tl.sum(tl.load(wi_ptr + c[:, None] * K + k[None, :], mask=wmask, other=0.0) * zin[None, :], axis=1)
    return ub, ui


@triton.jit
def _sum_outer(a_ptr, sa, ia, amask, b_ptr, sb, ib, bmask, N, acc):
    """acc + sum_n a[n * sa + ia] (outer) b[n * sb + ib]: a tile of A^T B over the samples."""
    for n in range(N):
        a = tl.load(a_ptr + n * sa + ia, mask=amask, other=0.0)
        b = tl.load(b_ptr + n * sb + ib, mask=bmask, other=0.0)
        acc += a[:, None] * b[None, :]
    return acc


@triton.jit
def _tiles(every: tl.constexpr, C, BLOCK_C: tl.constexpr):
    """First and end of the channel tiles a program walks: all of them, or program 0's index's one."""
    if every:
        return 0, C
    else:
        first = tl.program_id(0) * BLOCK_C
        return first, first + 1


@triton.jit
def _hidden_tile(n, j0, zk, mean_ptr, w1_ptr, b1_ptr, z_ptr, C, D, HAS_B1: tl.constexpr, BLOCK_C: tl.constexpr,
                 BLOCK_K: tl.constexpr):
    """Forward phase 1 at sample n, hidden units j0 + [0, BLOCK_K): z = relu(b1 + S W1^T)."""
    j = j0 + tl.arange(0, BLOCK_K)
    jmask = j < D
    acc = tl.load(b1_ptr + j, mask=jmask, other=0.0) if HAS_B1 else zk
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        cmask = c < C
        s = tl.load(mean_ptr + n * C + c, mask=cmask, other=0.0)
        w = tl.load(w1_ptr + j[:, None] * C + c[None, :], mask=jmask[:, None] & cmask[None, :], other=0.0)
        acc += tl.sum(w * s[None, :], axis=1)
    tl.store(z_ptr + n * D + j, tl.maximum(acc, 0.0), mask=jmask)


@triton.jit
def _alpha_tile(n, c0, zero, in_ptr, wb_ptr, bb_ptr, wi_ptr, alpha_ptr, C, K, HAS_BB: tl.constexpr,
                HAS_WI: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr):
    """Forward phase 2 at sample n, channels c0 + [0, BLOCK_C): alpha from the heads."""
    c = c0 + tl.arange(0, BLOCK_C)
    cmask = c < C
    ub, ui = _heads(n, c, cmask, zero, in_ptr, wb_ptr, bb_ptr, wi_ptr, K, HAS_BB, HAS_WI, BLOCK_K)
    if HAS_WI:
        a, _ = _sigmoid_ratio(ub, ui)
        tl.store(alpha_ptr + n * C + c, a, mask=cmask)
    else:
        tl.store(alpha_ptr + n * C + c, _sigmoid(ub), mask=cmask)


@triton.jit
def _sum_rows(a_ptr, sa, ia, amask, N, acc):
    """acc + sum_n a[n * sa + ia]: a bias gradient over the samples."""
    for n in range(N):
        acc += tl.load(a_ptr + n * sa + ia, mask=amask, other=0.0)
    return acc


# One compiled variant per flag set and phase, not per size: sizes are not specialised on.
# PHASE 0 runs the whole gate in one program, the phases apart by barriers (one launch:
# the least host time, for small gates); PHASE 1, 2, 3 run one phase each over a grid of
# its indices (hidden (n, j tile), alpha (n, c tile), blend (c tile)). Each tile is
# computed by the same function either way.
@triton.jit(do_not_specialize=["N", "C", "D", "K"])
def _gate_forward_kernel(mean_ptr, var_ptr, w1_ptr, b1_ptr, wb_ptr, bb_ptr, wi_ptr, z_ptr, in_ptr, alpha_ptr,
                         bw_ptr, bbn_ptr, iw_ptr, ib_ptr, rm_ptr, rv_ptr, scale_ptr, shift_ptr, bnm_ptr, bnv_ptr,
                         N, C, D, K, eps_hi, eps_lo, mom_hi, mom_lo, unb_hi, unb_lo,
                         HAS_W1: tl.constexpr, HAS_B1: tl.constexpr, HAS_BB: tl.constexpr, HAS_WI: tl.constexpr,
                         HAS_BW: tl.constexpr, HAS_BBN: tl.constexpr, HAS_IW: tl.constexpr, HAS_IB: tl.constexpr,
                         HAS_RM: tl.constexpr, HAS_RV: tl.constexpr, USE_BATCH: tl.constexpr, UPDATE: tl.constexpr,
                         BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, PHASE: tl.constexpr):
    zero = tl.zeros([BLOCK_C], dtype=mean_ptr.dtype.element_ty)
    zk = tl.zeros([BLOCK_K], dtype=mean_ptr.dtype.element_ty)
    eps = _joined(eps_hi, eps_lo, zero)
    momentum = _joined(mom_hi, mom_lo, zero)
    unbias = _joined(unb_hi, unb_lo, zero)
    if PHASE == 0:
        if HAS_W1:
            for n in range(N):
                for j0 in range(0, D, BLOCK_K):
                    _hidden_tile(n, j0, zk, mean_ptr, w1_ptr, b1_ptr, z_ptr, C, D, HAS_B1, BLOCK_C, BLOCK_K)
            tl.debug_barrier()
        for n in range(N):
            for c0 in range(0, C, BLOCK_C):
                _alpha_tile(n, c0, zero, in_ptr, wb_ptr, bb_ptr, wi_ptr, alpha_ptr, C, K, HAS_BB, HAS_WI, BLOCK_C,
                            BLOCK_K)
        tl.debug_barrier()
    elif PHASE == 1:
        _hidden_tile(tl.program_id(0), tl.program_id(1) * BLOCK_K, zk, mean_ptr, w1_ptr, b1_ptr, z_ptr, C, D,
                     HAS_B1, BLOCK_C, BLOCK_K)
    elif PHASE == 2:
        _alpha_tile(tl.program_id(0), tl.program_id(1) * BLOCK_C, zero, in_ptr, wb_ptr, bb_ptr, wi_ptr, alpha_ptr,
                    C, K, HAS_BB, HAS_WI, BLOCK_C, BLOCK_K)
    if PHASE == 0 or PHASE == 3:  # the blend, alpha read back as (N, C): every channel tile, or this one
        c_first, c_end = _tiles(PHASE == 0, C, BLOCK_C)
        for c0 in range(c_first, c_end, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            _blend_forward_tile(c, c < C, zero, mean_ptr, var_ptr, alpha_ptr, C, 1, zero, bw_ptr, bbn_ptr, iw_ptr,
                                ib_ptr, rm_ptr, rv_ptr, scale_ptr, shift_ptr, bnm_ptr, bnv_ptr, N, C, eps, momentum,
                                unbias, True, HAS_BW, HAS_BBN, HAS_IW, HAS_IB, HAS_RM, HAS_RV, USE_BATCH, UPDATE)


@triton.jit
def _gate_grad_tile(n, c0, zero, da_ptr, ga_ptr, in_ptr, wb_ptr, bb_ptr, wi_ptr, gb_ptr, gi_ptr, C, K,
                    HAS_GA: tl.constexpr, HAS_BB: tl.constexpr, HAS_WI: tl.constexpr, BLOCK_C: tl.constexpr,
                    BLOCK_K: tl.constexpr):
    """Backward phase 2 at sample n, channels c0 + [0, BLOCK_C): the heads' pre-activation
    gradients g_b, g_i from d alpha."""
    c = c0 + tl.arange(0, BLOCK_C)
    cmask = c < C
    da = tl.load(da_ptr + n * C + c, mask=cmask, other=0.0)
    if HAS_GA:
        da += tl.load(ga_ptr + n * C + c, mask=cmask, other=0.0)
    ub, ui = _heads(n, c, cmask, zero, in_ptr, wb_ptr, bb_ptr, wi_ptr, K, HAS_BB, HAS_WI, BLOCK_K)
    if HAS_WI:  # alpha = B / (B + I): the ratios, not 1 / (B + I)^2 (see gate.h)
        a, b = _sigmoid_ratio(ub, ui)
        q = da * a * b
        tl.store(gb_ptr + n * C + c, q * _sigmoid(-ub), mask=cmask)
        tl.store(gi_ptr + n * C + c, -q * _sigmoid(-ui), mask=cmask)
    else:
        sb = _sigmoid(ub)
        tl.store(gb_ptr + n * C + c, da * sb * (1.0 - sb), mask=cmask)


@triton.jit
def _head_grad_tile(c0, k0, zero, gb_ptr, gi_ptr, in_ptr, dwb_ptr, dwi_ptr, dbb_ptr, N, C, K, HAS_BB: tl.constexpr,
                    HAS_WI: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr):
    """Backward phase 3 at channels c0 + [0, BLOCK_C), inputs k0 + [0, BLOCK_K): d Wb[c, k] =
    sum_n g_b[n, c] in[n, k] (and Wi); d bb[c] = sum_n g_b[n, c] where k0 = 0."""
    c = c0 + tl.arange(0, BLOCK_C)
    cmask = c < C
    k = k0 + tl.arange(0, BLOCK_K)
    kmask = k < K
    tile = tl.zeros([BLOCK_C, BLOCK_K], dtype=zero.dtype)
    wmask = cmask[:, None] & kmask[None, :]
    tl.store(dwb_ptr + c[:, None] * K + k[None, :], _sum_outer(gb_ptr, C, c, cmask, in_ptr, K, k, kmask, N, tile),
             mask=wmask)
    if HAS_WI:
        tl.store(dwi_ptr + c[:, None] * K + k[None, :],
                 _sum_outer(gi_ptr, C, c, cmask, in_ptr, K, k, kmask, N, tile), mask=wmask)
    if HAS_BB:
        if k0 == 0:
            tl.store(dbb_ptr + c, _sum_rows(gb_ptr, C, c, cmask, N, zero), mask=cmask)


@triton.jit
def _input_grad_tile(n, k0, zk, gb_ptr, gi_ptr, wb_ptr, wi_ptr, z_ptr, dz_ptr, cc_ptr, C, D, K, hw,
                     HAS_W1: tl.constexpr, HAS_WI: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr):
    """Backward phase 3 at sample n, inputs k0 + [0, BLOCK_K): the heads' input gradient
    dh = g_b Wb + g_i Wi, through the relu into dz, or (no hidden layer: the input is S)
    into the dx shift."""
    k = k0 + tl.arange(0, BLOCK_K)
    kmask = k < K
    dh = zk
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        cmask = c < C
        wmask = cmask[:, None] & kmask[None, :]
        g = tl.load(gb_ptr + n * C + c, mask=cmask, other=0.0)
        dh += tl.sum(g[:, None] * tl.load(wb_ptr + c[:, None] * K + k[None, :], mask=wmask, other=0.0), axis=0)
        if HAS_WI:
            g = tl.load(gi_ptr + n * C + c, mask=cmask, other=0.0)
            dh += tl.sum(g[:, None] * tl.load(wi_ptr + c[:, None] * K + k[None, :], mask=wmask, other=0.0), axis=0)
    if HAS_W1:
        z = tl.load(z_ptr + n * D + k, mask=kmask, other=0.0)
        tl.store(dz_ptr + n * D + k, tl.where(z > 0.0, dh, 0.0), mask=kmask)
    else:
        cc = tl.load(cc_ptr + n * C + k, mask=kmask, other=0.0)
        tl.store(cc_ptr + n * C + k, cc + dh / hw, mask=kmask)


@triton.jit
def _w1_grad_tile(c0, j0, zk, dz_ptr, mean_ptr, dw1_ptr, db1_ptr, N, C, D, HAS_B1: tl.constexpr,
                  BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr):
    """Backward phase 4 at channels c0 + [0, BLOCK_C), hidden units j0 + [0, BLOCK_K): d W1[j, c] =
    sum_n dz[n, j] S[n, c]; d b1[j] = sum_n dz[n, j] where c0 = 0."""
    c = c0 + tl.arange(0, BLOCK_C)
    cmask = c < C
    j = j0 + tl.arange(0, BLOCK_K)
    jmask = j < D
    acc = _sum_outer(dz_ptr, D, j, jmask, mean_ptr, C, c, cmask, N, tl.zeros([BLOCK_K, BLOCK_C], dtype=zk.dtype))
    tl.store(dw1_ptr + j[:, None] * C + c[None, :], acc, mask=jmask[:, None] & cmask[None, :])
    if HAS_B1:
        if c0 == 0:
            tl.store(db1_ptr + j, _sum_rows(dz_ptr, D, j, jmask, N, zk), mask=jmask)


@triton.jit
def _mean_grad_tile(n, c0, zero, dz_ptr, w1_ptr, cc_ptr, C, D, hw, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr):
    """Backward phase 4 at sample n, channels c0 + [0, BLOCK_C): d S[n, c] = sum_j dz[n, j] W1[j, c],
    into the dx shift."""
    c = c0 + tl.arange(0, BLOCK_C)
    cmask = c < C
    ds = zero
    for j0 in range(0, D, BLOCK_K):
        j = j0 + tl.arange(0, BLOCK_K)
        jmask = j < D
        dz = tl.load(dz_ptr + n * D + j, mask=jmask, other=0.0)
        w = tl.load(w1_ptr + j[:, None] * C + c[None, :], mask=jmask[:, None] & cmask[None, :], other=0.0)
        ds += tl.sum(dz[:, None] * w, axis=0)
    cc = tl.load(cc_ptr + n * C + c, mask=cmask, other=0.0)
    tl.store(cc_ptr + n * C + c, cc + ds / hw, mask=cmask)


# PHASE 0: the whole gate in one program; PHASE 1-4 one phase each over a grid:
#   1 blend backward and d alpha          (c tile)
#   2 g_b, g_i                            (n, c tile)
#   3 head weight gradients (c tile, k tile) and the input gradient (n, k tile): rows up to max(C tiles, N)
#   4 W1 and b1 gradients (j tile, c tile) and the means' gradient (n, c tile): rows up to max(D tiles, N)
# (rows: grid axis 0, which has room for any batch; axis 1 holds at most 65535)
@triton.jit(do_not_specialize=["N", "C", "D", "K", "hw"])
def _gate_backward_kernel(s0_ptr, s1_ptr, mean_ptr, var_ptr, alpha_ptr, z_ptr, in_ptr, ga_ptr, w1_ptr, wb_ptr,
                          bb_ptr, wi_ptr, bw_ptr, bbn_ptr, iw_ptr, ib_ptr, bnm_ptr, bnv_ptr, da_ptr, gb_ptr, gi_ptr,
                          dz_ptr, dw1_ptr, db1_ptr, dwb_ptr, dbb_ptr, dwi_ptr, dgb_ptr, dbbn_ptr, dgi_ptr, dbi_ptr,
                          ca_ptr, cb_ptr, cc_ptr, N, C, D, K, eps_hi, eps_lo, hw,
                          HAS_GA: tl.constexpr, HAS_W1: tl.constexpr, HAS_B1: tl.constexpr, HAS_BB: tl.constexpr,
                          HAS_WI: tl.constexpr, HAS_BW: tl.constexpr, HAS_BBN: tl.constexpr, HAS_IW: tl.constexpr,
                          HAS_IB: tl.constexpr, USE_BATCH: tl.constexpr, BLOCK_C: tl.constexpr,
                          BLOCK_K: tl.constexpr, PHASE: tl.constexpr):
    zero = tl.zeros([BLOCK_C], dtype=mean_ptr.dtype.element_ty)
    zk = tl.zeros([BLOCK_K], dtype=mean_ptr.dtype.element_ty)
    eps = _joined(eps_hi, eps_lo, zero)
    r = tl.program_id(0)
    q = tl.program_id(1)
    if PHASE == 0 or PHASE == 1:  # the blend backward of every channel tile, or this one; d alpha
        c_first, c_end = _tiles(PHASE == 0, C, BLOCK_C)
        for c0 in range(c_first, c_end, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            _blend_backward_tile(c, c < C, zero, s0_ptr, s1_ptr, mean_ptr, var_ptr, alpha_ptr, C, 1, zero, bw_ptr,
                                 bbn_ptr, iw_ptr, ib_ptr, bnm_ptr, bnv_ptr, da_ptr, dgb_ptr, dbbn_ptr, dgi_ptr,
                                 dbi_ptr, ca_ptr, cb_ptr, cc_ptr, N, C, eps, hw, True, HAS_BW, HAS_BBN, HAS_IW, HAS_IB,
                                 USE_BATCH)
    if PHASE == 0:
        tl.debug_barrier()
        for n in range(N):
            for c0 in range(0, C, BLOCK_C):
                _gate_grad_tile(n, c0, zero, da_ptr, ga_ptr, in_ptr, wb_ptr, bb_ptr, wi_ptr, gb_ptr, gi_ptr, C, K,
                                HAS_GA, HAS_BB, HAS_WI, BLOCK_C, BLOCK_K)
        tl.debug_barrier()
        for c0 in range(0, C, BLOCK_C):
            for k0 in range(0, K, BLOCK_K):
                _head_grad_tile(c0, k0, zero, gb_ptr, gi_ptr, in_ptr, dwb_ptr, dwi_ptr, dbb_ptr, N, C, K, HAS_BB,
                                HAS_WI, BLOCK_C, BLOCK_K)
        for n in range(N):
            for k0 in range(0, K, BLOCK_K):
                _input_grad_tile(n, k0, zk, gb_ptr, gi_ptr, wb_ptr, wi_ptr, z_ptr, dz_ptr, cc_ptr, C, D, K, hw,
                                 HAS_W1, HAS_WI, BLOCK_C, BLOCK_K)
        if HAS_W1:
            tl.debug_barrier()
            for c0 in range(0, C, BLOCK_C):
                for j0 in range(0, D, BLOCK_K):
                    _w1_grad_tile(c0, j0, zk, dz_ptr, mean_ptr, dw1_ptr, db1_ptr, N, C, D, HAS_B1, BLOCK_C, BLOCK_K)
                for n in range(N):
                    _mean_grad_tile(n, c0, zero, dz_ptr, w1_ptr, cc_ptr, C, D, hw, BLOCK_C, BLOCK_K)
    elif PHASE == 2:
        _gate_grad_tile(r, q * BLOCK_C, zero, da_ptr, ga_ptr, in_ptr, wb_ptr, bb_ptr, wi_ptr, gb_ptr, gi_ptr, C, K,
                        HAS_GA, HAS_BB, HAS_WI, BLOCK_C, BLOCK_K)
    elif PHASE == 3:
        if r * BLOCK_C < C:
            _head_grad_tile(r * BLOCK_C, q * BLOCK_K, zero, gb_ptr, gi_ptr, in_ptr, dwb_ptr, dwi_ptr, dbb_ptr, N, C,
                            K, HAS_BB, HAS_WI, BLOCK_C, BLOCK_K)
        if r < N:
            _input_grad_tile(r, q * BLOCK_K, zk, gb_ptr, gi_ptr, wb_ptr, wi_ptr, z_ptr, dz_ptr, cc_ptr, C, D, K, hw,
                             HAS_W1, HAS_WI, BLOCK_C, BLOCK_K)
    elif PHASE == 4:
        if r * BLOCK_K < D:
            _w1_grad_tile(q * BLOCK_C, r * BLOCK_K, zk, dz_ptr, mean_ptr, dw1_ptr, db1_ptr, N, C, D, HAS_B1, BLOCK_C,
                          BLOCK_K)
        if r < N:
            _mean_grad_tile(r, q * BLOCK_C, zero, dz_ptr, w1_ptr, cc_ptr, C, D, hw, BLOCK_C, BLOCK_K)


def one_program_max_work(work: Optional[int] = None) -> int:
    """The largest gate (multiply-adds of its forward) the Triton gated middle runs in one program;
    larger gates run one launch per phase over a grid of tiles (the same tile functions, so the
    same bits under the interpreter, which the tests check). Pass `work` to change it (0 spreads
    every gate); returns the limit now. The default, 2^16, is a prediction, not a measured crossover."""
    global ONE_PROGRAM_MAX_WORK
    if work is not None:
        ONE_PROGRAM_MAX_WORK = native.checked_gate_work(work)
    return ONE_PROGRAM_MAX_WORK


def gate_in_one_program(n: int, c: int, d: int, ratio_head: bool) -> bool:
    """Whether the gate runs in one program (PHASE 0): its forward's multiply-adds (hidden layer
    plus heads, as fast_blend.gate_work counts them) at most ONE_PROGRAM_MAX_WORK."""
    k = d if d else c
    return n * (c * k * (2 if ratio_head else 1) + d * c) <= ONE_PROGRAM_MAX_WORK


def _gate_tensors(mean, w1, b1, wb, bb, wi):
    """The gate weights in the statistics dtype, contiguous, checked; D and K."""
    n, c = mean.shape
    d = w1.shape[0] if w1 is not None else 0
    k = d if w1 is not None else c
    for t, name, shape in ((w1, "gate_w1", (d, c)), (b1, "gate_b1", (d,)), (wb, "gate_wb", (c, k)),
                           (bb, "gate_bb", (c,)), (wi, "gate_wi", (c, k))):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"anrl_ext: {name} must have shape {shape}, got {tuple(t.shape)}")
    if b1 is not None and w1 is None:
        raise ValueError("anrl_ext: gate_b1 given without gate_w1")
    return [_vector(t, mean) for t in (w1, b1, wb, bb, wi)], d, k


def gate_blend_forward(mean, var, w1, b1, wb, bb, wi, bn_weight, bn_bias, in_weight, in_bias, running_mean,
                       running_var, use_batch_stats, update_running, momentum, eps, count):
    """Triton gate_blend_forward: same signature and results as torch.ops.anrl_ext.gate_blend_forward."""
    mean, var = mean.contiguous(), var.contiguous()
    n, c = mean.shape
    ((w1_, hw1), (b1_, hb1), (wb_, _), (bb_, hbb), (wi_, hwi)), d, k = _gate_tensors(mean, w1, b1, wb, bb, wi)
    (bw, hbw), (bbn, hbbn), (iw, hiw), (ib, hib) = params((bn_weight, bn_bias, in_weight, in_bias), mean)
    (rm, hrm), (rv, hrv) = running_buffers(running_mean, running_var, mean, use_batch_stats, "gate_blend_forward")
    alpha, hidden = torch.empty_like(mean), mean.new_empty((n, d))
    scale, shift = torch.empty_like(mean), torch.empty_like(mean)
    bn_mean, bn_var = mean.new_empty((c,)), mean.new_empty((c,))
    if mean.numel():
        args = (mean, var, w1_, b1_, wb_, bb_, wi_, hidden if d else mean, hidden if d else mean, alpha,
                bw, bbn, iw, ib, rm, rv, scale, shift, bn_mean, bn_var, n, c, d, k, *_split(eps), *_split(momentum),
                *_split(unbias(count)))
        flags = dict(HAS_W1=hw1, HAS_B1=hb1, HAS_BB=hbb, HAS_WI=hwi, HAS_BW=hbw, HAS_BBN=hbbn, HAS_IW=hiw,
                     HAS_IB=hib, HAS_RM=hrm, HAS_RV=hrv, USE_BATCH=bool(use_batch_stats),
                     UPDATE=bool(update_running and use_batch_stats), BLOCK_C=BLOCK_C, BLOCK_K=BLOCK_K,
                     num_warps=NUM_WARPS)
        launch = fast(_gate_forward_kernel)
        if gate_in_one_program(n, c, d, hwi):
            launch[(1,)](*args, **flags, PHASE=0)
        else:
            c_tiles = triton.cdiv(c, BLOCK_C)
            if d:
                launch[(n, triton.cdiv(d, BLOCK_K))](*args, **flags, PHASE=1)
            launch[(n, c_tiles)](*args, **flags, PHASE=2)
            launch[(c_tiles,)](*args, **flags, PHASE=3)
    write_back(running_mean, running_var, rm, rv)
    return alpha, hidden, scale, shift, bn_mean, bn_var


def gate_blend_backward(s0, s1, mean, var, alpha, hidden, alpha_grad, w1, b1, wb, bb, wi, bn_weight, bn_bias,
                        in_weight, in_bias, bn_mean, bn_var, use_batch_stats, eps, hw):
    """Triton gate_blend_backward: same signature and results as torch.ops.anrl_ext.gate_blend_backward."""
    mean, var, s0, s1 = mean.contiguous(), var.contiguous(), s0.contiguous(), s1.contiguous()
    alpha, hidden = stats(alpha, mean), stats(hidden, mean)
    n, c = mean.shape
    ((w1_, hw1), (b1_, hb1), (wb_, _), (bb_, hbb), (wi_, hwi)), d, k = _gate_tensors(mean, w1, b1, wb, bb, wi)
    ga, hga = _vector(alpha_grad, mean)
    weights = (bn_weight, bn_bias, in_weight, in_bias)
    (bw, hbw), (bbn, hbbn), (iw, hiw), (ib, hib) = params(weights, mean)
    d_alpha, g_b, g_i, ca, cb, cc = (torch.empty_like(mean) for _ in range(6))
    dz = mean.new_empty((n, d))
    # an absent slot's gradient: its own empty tensor (outputs of an op must not alias each other)
    present = (w1_ if hw1 else None, b1_ if hb1 else None, bb_ if hbb else None, wi_ if hwi else None)
    d_w1, d_b1, d_bb, d_wi = (torch.empty_like(t) if t is not None else mean.new_empty((0,)) for t in present)
    d_wb = mean.new_empty((c, k))
    dgb, dbbn, dgi, dbi = weight_grads(weights, mean)
    if mean.numel():
        args = (s0, s1, mean, var, alpha, hidden if d else mean, hidden if d else mean, ga, w1_, wb_, bb_, wi_,
                bw, bbn, iw, ib, stats(bn_mean, mean), stats(bn_var, mean), d_alpha,
                g_b, g_i, dz if d else mean, d_w1 if hw1 else mean, d_b1 if hb1 else mean, d_wb,
                d_bb if hbb else mean, d_wi if hwi else mean, dgb, dbbn, dgi, dbi, ca, cb, cc, n, c, d, k,
                *_split(eps), int(hw))
        flags = dict(HAS_GA=hga, HAS_W1=hw1, HAS_B1=hb1, HAS_BB=hbb, HAS_WI=hwi, HAS_BW=hbw, HAS_BBN=hbbn,
                     HAS_IW=hiw, HAS_IB=hib, USE_BATCH=bool(use_batch_stats), BLOCK_C=BLOCK_C, BLOCK_K=BLOCK_K,
                     num_warps=NUM_WARPS)
        launch = fast(_gate_backward_kernel)
        if gate_in_one_program(n, c, d, hwi):
            launch[(1,)](*args, **flags, PHASE=0)
        else:
            c_tiles = triton.cdiv(c, BLOCK_C)
            launch[(c_tiles,)](*args, **flags, PHASE=1)
            launch[(n, c_tiles)](*args, **flags, PHASE=2)
            launch[(max(c_tiles, n), triton.cdiv(k, BLOCK_K))](*args, **flags, PHASE=3)
            if d:
                launch[(max(triton.cdiv(d, BLOCK_K), n), c_tiles)](*args, **flags, PHASE=4)
    return d_w1, d_b1, d_wb, d_bb, d_wi, dgb, dbbn, dgi, dbi, ca, cb, cc
