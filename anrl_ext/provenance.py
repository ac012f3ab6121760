"""Which code made a result: package version, git commit of the checkout, torch build.

Written into every run's metrics.json, so that a number can be traced to the commit that produced it
and runs made by different code are not mixed up silently.
"""
from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

import torch

from . import __version__

_PACKAGE_DIR = Path(__file__).resolve().parent


def _git(*args: str) -> str | None:
    """Output of a git command in the package's folder; None outside a git checkout or without git."""
    try:
        r = subprocess.run(["git", "-C", str(_PACKAGE_DIR), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


@lru_cache(maxsize=1)
def code_version() -> dict:
    """{"version", "commit", "dirty", "torch"}: commit and dirty are None outside a git checkout
    (e.g. a wheel install); dirty is True when tracked files differ from the commit."""
    commit = _git("rev-parse", "HEAD")
    dirty = None
    if commit:
        status = _git("status", "--porcelain", "--untracked-files=no")
        dirty = None if status is None else bool(status)
    return {"version": __version__, "commit": commit, "dirty": dirty, "torch": torch.__version__}
