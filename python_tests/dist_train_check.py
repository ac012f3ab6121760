"""Run under torchrun: the trainer's command line (`python -m anrl_ext.train ARGS`),
then check that it destroyed the process group it joined and that gloo's worker
threads are gone. A gloo thread still alive at interpreter exit can abort the
process (SIGABRT) after training has succeeded, at random: this checks the cause."""
import sys

import torch.distributed as dist

from anrl_ext import train
from anrl_ext.distributed import gloo_threads

train.main(sys.argv[1:])
if dist.is_initialized():
    sys.exit("the trainer left its process group alive")
# The trainer's shutdown waited for gloo's threads to end: none may be left.
if gloo_threads():
    sys.exit(f"gloo threads outlive the trainer's process group: {gloo_threads()}")
print("process group destroyed", flush=True)
