"""Finished training runs, as their metrics.json records them: what they trained with, which code made them.

Shared by `python -m anrl_ext.summarize` and the study scripts in benchmarks/ (training_runs.py).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, fields
from typing import Iterable, Mapping

from .config import Config

# Where a run writes and how often it saves a checkpoint: not what it learns.
IGNORED = ("out", "resume", "ckpt_every")


def full_settings(overrides: Mapping) -> dict:
    """Every trainer setting of a run with these overrides of the defaults, less IGNORED."""
    known = {f.name for f in fields(Config)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"not trainer settings: {sorted(unknown)}")
    merged = {**asdict(Config()), **overrides}
    return {k: v for k, v in merged.items() if k not in IGNORED}


def stored_settings(result: Mapping) -> dict:
    """The settings a finished run trained with. A setting it predates counts as its default: options are
    added with the default keeping the old behaviour. Settings that no longer exist are dropped."""
    known = {f.name for f in fields(Config)}
    return full_settings({k: v for k, v in result.get("config", {}).items() if k in known})


def as_flags(settings: Mapping) -> list:
    """The trainer's command-line options for these settings: --key value, --flag / --no-flag for a
    boolean, nothing for None (an unset option)."""
    flags = []
    for key, value in settings.items():
        flag = key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(f"--{flag}" if value else f"--no-{flag}")
        elif value is not None:
            flags += [f"--{flag}", str(value)]
    return flags


def code_label(result: Mapping) -> str:
    """Which code made a finished run: its commit (10 digits), and whether the checkout had changes."""
    code = result.get("code") or {}
    if not code.get("commit"):
        return "code not recorded (runs made before metrics.json recorded it, or outside a git checkout)"
    return f"commit {code['commit'][:10]}" + (" with uncommitted changes" if code.get("dirty") else "")


def code_line(results: Iterable[Mapping]) -> str:
    """One line for a report: which code made these runs (metrics.json of each), how many runs each."""
    counts = Counter(code_label(r) for r in results)
    return "Runs made by: " + "; ".join(f"{name} ({n} run{'s' * (n != 1)})" for name, n in counts.most_common()) + "."
