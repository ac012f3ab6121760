"""Triton kernels that fold the (N, C) middle into the elementwise maps (backend="triton").

    fold_forward : blend_forward + affine    -> (y, bn_mean, bn_var)
    fold_backward: blend_backward + affine2  -> (dx, d_alpha, d_bn_weight, d_bn_bias,
                                                 d_in_weight, d_in_bias)

On a GPU the Triton path is bound by host time per launch (benchmarks/results/
GPU_NOTES.md), so the first-order path launches four kernels per forward +
backward instead of six: moments, fold_forward, reduce, fold_backward (the
backend's blend_apply_forward / _backward, triton_backend.py). Every program
(one block of ROWS planes (n, c) of one channel) recomputes its channel's batch
statistics (forward) or its channel's sums over the batch (backward) from the
(N, C) statistics: a few vector loads from cache instead of a launch. Programs
of block 0 store the per-(n, c) outputs, the program of the first samples /
block 0 the per-channel ones and the running statistics. NCHW only (`fits`):
channels_last inputs take the six-launch path.

Same math, order of operations and statistics dtype as `triton_blend`
(`_blend_forward_tile`, `_blend_backward_tile`), except that the sums over the
batch are tree reductions. Reference: `blend_forward_reference` then `affine`,
`blend_backward_reference` then `affine2` (anrl_ext/ops/reference.py).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .primitives import weight_grads
from .triton_launch import fast
from .triton_blend import (_add_sample, _affine_vectors, _alpha_args, _alpha_at, _batch_coupling, _d_alpha,
                           _dx_coefficients, _joined, _sample_terms, _split, _sqrt, _store_weight_grads,
                           _update_running, cdiv, params, plane_block, running_buffers, stats, unbias, write_back)

# Samples per vector load when a program walks its channel over the batch.
MAX_BLOCK_N = 32
# Elements a program maps: ROWS planes of one channel (samples) x BLOCK values of each. The
# fold's channel work (the batch walk, its sums, the weights) costs a program about 450 sm_90
# instructions, whatever it maps: with one plane block of 1024 (8 values a thread) a program ran
# 64 (forward) and 66 (backward) instructions per value, about as much issue time as the copy of
# the map's bytes takes; 4096 values share it: 23 and 29 (python benchmarks/kernel_report.py).
FOLD_TILE = 4096


def _block_n(n: int) -> int:
    return min(MAX_BLOCK_N, 1 << max(n - 1, 0).bit_length())


def fold_rows(n: int, block: int) -> int:
    """ROWS of a fold launch: planes of one channel a program maps, a power of two, enough
    for FOLD_TILE elements of `block` each and no more than the batch needs."""
    return max(1, min(FOLD_TILE // block, 1 << max(n - 1, 0).bit_length()))


@triton.jit
def _channel_batch_stats(mean_ptr, var_ptr, c, N, C, zero_n, BLOCK_N: tl.constexpr):
    """Mean and biased variance of channel c over the batch, from the per-sample moments."""
    pivot = tl.load(mean_ptr + c)  # the means summed relative to the first one, as in blend.h
    s = zero_n
    for start in range(0, N, BLOCK_N):
        ns = start + tl.arange(0, BLOCK_N)
        s += tl.where(ns < N, tl.load(mean_ptr + ns * C + c, mask=ns < N, other=0.0) - pivot, 0.0)
    mu = pivot + tl.sum(s, 0) / N
    q = zero_n
    for start in range(0, N, BLOCK_N):
        ns = start + tl.arange(0, BLOCK_N)
        mask = ns < N
        d = tl.where(mask, tl.load(mean_ptr + ns * C + c, mask=mask, other=0.0) - mu, 0.0)
        q += tl.load(var_ptr + ns * C + c, mask=mask, other=0.0) + d * d
    return mu, tl.sum(q, 0) / N


@triton.jit
def _fold_tile(ns, c, C, M, rmask, BLOCK: tl.constexpr):
    """This program's [ROWS, BLOCK] tile of the planes (ns, c): element offsets, mask, plane indices."""
    planes = ns * C + c
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    addr = planes.to(tl.int64)[:, None] * M + offs[None, :]
    return addr, rmask[:, None] & (offs < M)[None, :], planes


@triton.jit
def _blend_affine_kernel(x_ptr, y_ptr, mean_ptr, var_ptr, alpha_ptr, a_sn, a_sc, alpha_hi, alpha_lo, bw_ptr, bb_ptr,
                         iw_ptr, ib_ptr, rm_ptr, rv_ptr, bnm_ptr, bnv_ptr, N, C, M, eps_hi, eps_lo, mom_hi, mom_lo,
                         unb_hi, unb_lo,
                         HAS_ALPHA: tl.constexpr, HAS_BW: tl.constexpr, HAS_BB: tl.constexpr, HAS_IW: tl.constexpr,
                         HAS_IB: tl.constexpr, HAS_RM: tl.constexpr, HAS_RV: tl.constexpr, USE_BATCH: tl.constexpr,
                         UPDATE: tl.constexpr, BLOCK: tl.constexpr, BLOCK_N: tl.constexpr, ROWS: tl.constexpr):
    group = tl.program_id(0) // C
    c = tl.program_id(0) % C
    ns = group * ROWS + tl.arange(0, ROWS)  # this program's samples of channel c
    rmask = ns < N
    zero_n = tl.zeros([BLOCK_N], dtype=mean_ptr.dtype.element_ty)
    zero = tl.sum(zero_n, 0)  # a scalar in the statistics dtype
    zero_rows = tl.zeros([ROWS], dtype=zero.dtype)
    eps = _joined(eps_hi, eps_lo, zero)
    first = (group == 0) & (tl.program_id(1) == 0)  # the one program that writes the channel's outputs
    if USE_BATCH:
        mu, v = _channel_batch_stats(mean_ptr, var_ptr, c, N, C, zero_n, BLOCK_N)
        if UPDATE:
            _update_running(rm_ptr, rv_ptr, c, c < C, first, mu, v, _joined(mom_hi, mom_lo, zero),
                            _joined(unb_hi, unb_lo, zero), zero, HAS_RM, HAS_RV)
    else:
        mu = tl.load(rm_ptr + c).to(zero.dtype)
        v = tl.load(rv_ptr + c).to(zero.dtype)
    tl.store(bnm_ptr + c, mu, mask=first)
    tl.store(bnv_ptr + c, v, mask=first)
    rc = 1.0 / _sqrt(v + eps)
    on = c < C
    gb, bb, gi, bi = _affine_vectors(c, on, bw_ptr, bb_ptr, iw_ptr, ib_ptr, HAS_BW, HAS_BB, HAS_IW, HAS_IB, zero)
    addr, mask, planes = _fold_tile(ns, c, C, M, rmask, BLOCK)
    a = _alpha_at(alpha_ptr, ns, c, a_sn, a_sc, rmask, _joined(alpha_hi, alpha_lo, zero), HAS_ALPHA, zero_rows)
    m = tl.load(mean_ptr + planes, mask=rmask, other=0.0)
    rnc = 1.0 / _sqrt(tl.load(var_ptr + planes, mask=rmask, other=1.0) + eps)
    scale = a * gb * rc + (1.0 - a) * gi * rnc
    shift = a * (bb + gb * rc * (m - mu)) + (1.0 - a) * bi
    x = tl.load(x_ptr + addr, mask=mask, other=0.0).to(m.dtype)
    y = (x - m[:, None]) * scale[:, None] + shift[:, None]
    tl.store(y_ptr + addr, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _blend_affine2_kernel(dy_ptr, x_ptr, dx_ptr, s0_ptr, s1_ptr, mean_ptr, var_ptr, alpha_ptr, a_sn, a_sc, alpha_hi,
                          alpha_lo, bw_ptr, bb_ptr, iw_ptr, ib_ptr, bnm_ptr, bnv_ptr, da_ptr, dgb_ptr, dbb_ptr,
                          dgi_ptr, dbi_ptr, N, C, M, eps_hi, eps_lo,
                          HAS_ALPHA: tl.constexpr, HAS_BW: tl.constexpr, HAS_BB: tl.constexpr,
                          HAS_IW: tl.constexpr, HAS_IB: tl.constexpr, USE_BATCH: tl.constexpr, BLOCK: tl.constexpr,
                          BLOCK_N: tl.constexpr, ROWS: tl.constexpr):
    group = tl.program_id(0) // C
    c = tl.program_id(0) % C
    ns = group * ROWS + tl.arange(0, ROWS)  # this program's samples of channel c
    rmask = ns < N
    zero_n = tl.zeros([BLOCK_N], dtype=mean_ptr.dtype.element_ty)
    zero = tl.sum(zero_n, 0)
    zero_rows = tl.zeros([ROWS], dtype=zero.dtype)
    eps = _joined(eps_hi, eps_lo, zero)
    alpha_value = _joined(alpha_hi, alpha_lo, zero)
    on = c < C
    mu = tl.load(bnm_ptr + c)
    rc = 1.0 / _sqrt(tl.load(bnv_ptr + c) + eps)
    gb, bb, gi, bi = _affine_vectors(c, on, bw_ptr, bb_ptr, iw_ptr, ib_ptr, HAS_BW, HAS_BB, HAS_IW, HAS_IB, zero)
    # The channel's sums over the batch (masked samples add zero: every term carries s0 or s1).
    dgb = zero_n
    dbb = zero_n
    dgi = zero_n
    dbi = zero_n
    drc = zero_n
    dmu = zero_n
    for start in range(0, N, BLOCK_N):
        nb = start + tl.arange(0, BLOCK_N)
        nmask = nb < N
        a_n = _alpha_at(alpha_ptr, nb, c, a_sn, a_sc, nmask, alpha_value + zero_n, HAS_ALPHA, zero_n)
        s0_n, s1_n, rnc_n, xc_n = _sample_terms(s0_ptr, s1_ptr, mean_ptr, var_ptr, nb * C + c, nmask, mu, eps)
        dgb, dbb, dgi, dbi, drc, dmu = _add_sample(dgb, dbb, dgi, dbi, drc, dmu, a_n, s0_n, s1_n, rnc_n, xc_n, gb,
                                                   rc)
    first = (group == 0) & (tl.program_id(1) == 0)
    _store_weight_grads(c, first, dgb_ptr, dbb_ptr, dgi_ptr, dbi_ptr, tl.sum(dgb, 0), tl.sum(dbb, 0),
                        tl.sum(dgi, 0), tl.sum(dbi, 0))
    dvc, dmu_n = _batch_coupling(tl.sum(drc, 0), tl.sum(dmu, 0), rc, N, zero, USE_BATCH)
    # This program's planes (ns, c): d alpha, then the dx coefficients.
    addr, mask, planes = _fold_tile(ns, c, C, M, rmask, BLOCK)
    a = _alpha_at(alpha_ptr, ns, c, a_sn, a_sc, rmask, alpha_value, HAS_ALPHA, zero_rows)
    s0, s1, rnc, xc = _sample_terms(s0_ptr, s1_ptr, mean_ptr, var_ptr, planes, rmask, mu, eps)
    tl.store(da_ptr + planes, _d_alpha(s0, s1, rnc, xc, gb, bb, gi, bi, rc), mask=rmask & (tl.program_id(1) == 0))
    scale, cb, cc = _dx_coefficients(a, s0, s1, rnc, xc, gb, gi, rc, dvc, dmu_n, N, M)
    m = tl.load(mean_ptr + planes, mask=rmask, other=0.0)
    g = tl.load(dy_ptr + addr, mask=mask, other=0.0).to(m.dtype)
    x = tl.load(x_ptr + addr, mask=mask, other=0.0).to(m.dtype)
    dx = scale[:, None] * g + (x - m[:, None]) * cb[:, None] + cc[:, None]
    tl.store(dx_ptr + addr, dx.to(dx_ptr.dtype.element_ty), mask=mask)


def fits(x: torch.Tensor) -> bool:
    """Whether the fused kernels take x: NCHW contiguous and not empty."""
    return x.numel() > 0 and x.is_contiguous()


def fold_forward(x, mean, var, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, running_mean,
                 running_var, use_batch_stats, update_running, momentum, eps):
    """blend_forward then affine in one launch: (y, bn_mean, bn_var), running buffers updated
    in place. x must satisfy `fits`; the other arguments are blend_forward's."""
    n, c, h, w = x.shape
    count = n * h * w
    mean, var = stats(mean, mean), stats(var, mean)
    a, a_sn, a_sc, has_alpha = _alpha_args(alpha, mean)
    (bw, hbw), (bb, hbb), (iw, hiw), (ib, hib) = params((bn_weight, bn_bias, in_weight, in_bias), mean)
    (rm, hrm), (rv, hrv) = running_buffers(running_mean, running_var, mean, use_batch_stats, "blend_apply_forward")
    y = torch.empty_like(x)
    bn_mean, bn_var = mean.new_empty((c,)), mean.new_empty((c,))
    block = plane_block(h * w)
    rows = fold_rows(n, block)
    fast(_blend_affine_kernel)[(c * cdiv(n, rows), cdiv(h * w, block))](
        x, y, mean, var, a, a_sn, a_sc, *_split(alpha_value), bw, bb, iw, ib, rm, rv, bn_mean, bn_var, n, c, h * w,
        *_split(eps), *_split(momentum), *_split(unbias(count)),
        HAS_ALPHA=has_alpha, HAS_BW=hbw, HAS_BB=hbb, HAS_IW=hiw, HAS_IB=hib, HAS_RM=hrm, HAS_RV=hrv,
        USE_BATCH=bool(use_batch_stats), UPDATE=bool(update_running and use_batch_stats), BLOCK=block,
        BLOCK_N=_block_n(n), ROWS=rows)
    write_back(running_mean, running_var, rm, rv)
    return y, bn_mean, bn_var


def fold_backward(dy, x, s0, s1, mean, var, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, bn_mean,
                  bn_var, use_batch_stats, eps):
    """blend_backward then affine2 in one launch: (dx, d_alpha, d_bn_weight, d_bn_bias,
    d_in_weight, d_in_bias). x must satisfy `fits`; dy is read as NCHW."""
    n, c, h, w = x.shape
    dy = dy if dy.is_contiguous() else dy.contiguous()
    mean, var, s0, s1 = (stats(t, mean) for t in (mean, var, s0, s1))
    a, a_sn, a_sc, has_alpha = _alpha_args(alpha, mean)
    weights = (bn_weight, bn_bias, in_weight, in_bias)
    (bw, hbw), (bb, hbb), (iw, hiw), (ib, hib) = params(weights, mean)
    dx = torch.empty_like(x)
    d_alpha = torch.empty_like(mean)
    dgb, dbb, dgi, dbi = weight_grads(weights, mean)
    block = plane_block(h * w)
    rows = fold_rows(n, block)
    fast(_blend_affine2_kernel)[(c * cdiv(n, rows), cdiv(h * w, block))](
        dy, x, dx, s0, s1, mean, var, a, a_sn, a_sc, *_split(alpha_value), bw, bb, iw, ib,
        stats(bn_mean, mean), stats(bn_var, mean), d_alpha, dgb, dbb, dgi, dbi, n, c, h * w, *_split(eps),
        HAS_ALPHA=has_alpha, HAS_BW=hbw, HAS_BB=hbb, HAS_IW=hiw, HAS_IB=hib, USE_BATCH=bool(use_batch_stats),
        BLOCK=block, BLOCK_N=_block_n(n), ROWS=rows)
    return dx, d_alpha, dgb, dbb, dgi, dbi
