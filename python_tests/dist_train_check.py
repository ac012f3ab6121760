"""Run under torchrun: the trainer's command line (`python -m anrl_ext.train ARGS`),
then check that it destroyed the process group it joined. A live gloo group at
interpreter exit can abort the process (SIGABRT) after training has succeeded."""
import sys

import torch.distributed as dist

from anrl_ext import train

train.main(sys.argv[1:])
if dist.is_initialized():
    sys.exit("the trainer left its process group alive")
print("process group destroyed", flush=True)
