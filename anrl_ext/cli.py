"""Checks shared by the command-line tools: a bad value becomes argparse's usage error naming the option."""
from __future__ import annotations

import argparse
import math
import os
from contextlib import contextmanager
from typing import Iterator, List


def finite_float(text: str) -> float:
    """argparse type: a finite float (nan would pass every comparison and print as a threshold)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def device(text: str) -> str:
    """argparse type: cpu, cuda or cuda:N."""
    from .config import check_device

    try:
        check_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def add_checkpoint_arguments(ap: argparse.ArgumentParser) -> None:
    """--checkpoint, --data and --device of a tool that loads a trained model (evaluate, gate_report)."""
    ap.add_argument("--checkpoint", required=True, help="checkpoint.pt written by anrl_ext.train")
    ap.add_argument("--data", default=None, help="dataset (default: the checkpoint's)")
    ap.add_argument("--device", type=device, default=None, help="cpu, cuda or cuda:N (default: the checkpoint's)")


def domains(ap: argparse.ArgumentParser, data: str, letters: str) -> List[str]:
    """The --domains letters as a list; a usage error if the synthetic benchmark lacks one of them."""
    if data == "synthetic":
        from .data.synthetic import check_domain

        try:
            for d in letters:
                check_domain(d)
        except ValueError as e:
            ap.error(f"--domains {letters!r}: {e}")
    return list(letters)


def make_parent(path: str) -> str:
    """Create the folder an output file goes into, as the trainer does for --out; returns `path`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


@contextmanager
def data_errors_exit(prog: str) -> Iterator[None]:
    """A missing or unusable dataset file ends the tool with its message and exit status 1, without a
    traceback: the message names the file, and the traceback would only show our code."""
    from .data.lists import DataError

    try:
        yield
    except (FileNotFoundError, DataError) as e:
        raise SystemExit(f"{prog}: error: {e}") from None
