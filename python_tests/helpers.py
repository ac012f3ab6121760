"""Shared helpers for the tests: random inputs and the float64 oracle."""
import torch

from anrl_ext.ops.reference import adaptive_norm_reference


def make_inputs(shape, dtype=torch.float32, alpha_kind="nc", channels_last=False, scale=2.0, shift=0.5):
    n, c = shape[:2]
    x = (torch.randn(shape, dtype=torch.float64) * scale + shift).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    if alpha_kind == "nc":
        alpha = torch.rand(n, c, dtype=torch.float64)
    elif alpha_kind == "c":
        alpha = torch.rand(c, dtype=torch.float64)
    else:
        alpha = float(alpha_kind)
    params = [torch.randn(c, dtype=torch.float64) * 0.5 + (1.0 if i % 2 == 0 else 0.0) for i in range(4)]
    return x, alpha, params


def oracle(x, alpha, params, running=None, training=True, momentum=0.1, eps=1e-5):
    """float64 reference of adaptive_norm."""
    a = alpha.double() if isinstance(alpha, torch.Tensor) else alpha
    rm, rv = running if running is not None else (None, None)
    return adaptive_norm_reference(x.double(), a, *[p.double() for p in params], rm, rv, training, momentum, eps)


def max_err(a, b):
    return (a.double() - b.double()).abs().max().item()
