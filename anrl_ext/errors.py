"""The exception for an input file that cannot be used."""
from __future__ import annotations


class InputError(ValueError):
    """An input file that cannot be used (a dataset's list or image, a checkpoint, an exported model, an image
    or video to score), with a message naming it. The command-line tools end with the message, exit status 1,
    not a traceback; a ValueError, so code that catches those catches it."""
