"""Multi-process training helpers (torchrun / DDP-style data parallelism).

Gradients are averaged across processes after every backward, as
DistributedDataParallel does; the meta-gradient of the AFNM gates is
averaged the same way. With `sync_batch_stats(model)`, every AFNM/BN-blend
layer normalises its BN branch with statistics of the whole distributed
batch: the per-sample moments (N, C) are all-gathered (differentiably, so
gradients flow to every process's inputs) and merged, which costs one
(N, 2C) message per layer and forward rather than a pass over the
activations.
"""
from __future__ import annotations

import gc
import os
from typing import Iterable, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn


def world() -> Tuple[int, int]:
    """(rank, world size); (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# Whether init_from_env created the process group (and so shutdown() may destroy it);
# a group the caller set up before is theirs to destroy.
_owns_group = False


def init_from_env(device: torch.device) -> Tuple[int, int]:
    """Join the process group torchrun describes in the environment (no-op for one process)."""
    global _owns_group
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        # torch._dynamo, imported after a process group exists (torch.optim imports it
        # with the first optimizer), takes references to that group that
        # destroy_process_group() cannot drop: the gloo threads then live until
        # interpreter teardown, and one still releasing its last work there aborts
        # the process (see shutdown). Imported first, it holds none (torch 2.11, 2.14).
        import torch._dynamo  # noqa: F401

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        _owns_group = True
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return world()


def shutdown() -> None:
    """Destroy the process group `init_from_env` created, if any.

    A process that exits with a live gloo group can abort at interpreter teardown
    ("terminate called without an active exception", SIGABRT; pytorch/pytorch#190489):
    a gloo worker thread releasing a finished collective decrefs its Python tensors,
    which needs the interpreter. Destroying the group joins those threads first.
    """
    global _owns_group
    if _owns_group and dist.is_initialized():
        gc.collect()  # autograd graphs in reference cycles can hold collectives, and through them the group
        dist.destroy_process_group()
    _owns_group = False


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    _, size = world()
    if size == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(size)


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes. Its adjoint is itself, so it differentiates any number of times."""

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:
        out = t.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _AllReduceSum.apply(grad)


class _AllGather(torch.autograd.Function):
    """Concatenate every process's tensor along dim 0, in rank order.

    The backward sums the output gradient over processes (every process's loss
    depends on every process's input) and keeps this process's rows. It is built
    from `_AllReduceSum` and `narrow`, so create_graph=True (the second-order
    meta step) records it for a double backward. Written here rather than taken
    from torch.distributed.nn.functional, whose all_gather is deprecated, with
    public c10d calls only. An all-reduce of the whole gathered gradient, not a
    reduce-scatter: every backend has it, and these are (N, C) tensors.
    """

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:
        t = t.contiguous()
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t)
        ctx.rows, ctx.start = t.shape[0], dist.get_rank() * t.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _AllReduceSum.apply(grad).narrow(0, ctx.start, ctx.rows)


def all_gather_cat(t: Tensor) -> Tensor:
    """`t` of every process (equal shapes), concatenated along dim 0 in rank order; differentiable."""
    return _AllGather.apply(t)


def gather_moments(mean: Tensor, var: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-sample moments of every process, concatenated in rank order (differentiable).

    One collective: mean and var travel side by side as one (N, 2C) message.
    """
    both = all_gather_cat(torch.cat([mean, var], dim=1))
    c = mean.shape[1]
    return both[:, :c], both[:, c:]


def sync_batch_stats(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Make every BN/IN blend layer of `model` use global batch statistics (equal N per process)."""
    from .nn import BlendNorm2d

    for m in model.modules():
        if isinstance(m, BlendNorm2d):
            m.gather_stats = gather_moments if enabled else None
    return model
