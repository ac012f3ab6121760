"""Triton kernels of the (N, C) middle (backend="triton"): blend_forward and
blend_backward, one program per block of channels, each looping over the N
samples. The same math as csrc/include/anrl_ext/blend.h (CPU and CUDA) and
`reference.blend_forward_reference` / `blend_backward_reference`.

Eager-only helpers of the first-order path (fast_blend.py), launched directly:
torch.compile traces the composed primitives instead. Square roots are the
IEEE-rounded `sqrt_rn` in float32 (Triton's plain `sqrt` is approximate there).
Python floats reach a Triton kernel as float32, so each scalar travels as a
float32 (hi, lo) pair that the kernel sums in the statistics dtype: float64
statistics keep ~48 bits of alpha, eps and momentum instead of 24.
"""
from __future__ import annotations

import struct

import torch
import triton
import triton.language as tl

from .primitives import weight_grads
from .triton_launch import fast

BLOCK_C = 128
BLOCK = 1024  # most lanes per program of the plane kernels (triton_backend, triton_blend_apply)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)  # triton.cdiv is a ConstexprFunction: ~7 us per host call


def plane_block(m: int) -> int:
    """Lanes per program along one (n, c) plane of m elements: m rounded up to a
    power of two, from 128 to BLOCK. A 14x14 plane in 1024 lanes would leave 80 %
    of them masked off."""
    return min(BLOCK, max(128, 1 << (m - 1).bit_length()))


def _split(v: float):
    """A float as float32 hi + lo, for a kernel argument that float64 math needs exactly."""
    hi = struct.unpack("f", struct.pack("f", v))[0]
    return hi, v - hi


@triton.jit
def _sqrt(x):
    if x.dtype == tl.float32:
        return tl.sqrt_rn(x)
    else:
        return tl.sqrt(x)


@triton.jit
def _joined(hi, lo, zero):
    """hi + lo as a vector of zero's dtype (see _split)."""
    return (zero + hi) + lo  # promotes the float32 scalars to zero's dtype


@triton.jit
def _affine_vectors(c, mask, bw_ptr, bb_ptr, iw_ptr, ib_ptr, HAS_BW: tl.constexpr, HAS_BB: tl.constexpr,
                    HAS_IW: tl.constexpr, HAS_IB: tl.constexpr, zero):
    # The weights come in their own dtype (a bfloat16 model's): computed in zero's.
    gb = tl.load(bw_ptr + c, mask=mask, other=1.0).to(zero.dtype) if HAS_BW else zero + 1.0
    bb = tl.load(bb_ptr + c, mask=mask, other=0.0).to(zero.dtype) if HAS_BB else zero
    gi = tl.load(iw_ptr + c, mask=mask, other=1.0).to(zero.dtype) if HAS_IW else zero + 1.0
    bi = tl.load(ib_ptr + c, mask=mask, other=0.0).to(zero.dtype) if HAS_IB else zero
    return gb, bb, gi, bi


@triton.jit
def _alpha_at(alpha_ptr, n, c, a_sn, a_sc, mask, alpha_value, HAS_ALPHA: tl.constexpr, zero):
    """alpha[n, c] read through its (broadcast) strides, or the scalar alpha."""
    if HAS_ALPHA:
        return tl.load(alpha_ptr + n * a_sn + c * a_sc, mask=mask, other=0.0).to(zero.dtype)
    else:
        return zero + alpha_value


@triton.jit
def _sample_terms(s0_ptr, s1_ptr, mean_ptr, var_ptr, i, mask, mu, eps):
    """Per-sample backward inputs at (n, c) = i: s0, s1, r_nc and mu_nc - mu_c."""
    s0 = tl.load(s0_ptr + i, mask=mask, other=0.0)
    s1 = tl.load(s1_ptr + i, mask=mask, other=0.0)
    rnc = 1.0 / _sqrt(tl.load(var_ptr + i, mask=mask, other=1.0) + eps)
    xc = tl.load(mean_ptr + i, mask=mask, other=0.0) - mu
    return s0, s1, rnc, xc


@triton.jit
def _add_sample(dgb, dbb, dgi, dbi, drc, dmu, a, s0, s1, rnc, xc, gb, rc):
    """The channel's backward sums (d bn_weight, d bn_bias, d in_weight, d in_bias,
    d rc, d mu) with one more sample (or vector of samples) added."""
    t = s1 + s0 * xc
    return (dgb + a * rc * t, dbb + a * s0, dgi + (1.0 - a) * rnc * s1, dbi + (1.0 - a) * s0, drc + a * gb * t,
            dmu - a * gb * rc * s0)


@triton.jit
def _in_dtype_of(ptr, value):
    """value in the dtype ptr points to; to bfloat16 through float32, as c10::BFloat16 converts a double
    on the cpu and cuda backends. Triton's interpreter casts only float32 to bfloat16: float64
    statistics (float64 input) with a bfloat16 layer's buffers came out as bit garbage there."""
    if ptr.dtype.element_ty == tl.bfloat16:
        value = value.to(tl.float32)
    return value.to(ptr.dtype.element_ty)


@triton.jit
def _store_weight_grads(c, mask, dgb_ptr, dbb_ptr, dgi_ptr, dbi_ptr, dgb, dbb, dgi, dbi):
    """The affine weights' gradients, each in its weight's dtype."""
    tl.store(dgb_ptr + c, _in_dtype_of(dgb_ptr, dgb), mask=mask)
    tl.store(dbb_ptr + c, _in_dtype_of(dbb_ptr, dbb), mask=mask)
    tl.store(dgi_ptr + c, _in_dtype_of(dgi_ptr, dgi), mask=mask)
    tl.store(dbi_ptr + c, _in_dtype_of(dbi_ptr, dbi), mask=mask)


@triton.jit
def _batch_coupling(drc, dmu, rc, N, zero, USE_BATCH: tl.constexpr):
    """(d var_c, d mu_c / N): how the batch statistics tie the samples together (none
    with running statistics)."""
    if USE_BATCH:
        return drc * -0.5 * rc * rc * rc, dmu / N
    else:
        return zero, zero


@triton.jit
def _d_alpha(s0, s1, rnc, xc, gb, bb, gi, bi, rc):
    return s1 * (gb * rc - gi * rnc) + s0 * (bb + gb * rc * xc - bi)


@triton.jit
def _dx_coefficients(a, s0, s1, rnc, xc, gb, gi, rc, dvc, dmu_n, N, hw):
    """(a, b, c) of dx = a dy + b (x - mean_nc) + c for one sample."""
    scale = a * gb * rc + (1.0 - a) * gi * rnc
    dvar = (1.0 - a) * gi * s1 * -0.5 * rnc * rnc * rnc + dvc / N
    dmean = a * gb * rc * s0 - scale * s0 + dmu_n + dvc * 2.0 * xc / N
    return scale, dvar * 2.0 / hw, dmean / hw


@triton.jit
def _update_running(rm_ptr, rv_ptr, c, mask, store_mask, mu, v, momentum, unbias, zero, HAS_RM: tl.constexpr,
                    HAS_RV: tl.constexpr):
    """The running buffers of channels c moved toward the batch's (mu, v * unbias),
    read and written in their own dtype; store_mask picks the programs that write."""
    if HAS_RM:
        rm = tl.load(rm_ptr + c, mask=mask, other=0.0).to(zero.dtype)
        tl.store(rm_ptr + c, _in_dtype_of(rm_ptr, (1.0 - momentum) * rm + momentum * mu), mask=store_mask)
    if HAS_RV:
        rv = tl.load(rv_ptr + c, mask=mask, other=0.0).to(zero.dtype)
        tl.store(rv_ptr + c, _in_dtype_of(rv_ptr, (1.0 - momentum) * rv + momentum * v * unbias), mask=store_mask)


@triton.jit
def _blend_forward_tile(c, mask, zero, mean_ptr, var_ptr, alpha_ptr, a_sn, a_sc, alpha_value, bw_ptr, bb_ptr,
                        iw_ptr, ib_ptr, rm_ptr, rv_ptr, scale_ptr, shift_ptr, bnm_ptr, bnv_ptr, N, C, eps, momentum,
                        unbias, HAS_ALPHA: tl.constexpr, HAS_BW: tl.constexpr, HAS_BB: tl.constexpr,
                        HAS_IW: tl.constexpr, HAS_IB: tl.constexpr, HAS_RM: tl.constexpr, HAS_RV: tl.constexpr,
                        USE_BATCH: tl.constexpr, UPDATE: tl.constexpr):
    """blend_forward of the channels c: BN merge, running stats, scale and shift."""
    if USE_BATCH:
        # Summed relative to the first sample's mean, as blend.h does (its comment says why).
        pivot = tl.load(mean_ptr + c, mask=mask, other=0.0)
        s = zero
        for n in range(N):
            s += tl.load(mean_ptr + n * C + c, mask=mask, other=0.0) - pivot
        mu = pivot + s / N
        q = zero
        for n in range(N):
            d = tl.load(mean_ptr + n * C + c, mask=mask, other=0.0) - mu
            q += tl.load(var_ptr + n * C + c, mask=mask, other=0.0) + d * d
        v = q / N
        if UPDATE:
            _update_running(rm_ptr, rv_ptr, c, mask, mask, mu, v, momentum, unbias, zero, HAS_RM, HAS_RV)
    else:
        mu = tl.load(rm_ptr + c, mask=mask, other=0.0).to(zero.dtype)
        v = tl.load(rv_ptr + c, mask=mask, other=1.0).to(zero.dtype)
    tl.store(bnm_ptr + c, mu, mask=mask)
    tl.store(bnv_ptr + c, v, mask=mask)
    rc = 1.0 / _sqrt(v + eps)
    gb, bb, gi, bi = _affine_vectors(c, mask, bw_ptr, bb_ptr, iw_ptr, ib_ptr, HAS_BW, HAS_BB, HAS_IW, HAS_IB, zero)
    for n in range(N):
        a = _alpha_at(alpha_ptr, n, c, a_sn, a_sc, mask, alpha_value, HAS_ALPHA, zero)
        m = tl.load(mean_ptr + n * C + c, mask=mask, other=0.0)
        rnc = 1.0 / _sqrt(tl.load(var_ptr + n * C + c, mask=mask, other=1.0) + eps)
        tl.store(scale_ptr + n * C + c, a * gb * rc + (1.0 - a) * gi * rnc, mask=mask)
        tl.store(shift_ptr + n * C + c, a * (bb + gb * rc * (m - mu)) + (1.0 - a) * bi, mask=mask)


@triton.jit
def _blend_forward_kernel(mean_ptr, var_ptr, alpha_ptr, a_sn, a_sc, alpha_hi, alpha_lo, bw_ptr, bb_ptr, iw_ptr,
                          ib_ptr, rm_ptr, rv_ptr, scale_ptr, shift_ptr, bnm_ptr, bnv_ptr, N, C, eps_hi, eps_lo,
                          mom_hi, mom_lo, unb_hi, unb_lo,
                          HAS_ALPHA: tl.constexpr, HAS_BW: tl.constexpr, HAS_BB: tl.constexpr,
                          HAS_IW: tl.constexpr, HAS_IB: tl.constexpr, HAS_RM: tl.constexpr, HAS_RV: tl.constexpr,
                          USE_BATCH: tl.constexpr, UPDATE: tl.constexpr, BLOCK: tl.constexpr):
    c = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    zero = tl.zeros([BLOCK], dtype=mean_ptr.dtype.element_ty)
    _blend_forward_tile(c, c < C, zero, mean_ptr, var_ptr, alpha_ptr, a_sn, a_sc, _joined(alpha_hi, alpha_lo, zero),
                        bw_ptr, bb_ptr, iw_ptr, ib_ptr, rm_ptr, rv_ptr, scale_ptr, shift_ptr, bnm_ptr, bnv_ptr, N, C,
                        _joined(eps_hi, eps_lo, zero), _joined(mom_hi, mom_lo, zero), _joined(unb_hi, unb_lo, zero),
                        HAS_ALPHA, HAS_BW, HAS_BB, HAS_IW, HAS_IB, HAS_RM, HAS_RV, USE_BATCH, UPDATE)


@triton.jit
def _blend_backward_tile(c, mask, zero, s0_ptr, s1_ptr, mean_ptr, var_ptr, alpha_ptr, a_sn, a_sc, alpha_value,
                         bw_ptr, bb_ptr, iw_ptr, ib_ptr, bnm_ptr, bnv_ptr, da_ptr, dgb_ptr, dbb_ptr, dgi_ptr, dbi_ptr,
                         ca_ptr, cb_ptr, cc_ptr, N, C, eps, hw, HAS_ALPHA: tl.constexpr, HAS_BW: tl.constexpr,
                         HAS_BB: tl.constexpr, HAS_IW: tl.constexpr, HAS_IB: tl.constexpr, USE_BATCH: tl.constexpr):
    """blend_backward of the channels c: closed-form gradients and the dx coefficients."""
    mu = tl.load(bnm_ptr + c, mask=mask, other=0.0)
    rc = 1.0 / _sqrt(tl.load(bnv_ptr + c, mask=mask, other=1.0) + eps)
    gb, bb, gi, bi = _affine_vectors(c, mask, bw_ptr, bb_ptr, iw_ptr, ib_ptr, HAS_BW, HAS_BB, HAS_IW, HAS_IB, zero)
    dgb = zero
    dbb = zero
    dgi = zero
    dbi = zero
    drc = zero
    dmu = zero
    for n in range(N):
        i = n * C + c
        a = _alpha_at(alpha_ptr, n, c, a_sn, a_sc, mask, alpha_value, HAS_ALPHA, zero)
        s0, s1, rnc, xc = _sample_terms(s0_ptr, s1_ptr, mean_ptr, var_ptr, i, mask, mu, eps)
        tl.store(da_ptr + i, _d_alpha(s0, s1, rnc, xc, gb, bb, gi, bi, rc), mask=mask)
        dgb, dbb, dgi, dbi, drc, dmu = _add_sample(dgb, dbb, dgi, dbi, drc, dmu, a, s0, s1, rnc, xc, gb, rc)
    _store_weight_grads(c, mask, dgb_ptr, dbb_ptr, dgi_ptr, dbi_ptr, dgb, dbb, dgi, dbi)
    dvc, dmu_n = _batch_coupling(drc, dmu, rc, N, zero, USE_BATCH)
    for n in range(N):  # recomputes the per-sample terms rather than re-reading its own stores
        i = n * C + c
        a = _alpha_at(alpha_ptr, n, c, a_sn, a_sc, mask, alpha_value, HAS_ALPHA, zero)
        s0, s1, rnc, xc = _sample_terms(s0_ptr, s1_ptr, mean_ptr, var_ptr, i, mask, mu, eps)
        ca, cb, cc = _dx_coefficients(a, s0, s1, rnc, xc, gb, gi, rc, dvc, dmu_n, N, hw)
        tl.store(ca_ptr + i, ca, mask=mask)
        tl.store(cb_ptr + i, cb, mask=mask)
        tl.store(cc_ptr + i, cc, mask=mask)


@triton.jit
def _blend_backward_kernel(s0_ptr, s1_ptr, mean_ptr, var_ptr, alpha_ptr, a_sn, a_sc, alpha_hi, alpha_lo,
                           bw_ptr, bb_ptr, iw_ptr, ib_ptr, bnm_ptr, bnv_ptr,
                           da_ptr, dgb_ptr, dbb_ptr, dgi_ptr, dbi_ptr, ca_ptr, cb_ptr, cc_ptr, N, C, eps_hi, eps_lo,
                           hw,
                           HAS_ALPHA: tl.constexpr, HAS_BW: tl.constexpr, HAS_BB: tl.constexpr,
                           HAS_IW: tl.constexpr, HAS_IB: tl.constexpr, USE_BATCH: tl.constexpr,
                           BLOCK: tl.constexpr):
    c = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    zero = tl.zeros([BLOCK], dtype=mean_ptr.dtype.element_ty)
    _blend_backward_tile(c, c < C, zero, s0_ptr, s1_ptr, mean_ptr, var_ptr, alpha_ptr, a_sn, a_sc,
                         _joined(alpha_hi, alpha_lo, zero), bw_ptr, bb_ptr, iw_ptr, ib_ptr, bnm_ptr, bnv_ptr,
                         da_ptr, dgb_ptr, dbb_ptr, dgi_ptr, dbi_ptr, ca_ptr, cb_ptr, cc_ptr, N, C,
                         _joined(eps_hi, eps_lo, zero), hw, HAS_ALPHA, HAS_BW, HAS_BB, HAS_IW, HAS_IB, USE_BATCH)


def as_dtype(t, dtype):
    """t in `dtype`, contiguous; no call where it already is (host time counts: the
    GPU path is launch-bound)."""
    if t.dtype != dtype:
        t = t.to(dtype)
    return t if t.is_contiguous() else t.contiguous()


def stats(t, mean):
    """t as a statistic next to `mean`: mean's dtype, contiguous."""
    return as_dtype(t, mean.dtype)


def _alpha_args(alpha, mean):
    """(alpha, stride n, stride c, present): read in its own dtype, through its strides."""
    if alpha is None:
        return mean, 0, 0, False
    a = alpha
    if a.dim() == 2:
        return a, a.stride(0), a.stride(1), True
    if a.dim() == 1:
        return a, 0, a.stride(0), True
    return a, 0, 0, True


def _vector(t, mean):
    return (stats(t, mean), True) if t is not None else (mean, False)


def params(tensors, mean):
    """[(t, present)] of the affine weights or running buffers as the kernels read them:
    their own dtype (no conversion launch for a bfloat16 model), contiguous."""
    return [(t if t.is_contiguous() else t.contiguous(), True) if t is not None else (mean, False)
            for t in tensors]


def running_buffers(running_mean, running_var, mean, use_batch_stats, op):
    """((buffer, present), (buffer, present)) as the kernels update them: in their own
    dtype and contiguous, else a working copy that `write_back` copies into the buffer
    afterwards."""
    rm, rv = params((running_mean, running_var), mean)
    if not use_batch_stats and not (rm[1] and rv[1]):
        raise ValueError(f"anrl_ext: {op} without batch statistics needs running_mean and running_var")
    return rm, rv


def write_back(running_mean, running_var, rm, rv):
    for buf, work in ((running_mean, rm), (running_var, rv)):
        if buf is not None and work.data_ptr() != buf.data_ptr():
            buf.copy_(work)


def unbias(count):
    """count / (count - 1): running_var holds the unbiased variance (PyTorch BN semantics)."""
    return count / (count - 1) if count > 1 else 1.0


def blend_forward(mean, var, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, running_mean, running_var,
                  use_batch_stats, update_running, momentum, eps, count):
    """Triton blend_forward: same signature and results as torch.ops.anrl_ext.blend_forward."""
    mean, var = mean.contiguous(), var.contiguous()
    n, c = mean.shape
    a, a_sn, a_sc, has_alpha = _alpha_args(alpha, mean)
    (bw, hbw), (bb, hbb), (iw, hiw), (ib, hib) = params((bn_weight, bn_bias, in_weight, in_bias), mean)
    (rm, hrm), (rv, hrv) = running_buffers(running_mean, running_var, mean, use_batch_stats, "blend_forward")
    scale, shift = torch.empty_like(mean), torch.empty_like(mean)
    bn_mean, bn_var = mean.new_empty((c,)), mean.new_empty((c,))
    if c:
        fast(_blend_forward_kernel)[(cdiv(c, BLOCK_C),)](
            mean, var, a, a_sn, a_sc, *_split(alpha_value), bw, bb, iw, ib, rm, rv, scale, shift, bn_mean, bn_var,
            n, c, *_split(eps), *_split(momentum), *_split(unbias(count)),
            HAS_ALPHA=has_alpha, HAS_BW=hbw, HAS_BB=hbb, HAS_IW=hiw, HAS_IB=hib, HAS_RM=hrm, HAS_RV=hrv,
            USE_BATCH=bool(use_batch_stats), UPDATE=bool(update_running and use_batch_stats), BLOCK=BLOCK_C)
    write_back(running_mean, running_var, rm, rv)
    return scale, shift, bn_mean, bn_var


def blend_backward(s0, s1, mean, var, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias, bn_mean, bn_var,
                   use_batch_stats, eps, hw):
    """Triton blend_backward: same signature and results as torch.ops.anrl_ext.blend_backward."""
    mean, var, s0, s1 = mean.contiguous(), var.contiguous(), s0.contiguous(), s1.contiguous()
    n, c = mean.shape
    a, a_sn, a_sc, has_alpha = _alpha_args(alpha, mean)
    weights = (bn_weight, bn_bias, in_weight, in_bias)
    (bw, hbw), (bb, hbb), (iw, hiw), (ib, hib) = params(weights, mean)
    d_alpha, ca, cb, cc = (torch.empty_like(mean) for _ in range(4))
    dgb, dbb, dgi, dbi = weight_grads(weights, mean)
    if c:
        fast(_blend_backward_kernel)[(cdiv(c, BLOCK_C),)](
            s0, s1, mean, var, a, a_sn, a_sc, *_split(alpha_value), bw, bb, iw, ib,
            stats(bn_mean, mean), stats(bn_var, mean),
            d_alpha, dgb, dbb, dgi, dbi, ca, cb, cc, n, c, *_split(eps), int(hw),
            HAS_ALPHA=has_alpha, HAS_BW=hbw, HAS_BB=hbb, HAS_IW=hiw, HAS_IB=hib,
            USE_BATCH=bool(use_batch_stats), BLOCK=BLOCK_C)
    return d_alpha, dgb, dbb, dgi, dbi, ca, cb, cc
