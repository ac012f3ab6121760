"""Plain-PyTorch references: the naive baseline and the float64 oracle.

`adaptive_norm_reference` is the textbook composition the fused kernels
replace: alpha * batch_norm(x) + (1 - alpha) * instance_norm(x).
`PRIMITIVES` implements the four primitives with ATen ops, to check each
kernel on its own.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .backends import under_vmap
from .coefficients import Alpha, batch_stats, blend_coefficients, update_running_buffers
from .primitives import Primitives, acc_dtype, output_memory_format


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient NCHW contiguous.

    F.instance_norm's backward returns wrong input and weight gradients when
    N = 1 and the output gradient is channels_last (torch 2.14, CPU, eager and
    under torch.compile's aot_eager; see test_channels_last_single_sample_gradients).
    Differentiable, so double backward still works. Written in the form torch.func
    takes (setup_context, a generated vmap rule): vmap over single samples, the usual
    way to get per-sample gradients, sees N = 1.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(y):
        return y.view_as(y)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return g.contiguous()


class _ContiguousGradWithJvp(_ContiguousGrad):
    """_ContiguousGrad with a jvp, for forward-mode AD and torch.func's jvp / jacfwd / hessian.
    Two classes because dynamo traces no Function with a custom jvp: compiled, the layer uses
    the one without."""

    @staticmethod
    def jvp(ctx, tangent):
        return tangent.view_as(tangent)


def _is_channels_last(x: Tensor) -> bool:
    """output_memory_format(x) == channels_last, asked so that vmap's batched tensors answer: inside
    vmap the reference keeps the layout it gets (the values are the same), and an NCHW tensor
    never pays for the vmap check."""
    return not x.is_contiguous() and not under_vmap() and output_memory_format(x) == torch.channels_last


def is_cpu_channels_last(x: Tensor) -> bool:
    """Whether `x` is a 4-D channels_last (and not also NCHW) CPU tensor: the layout
    torch's CPU batch_norm sums inaccurately (see `_batch_norm`). False inside vmap."""
    return x.device.type == "cpu" and x.dim() == 4 and _is_channels_last(x)


def _batch_norm(x: Tensor, *args) -> Tensor:
    """F.batch_norm, accurate for channels_last input on the CPU too.

    torch's CPU batch_norm kernel for channels_last accumulates each channel's
    sums row by row in float32: at 36 x 8 x 128 x 128 (mean 3, one thread) its
    output is 1e-4 off and the weight gradient 7e-2, against 1e-7 and 2e-4 for
    NCHW input (torch 2.14; see test_channels_last_batch_norm_accuracy). The
    reference runs BN on an NCHW copy and hands back channels_last. Both copies
    are differentiable, so double backward is unchanged.
    """
    if is_cpu_channels_last(x):
        return F.batch_norm(x.contiguous(), *args).contiguous(memory_format=torch.channels_last)
    return F.batch_norm(x, *args)


def adaptive_norm_reference(
    x: Tensor,
    alpha: Alpha,
    bn_weight: Optional[Tensor],
    bn_bias: Optional[Tensor],
    in_weight: Optional[Tensor],
    in_bias: Optional[Tensor],
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    training: bool,
    momentum: float,
    eps: float,
) -> Tensor:
    """alpha * BN(x) + (1 - alpha) * IN(x), each with its own affine, in x's layout.

    Parameters and running statistics may be in another dtype than x, as the fused backends take them:
    where torch's batch_norm would refuse the mix, they are used in x's statistics dtype (running
    statistics updated in their own).
    """
    tensors = (bn_weight, bn_bias, in_weight, in_bias, running_mean, running_var)
    if not _dtypes_torch_takes(x, tensors):
        stats_dtype = acc_dtype(x.dtype)
        as_stats = [t.to(stats_dtype) if t is not None else None for t in tensors]
        out = adaptive_norm_reference(x, alpha, *as_stats, training, momentum, eps)
        with torch.no_grad():  # F.batch_norm updated the converted copies
            for own, converted in zip(tensors[4:], as_stats[4:]):
                if own is not None and converted is not own:
                    own.copy_(converted)
        return out
    if isinstance(alpha, Tensor):
        a = alpha.to(x.dtype)
        a = a[:, :, None, None] if a.dim() == 2 else a.reshape(1, -1, 1, 1)
    else:
        a = float(alpha)
    out = 0
    if not (isinstance(a, float) and a == 0.0):
        bn = _batch_norm(x, running_mean, running_var, bn_weight, bn_bias,
                         training or running_mean is None, momentum, eps)
        out = out + a * bn
    elif training and running_mean is not None:
        with torch.no_grad():  # the running statistics follow every training batch, as for any other alpha
            _batch_norm(x, running_mean, running_var, None, None, True, momentum, eps)
    if not (isinstance(a, float) and a == 1.0):
        inn = F.instance_norm(x, weight=in_weight, bias=in_bias, eps=eps)
        if x.shape[0] == 1:
            inn = (_ContiguousGrad if torch.compiler.is_compiling() else _ContiguousGradWithJvp).apply(inn)
        out = out + (1 - a) * inn
    if _is_channels_last(x):
        out = out.contiguous(memory_format=torch.channels_last)  # F.instance_norm alone gives NCHW
    return out


def _dtypes_torch_takes(x: Tensor, tensors) -> bool:
    """Whether F.batch_norm / F.instance_norm take these parameters with x: all of x's dtype, or all
    float32 with a reduced-precision x."""
    dtypes = {t.dtype for t in tensors if t is not None}
    return not dtypes or dtypes == {x.dtype} or (dtypes == {torch.float32} and x.dtype in (torch.bfloat16,
                                                                                       torch.float16))


def _stats_view(t: Tensor) -> Tensor:
    return t[:, :, None, None]


def _moments(x: Tensor):
    xf = x.to(acc_dtype(x.dtype))
    var, mean = torch.var_mean(xf, dim=(2, 3), correction=0)
    return mean, var


def _affine(x, m, s, t):
    xf = x.to(acc_dtype(x.dtype))
    return ((xf - _stats_view(m)) * _stats_view(s) + _stats_view(t)).to(x.dtype)


def _reduce(dy, x, m):
    g = dy.to(acc_dtype(x.dtype))
    xc = x.to(acc_dtype(x.dtype)) - _stats_view(m)
    return g.sum((2, 3)), (g * xc).sum((2, 3))


def _affine2(dy, x, m, a, b, c):
    dt = acc_dtype(x.dtype)
    out = _stats_view(a) * dy.to(dt) + _stats_view(b) * (x.to(dt) - _stats_view(m)) + _stats_view(c)
    return out.to(x.dtype)




# The (N, C) middle, as the blend_forward / blend_backward kernels compute it.
# The backward differentiates `blend_coefficients` with autograd, an independent
# check of the kernels' closed-form gradients.

def _alpha_nc(alpha: Optional[Tensor], alpha_value: float, mean: Tensor) -> Tensor:
    if alpha is None:
        return mean.new_full(mean.shape, alpha_value)
    a = alpha.to(mean.dtype)
    return (a.reshape(1, -1) if a.dim() == 1 else a).expand_as(mean)


def _affine_or(t: Optional[Tensor], value: float, like: Tensor) -> Tensor:
    return t.to(like.dtype) if t is not None else like.new_full(like.shape[1:], value)


def blend_forward_reference(mean, var, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias,
                            running_mean, running_var, use_batch_stats, update_running, momentum, eps, count):
    """(scale, shift, bn_mean, bn_var); updates the running buffers in place like the kernels."""
    if use_batch_stats:
        mu, v = batch_stats(mean, var)
        if update_running:
            update_running_buffers(mu, v, count, running_mean, running_var, momentum)
    else:
        mu, v = running_mean.to(mean.dtype), running_var.to(mean.dtype)
    a = _alpha_nc(alpha, alpha_value, mean)
    scale, shift = blend_coefficients(mean, var, a, bn_weight, bn_bias, in_weight, in_bias, mu, v, eps)
    return scale.contiguous(), shift.contiguous(), mu.clone(), v.clone()


def blend_backward_reference(s0, s1, mean, var, alpha, alpha_value, bn_weight, bn_bias, in_weight, in_bias,
                             bn_mean, bn_var, use_batch_stats, eps, hw):
    """(d_alpha, d_bn_weight, d_bn_bias, d_in_weight, d_in_bias, a, b, c); dx = a dy + b (x - mean) + c.

    Gradients of absent affine tensors are those of weight 1 / bias 0, as in the kernels.
    """
    with torch.enable_grad():
        m = mean.detach().requires_grad_()
        v = var.detach().requires_grad_()
        a = _alpha_nc(alpha, alpha_value, mean).detach().clone().requires_grad_()
        w = [_affine_or(t, fill, mean).detach().requires_grad_()
             for t, fill in ((bn_weight, 1.0), (bn_bias, 0.0), (in_weight, 1.0), (in_bias, 0.0))]
        mu, vc = batch_stats(m, v) if use_batch_stats else (bn_mean.to(mean.dtype), bn_var.to(mean.dtype))
        scale, shift = blend_coefficients(m, v, a, *w, mu, vc, eps)
        gm, gv, ga, *gw = torch.autograd.grad([scale, shift], [m, v, a, *w], [s1, s0])
    scale = scale.detach()
    gw = _in_weight_dtypes(gw, (bn_weight, bn_bias, in_weight, in_bias))
    return (ga, *gw, scale, gv * (2.0 / hw), (gm - scale * s0) / hw)


def _in_weight_dtypes(grads, weights):
    """Each weight's gradient in its weight's dtype, as the kernels return them."""
    return [g.to(w.dtype) if w is not None else g for g, w in zip(grads, weights)]


# The gated middle: the AFNM gate computed from the means, then the middle above.

GATE_SLOTS = ("w1", "b1", "wb", "bb", "wi")


def gate_alpha_reference(s: Tensor, w1: Optional[Tensor], b1: Optional[Tensor], wb: Tensor,
                         bb: Optional[Tensor], wi: Optional[Tensor]):
    """(alpha, hidden) of the kernels' gate layout (csrc/include/anrl_ext/gate.h).

    hidden z = relu(S W1^T + b1), or S itself without W1; u_b = z Wb^T + bb,
    u_i = z Wi^T; alpha = sig(u_b) / (sig(u_b) + sig(u_i)) with Wi, else sig(u_b).
    hidden is (N, 0) without W1.
    """
    z = F.relu(F.linear(s, w1, b1)) if w1 is not None else s
    b = torch.sigmoid(F.linear(z, wb, bb))
    alpha = b / (b + torch.sigmoid(F.linear(z, wi))) if wi is not None else b
    return alpha, (z if w1 is not None else s.new_empty((s.shape[0], 0)))


def _gate_weights(weights, mean):
    return [w.to(mean.dtype) if w is not None else None for w in weights]


def gate_blend_forward_reference(mean, var, w1, b1, wb, bb, wi, bn_weight, bn_bias, in_weight, in_bias,
                                 running_mean, running_var, use_batch_stats, update_running, momentum, eps, count):
    """(alpha, hidden, scale, shift, bn_mean, bn_var) as the gate_blend_forward kernels give them."""
    alpha, hidden = gate_alpha_reference(mean, *_gate_weights((w1, b1, wb, bb, wi), mean))
    rest = blend_forward_reference(mean, var, alpha, 0.0, bn_weight, bn_bias, in_weight, in_bias, running_mean,
                                   running_var, use_batch_stats, update_running, momentum, eps, count)
    return (alpha.contiguous(), hidden.contiguous(), *rest)


def gate_blend_backward_reference(s0, s1, mean, var, alpha, hidden, alpha_grad, w1, b1, wb, bb, wi, bn_weight,
                                  bn_bias, in_weight, in_bias, bn_mean, bn_var, use_batch_stats, eps, hw):
    """(d_w1, d_b1, d_wb, d_bb, d_wi, d_bn_weight, d_bn_bias, d_in_weight, d_in_bias, a, b, c) by autograd.

    Absent gate weights get empty gradients; the gate's dependence on the means
    is part of c, as in the kernels.
    """
    with torch.enable_grad():
        m = mean.detach().requires_grad_()
        v = var.detach().requires_grad_()
        gw = [t.detach().requires_grad_() if t is not None else None
              for t in _gate_weights((w1, b1, wb, bb, wi), mean)]
        w = [_affine_or(t, fill, mean).detach().requires_grad_()
             for t, fill in ((bn_weight, 1.0), (bn_bias, 0.0), (in_weight, 1.0), (in_bias, 0.0))]
        a, _ = gate_alpha_reference(m, *gw)
        mu, vc = batch_stats(m, v) if use_batch_stats else (bn_mean.to(mean.dtype), bn_var.to(mean.dtype))
        scale, shift = blend_coefficients(m, v, a, *w, mu, vc, eps)
        outputs, grads = [scale, shift], [s1, s0]
        if alpha_grad is not None:
            outputs.append(a)
            grads.append(alpha_grad.to(mean.dtype))
        present = [t for t in gw if t is not None]
        gm, gv, *rest = torch.autograd.grad(outputs, [m, v, *present, *w], grads)
    it = iter(rest[: len(present)])
    d_gate = [next(it) if t is not None else mean.new_empty((0,)) for t in gw]
    scale = scale.detach()
    d_affine = _in_weight_dtypes(rest[len(present):], (bn_weight, bn_bias, in_weight, in_bias))
    return (*d_gate, *d_affine, scale, gv * (2.0 / hw), (gm - scale * s0) / hw)


PRIMITIVES = Primitives("reference", _moments, _affine, _reduce, _affine2,
                        blend_forward_reference, blend_backward_reference,
                        gate_blend_forward_reference, gate_blend_backward_reference)
