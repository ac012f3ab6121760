"""A Triton driver for a machine with no GPU: kernels compile for a real GPU target (sm_90 by
default, with the ptxas of the Triton wheel) and each launch is recorded instead of run.

    import recording_driver
    launches = recording_driver.install()   # before the first launch; TRITON_INTERPRET must be unset
    ...                                     # the Triton backend on CPU tensors
    launches.names()                        # the kernels launched so far, in order

On a GPU the Triton backend is bound by host time (benchmarks/results/GPU_NOTES.md), and
under TRITON_INTERPRET=1 its kernels never go through Triton's launch path. With this driver
the whole host side of a launch runs as on a GPU: the package's Python, `JITFunction.run`
(binding and specialising the arguments, the compiled-kernel cache) and the launcher's
construction. Not run: Triton's C launcher and the CUDA driver's launch, a constant per launch
that only a GPU can time. CPU tensors stand in for CUDA ones; the launch path reads only their
data pointers (16-byte alignment), dtypes and sizes. Nothing is computed: outputs stay as
allocated, so this is for timing and counting launches, never for values.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Tuple

import torch


@dataclass
class Launch:
    kernel: str
    grid: Tuple[int, int, int]
    # what the launcher got after the grid: stream, function, packed metadata, launch metadata,
    # the two launch hooks, then every parameter of the kernel (constexprs included)
    rest: tuple


class Launches(list):
    """The recorded launches (a list of Launch); `enabled = False` stops recording (timing loops)."""

    enabled = True

    def names(self) -> List[str]:
        return [launch.kernel for launch in self]


def install(capability: int = 90) -> Launches:
    """Make a recording driver Triton's active driver in this process; return its record.

    One-way: a process that installs it launches nothing on a real GPU afterwards."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("recording_driver needs compiled kernels: unset TRITON_INTERPRET before importing triton")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.driver import GPUDriver
    from triton.backends.nvidia.driver import ty_to_cpp

    record = Launches()

    class Utils:
        """What Triton asks of the CUDA driver outside a launch, answered for an H100 / H200."""

        @staticmethod
        def load_binary(name, kernel, shared, device):
            return 0, 0, 0, 0, 1024  # module, function, registers, spills, max threads a block

        @staticmethod
        def get_device_properties(device):
            return {"max_shared_mem": 232448, "multiprocessor_count": 132, "max_num_regs": 65536,
                    "warpSize": 32, "sm_clock_rate": 1980000, "mem_clock_rate": 2619000, "mem_bus_width": 5120}

    class Launcher:
        """Stands in for Triton's C launcher: records the launch (kernel, grid, every argument) and returns."""

        def __init__(self, src, metadata):
            self.kernel = src.name

        def __call__(self, grid_x, grid_y, grid_z, *rest):
            if record.enabled:
                record.append(Launch(self.kernel, (grid_x, grid_y, grid_z), rest))

    class RecordingDriver(GPUDriver):
        def __init__(self):  # no GPUDriver.__init__: it binds torch.cuda, which has no device here
            self.utils = Utils()
            self.launcher_cls = Launcher
            self.get_current_device = lambda: 0
            self.get_current_stream = lambda device=None: 0
            self.get_device_capability = lambda device=None: divmod(capability, 10)
            self.set_current_device = lambda device: None

        def get_current_target(self):
            return GPUTarget("cuda", capability, 32)

        def get_active_torch_device(self):
            return torch.device("cpu")

        def get_device_interface(self):
            return torch.cuda

        @staticmethod
        def is_active():
            return True

        def map_python_to_cpp_type(self, ty):
            return ty_to_cpp(ty)

        def get_benchmarker(self):
            raise NotImplementedError("recording_driver runs nothing")

        def get_empty_cache_for_benchmark(self):
            raise NotImplementedError("recording_driver runs nothing")

        def clear_cache(self, cache):
            pass

    triton.runtime.driver.set_active(RecordingDriver())
    return record


def allow_triton_on_cpu_tensors() -> None:
    """Let backend="triton" take CPU tensors without the interpreter (the recording driver's
    launches), in this process."""
    from anrl_ext.ops import backends

    backends.triton_usable = lambda device_type: device_type in ("cpu", "cuda")
    backends._USABLE.clear()
