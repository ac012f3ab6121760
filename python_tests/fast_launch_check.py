"""Run by test_triton_fast_launch.py in a process of its own (the recording driver replaces
Triton's driver for the whole process, and the interpreter must be off).

The Triton backend on CPU tensors over a matrix of inputs (shapes with N = 1, C = 16, odd planes;
float32 / bfloat16 / float64; an input 4 bytes off 16-byte alignment; channels_last; alpha as
(N, C), (C,) and a float; no affine weights; eval mode; the AFNM, BN and IBN layers), each case's
forward + backward through triton_launch's cache and through kernel[grid](...), the launches
recorded (benchmarks/recording_driver.py). Checks that the two pass the same compiled kernel, grid
and arguments, and (VERIFY) that every cached launch is the specialisation JITFunction.run
chooses. Prints a JSON summary on its last line.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
import recording_driver  # noqa: E402

LAUNCHES = recording_driver.install()

import torch  # noqa: E402

import anrl_ext  # noqa: E402
from anrl_ext.ops import triton_launch  # noqa: E402


def off_alignment(t):
    """t's values in a tensor whose data starts 4 bytes past a 16-byte boundary (float32)."""
    flat = torch.empty(t.numel() + 1, dtype=t.dtype)[1:]
    return flat.view(t.shape).copy_(t)


def op_case(shape, dtype=torch.float32, alpha="nc", affine=True, training=True, misaligned=False,
            channels_last=False):
    n, c = shape[:2]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(dtype)
    if misaligned:
        x = off_alignment(x)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    a = {"nc": torch.rand(n, c, generator=g), "c": torch.rand(c, generator=g), "float": 0.3}[alpha]
    if isinstance(a, torch.Tensor):
        a = a.to(dtype).requires_grad_()
    params = [torch.randn(c, generator=g).to(dtype).requires_grad_() for _ in range(4)] if affine else [None] * 4
    running = (torch.zeros(c, dtype=dtype), torch.ones(c, dtype=dtype))
    inputs = [x] + [t for t in [a, *params] if isinstance(t, torch.Tensor)]
    dy = torch.randn(shape, generator=g).to(dtype)

    def step():
        y = anrl_ext.adaptive_norm(x, a, *params, *running, training=training, backend="triton")
        torch.autograd.grad(y, inputs, dy)
    return step


def layer_case(kind, shape, **kw):
    c = shape[1]
    layer = anrl_ext.AFNM(c, reduction=2, backend="triton", **kw) if kind == "afnm" else \
        anrl_ext.make_norm(kind, c, backend="triton")
    x = torch.randn(shape, requires_grad=True)
    dy = torch.randn(shape)

    def step():
        torch.autograd.grad(layer(x), [x, *layer.parameters()], dy)
    return step


CASES = {
    "op": op_case((2, 8, 4, 4)),
    "op, x off alignment": op_case((2, 8, 4, 4), misaligned=True),
    "op, N = 1": op_case((1, 3, 5, 7)),
    "op, C = 16": op_case((3, 16, 4, 4)),
    "op, bfloat16": op_case((2, 8, 4, 4), torch.bfloat16),
    "op, float64": op_case((2, 5, 3, 3), torch.float64),
    "op, alpha (C,)": op_case((2, 8, 4, 4), alpha="c"),
    "op, float alpha, no affine": op_case((2, 8, 4, 4), alpha="float", affine=False),
    "op, eval": op_case((2, 8, 4, 4), training=False),
    "op, channels_last": op_case((2, 8, 4, 4), channels_last=True),
    "AFNM paper gate": layer_case("afnm", (2, 8, 4, 4)),
    "AFNM sigmoid gate": layer_case("afnm", (3, 6, 2, 5), gate="sigmoid"),
    "BN": layer_case("bn", (2, 8, 4, 4)),
    "IBN": layer_case("ibn", (2, 8, 4, 4)),
}


def same_argument(a, b):
    """A kernel argument of the two paths: tensors by layout and alignment (outputs are fresh
    allocations), anything else by value; the packed metadata (the compiled kernel's) by identity."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and (a.dtype, a.shape, a.stride(), a.data_ptr() & 15) == \
            (b.dtype, b.shape, b.stride(), b.data_ptr() & 15)
    return type(a) is type(b) and a == b


def uncached_launches():
    """What the cache leaves to kernel[grid](...): a grid function, a tensor passed by keyword (the
    launcher's arguments would then hold that tensor), any launch while a launch hook is installed.
    All still launch, as Triton does."""
    from anrl_ext.ops import triton_backend

    launcher = triton_launch.fast(triton_backend._moments_kernel)
    x = torch.randn(2, 3, 4, 4)
    mean, var = torch.empty(2, 3), torch.empty(2, 3)
    acc = triton_backend._acc(x.dtype)
    entries = len(launcher.cache)
    LAUNCHES.clear()
    launcher[lambda meta: (6,)](x, mean, var, 16, BLOCK=128, ACC=acc, PART=1)
    launcher[(6,)](x, mean, var_ptr=var, M=16, BLOCK=128, ACC=acc, PART=1)
    launcher[(6,)](x, mean, var_ptr=var, M=16, BLOCK=128, ACC=acc, PART=1)
    assert [(f.kernel, f.grid) for f in LAUNCHES] == [("_moments_kernel", (6, 1, 1))] * 3, LAUNCHES
    assert len(launcher.cache) == entries, "a grid function or a tensor keyword was cached"
    launcher[(6,)](x, mean, var, M=16, BLOCK=128, ACC=acc, PART=1)  # an int by keyword is keyed by value: cached
    assert len(launcher.cache) == entries + 1
    # With a launch hook installed, a cached key still takes JITFunction.run, which hands the
    # launcher the hooks (the cache passes none).
    from triton import knobs

    def hook(metadata):
        pass

    knobs.runtime.launch_enter_hook.add(hook)
    try:
        LAUNCHES.clear()
        launcher[(6,)](x, mean, var, M=16, BLOCK=128, ACC=acc, PART=1)
    finally:
        knobs.runtime.launch_enter_hook.remove(hook)
    assert LAUNCHES[0].rest[4] is knobs.runtime.launch_enter_hook, "a hook was skipped"
    LAUNCHES.clear()
    launcher[(6,)](x, mean, var, M=16, BLOCK=128, ACC=acc, PART=1)
    assert LAUNCHES[0].rest[4] is None  # no hook: from the cache


def launches_of(step, enabled):
    triton_launch.ENABLED = enabled
    LAUNCHES.clear()
    step()
    return list(LAUNCHES)


def main():
    recording_driver.allow_triton_on_cpu_tensors()
    triton_launch.VERIFY = True
    misses = []
    miss = triton_launch.FastLauncher._miss

    def counted(self, *args):
        misses.append(self.kernel.__name__)
        return miss(self, *args)

    triton_launch.FastLauncher._miss = counted
    for step in CASES.values():  # first calls: compile, fill the cache
        step()
    first_misses = len(misses)
    compared = 0
    for name, step in reversed(CASES.items()):  # other order: the cache now answers from other cases' entries
        fast, slow = launches_of(step, True), launches_of(step, False)
        assert [f.kernel for f in fast] == [s.kernel for s in slow], (name, fast, slow)
        for f, s in zip(fast, slow):
            assert f.grid == s.grid, (name, f.kernel, f.grid, s.grid)
            assert f.rest[:2] == s.rest[:2] and f.rest[2] is s.rest[2], (name, f.kernel, "another compiled kernel")
            assert len(f.rest) == len(s.rest), (name, f.kernel)
            for i, (a, b) in enumerate(zip(f.rest[6:], s.rest[6:])):
                assert same_argument(a, b), (name, f.kernel, i, a, b)
            compared += 1
    later_misses = len(misses) - first_misses
    triton_launch.ENABLED = True
    uncached_launches()
    print(json.dumps({"cases": len(CASES), "launches_compared": compared, "first_misses": first_misses,
                      "later_misses": later_misses, "hits": compared - later_misses, "uncached_checked": True}))


if __name__ == "__main__":
    main()
