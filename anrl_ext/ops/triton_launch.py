"""Launching the Triton backend's kernels with less host work than `kernel[grid](...)`.

On a GPU the Triton backend is bound by host time per launch (benchmarks/results/GPU_NOTES.md,
run 4). On every call `JITFunction.run` reads Triton's settings, asks the driver for the device and
stream, binds and specialises every argument (each pointer's dtype and 16-byte alignment, each
integer's width and whether it is 1 or a multiple of 16), builds a string key to find the compiled
kernel, checks the kernel's globals, and calls the compiled kernel's launcher with every parameter.

`fast(kernel)[grid](*args, **kwargs)` makes the same launch, keeping the compiled kernel of each
specialisation under a key of its own: a tuple of what Triton specialises on for the argument
types this package passes (tensors, ints, floats, bools, None), the keyword arguments (constexprs
and launch options) by value, and the device. A hit calls the compiled kernel's launcher directly
with the arguments JITFunction.run would give it (as torch.compile's generated launchers do). A
miss, an argument it has no key for, an installed launch hook, or `ENABLED = False` take
`kernel[grid](...)`, which compiles if needed and fills the cache. The key holds more than Triton
specialises on (an integer's value, say, where Triton keeps its width, whether it is 1 and whether
16 divides it), never less: two calls with one key always get the same compiled kernel. Integer
arguments are shapes and strides, so a model's layers make a few keys each. Under
TRITON_INTERPRET=1 kernels are not compiled and `fast` returns the kernel itself. Triton's
compile settings (`triton.knobs`: debug, instrumentation) are read when a key first misses, not on
every launch: set ENABLED = False before changing them in a running process.

Checked on the CPU (python_tests/test_triton_fast_launch.py, with benchmarks/recording_driver.py):
every launch of the backend's kernels over a matrix of shapes, alignments and dtypes passes the
compiled kernel and the arguments that `kernel[grid](...)` passes, and each cached kernel is the
one JITFunction.run chooses. Host time per launch: benchmarks/triton_host_time.py.
"""
from __future__ import annotations

import torch
from triton.runtime import driver
from triton.runtime.jit import JITFunction

from . import native

try:  # Triton 3.4+
    from triton import knobs as _knobs
except ImportError:  # pragma: no cover - older Triton: every launch takes kernel[grid](...)
    _knobs = None

ENABLED = True  # False: every launch through kernel[grid](...) (benchmarks compare the two)
# True: every cached launch also asks JITFunction.run which kernel it would launch and checks that
# it is the cached one (the tests; costs a full specialisation per launch).
VERIFY = False

_Tensor = torch.Tensor
# Scalars other than int: Triton specialises on their type alone (float -> fp32, bool -> u1,
# None -> a constexpr None). Any other type has no key here.
_SCALARS = {float: float, bool: bool, type(None): None}


def _python_key(args) -> tuple:
    """What Triton's specialisation of args depends on, or more: a tensor's dtype and data pointer
    mod 16, an int's value (Triton: its width, == 1, a multiple of 16), a scalar's type. KeyError
    for any other argument. One comprehension: this runs on every launch."""
    return tuple([(a.dtype, a.data_ptr() & 15) if isinstance(a, _Tensor) else a if type(a) is int
                  else _SCALARS[type(a)] for a in args])


# The same key built in C++ (csrc/launch_key.cpp; test_triton_fast_launch checks the two equal): about
# 4 us less per launch of a 26-argument kernel. Python's where anrl_ext._C is not built.
_key = native._C.launch_key if native.is_built() and hasattr(native._C, "launch_key") else _python_key


def _hook_free() -> bool:
    """No launch hook installed: the launcher would call none (an empty chain calls nothing)."""
    enter, leave = _knobs.runtime.launch_enter_hook, _knobs.runtime.launch_exit_hook
    return (enter is None or not getattr(enter, "calls", True)) and (leave is None or not getattr(leave, "calls", True))


class FastLauncher:
    """`launcher[grid](*args, **kwargs)` as `kernel[grid](...)`, with the specialisation cached."""

    __slots__ = ("kernel", "names", "cache")

    def __init__(self, kernel: JITFunction):
        self.kernel = kernel
        self.names = kernel.arg_names
        self.cache = {}  # key -> (launcher, function, packed metadata, constexpr tail, compiled kernel)

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.launch(grid, args, kwargs)

    def launch(self, grid, args, kwargs):
        if not ENABLED or _knobs is None or type(grid) is not tuple:  # a grid function: Triton's way
            return self.kernel[grid](*args, **kwargs)
        try:
            device = driver.active.get_current_device()
            key = (device, _key(args), tuple(kwargs.items()))
            entry = self.cache.get(key)
        except (KeyError, TypeError, RuntimeError):
            # an argument with no key, a keyword value that does not hash, no active driver (Triton's
            # launch path stubbed out, as test_triton_launch_path does): Triton's own way
            return self.kernel[grid](*args, **kwargs)
        if entry is None or not _hook_free():
            return self._miss(key, grid, args, kwargs)
        run, function, metadata, tail, compiled = entry
        if VERIFY:
            chosen = self.kernel.run(*args, grid=grid, warmup=True, **kwargs)
            assert chosen is compiled, f"{self.kernel.__name__}: fast launch would run another specialisation"
        stream = driver.active.get_current_stream(device)
        n = len(grid)
        run(grid[0], grid[1] if n > 1 else 1, grid[2] if n > 2 else 1, stream, function, metadata, None, None, None,
            *args, *tail)
        return compiled

    def _miss(self, key, grid, args, kwargs):
        compiled = self.kernel[grid](*args, **kwargs)
        rest = self.names[len(args):]
        # Cached only when the parameters after the positional ones are all keywords given here, none
        # a tensor (constexprs): then the launcher's arguments are args + these values, fixed by the key.
        if compiled is not None and all(name in kwargs for name in rest) \
                and not any(isinstance(v, torch.Tensor) for v in kwargs.values()):
            self.cache[key] = (compiled.run, compiled.function, compiled.packed_metadata,
                               tuple(kwargs[name] for name in rest), compiled)
        return compiled


_LAUNCHERS: dict = {}


def fast(kernel):
    """The FastLauncher of a compiled Triton kernel; an interpreted kernel itself."""
    if not isinstance(kernel, JITFunction):
        return kernel
    launcher = _LAUNCHERS.get(id(kernel))  # kernels are module globals: their ids stay theirs
    if launcher is None:
        launcher = _LAUNCHERS[id(kernel)] = FastLauncher(kernel)
    return launcher
