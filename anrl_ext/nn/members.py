"""A module's parameters, buffers and submodules read from its own dicts.

`nn.Module.__getattr__`, which every read of `module.weight` or `module.child` falls
through to, costs about 0.9 us a read on a 2-core x86 (torch 2.14, 2026-12-06) against
about 0.1 us for the dict lookup behind it. The AFNM layer's forward read eleven of
them per call, host time that a GPU waits through.
"""
from __future__ import annotations

from torch import nn

_ABSENT = object()


def members(module: nn.Module, *names: str) -> tuple:
    """`getattr(module, name)` for each name, faster.

    Looked up in `_parameters`, then `_buffers`, then `_modules`, as `nn.Module.__getattr__`
    does; a name in none of them goes through getattr, which finds what stands in for it (a
    parametrization's property, an ordinary attribute) or raises its AttributeError.
    """
    found = []
    for name in names:
        value = module._parameters.get(name, _ABSENT)
        if value is _ABSENT:
            value = module._buffers.get(name, _ABSENT)
            if value is _ABSENT:
                value = module._modules.get(name, _ABSENT)
                if value is _ABSENT:
                    value = getattr(module, name)
        found.append(value)
    return tuple(found)
