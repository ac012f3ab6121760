"""The exceptions the command-line tools turn into a message instead of a traceback."""
from __future__ import annotations


class InputError(ValueError):
    """An input file that cannot be used (a dataset's list or image, a checkpoint, an exported model, an image
    or video to score), with a message naming it. The command-line tools end with the message, exit status 1,
    not a traceback; a ValueError, so code that catches those catches it."""


class OptionError(ValueError):
    """An option value this machine cannot honour (`--device cuda` without a CUDA device, a `--backend` the
    device cannot run), with a message naming the option. The command-line tools end with a usage error
    (exit status 2), as for a value of the wrong type; library callers get a ValueError, not a SystemExit."""
