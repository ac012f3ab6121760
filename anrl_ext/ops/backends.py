"""Backend registry: which implementations run on which device."""
from __future__ import annotations

import os
import sys
import warnings
from typing import Callable, List, Optional, Union

import torch
from torch._C._functorch import TransformType
from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
from torch.autograd import forward_ad

from . import native
from .primitives import Primitives

BACKENDS = ("reference", "cpu", "cuda", "triton")

# backend="auto" on CUDA tensors. Measured on an NVIDIA H200
# (benchmarks/results/gpu-h200-20261128-run2 and -run3): cuda was faster than
# triton in all 16 cases (float32 and bfloat16, four shapes) of both runs.
CUDA_AUTO_ORDER = ("cuda", "triton", "reference")  # _concrete_backend's shortcut takes cuda first too


def triton_usable(device_type: str) -> bool:
    """Triton runs on CUDA tensors, and on CPU tensors under TRITON_INTERPRET=1."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    if device_type == "cuda":
        return torch.cuda.is_available()
    return device_type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"


def available_backends(device: Union[str, torch.device] = "cpu") -> List[str]:
    """Backend names usable for tensors on `device` with this install."""
    if isinstance(device, torch.device):
        return list(_usable(device.type))
    try:
        dev = torch.device(device).type
    except (RuntimeError, TypeError):  # torch's message lists every device type it knows
        raise ValueError(f"unknown device {device!r}; expected e.g. 'cpu', 'cuda' or 'cuda:1'") from None
    return list(_usable(dev))


_USABLE: dict = {}


def _usable(dev: str) -> tuple:
    # Cached: resolve_backend runs on every call of the op, and none of this
    # changes within a process (the interpreter flag is part of the key). A plain
    # dict rather than functools.lru_cache, which torch.compile warns about.
    # (os.environ costs ~2 us a lookup; the flag only matters for CPU tensors.)
    key = (dev, dev == "cpu" and os.environ.get("TRITON_INTERPRET") == "1")
    if key not in _USABLE:
        _USABLE[key] = _find_usable(dev)
    return _USABLE[key]


def _find_usable(dev: str) -> tuple:
    names = ["reference"]
    if dev == "cpu" and native.is_built():
        names.append("cpu")
    if dev == "cuda" and native.with_cuda():
        names.append("cuda")
    if triton_usable(dev):
        names.append("triton")
    return tuple(names)


def check_backend_name(backend: str) -> str:
    """`backend` if it names a backend (or 'auto'), else a ValueError listing them."""
    if backend not in BACKENDS + ("auto",):
        raise ValueError(f"unknown backend {backend!r}; choose one of {('auto',) + BACKENDS}")
    return backend


_peek_func_transform = torch._C._functorch.peek_interpreter_stack


def reference_only_context() -> Optional[str]:
    """What makes the fused kernels unusable here, or None: a torch.func transform (grad, vmap,
    jacrev, jvp, functionalize, ...) is running, or forward-mode AD (a dual_level).

    The fused backends' autograd Functions, and the ones torch.library's
    register_autograd generates for their primitives, define neither
    setup_context, which torch.func needs, nor jvp; the reference composition
    of aten ops has every transform's rules. (Under torch.compile the check is
    skipped: dynamo traces the registered ops instead.)
    """
    if torch.compiler.is_compiling():
        return None
    if _peek_func_transform() is not None:
        return "inside a torch.func transform"
    if getattr(forward_ad, "_current_level", -1) >= 0:  # private, hence getattr
        return "under forward-mode AD (torch.autograd.forward_ad.dual_level)"
    return None


def under_vmap() -> bool:
    """Whether a torch.func.vmap is running (skipped under torch.compile, as above: dynamo cannot
    trace the interpreter stack). Its batched tensors neither answer a channels_last layout query
    nor copy into one (torch 2.14: "NYI ... inside of vmap")."""
    if torch.compiler.is_compiling() or _peek_func_transform() is None:
        return False  # the second: no transform at all, a seventh of the walk below
    return any(i.key() == TransformType.Vmap for i in retrieve_all_functorch_interpreters())


_warned_reference_only = False

# Frames the hand-over warning looks past to find the user's line: this package's own, and
# torch's (nn.Module.__call__, the torch.func wrappers).
_LIBRARY_DIRS = tuple(os.path.dirname(os.path.abspath(f)) + os.sep
                      for f in (os.path.join(os.path.dirname(__file__), "..", "__init__.py"), torch.__file__))


def _user_stacklevel() -> int:
    """warnings.warn's stacklevel, for a warning raised by this function's caller, that points at
    the first frame outside anrl_ext and torch: the user's line, not the layer's forward."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame, level = frame.f_back, level + 1
    return level if frame is not None else 2


def resolve_backend(backend: str, device: torch.device) -> str:
    """Turn 'auto' into a concrete backend; validate an explicit choice. Inside a torch.func
    transform or under forward-mode AD the answer is 'reference' (see reference_only_context)."""
    global _warned_reference_only
    name = _concrete_backend(backend, device)
    if name == "reference":
        return name
    why = reference_only_context()
    if why is None:
        return name
    if not _warned_reference_only:
        _warned_reference_only = True
        warnings.warn(f"anrl_ext: {why} the {name!r} backend's kernels cannot run; the layer runs on the "
                      "'reference' backend (plain PyTorch ops, the same math) there",
                      stacklevel=_user_stacklevel())
    return "reference"


def _concrete_backend(backend: str, device: torch.device) -> str:
    dev = device.type
    # The common calls first: the native backend of the tensor's own device, usable or not for the
    # whole process. _usable(dev) gives the same answer, but for CPU tensors it reads the
    # environment (is Triton interpreting?), which took 9 us of a 2 x 8 x 4 x 4 cpu op's 40 us
    # forward on a 2-core x86 (benchmarks/host_time.py, 2026-12-06).
    if dev == "cpu" and backend in ("cpu", "auto") and native.is_built():
        return "cpu"
    if dev == "cuda" and backend in ("cuda", "auto") and native.with_cuda():
        return "cuda"  # 'auto' too: cuda leads CUDA_AUTO_ORDER
    check_backend_name(backend)
    usable = _usable(dev)
    if backend == "auto":
        order = ("cpu", "reference") if device.type == "cpu" else CUDA_AUTO_ORDER
        return next(b for b in order if b in usable)
    if backend not in usable:
        hint = ""
        if backend in ("cpu", "cuda") and not native.is_built():
            hint = f" (anrl_ext._C failed to import: {native.LOAD_ERROR})"
        elif backend == "triton" and device.type == "cpu":
            hint = " (Triton runs CPU tensors only with TRITON_INTERPRET=1 set before import)"
        raise ValueError(
            f"backend {backend!r} cannot run tensors on {device.type}; "
            f"usable here: {', '.join(usable)}{hint}"
        )
    return backend


def primitives_for(backend: str) -> Optional[Primitives]:
    """The primitive set of a concrete backend (None for 'reference')."""
    if backend in ("cpu", "cuda"):
        native.require_built()
        return native.PRIMITIVES
    if backend == "triton":
        from . import triton_backend

        return triton_backend.PRIMITIVES
    return None


def gate_launch_limit(backend: str) -> Callable[[Optional[int]], int]:
    """The function that reads, or sets and returns, the backend's gated middle one-launch limit
    (multiply-adds of a gate's forward; larger gates run one launch per phase): Triton's one program
    (triton_gate.one_program_max_work), else the CUDA kernels' one block
    (native.cuda_gate_one_block_max_work, which the cpu kernels ignore)."""
    if backend == "triton":
        from .triton_gate import one_program_max_work

        return one_program_max_work
    return native.cuda_gate_one_block_max_work
