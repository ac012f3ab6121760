"""Run under torchrun (2 processes, gloo): AFNM with synchronised BN statistics on
each process's half of a batch must equal single-process AFNM on the whole batch,
in values, running statistics, gradients and second-order gradients, with one collective
each way. Exits non-zero on a mismatch."""
import sys

import torch
import torch.distributed as dist

import anrl_ext
from anrl_ext import distributed

backend = sys.argv[1] if len(sys.argv) > 1 else "cpu"
dist.init_process_group("gloo")
rank, size = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
full = anrl_ext.AFNM(6, reduction=2, backend=backend).double()
for p in full.gate.parameters():
    torch.nn.init.normal_(p, std=0.5)
local = anrl_ext.AFNM(6, reduction=2, backend=backend).double()
local.load_state_dict(full.state_dict())
distributed.sync_batch_stats(local)
x = torch.randn(4 * size, 6, 5, 7, dtype=torch.float64) * 2 + 1
w = torch.randn_like(x)

xf = x.clone().requires_grad_()
(full(xf) * w).sum().backward()

part = slice(4 * rank, 4 * rank + 4)
calls = []


def counted(name):
    real = getattr(dist, name)

    def call(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    return call


# Count the layer's own collectives: one all-gather of the moments forward (the
# running statistics reuse it), one all-reduce of their gradient backward.
dist.all_gather, dist.all_reduce = counted("all_gather"), counted("all_reduce")
xl = x[part].clone().requires_grad_()
out = local(xl)
forward_calls, calls[:] = list(calls), []
(out * w[part]).sum().backward()
backward_calls = list(calls)
distributed.average_gradients(local.parameters())

errors = {"x_grad": (xl.grad - xf.grad[part]).abs().max().item(),
          "running_var": (local.running_var - full.running_var).abs().max().item()}


def parameter_errors(suffix=""):
    # full-batch gradients are sums over all samples; averaged local ones are sums / size
    return {n + suffix: (p.grad * size - q.grad).abs().max().item()
            for (n, p), q in zip(local.named_parameters(), full.parameters())}


errors.update(parameter_errors())

# second order, as in the meta step: differentiate the input gradient again
for m in (full, local):
    m.zero_grad()
u = torch.randn_like(x)
xf2 = x.clone().requires_grad_()
(gf,) = torch.autograd.grad((full(xf2) * w).sum(), xf2, create_graph=True)
(gf * u).sum().backward()
xl2 = x[part].clone().requires_grad_()
(gl,) = torch.autograd.grad((local(xl2) * w[part]).sum(), xl2, create_graph=True)
(gl * u[part]).sum().backward()
distributed.average_gradients(local.parameters())
errors["x_grad_first"] = (gl - gf[part]).abs().max().item()
errors["x_grad_second"] = (xl2.grad - xf2.grad[part]).abs().max().item()
errors.update(parameter_errors("_second"))
bad = {k: v for k, v in errors.items() if not v < 1e-10}
if forward_calls != ["all_gather"] or backward_calls != ["all_reduce"]:
    bad["collectives"] = f"forward {forward_calls}, backward {backward_calls}"
print(f"rank {rank}: max errors {max(errors.values()):.2e}, collectives forward {forward_calls} "
      f"backward {backward_calls}" + (f", wrong: {bad}" if bad else ""), flush=True)
dist.destroy_process_group()
sys.exit(1 if bad else 0)
