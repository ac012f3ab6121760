"""Triton kernels of the gated middle (backend="triton"): gate_blend_forward and
gate_blend_backward, the AFNM gate MLP and the (N, C) middle in one launch each
way. The same math as csrc/include/anrl_ext/gate.h (CPU and CUDA) and
`reference.gate_blend_forward_reference` / `gate_blend_backward_reference`.

The gate mixes channels, so one program runs every phase, with a barrier
between phases (as the CUDA kernel does in one block):

    forward : hidden z (n, j) -> alpha (n, c) -> blend per channel tile
    backward: blend + head gradients per channel tile -> hidden gradient (n, k)
              -> W1 gradient and the means' gradient per channel tile

Dot products run over tiles (BLOCK_C x BLOCK_K), so sums associate
differently from the C++ loops: equal to rounding, not bitwise. Each output is
written once, in a fixed order, so two runs give the same bits.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .primitives import weight_grads
from .triton_launch import fast
from .triton_blend import (_blend_backward_tile, _blend_forward_tile, _joined, _split, _vector, params,
                           running_buffers, stats, unbias, write_back)

BLOCK_C = 64  # channels per tile
BLOCK_K = 32  # reduction width per tile
NUM_WARPS = 8  # one program does all the work: give it a full block


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


# One compiled variant per flag set, not per size: sizes are not specialised on.
@triton.jit(do_not_specialize=["N", "C", "D", "K"])
def _gate_forward_kernel(mean_ptr, var_ptr, w1_ptr, b1_ptr, wb_ptr, bb_ptr, wi_ptr, z_ptr, in_ptr, alpha_ptr,
                         bw_ptr, bbn_ptr, iw_ptr, ib_ptr, rm_ptr, rv_ptr, scale_ptr, shift_ptr, bnm_ptr, bnv_ptr,
                         N, C, D, K, eps_hi, eps_lo, mom_hi, mom_lo, unb_hi, unb_lo,
                         HAS_W1: tl.constexpr, HAS_B1: tl.constexpr, HAS_BB: tl.constexpr, HAS_WI: tl.constexpr,
                         HAS_BW: tl.constexpr, HAS_BBN: tl.constexpr, HAS_IW: tl.constexpr, HAS_IB: tl.constexpr,
                         HAS_RM: tl.constexpr, HAS_RV: tl.constexpr, USE_BATCH: tl.constexpr, UPDATE: tl.constexpr,
                         BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr):
    zero = tl.zeros([BLOCK_C], dtype=mean_ptr.dtype.element_ty)
    zk = tl.zeros([BLOCK_K], dtype=mean_ptr.dtype.element_ty)
    if HAS_W1:  # phase 1: z[n, j] = relu(b1[j] + sum_c S[n, c] W1[j, c])
        for n in range(N):
            for j0 in range(0, D, BLOCK_K):
                j = j0 + tl.arange(0, BLOCK_K)
                jmask = j < D
                acc = tl.load(b1_ptr + j, mask=jmask, other=0.0) if HAS_B1 else zk
                for c0 in range(0, C, BLOCK_C):
                    c = c0 + tl.arange(0, BLOCK_C)
                    cmask = c < C
                    s = tl.load(mean_ptr + n * C + c, mask=cmask, other=0.0)
                    w = tl.load(w1_ptr + j[:, None] * C + c[None, :], mask=jmask[:, None] & cmask[None, :],
                                other=0.0)
                    acc += tl.sum(w * s[None, :], axis=1)
                tl.store(z_ptr + n * D + j, tl.maximum(acc, 0.0), mask=jmask)
        tl.debug_barrier()
    for n in range(N):  # phase 2: alpha[n, c]
        for c0 in range(0, C, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            cmask = c < C
            ub, ui = _heads(n, c, cmask, zero, in_ptr, wb_ptr, bb_ptr, wi_ptr, K, HAS_BB, HAS_WI, BLOCK_K)
            if HAS_WI:
                a, _ = _sigmoid_ratio(ub, ui)
                tl.store(alpha_ptr + n * C + c, a, mask=cmask)
            else:
                tl.store(alpha_ptr + n * C + c, _sigmoid(ub), mask=cmask)
    tl.debug_barrier()
    eps = _joined(eps_hi, eps_lo, zero)
    momentum = _joined(mom_hi, mom_lo, zero)
    unbias = _joined(unb_hi, unb_lo, zero)
    for c0 in range(0, C, BLOCK_C):  # phase 3: the blend, alpha read back as (N, C)
        c = c0 + tl.arange(0, BLOCK_C)
        _blend_forward_tile(c, c < C, zero, mean_ptr, var_ptr, alpha_ptr, C, 1, zero, bw_ptr, bbn_ptr, iw_ptr,
                            ib_ptr, rm_ptr, rv_ptr, scale_ptr, shift_ptr, bnm_ptr, bnv_ptr, N, C, eps, momentum,
                            unbias, True, HAS_BW, HAS_BBN, HAS_IW, HAS_IB, HAS_RM, HAS_RV, USE_BATCH, UPDATE)


@triton.jit(do_not_specialize=["N", "C", "D", "K", "hw"])
def _gate_backward_kernel(s0_ptr, s1_ptr, mean_ptr, var_ptr, alpha_ptr, z_ptr, in_ptr, ga_ptr, w1_ptr, wb_ptr,
                          bb_ptr, wi_ptr, bw_ptr, bbn_ptr, iw_ptr, ib_ptr, bnm_ptr, bnv_ptr, da_ptr, gb_ptr, gi_ptr,
                          dz_ptr, dw1_ptr, db1_ptr, dwb_ptr, dbb_ptr, dwi_ptr, dgb_ptr, dbbn_ptr, dgi_ptr, dbi_ptr,
                          ca_ptr, cb_ptr, cc_ptr, N, C, D, K, eps_hi, eps_lo, hw,
                          HAS_GA: tl.constexpr, HAS_W1: tl.constexpr, HAS_B1: tl.constexpr, HAS_BB: tl.constexpr,
                          HAS_WI: tl.constexpr, HAS_BW: tl.constexpr, HAS_BBN: tl.constexpr, HAS_IW: tl.constexpr,
                          HAS_IB: tl.constexpr, USE_BATCH: tl.constexpr, BLOCK_C: tl.constexpr,
                          BLOCK_K: tl.constexpr):
    zero = tl.zeros([BLOCK_C], dtype=mean_ptr.dtype.element_ty)
    zk = tl.zeros([BLOCK_K], dtype=mean_ptr.dtype.element_ty)
    eps = _joined(eps_hi, eps_lo, zero)
    # Phase A: the blend backward of each channel tile, then the head
    # pre-activation gradients g_b, g_i (N, C) from its d alpha.
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        cmask = c < C
        _blend_backward_tile(c, cmask, zero, s0_ptr, s1_ptr, mean_ptr, var_ptr, alpha_ptr, C, 1, zero, bw_ptr,
                             bbn_ptr, iw_ptr, ib_ptr, bnm_ptr, bnv_ptr, da_ptr, dgb_ptr, dbbn_ptr, dgi_ptr, dbi_ptr,
                             ca_ptr, cb_ptr, cc_ptr, N, C, eps, hw, True, HAS_BW, HAS_BBN, HAS_IW, HAS_IB, USE_BATCH)
    tl.debug_barrier()
    for n in range(N):
        for c0 in range(0, C, BLOCK_C):
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
    tl.debug_barrier()
    # Head weight gradients: d Wb[c, k] = sum_n g_b[n, c] in[n, k] (and Wi, bb).
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        cmask = c < C
        for k0 in range(0, K, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            kmask = k < K
            tile = tl.zeros([BLOCK_C, BLOCK_K], dtype=mean_ptr.dtype.element_ty)
            wmask = cmask[:, None] & kmask[None, :]
            ab = _sum_outer(gb_ptr, C, c, cmask, in_ptr, K, k, kmask, N, tile)
            tl.store(dwb_ptr + c[:, None] * K + k[None, :], ab, mask=wmask)
            if HAS_WI:
                ai = _sum_outer(gi_ptr, C, c, cmask, in_ptr, K, k, kmask, N, tile)
                tl.store(dwi_ptr + c[:, None] * K + k[None, :], ai, mask=wmask)
        if HAS_BB:
            acc_bb = zero
            for n in range(N):
                acc_bb += tl.load(gb_ptr + n * C + c, mask=cmask, other=0.0)
            tl.store(dbb_ptr + c, acc_bb, mask=cmask)
    # Phase B: gradient of the heads' input, dh[n, k] = sum_c g_b Wb[c, k] + g_i Wi[c, k].
    for n in range(N):
        for k0 in range(0, K, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            kmask = k < K
            dh = zk
            for c0 in range(0, C, BLOCK_C):
                c = c0 + tl.arange(0, BLOCK_C)
                cmask = c < C
                wmask = cmask[:, None] & kmask[None, :]
                g = tl.load(gb_ptr + n * C + c, mask=cmask, other=0.0)
                dh += tl.sum(g[:, None] * tl.load(wb_ptr + c[:, None] * K + k[None, :], mask=wmask, other=0.0),
                              axis=0)
                if HAS_WI:
                    g = tl.load(gi_ptr + n * C + c, mask=cmask, other=0.0)
                    dh += tl.sum(g[:, None] * tl.load(wi_ptr + c[:, None] * K + k[None, :], mask=wmask,
                                                       other=0.0), axis=0)
            if HAS_W1:  # through the relu, for phase C
                z = tl.load(z_ptr + n * D + k, mask=kmask, other=0.0)
                tl.store(dz_ptr + n * D + k, tl.where(z > 0.0, dh, 0.0), mask=kmask)
            else:  # the input is S itself: straight into the dx shift
                cc = tl.load(cc_ptr + n * C + k, mask=kmask, other=0.0)
                tl.store(cc_ptr + n * C + k, cc + dh / hw, mask=kmask)
    if HAS_W1:
        tl.debug_barrier()
        # Phase C: d W1[j, c] = sum_n dz[n, j] S[n, c]; d S[n, c] = sum_j dz[n, j] W1[j, c].
        for c0 in range(0, C, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            cmask = c < C
            for j0 in range(0, D, BLOCK_K):
                j = j0 + tl.arange(0, BLOCK_K)
                jmask = j < D
                acc2 = _sum_outer(dz_ptr, D, j, jmask, mean_ptr, C, c, cmask, N,
                                  tl.zeros([BLOCK_K, BLOCK_C], dtype=mean_ptr.dtype.element_ty))
                tl.store(dw1_ptr + j[:, None] * C + c[None, :], acc2, mask=jmask[:, None] & cmask[None, :])
            for n in range(N):
                ds = zero
                for j0 in range(0, D, BLOCK_K):
                    j = j0 + tl.arange(0, BLOCK_K)
                    jmask = j < D
                    dz = tl.load(dz_ptr + n * D + j, mask=jmask, other=0.0)
                    w = tl.load(w1_ptr + j[:, None] * C + c[None, :], mask=jmask[:, None] & cmask[None, :], other=0.0)
                    ds += tl.sum(dz[:, None] * w, axis=0)
                cc = tl.load(cc_ptr + n * C + c, mask=cmask, other=0.0)
                tl.store(cc_ptr + n * C + c, cc + ds / hw, mask=cmask)
        if HAS_B1:
            for j0 in range(0, D, BLOCK_K):
                j = j0 + tl.arange(0, BLOCK_K)
                jmask = j < D
                acc_b1 = zk
                for n in range(N):
                    acc_b1 += tl.load(dz_ptr + n * D + j, mask=jmask, other=0.0)
                tl.store(db1_ptr + j, acc_b1, mask=jmask)


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
        fast(_gate_forward_kernel)[(1,)](
            mean, var, w1_, b1_, wb_, bb_, wi_, hidden if d else mean, hidden if d else mean, alpha,
            bw, bbn, iw, ib, rm, rv, scale, shift, bn_mean, bn_var, n, c, d, k, *_split(eps), *_split(momentum),
            *_split(unbias(count)),
            HAS_W1=hw1, HAS_B1=hb1, HAS_BB=hbb, HAS_WI=hwi, HAS_BW=hbw, HAS_BBN=hbbn, HAS_IW=hiw, HAS_IB=hib,
            HAS_RM=hrm, HAS_RV=hrv, USE_BATCH=bool(use_batch_stats), UPDATE=bool(update_running and use_batch_stats),
            BLOCK_C=BLOCK_C, BLOCK_K=BLOCK_K, num_warps=NUM_WARPS)
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
        fast(_gate_backward_kernel)[(1,)](
            s0, s1, mean, var, alpha, hidden if d else mean, hidden if d else mean, ga, w1_, wb_, bb_, wi_,
            bw, bbn, iw, ib, stats(bn_mean, mean), stats(bn_var, mean), d_alpha,
            g_b, g_i, dz if d else mean, d_w1 if hw1 else mean, d_b1 if hb1 else mean, d_wb,
            d_bb if hbb else mean, d_wi if hwi else mean, dgb, dbbn, dgi, dbi, ca, cb, cc, n, c, d, k,
            *_split(eps), int(hw),
            HAS_GA=hga, HAS_W1=hw1, HAS_B1=hb1, HAS_BB=hbb, HAS_WI=hwi, HAS_BW=hbw, HAS_BBN=hbbn, HAS_IW=hiw,
            HAS_IB=hib, USE_BATCH=bool(use_batch_stats), BLOCK_C=BLOCK_C, BLOCK_K=BLOCK_K, num_warps=NUM_WARPS)
    return d_w1, d_b1, d_wb, d_bb, d_wi, dgb, dbbn, dgi, dbi, ca, cb, cc
