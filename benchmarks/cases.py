"""Shared benchmark cases: the AFNM op as each implementation runs it."""
import torch

import anrl_ext
from anrl_ext.ops.reference import adaptive_norm_reference

SHAPES = [(32, 64, 64, 64), (32, 128, 32, 32), (32, 256, 16, 16)]


def parse_shape(text):
    """argparse type of a --shape NxCxHxW of positive integers."""
    import argparse

    dims = text.lower().split("x")
    if len(dims) != 4 or not all(d.isdigit() and int(d) > 0 for d in dims):
        raise argparse.ArgumentTypeError(f"expected NxCxHxW of positive integers, got {text!r}")
    return tuple(map(int, dims))


def make_case(shape, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    n, c = shape[:2]
    x = torch.randn(shape, generator=g).to(device, dtype).requires_grad_()
    alpha = torch.rand(n, c, generator=g).to(device, dtype).requires_grad_()
    params = [torch.randn(c, generator=g).to(device, dtype).requires_grad_() for _ in range(4)]
    running = (torch.zeros(c, device=device, dtype=dtype), torch.ones(c, device=device, dtype=dtype))
    dy = torch.randn(shape, generator=g).to(device, dtype)
    return x, alpha, params, running, dy


def reference_fn(x, alpha, params, running):
    return adaptive_norm_reference(x, alpha, *params, *running, True, 0.1, 1e-5)


def fused_fn(backend):
    def fn(x, alpha, params, running):
        return anrl_ext.adaptive_norm(x, alpha, *params, *running, training=True, backend=backend)
    return fn


_compiled = {}


def compiled_reference_fn():
    if "ref" not in _compiled:
        _compiled["ref"] = torch.compile(reference_fn)
    return _compiled["ref"]


def under_compile_one_op(one_op, fn):
    """fn with fast_blend.COMPILE_ONE_OP set to `one_op` while it runs: a compiled fn traces the layers' one
    op or their composed path by it, and Dynamo guards on it, so each keeps its own program."""
    from anrl_ext.ops import fast_blend

    def call(*args):
        fast_blend.COMPILE_ONE_OP = one_op
        try:
            return fn(*args)
        finally:
            fast_blend.COMPILE_ONE_OP = True
    return call


IMPLS = {
    "fused": lambda backend: fused_fn(backend),
    "reference": lambda backend: reference_fn,
    "compiled_reference": lambda backend: compiled_reference_fn(),
}


def step(fn, case, mode):
    """One forward, backward (of a kept forward), or forward+backward."""
    x, alpha, params, running, dy = case
    inputs = [x, alpha, *params]
    if mode == "forward":
        with torch.no_grad():
            return fn(x, alpha, params, running)
    if mode == "forward_backward":
        y = fn(x, alpha, params, running)
        return torch.autograd.grad(y, inputs, dy)
    raise ValueError(mode)


def graph_replay(step, device):
    """replay() -> step()'s outputs, from a CUDA graph of one call of step, captured after two warm-up
    calls on a side stream (as torch.cuda.graph's documentation does): each replay runs the captured
    kernels on what step's tensors hold then and writes the same output tensors, with no host work per
    call. On the CPU, which has no graphs, replay is step itself. The graph and its memory pool live as
    long as replay does."""
    if torch.device(device).type != "cuda":
        return step
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):  # Triton compiles, autograd and the allocator settle, outside the capture
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = step()

    def replay():
        graph.replay()
        return outs

    return replay


def median_time(fn, repeats, warmup=2):
    """Median seconds of fn() by the CPU clock, after warm-up calls."""
    import statistics
    import time

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def copy_bandwidth(nbytes=256 * 2**20, repeats=10, device="cpu"):
    """Measured copy bandwidth (bytes read + written per second), best of `repeats`."""
    import time

    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).normal_()
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return 2 * nbytes / best


def write_csv(rows, path, quiet=False):
    """Write a list of same-keyed dicts as CSV, creating the folder. Written beside it and renamed over
    it: a time limit that kills the writer leaves the last whole table (run_gpu.py rewrites it after
    every case, the rows of earlier runs with --append among them)."""
    import csv
    import os
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    part = f"{path}.part"
    with open(part, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(part, path)
    if not quiet:
        print(f"wrote {path}")


def read_csv(path):
    """The rows write_csv wrote, as dicts of strings."""
    import csv

    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
