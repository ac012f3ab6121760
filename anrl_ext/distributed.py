"""Multi-process training helpers (torchrun / DDP-style data parallelism).

Gradients are averaged across processes after every backward, as
DistributedDataParallel does; the meta-gradient of the AFNM gates is
averaged the same way. With `sync_batch_stats(model)`, every AFNM/BN-blend
layer normalises its BN branch with statistics of the whole distributed
batch: the per-sample moments (N, C) are all-gathered (differentiably, so
gradients flow to every process's inputs) and merged, which costs one
(N, 2C) message per layer and forward rather than a pass over the
activations. Processes may hold different batch sizes (one more small
all-gather learns them, and checks that the inputs' heights and widths
agree), as with `nn.SyncBatchNorm`; `convert_batchnorm(...,
sync_batchnorm=True)` turns an `nn.SyncBatchNorm` into a layer synchronised
this way.
"""
from __future__ import annotations

import functools
import gc
import glob
import os
import time
from typing import Callable, Iterable, List, Optional, Tuple

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
        wait_for_gloo_threads()
    _owns_group = False


def gloo_threads() -> List[str]:
    """Names of this process's gloo threads (Linux: /proc; [] elsewhere)."""
    names = []
    for comm in glob.glob(f"/proc/{os.getpid()}/task/*/comm"):
        try:
            with open(comm) as f:
                names.append(f.read().strip())
        except OSError:  # the thread ended while being listed
            pass
    return [n for n in names if "gloo" in n]


def wait_for_gloo_threads(timeout: float = 3.0) -> List[str]:
    """After destroy_process_group: wait (up to `timeout` seconds) for gloo's threads to end, so
    that none is still releasing work when the interpreter exits; the ones left, if any."""
    deadline = time.monotonic() + timeout
    while gloo_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    return gloo_threads()


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    _, size = world()
    if size == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(size)


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes of `group`. Its adjoint is itself, so it differentiates any number of times."""

    @staticmethod
    def forward(ctx, t: Tensor, group) -> Tensor:
        ctx.group = group
        out = t.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _AllReduceSum.apply(grad, ctx.group), None


class _AllGather(torch.autograd.Function):
    """Concatenate every process's tensor along dim 0, in rank order.

    `rows` holds every process's row count: a process with fewer than the most
    sends its rows padded with zeros (all_gather moves equal shapes), and the
    padding is cut off again. The backward sums the output gradient over
    processes (every process's loss depends on every process's input) and keeps
    this process's rows. It is built from `_AllReduceSum` and `narrow`, so
    create_graph=True (the second-order meta step) records it for a double
    backward. Written here rather than taken from
    torch.distributed.nn.functional, whose all_gather is deprecated, with
    public c10d calls only. An all-reduce of the whole gathered gradient, not
    a reduce-scatter: every backend has it, and these are (N, C) tensors.
    """

    @staticmethod
    def forward(ctx, t: Tensor, group, rows: Tuple[int, ...]) -> Tensor:
        t = t.contiguous()
        most = max(rows)
        send = t if t.shape[0] == most else torch.cat([t, t.new_zeros((most - t.shape[0],) + t.shape[1:])])
        parts = [torch.empty_like(send) for _ in rows]
        dist.all_gather(parts, send, group=group)
        rank = dist.get_rank(group)
        ctx.group, ctx.rows, ctx.start = group, t.shape[0], sum(rows[:rank])
        return torch.cat([p if r == most else p[:r] for p, r in zip(parts, rows)])

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _AllReduceSum.apply(grad, ctx.group).narrow(0, ctx.start, ctx.rows), None, None


def sizes_of_every_process(sizes: Tuple[int, ...], device: torch.device, group=None) -> List[Tuple[int, ...]]:
    """Every process's `sizes` (a few integers, as many on each), in rank order (one small
    all-gather, and a wait for it)."""
    mine = torch.tensor(sizes, dtype=torch.long, device=device)
    every = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(every, mine, group=group)
    return [tuple(s) for s in torch.stack(every).tolist()]


def rows_of_every_process(rows: int, device: torch.device, group=None) -> Tuple[int, ...]:
    """Every process's `rows`, in rank order (one small all-gather, and a wait for it)."""
    return tuple(r for r, in sizes_of_every_process((rows,), device, group))


def all_gather_cat(t: Tensor, group=None, same_rows: bool = False) -> Tensor:
    """`t` of every process in `group` (default: all), concatenated along dim 0 in rank
    order; differentiable. The processes may hold different numbers of rows (zero too),
    which costs one more small collective to learn them; `same_rows=True` skips it
    where every process is known to hold as many rows as this one."""
    rows = (t.shape[0],) * dist.get_world_size(group) if same_rows \
        else rows_of_every_process(t.shape[0], t.device, group)
    return _AllGather.apply(t, group, rows)


class GatherMoments:
    """A layer's `gather_stats`: the per-sample moments of every process, concatenated
    in rank order (differentiably), so that its BN branch merges the statistics of the
    whole distributed batch.

    Outside a process group, or in a group of one, the moments come back as they are
    (as `nn.SyncBatchNorm` then normalises with local statistics). `group` is a
    torch.distributed process group (None: all processes). With `same_rows=False`
    processes may hold different batch sizes, an empty batch included, at the cost of
    one more small all-gather per layer and forward; the trainer, whose sampler gives
    every process the same batch size, sets it True. Every process must give its layers
    inputs of the same height and width, since the per-sample moments are merged with
    equal weights: with `same_rows=False` the layers' planes travel with the row counts,
    and a difference raises a ValueError on every process (with True it is not checked).
    """

    def __init__(self, group=None, same_rows: bool = False):
        self.group, self.same_rows = group, same_rows

    def active(self) -> bool:
        """Whether there are other processes to gather from."""
        return dist.is_available() and dist.is_initialized() and dist.get_world_size(self.group) > 1

    def __call__(self, mean: Tensor, var: Tensor, plane: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """Every process's (N, C) moments, concatenated; `plane` is the H * W of this
        process's input (None: not known, not checked)."""
        if not self.active():
            return mean, var
        world = dist.get_world_size(self.group)
        if self.same_rows:
            rows = (mean.shape[0],) * world
        else:
            sizes = sizes_of_every_process((mean.shape[0], plane or 0), mean.device, self.group)
            check_same_planes([p for _, p in sizes])
            rows = tuple(r for r, _ in sizes)
        # One collective for both: mean and var travel side by side as one (N, 2C) message.
        both = _AllGather.apply(torch.cat([mean, var], dim=1), self.group, rows)
        c = mean.shape[1]
        return both[:, :c], both[:, c:]

    def for_plane(self, plane: int) -> Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]:
        """This gather for a layer whose input has `plane` = H * W elements per channel."""
        return functools.partial(self, plane=plane)

    def __deepcopy__(self, memo) -> "GatherMoments":
        # A process group is a handle to the processes, not data: a copied model (an EMA of
        # the weights, say) gathers over the same one, and a ProcessGroup cannot be copied.
        return GatherMoments(self.group, self.same_rows)

    def __repr__(self) -> str:
        return f"GatherMoments(group={self.group!r}, same_rows={self.same_rows})"


def check_same_planes(planes) -> None:
    """ValueError unless every process's plane (H * W; 0: not known) is the same."""
    known = {p for p in planes if p}
    if len(known) > 1:
        raise ValueError("synchronised BN statistics need inputs of the same height x width on every process "
                         "(the per-sample moments are merged with equal weights); elements per plane: "
                         + ", ".join(f"rank {r}: {p}" for r, p in enumerate(planes) if p))


def sync_batch_stats(model: nn.Module, enabled: bool = True, *, group=None, same_rows: bool = False) -> nn.Module:
    """Make every BN/IN blend layer of `model` normalise its BN branch with statistics of
    the whole distributed batch, as `nn.SyncBatchNorm` does (see `GatherMoments` for
    `group` and `same_rows`); `enabled=False` makes them local again. Returns `model`."""
    from .nn import BlendNorm2d

    for m in model.modules():
        if isinstance(m, BlendNorm2d):
            m.gather_stats = GatherMoments(group, same_rows) if enabled else None
    return model
