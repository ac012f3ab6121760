"""Atomic writes of checkpoints and the tools' outputs: a kill or a full disk mid-write never leaves a part
of a file or corrupts the last good one, and the error names the file."""
from __future__ import annotations

import csv
import io
import os
import pickle
import tempfile
from contextlib import contextmanager
from typing import Iterable, Iterator, Optional, Sequence

import torch

from .errors import InputError


@contextmanager
def os_errors_naming(path: str) -> Iterator[None]:
    """An OSError that names no file is raised again naming `path`: a disk that fills raises one from
    write, flush, close or fsync, and "[Errno 28] No space left on device" alone does not say where."""
    try:
        yield
    except OSError as e:
        if e.errno is not None and e.filename is None:
            raise type(e)(e.errno, e.strerror, path) from e
        raise


def write_atomic(path: str, write, suffix: Optional[str] = None) -> None:
    """write(binary file) into a temporary file in `path`'s directory, fsync, then rename over `path`:
    readers see the old file or the whole new one, never a part. The temporary file ends in `suffix`
    (default: `path`'s extension). An OSError that names no file is raised again naming `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    if suffix is None:
        suffix = os.path.splitext(path)[1] or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    try:
        with os_errors_naming(path):
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; give it a plain open()'s permissions
            os.replace(tmp, path)  # atomic on POSIX
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str, text: str) -> None:
    """`text` (UTF-8) into `path` by write_atomic: the whole of it or the file as it was."""
    write_atomic(path, lambda fh: fh.write(text.encode()))


def write_csv_atomic(path: str, rows: Iterable[Sequence]) -> None:
    """CSV rows (the header first) into `path` by write_atomic."""
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    write_text_atomic(path, text.getvalue())


def save_figure_atomic(fig, path: str, **savefig_kwargs) -> None:
    """A matplotlib figure into `path` by write_atomic, in the format its extension names (matplotlib's
    default without one)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=os.path.splitext(path)[1][1:].lower() or None, **savefig_kwargs)
    write_atomic(path, lambda fh: fh.write(buffer.getbuffer()))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_atomic(obj, path: str) -> None:
    """torch.save to a temporary file in the same directory, fsync, then rename over `path`.

    The bytes are made in memory first: a write that fails inside torch.save comes out as a RuntimeError
    without its errno ("unexpected pos ..."), and a disk that fills must be named as such."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, lambda fh: fh.write(buffer.getbuffer()), suffix=".pt")


def load(path: str, map_location="cpu"):
    """What torch.save wrote to `path`; FileNotFoundError or InputError naming it if it is not there or not
    a file torch can read."""
    if os.path.isdir(path):  # a run's folder, given for the file in it
        inside = os.path.join(path, "checkpoint.pt")
        raise InputError(f"{path} is a folder, not a checkpoint file"
                         + (f"; its run's checkpoint is {inside}" if os.path.isfile(inside) else ""))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, ValueError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise InputError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from e


def load_run(path: str, map_location="cpu") -> dict:
    """A checkpoint written by anrl_ext.train: a dict with at least its 'model' and 'config'."""
    state = load(path, map_location)
    if not isinstance(state, dict) or not {"model", "config"} <= state.keys():
        raise InputError(f"{path} is not a checkpoint written by anrl_ext.train (no 'model' or 'config' entry)")
    return state


def delivered_weights(state: dict, path: str) -> dict:
    """The network weights a run's checkpoint (read from `path`) delivers: the weight average of a run with
    --ema ('ema_model'), else its trained network ('model'); best.pt holds the evaluated network as 'model'.
    InputError if they are not finite: every score would be nan."""
    weights = state.get("ema_model", state["model"])
    check_state_dict(weights, path)
    broken = non_finite_entries(weights)
    if broken:
        raise InputError(f"{path}: the network's weights are not finite ({broken}): its run diverged")
    return weights


def check_state_dict(weights, path: str) -> None:
    """InputError naming `path` unless `weights` is a state dict: names and tensors."""
    if not isinstance(weights, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in weights.items()):
        raise InputError(f"{path}: its network weights are not a state dict of named tensors "
                         f"(a {type(weights).__name__})")


def load_weights(model: torch.nn.Module, weights, path: str) -> None:
    """Load a checkpoint's network `weights` into `model`, the network its run's settings describe;
    InputError naming `path` if they do not fit it, a clearer message than load_state_dict's list of every key."""
    check_state_dict(weights, path)
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    reshaped = [f"{k}: {tuple(weights[k].shape)} in the file, {tuple(own[k].shape)} in the network"
                for k in own if k in weights and weights[k].shape != own[k].shape]
    if missing or unexpected or reshaped:
        found = [f"{len(names)} {what} (first {names[0]})" for names, what in
                 ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape")) if names]
        raise InputError(f"{path}: its weights do not fit the network its run's settings describe: "
                         f"{'; '.join(found)}. Was the file edited, or written by another version of anrl_ext?")
    model.load_state_dict(weights)


def non_finite_entries(weights: dict) -> str:
    """The names of a state dict's floating-point entries holding nan or inf, the first three and '...'
    ('' if none)."""
    floats = {k: v for k, v in weights.items() if v.is_floating_point()}
    # one flag per entry, read back in one copy (not one GPU sync per entry)
    finite = torch.stack([torch.isfinite(v).all() for v in floats.values()]).tolist() if floats else []
    broken = [k for k, ok in zip(floats, finite) if not ok]
    return ", ".join(broken[:3]) + (", ..." if len(broken) > 3 else "")
