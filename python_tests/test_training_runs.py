"""benchmarks/training_runs.py: when a finished run is reused, the trainer command; anrl_ext.provenance and
anrl_ext.run_records: which code and settings made a run."""
import json
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from anrl_ext import provenance, run_records
from anrl_ext.config import Config

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import training_runs  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OVERRIDES = {"protocol": "OMI-C", "seed": 3, "iters": 10, "norm": "bn", "meta": False}
CURRENT = {"commit": "a" * 40, "dirty": False}


def finished(config, code=None):
    return {"metrics": {}, "config": config, "code": code}


def test_settings_are_every_trainer_setting_with_the_defaults_filled_in():
    s = run_records.full_settings(OVERRIDES)
    assert s["norm"] == "bn" and s["lr"] == Config.lr and s["lambda_idc"] == Config.lambda_idc
    assert set(s) == set(asdict(Config())) - set(run_records.IGNORED)
    with pytest.raises(ValueError, match="not trainer settings.*'learning_rate'"):
        run_records.full_settings({"learning_rate": 0.1})


def test_reuse_compares_every_setting_not_only_the_scripts_own():
    stored = {**asdict(Config()), **OVERRIDES, "out": "elsewhere", "ckpt_every": 7}
    assert training_runs.reusable(finished(stored), OVERRIDES)  # where it wrote and saved do not matter
    # a run made under another default (here the learning rate) is not reused, though the script never sets it
    assert not training_runs.reusable(finished({**stored, "lr": 0.01}), OVERRIDES)
    assert not training_runs.reusable(finished({**stored, "seed": 4}), OVERRIDES)
    # a run that predates a setting trained with its default; a setting that no longer exists is dropped
    older = {k: v for k, v in stored.items() if k != "sync_stats"}
    assert training_runs.reusable(finished({**older, "retired_option": 1}), OVERRIDES)
    assert not training_runs.reusable(finished(older), {**OVERRIDES, "sync_stats": True})


def test_same_commit_reuses_only_runs_of_the_current_clean_commit():
    stored = {**asdict(Config()), **OVERRIDES}
    same = finished(stored, {**CURRENT, "version": "0.1.0"})
    assert training_runs.reusable(same, OVERRIDES, same_commit=True, current=CURRENT)
    for code in (None, {**CURRENT, "dirty": True}, {"commit": "b" * 40, "dirty": False}):
        assert not training_runs.reusable(finished(stored, code), OVERRIDES, same_commit=True, current=CURRENT)
        assert training_runs.reusable(finished(stored, code), OVERRIDES)  # without --same-commit: settings only
    assert not training_runs.reusable(same, OVERRIDES, same_commit=True, current={**CURRENT, "dirty": True})


def test_same_commit_refuses_a_checkout_with_uncommitted_changes(monkeypatch):
    monkeypatch.setattr(training_runs.provenance, "code_version", lambda: {"commit": "c" * 40, "dirty": True})
    with pytest.raises(SystemExit, match="no uncommitted changes"):
        training_runs.check_same_commit(SimpleNamespace(same_commit=True))
    training_runs.check_same_commit(SimpleNamespace(same_commit=False))  # nothing to check


def test_command_spells_each_setting_as_the_trainer_flag():
    cmd = training_runs.command({"sources": "O", "target": "C", "meta": False, "first_order": True,
                                 "lambda_idc": 0.0, "resume": None}, "runs/x")
    assert cmd[:3] == [sys.executable, "-m", "anrl_ext.train"]
    assert " ".join(cmd[3:]) == "--sources O --target C --no-meta --first-order --lambda-idc 0.0 --out runs/x"


def test_run_one_reuses_a_matching_run_and_reruns_a_mismatched_one(tmp_path, monkeypatch):
    (tmp_path / "metrics.json").write_text(json.dumps(finished({**asdict(Config()), **OVERRIDES})))
    launched = []

    def train_here(cmd, env, **kwargs):
        launched.append((cmd, env["OMP_NUM_THREADS"]))
        (tmp_path / "metrics.json").write_text(json.dumps(finished({**asdict(Config()), **OVERRIDES, "lr": 0.5})))
        return SimpleNamespace(returncode=0, stderr="")

    monkeypatch.setattr(training_runs.subprocess, "run", train_here)
    args = SimpleNamespace(fresh=False, same_commit=False)
    assert training_runs.run_one(tmp_path, OVERRIDES, args, 2)["config"]["lr"] == Config.lr and not launched
    assert training_runs.run_one(tmp_path, {**OVERRIDES, "lr": 0.5}, args, 2)["config"]["lr"] == 0.5
    assert launched[0][1] == "2" and "--lr 0.5" in " ".join(launched[0][0])
    args.fresh = True
    training_runs.run_one(tmp_path, {**OVERRIDES, "lr": 0.5}, args, 1)
    assert len(launched) == 2  # --fresh: a run again, though the last one matches


def test_code_line_counts_the_runs_of_each_commit():
    runs = [finished({}, {"commit": "1234567890abcdef", "dirty": False})] * 2 + [finished({}, None),
                                                                               finished({}, {"commit": "f" * 40,
                                                                                             "dirty": True})]
    line = run_records.code_line(runs)
    assert line.startswith("Runs made by: commit 1234567890 (2 runs); ")
    assert "code not recorded (" in line and "(1 run)" in line and f"commit {'f' * 10} with uncommitted changes" in line


def test_code_version_names_this_checkouts_commit():
    code = provenance.code_version()
    assert code["version"] and code["torch"]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a git checkout (CI clones one): its HEAD, clean or not
        assert code["commit"] == head.stdout.strip() and re.fullmatch(r"[0-9a-f]{40}", code["commit"])
        assert isinstance(code["dirty"], bool)
    else:
        assert code["commit"] is None and code["dirty"] is None


def test_shared_options_give_unique_seeds_in_order_and_the_command_line():
    import argparse

    ap = argparse.ArgumentParser()
    args, seeds, cmd = training_runs.parse_run_arguments(ap, "x.py", ["--seeds", "2", "2", "1", "--iters", "7"],
                                                         "runs/x", "arm")
    assert seeds == [2, 1] and args.iters == 7 and args.runs == "runs/x" and not args.fresh
    assert cmd == "python benchmarks/x.py --seeds 2 2 1 --iters 7"
