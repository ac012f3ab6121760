"""Run under torchrun: the trainer's command line (`python -m anrl_ext.train ARGS`),
then check that it destroyed the process group it joined and that gloo's worker
threads are gone. A gloo thread still alive at interpreter exit can abort the
process (SIGABRT) after training has succeeded, at random: this checks the cause."""
import glob
import os
import sys
import time

import torch.distributed as dist

from anrl_ext import train


def gloo_threads():
    names = (open(f).read().strip() for f in glob.glob(f"/proc/{os.getpid()}/task/*/comm"))
    return [n for n in names if "gloo" in n]


train.main(sys.argv[1:])
if dist.is_initialized():
    sys.exit("the trainer left its process group alive")
# A gloo thread ending just after the group is destroyed is fine; one that stays is the hazard.
deadline = time.monotonic() + 3.0
while gloo_threads() and time.monotonic() < deadline:
    time.sleep(0.05)
if gloo_threads():
    sys.exit(f"gloo threads outlive the process group by 3 s: {gloo_threads()}")
print("process group destroyed", flush=True)
