"""Checks shared by the command-line tools: a bad value becomes argparse's usage error naming the option."""
from __future__ import annotations

import argparse
import math
import os
from contextlib import contextmanager
from typing import Iterable, Iterator, List, Optional


def version_text() -> str:
    """What --version prints: the package and the checkout it runs from, the torch build, and the op's backends
    usable on this machine (the first things a bug report needs)."""
    import torch

    from . import provenance
    from .ops import available_backends

    code = provenance.code_version()
    line = f"anrl_ext {code['version']}"
    if code["commit"]:
        line += f" (git {code['commit'][:10]}{', with local changes' if code['dirty'] else ''})"
    line += f"\ntorch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}"
    line += f"\nbackends usable: on the cpu {', '.join(available_backends('cpu'))}"
    if torch.cuda.is_available():
        line += f"; on cuda ({torch.cuda.get_device_name()}) {', '.join(available_backends('cuda'))}"
    else:
        line += "; no GPU visible"
    return line


class _Version(argparse.Action):
    """--version, its text made only when asked for (it loads the extension and runs git)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def parser(tool: str, description: str, **kwargs) -> argparse.ArgumentParser:
    """The argument parser of `python -m anrl_ext.<tool>` (tool "" for the package itself), with --version."""
    ap = argparse.ArgumentParser(prog="python -m anrl_ext" + (f".{tool}" if tool else ""), description=description,
                                 **kwargs)
    ap.add_argument("--version", action=_Version, help="print the version, torch build and usable backends, and exit")
    return ap


def finite_float(text: str) -> float:
    """argparse type: a finite float (nan would pass every comparison and print as a threshold)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def count(text: str) -> int:
    """argparse type: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return value


def probability(text: str) -> float:
    """argparse type: a number in [0, 1], such as a threshold on the probability of live (one past either end
    would make every decision the same)."""
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
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
    """--checkpoint, --data, --device and --loader-threads of a tool that loads a trained model (evaluate,
    gate_report)."""
    ap.add_argument("--checkpoint", required=True, help="checkpoint.pt written by anrl_ext.train")
    ap.add_argument("--data", default=None, help="'synthetic', a prepared root or SSDG's data_label folder, as "
                    "python -m anrl_ext.train takes it (default: the checkpoint's)")
    ap.add_argument("--device", type=device, default=None, help="cpu, cuda or cuda:N (default: the checkpoint's; "
                    "the CPU if that was a GPU and this machine has none)")
    ap.add_argument("--loader-threads", type=count, default=None, help="frames read at a time while scoring "
                    "(0: one by one; default: the checkpoint's --loader-threads)")


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


def check_output(ap: argparse.ArgumentParser, option: str, path: str, *, folder: bool = False,
                 formats: Optional[Iterable[str]] = None) -> str:
    """Usage error, before any work, if the tool could not write `path` (a file, or with `folder` a folder)
    at the end: a file where a folder must go, a folder where the file goes, no permission to write, or
    (with `formats`, extensions such as ".png") an extension not among them. Creates nothing; returns `path`."""
    def fail(why: str):
        ap.error(f"{option} {path}: {why}")

    target = os.path.abspath(path)
    if formats is not None:
        ext = os.path.splitext(target)[1].lower()
        if ext not in formats:
            fail(f"unknown format {ext or '(no extension)'!r}; use one of {', '.join(sorted(formats))}")
    if os.path.isdir(target) != folder and os.path.exists(target):
        fail("is a file, expected a folder" if folder else "is a folder, expected a file")
    # the nearest folder that exists is where the missing ones (or the file) will be created
    existing = target if folder else os.path.dirname(target)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        fail(f"cannot be created: {existing} is a file")
    if os.path.isfile(target) and not os.access(target, os.W_OK):
        fail("no permission to write it")
    if not os.access(existing, os.W_OK | os.X_OK):  # a new file, or a temporary one renamed over the old, goes here
        fail(f"no permission to write in {existing}")
    return path


@contextmanager
def errors_exit(ap: argparse.ArgumentParser) -> Iterator[None]:
    """Errors that name what is wrong end the tool without a traceback (it would only show our code): a
    missing or unusable input file (dataset, checkpoint, model, image or video), or a file system error
    (a disk that fills, a permission lost, after the tool's checks at its start), with its message and
    exit status 1; an option value this machine cannot honour (`--device cuda` without a GPU), found once
    the work begins, with argparse's usage error naming it (exit status 2)."""
    from .errors import InputError, OptionError

    try:
        yield
    except OptionError as e:
        ap.error(str(e))
    except (OSError, InputError) as e:  # OSError: FileNotFoundError too
        raise SystemExit(f"{ap.prog}: error: {e}") from None
