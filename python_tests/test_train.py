"""End-to-end trainer: smoke run, outputs, resume reproducibility, atomic checkpoints, CLI."""
import csv
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import anrl_ext
from anrl_ext import (checkpoint, config, errors, evaluate, export, gate_report, provenance, selection, stopping,
                      train)
from anrl_ext.__main__ import TOOLS
from anrl_ext.data import SyntheticDomains, SyntheticSpec, synthetic
from anrl_ext.data.build import build_datasets, eval_dataset
from anrl_ext.metrics import attack_metrics, compute_metrics, describe_attacks
from helpers import check_amp_and_channels_last, fail_atomic_writes, trainer_steps


def losses(path):
    with open(path) as fh:
        return [[r[k] for k in ("cls", "dep", "trn", "val")] for r in csv.DictReader(fh)]


def test_smoke_run_writes_everything(tmp_path, capsys):
    out = tmp_path / "run"
    result = train.run(config.load(["--preset", "smoke", "--out", str(out)]))
    # 3 videos per class and domain (smoke), 2 held out per class of the sources (3 // 2, at least 2)
    assert result["data_split"] == {"train": {"videos": 18, "subjects": 18}, "heldout": {"videos": 12, "subjects": 12},
                                    "target": {"videos": 6, "subjects": 6}}
    assert ("data synthetic: sources OCI, 18 training videos (18 subjects), 12 held out (12 subjects); "
            "target M, 6 videos") in capsys.readouterr().out
    for name in ("metrics.json", "roc.png", "losses.png", "log.csv", "checkpoint.pt", "config.yaml"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["metrics"]) == {"paper", "source", "source_heldout"}
    assert 0 <= m["metrics"]["paper"]["auc"] <= 1
    assert m["config"]["norm"] == "afnm" and result["iterations"] == 4
    assert m["code"] == provenance.code_version() and m["code"]["version"] == anrl_ext.__version__
    rows = losses(out / "log.csv")
    assert len(rows) == 4 and all(r[2] != "" for r in rows)  # meta losses logged


def test_no_meta_trains_gates_with_the_ordinary_loss():
    cfg = config.load(["--preset", "smoke", "--no-meta", "--iters", "2"])
    trainer = train.Trainer(cfg)
    before = [p.detach().clone() for p in trainer.gate_params]
    base_before = [p.detach().clone() for p in trainer.base_params]
    logs = [trainer.step() for _ in range(2)]
    assert not trainer.use_meta and "trn" not in logs[-1]  # no meta step, no IDC/ICS
    # (a gate whose one hidden unit is dead at this tiny width gets no gradient, so not all of them move)
    moved = sum(not torch.equal(a, p) for a, p in zip(before, trainer.gate_params))
    assert moved >= len(before) // 2, f"{moved} of {len(before)} gate parameters trained"
    assert any(not torch.equal(a, p) for a, p in zip(base_before, trainer.base_params))


def test_one_source_domain_says_it_trains_as_no_meta():
    """Algorithm 1's meta-train / meta-test split needs two sources: with one, a warning, and the run of
    --no-meta, step for step."""
    common = ["--preset", "smoke", "--sources", "O", "--target", "M"]
    with pytest.warns(UserWarning, match=r"one source domain \(O\): the meta step .* trains as with --no-meta"):
        alone = train.Trainer(config.load(common))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said only when it applies
        no_meta = train.Trainer(config.load(common + ["--no-meta"]))
        train.Trainer(config.load(["--preset", "smoke", "--sources", "OC", "--target", "M"]))
    for _ in range(2):
        assert alone.step() == no_meta.step()
    for (name, a), b in zip(alone.model.state_dict().items(), no_meta.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_limited_source_task_meta_learns_over_two_sources():
    """--protocol MI-C (two sources): the meta step splits them one and one, every iteration, and the gates
    take its update."""
    trainer = train.Trainer(config.load(["--preset", "smoke", "--protocol", "MI-C"]))
    assert trainer.use_meta and trainer.train_set.domains == ["M", "I"] and trainer.target_set.domains == ["C"]
    before = [p.detach().clone() for p in trainer.gate_params]
    logs = [trainer.step() for _ in range(2)]
    assert all({"trn", "val"} <= set(log) for log in logs), logs
    assert any(not torch.equal(a, p) for a, p in zip(before, trainer.gate_params))
    trainer.close()


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_sync_stats_in_one_process_is_the_plain_run(backend):
    """--sync-stats without torchrun says so and trains as without it (nn.SyncBatchNorm is BN there)."""
    common = ["--preset", "smoke", "--backend", backend]
    with pytest.warns(UserWarning, match="--sync-stats in one process: nothing to synchronise"):
        synced = train.Trainer(config.load(common + ["--sync-stats"]))
    layers = [m for m in synced.model.modules() if isinstance(m, anrl_ext.AFNM)]
    assert layers and all(m.gather_stats.same_rows for m in layers)
    plain = train.Trainer(config.load(common))
    for _ in range(2):
        assert synced.step() == plain.step()
    for (name, a), b in zip(synced.model.state_dict().items(), plain.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_gate_reduction_sets_the_hidden_units(tmp_path):
    cfg = config.load(["--preset", "smoke", "--reduction", "4", "--iters", "1", "--out", str(tmp_path)])
    trainer = train.Trainer(cfg)
    gates = [m for m in trainer.model.modules() if isinstance(m, anrl_ext.AFNM)]
    assert [g.gate.fc.shape[0] for g in gates] == [max(1, g.num_features // 4) for g in gates]
    assert max(g.gate.fc.shape[0] for g in gates) > 1  # the default (16) gives one unit at this width
    train.run(cfg)  # trains, and evaluate / gate_report rebuild the same network from the checkpoint
    again, _ = train.trainer_from_checkpoint(str(tmp_path / "checkpoint.pt"))
    assert again.cfg.reduction == 4
    with pytest.raises(RuntimeError, match="built with with_data=False, to score a checkpoint"):
        again.step()  # it built no dataset
    with pytest.raises(ValueError, match="--reduction must be at least 1, got 0"):
        train.Trainer(config.load(["--preset", "smoke", "--reduction", "0"]))


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_amp_and_channels_last(backend):
    check_amp_and_channels_last(backend)


@pytest.mark.parametrize("has_bf16", [False, True])
def test_amp_on_the_cpu_warns_only_without_bfloat16_instructions(has_bf16, monkeypatch):
    """--amp on a CPU without AVX512-BF16 / AMX is many times slower than float32 and the trainer says so;
    on one with them it is faster (docs/performance.md, "One training iteration") and the trainer says nothing."""
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: has_bf16, raising=False)
    assert train.cpu_has_bfloat16_instructions() is has_bf16
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train.Trainer(config.load(["--preset", "smoke", "--amp", "--device", "cpu"]), with_data=False)
    said = [str(w.message) for w in caught if "--amp on the CPU" in str(w.message)]
    assert len(said) == (0 if has_bf16 else 1), said


def test_resume_reproduces_loss_curve(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    train.run(config.load(["--preset", "smoke", "--iters", "4", "--ckpt-every", "2", "--out", str(full)]))
    train.run(config.load(["--preset", "smoke", "--iters", "2", "--ckpt-every", "2", "--out", str(part)]))
    train.run(config.load(["--preset", "smoke", "--iters", "4", "--ckpt-every", "2", "--out", str(part),
                           "--resume", str(part / "checkpoint.pt")]))
    assert losses(full / "log.csv") == losses(part / "log.csv")


def test_ema_delivers_the_average_and_changes_nothing_else(tmp_path):
    """--ema trains bit for bit as without it; metrics.json scores the average and, as
    metrics_unaveraged, the last weights; every tool that reads checkpoint.pt gets the average."""
    plain, averaged = tmp_path / "plain", tmp_path / "ema"
    train.run(config.load(["--preset", "smoke", "--out", str(plain)]))
    train.run(config.load(["--preset", "smoke", "--ema", "0.5", "--out", str(averaged)]))
    assert losses(plain / "log.csv") == losses(averaged / "log.csv")
    p, a = (checkpoint.load_run(str(d / "checkpoint.pt")) for d in (plain, averaged))
    assert all(torch.equal(p["model"][k], a["model"][k]) for k in p["model"])
    assert a["ema_updates"] == 4 and "ema_model" not in p
    assert any(not torch.equal(a["model"][k], a["ema_model"][k]) for k in a["model"])
    pm, am = (json.loads((d / "metrics.json").read_text()) for d in (plain, averaged))
    assert am["metrics_unaveraged"] == pm["metrics"] and "metrics_unaveraged" not in pm
    assert am["config"]["ema"] == 0.5
    trainer, _ = train.trainer_from_checkpoint(str(averaged / "checkpoint.pt"))
    assert trainer.average is None
    scorer = export.load_scorer(str(averaged / "checkpoint.pt"))[0]
    for net in (trainer.model, scorer.net):
        assert all(torch.equal(v, a["ema_model"][k]) for k, v in net.state_dict().items())
    # the average, scored again, gives the run's metrics
    again, _ = train.Trainer(config.Config(**{**a["config"], "ema": 0.0})).evaluate(trainer.model)
    assert again == am["metrics"]


def test_ema_is_kept_by_rank_0_only(monkeypatch):
    """Under torchrun only rank 0 evaluates and writes: the other processes keep no average."""
    cfg = config.load(["--preset", "smoke", "--ema", "0.5"])
    for rank, kept in ((0, True), (1, False)):
        monkeypatch.setattr(train.distributed, "init_from_env", lambda device, rank=rank: (rank, 2))
        trainer = train.Trainer(cfg)
        assert (trainer.average is not None) == kept
        assert trainer.evaluated is (trainer.average.module if kept else trainer.model)


def test_ema_resumes_where_it_stopped(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    ema = ["--preset", "smoke", "--ema", "0.5", "--ckpt-every", "2"]
    train.run(config.load([*ema, "--out", str(full)]))
    train.run(config.load([*ema, "--iters", "2", "--out", str(part)]))
    ck = str(part / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"--ema 0.5 -> 0.9"):
        config.load(["--resume", ck, "--ema", "0.9"])
    train.run(config.load(["--resume", ck, "--iters", "4"]))
    f, p = (checkpoint.load_run(str(d / "checkpoint.pt")) for d in (full, part))
    assert p["ema_updates"] == f["ema_updates"] == 4
    assert all(torch.equal(f["ema_model"][k], p["ema_model"][k]) for k in f["ema_model"])


def iterations(path):
    with open(path) as fh:
        return [int(r["iter"]) for r in csv.DictReader(fh)]


def test_stop_signal_checkpoints_whole_steps_and_resume_goes_on(tmp_path, monkeypatch):
    """SIGTERM mid-run: the step in progress finishes, its checkpoint is written, and --resume alone
    (the checkpoint's own settings) ends with the uninterrupted run's loss curve."""
    full, part = tmp_path / "full", tmp_path / "part"
    smoke = ["--preset", "smoke", "--iters", "5", "--ckpt-every", "2", "--norm", "bn"]
    train.run(config.load(smoke + ["--out", str(full)]))
    step = train.Trainer.step

    def step_then_signal(self):
        logs = step(self)
        if self.iteration == 3:  # between checkpoints
            os.kill(os.getpid(), signal.SIGTERM)  # SIGINT: ignored where the tests run in the background
        return logs

    monkeypatch.setattr(train.Trainer, "step", step_then_signal)
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    result = train.run(config.load(smoke + ["--out", str(part)]))
    assert (result["stopped_by"], result["iterations"]) == ("SIGTERM", 3)
    assert checkpoint.load_run(str(part / "checkpoint.pt"))["iteration"] == 3
    assert not (part / "metrics.json").exists()  # no evaluation of a run cut short
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers  # the ones before are back
    monkeypatch.undo()
    cfg = config.load(["--resume", str(part / "checkpoint.pt")])
    assert (cfg.norm, cfg.iters, cfg.out) == ("bn", 5, str(part))  # the run's settings, not the defaults
    train.run(cfg)
    assert losses(full / "log.csv") == losses(part / "log.csv") and iterations(part / "log.csv") == [1, 2, 3, 4, 5]


def test_resume_drops_log_rows_after_its_checkpoint(tmp_path):
    """A run killed after its last checkpoint logged iterations that the resumed run does again."""
    full, part = tmp_path / "full", tmp_path / "part"
    smoke = ["--preset", "smoke", "--iters", "4", "--ckpt-every", "2"]
    train.run(config.load(smoke + ["--out", str(full)]))
    train.run(config.load(smoke + ["--iters", "2", "--out", str(part)]))
    saved = str(tmp_path / "at2.pt")
    os.replace(part / "checkpoint.pt", saved)
    train.run(config.load(["--resume", saved, "--iters", "3"]))  # goes on into part/, from iteration 2
    assert iterations(part / "log.csv") == [1, 2, 3]
    train.run(config.load(["--resume", saved, "--iters", "4"]))  # as if the run to 3 had died after its step 3
    assert iterations(part / "log.csv") == [1, 2, 3, 4] and losses(full / "log.csv") == losses(part / "log.csv")


def scripted_source_metrics(monkeypatch, script):
    """Trainer.evaluate with its held-out-source HTER / AUC replaced by script[iteration]; returns
    the dict that gets a copy of the model's weights at each evaluated iteration."""
    evaluate_for_real, weights = train.Trainer.evaluate, {}

    def scripted(self):
        report, target = evaluate_for_real(self)
        hter, auc = script[self.iteration]
        report["source_heldout"].update(hter=hter, auc=auc)
        weights[self.iteration] = {k: v.clone() for k, v in self.model.state_dict().items()}
        return report, target

    monkeypatch.setattr(train.Trainer, "evaluate", scripted)
    return weights


@pytest.mark.parametrize("aucs, picked", [([0.9, 0.8, 0.7, 0.99], 2),  # lowest HTER, then highest AUC
                                          ([0.9, 0.8, 0.8, 0.99], 3)])  # a tie goes to the later one
def test_eval_every_keeps_the_best_on_held_out_sources(tmp_path, monkeypatch, aucs, picked):
    """Evaluations at iterations 1, 2, 3 and the final 4: best.pt holds the weights of the one with
    the lowest held-out-source HTER (never the target's), and metrics.json and checkpoint.pt say which."""
    out = tmp_path / "run"
    weights = scripted_source_metrics(monkeypatch, dict(enumerate(zip([0.3, 0.1, 0.1, 0.2], aucs), start=1)))
    result = train.run(config.load(["--preset", "smoke", "--eval-every", "1", "--out", str(out)]))
    assert sorted(weights) == [1, 2, 3, 4]
    run_record = json.loads((out / "metrics.json").read_text())
    saved = run_record["selected"]
    assert saved["iteration"] == result["selected"]["iteration"] == picked
    assert saved["metrics"]["source_heldout"]["auc"] == aucs[picked - 1]
    best = checkpoint.load_run(str(out / "best.pt"))
    assert best["iteration"] == picked and best["config"]["eval_every"] == 1
    assert_same_weights(best["model"], weights[picked])
    assert checkpoint.load_run(str(out / "checkpoint.pt"))["selection"]["best"]["iteration"] == picked
    every = run_record["evaluations"]
    assert [e["iteration"] for e in every] == [1, 2, 3, 4]
    assert [e["metrics"]["source_heldout"]["auc"] for e in every] == aucs
    assert every[-1]["metrics"] == run_record["metrics"]  # the final one


def assert_same_weights(got, want):
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert torch.equal(got[k], v), k


def approx_nested(value):
    """pytest.approx of every number in nested dicts (metrics' "attacks" holds dicts per attack type)."""
    if isinstance(value, dict):
        return {k: approx_nested(v) for k, v in value.items()}
    return value if isinstance(value, str) else pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize("picked", [2, 4], ids=["periodic", "final"])
@pytest.mark.parametrize("ema", [[], ["--ema", "0.5"]], ids=["last", "ema"])
def test_best_checkpoint_scores_as_recorded(tmp_path, monkeypatch, ema, picked):
    """best.pt is a checkpoint like checkpoint.pt: its network (with --ema, the average), scored
    again, gives the metrics recorded for it, and anrl_ext.evaluate reads it. The pick is forced:
    the periodic evaluation at iteration 2, or the final one."""
    out = tmp_path / "run"
    monkeypatch.setattr(selection, "at_least_as_good", lambda report, kept: kept is None or picked == 4)
    train.run(config.load(["--preset", "smoke", "--iters", "4", "--eval-every", "2", "--out", str(out), *ema]))
    best = checkpoint.load_run(str(out / "best.pt"))
    assert best["iteration"] == picked
    trainer = train.Trainer(config.Config(**best["config"]))
    trainer.model.load_state_dict(best["model"])
    again, _ = trainer.evaluate(trainer.model)
    for proto in ("paper", "source", "source_heldout"):
        assert again[proto] == approx_nested(best["metrics"][proto]), proto
    # the periodic evaluation's scalars in TensorBoard, ACER of the target where its attack types are known
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {f"{proto}/{key}" for proto in ("paper", "source") for key in ("auc", "hter", "acer")} <= scalars
    assert "source_heldout/hter" in scalars and "source_heldout/acer" not in scalars
    logged = [e.value for e in events.Scalars("paper/acer")]
    assert len(logged) == 1  # the evaluation at iteration 2; the final one is metrics.json's
    if picked == 2:  # best.pt holds the network that evaluation scored
        assert logged == [pytest.approx(best["metrics"]["paper"]["acer"])]
    evaluate.main(["--checkpoint", str(out / "best.pt"), "--out", str(out / "best_eval.json")])
    assert export.load_scorer(str(out / "best.pt"))[2]["threshold_source"] == best["metrics"]["source"]["threshold"]
    assert "M" in json.loads((out / "best_eval.json").read_text())


def test_resume_picks_from_its_own_history(tmp_path, monkeypatch):
    """A resumed run ends with the uninterrupted run's pick, here one made before the resumed
    checkpoint; a stale best.pt (from an earlier run in the folder) never outlives the run."""
    full, part = tmp_path / "full", tmp_path / "part"
    scripted_source_metrics(monkeypatch, {1: (0.1, 0.9), 2: (0.3, 0.9), 3: (0.2, 0.9), 4: (0.3, 0.99)})
    smoke = ["--preset", "smoke", "--iters", "4", "--ckpt-every", "2", "--eval-every", "1"]
    train.run(config.load(smoke + ["--out", str(full)]))
    train.run(config.load(smoke + ["--iters", "2", "--out", str(part)]))
    assert checkpoint.load_run(str(part / "best.pt"))["iteration"] == 1
    train.run(config.load(["--resume", str(part / "checkpoint.pt"), "--iters", "4"]))
    want, got = (checkpoint.load_run(str(d / "best.pt")) for d in (full, part))
    assert got["iteration"] == want["iteration"] == 1 and got["metrics"] == want["metrics"]
    history = [json.loads((d / "metrics.json").read_text())["evaluations"] for d in (full, part)]
    assert history[0] == history[1] and [e["iteration"] for e in history[1]] == [1, 2, 3, 4]
    assert_same_weights(got["model"], want["model"])
    train.run(config.load(["--preset", "smoke", "--iters", "1", "--out", str(part)]))  # no --eval-every
    assert not (part / "best.pt").exists()
    assert "selected" not in json.loads((part / "metrics.json").read_text())


def test_resume_refuses_another_network_or_task(tmp_path):
    out = tmp_path / "run"
    train.run(config.load(["--preset", "smoke", "--iters", "1", "--out", str(out)]))
    ck = str(out / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"other settings of its network, domains or model selection: "
                                         r"--norm 'afnm' -> 'bn'"):
        config.load(["--resume", ck, "--norm", "bn"])
    with pytest.raises(ValueError, match=r"--width 0.125 -> 0.25; domains OCI->M -> ICM->O"):
        config.load(["--resume", ck, "--width", "0.25", "--protocol", "ICM-O"])
    moved = config.load(["--resume", ck, "--lr", "0.01", "--iters", "9", "--data", str(tmp_path / "elsewhere")])
    assert (moved.lr, moved.iters, moved.norm) == (0.01, 9, "afnm")  # the rest may change
    # fewer iterations than it has trained: its metrics.json would record a run of --iters that trained more
    with pytest.raises(ValueError, match=r"--resume .*checkpoint.pt: the checkpoint is at iteration 1, past --iters 0: "
                                         r"give --iters 1 or more"):
        config.load(["--resume", ck, "--iters", "0"])
    assert config.load(["--resume", ck]).iters == 1  # as many: scored again


def test_heldout_source_set_size():
    """--heldout-videos-per-class sets the synthetic held-out source set: that many videos per class and
    source domain (default: half of --videos-per-class, at least 2), of other subjects than the training videos."""
    def videos_per_class(dataset):
        counts = Counter((r["domain"], r["label"]) for r in {r["video"]: r for r in dataset.records}.values())
        assert len(counts) == 2 * 3  # both classes of the three sources
        return set(counts.values())

    train_set, heldout, _ = build_datasets(config.load(["--preset", "smoke", "--heldout-videos-per-class", "5"]))
    assert videos_per_class(heldout) == {5} and videos_per_class(train_set) == {3}
    assert not {r["video_seed"] for r in heldout.records} & {r["video_seed"] for r in train_set.records}
    assert videos_per_class(build_datasets(config.load(["--preset", "smoke"]))[1]) == {2}  # 3 // 2, at least 2
    assert config.load(["--videos-per-class", "24"]).heldout_videos() == 12
    with pytest.raises(ValueError, match="--heldout-videos-per-class must be at least 0"):
        config.load(["--heldout-videos-per-class", "-1"])
    with pytest.raises(ValueError, match="--heldout-videos-per-class is for the synthetic data"):
        config.load(["--heldout-videos-per-class", "4", "--data", "/some/prepared/root"])
    with pytest.raises(ValueError, match="--heldout-subject-every is for prepared data"):
        config.load(["--heldout-subject-every", "3"])
    with pytest.raises(ValueError, match=r"--heldout-subject-every must be at least 2 \(1 would hold out every "
                                         r"subject\), got 1"):
        config.load(["--heldout-subject-every", "1", "--data", "/some/prepared/root"])


def test_resume_keeps_the_heldout_set_its_picks_were_scored_on(tmp_path):
    picked, plain = tmp_path / "picked", tmp_path / "plain"
    train.run(config.load(["--preset", "smoke", "--iters", "1", "--eval-every", "1", "--out", str(picked)]))
    train.run(config.load(["--preset", "smoke", "--iters", "1", "--out", str(plain)]))
    ck = str(picked / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"model selection: held-out source videos per class 2 -> 6 "
                                         r"\(keep them with --heldout-videos-per-class 2\)"):
        config.load(["--resume", ck, "--heldout-videos-per-class", "6"])
    with pytest.raises(ValueError, match="held-out source videos per class 2 -> 4"):
        config.load(["--resume", ck, "--videos-per-class", "8"])  # the default follows --videos-per-class
    kept = config.load(["--resume", ck, "--videos-per-class", "8", "--heldout-videos-per-class", "2"])
    assert (kept.videos_per_class, kept.heldout_videos()) == (8, 2)
    # a run that kept no picks may score the rest of its evaluations on another set
    assert config.load(["--resume", str(plain / "checkpoint.pt"), "--heldout-videos-per-class", "6"]).eval_every == 0


def test_an_ignored_signal_stays_ignored():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup
    try:
        with stopping.between_steps() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) == stop._handle
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert stop.signum is None
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_cli_stops_with_a_checkpoint_on_sigint(tmp_path):
    out = tmp_path / "run"
    # SIG_DFL: a terminal's Ctrl-C, also where these tests run in the background (SIGINT ignored)
    proc = subprocess.Popen([sys.executable, "-m", "anrl_ext.train", "--preset", "smoke", "--iters", "100000",
                             "--ckpt-every", "0", "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 300
        while not (out / "log.csv").exists() or len(iterations(out / "log.csv")) < 2:
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGINT and "Traceback" not in stderr, stderr[-3000:]
    done = checkpoint.load_run(str(out / "checkpoint.pt"))["iteration"]
    assert done >= 2 and iterations(out / "log.csv")[-1] == done
    assert f"stopped by SIGINT after iteration {done}/100000" in stdout
    assert f"go on with: python -m anrl_ext.train --resume {out / 'checkpoint.pt'}" in stdout


def test_interrupted_checkpoint_write_keeps_last_good(tmp_path, monkeypatch):
    path = str(tmp_path / "ck.pt")
    checkpoint.save_atomic({"step": 1}, path)
    fail_atomic_writes(monkeypatch, KeyboardInterrupt("killed mid-write"))
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_atomic({"step": 2}, path)
    monkeypatch.undo()
    assert checkpoint.load(path) == {"step": 1}
    assert os.listdir(tmp_path) == ["ck.pt"]  # no temporary left behind
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask  # a plain open()'s permissions, not mkstemp's 0600
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        checkpoint.load(str(tmp_path / "missing.pt"))


def test_a_disk_that_fills_during_a_checkpoint_is_named(tmp_path, monkeypatch):
    """A write that fails inside torch.save surfaces as a RuntimeError without its errno; save_atomic
    serialises first, so a full disk is an OSError with its errno, naming the checkpoint, and the last
    good file stays."""
    path = str(tmp_path / "ck.pt")
    checkpoint.save_atomic({"step": 1}, path)
    fail_atomic_writes(monkeypatch, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with pytest.raises(OSError) as full:
        checkpoint.save_atomic({"step": 2, "w": torch.randn(1000)}, path)
    assert (full.value.errno, full.value.filename) == (errno.ENOSPC, path)
    assert str(full.value) == f"[Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}: '{path}'"
    monkeypatch.undo()
    fail_atomic_writes(monkeypatch, PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/elsewhere"))
    with pytest.raises(PermissionError) as denied:  # an error that names its file keeps it
        checkpoint.save_atomic({"step": 3}, path)
    assert denied.value.filename == "/elsewhere"
    monkeypatch.undo()
    assert checkpoint.load(path) == {"step": 1} and os.listdir(tmp_path) == ["ck.pt"]


def test_unreadable_checkpoints_are_named(tmp_path):
    good = tmp_path / "good.pt"
    checkpoint.save_atomic({"model": {}, "config": {}}, str(good))
    (tmp_path / "text.pt").write_text("garbage\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:200])  # a copy cut short
    for name in ("text.pt", "empty.pt", "cut.pt"):
        with pytest.raises(ValueError, match=f"{name}: not a readable checkpoint"):
            checkpoint.load(str(tmp_path / name))
    torch.save(torch.zeros(2), tmp_path / "tensor.pt")
    with pytest.raises(ValueError, match="not a checkpoint written by anrl_ext.train"):
        train.trainer_from_checkpoint(str(tmp_path / "tensor.pt"))
    assert checkpoint.load_run(str(good)) == {"model": {}, "config": {}}


def test_config_file_and_cli(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("norm: bn\niters: 7\nprotocol: ICM-O\n")
    cfg = config.load(["--config", str(cfg_file), "--iters", "9"])
    assert (cfg.norm, cfg.iters, cfg.domains()) == ("bn", 9, (["I", "C", "M"], "O"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("nrom: bn\n")
    with pytest.raises(ValueError, match=r"--config .*bad.yaml: unknown keys \['nrom'\]"):
        config.load(["--config", str(bad)])
    bad.write_text("lr: [1,\n")
    with pytest.raises(ValueError, match=r"--config .*bad.yaml: not a readable YAML file \(while parsing"):
        config.load(["--config", str(bad)])
    bad.write_text("- iters\n- 3\n")
    with pytest.raises(ValueError, match="expected option names and values, got a list"):
        config.load(["--config", str(bad)])
    with pytest.raises(FileNotFoundError, match="config file not found: .*none.yaml"):
        config.load(["--config", str(tmp_path / "none.yaml")])
    with pytest.raises(ValueError, match="unknown protocol"):
        config.load(["--protocol", "XYZ-Q"])
    with pytest.raises(ValueError, match="also a source"):
        config.load(["--sources", "OCI", "--target", "O"])
    with pytest.raises(ValueError, match="--sources 'MIM' names domain M more than once"):
        config.load(["--sources", "MIM", "--target", "O"])
    # the limited-source tasks: M and I for C and for O
    assert config.load(["--protocol", "MI-C"]).domains() == (["M", "I"], "C")
    assert config.load(["--protocol", "MI-O"]).domains() == (["M", "I"], "O")


@pytest.mark.parametrize("argv, message", [
    (["--iters", "-3"], "--iters must be at least 0, got -3"),
    (["--img-size", "8"], "--img-size must be at least 16"),
    (["--batch-size", "1"], "--batch-size must be at least 2"),
    (["--width", "0"], "--width must be positive"),
    (["--gamma", "1.5"], r"--gamma is a momentum, in \[0, 1\]"),
    (["--ema", "1"], r"--ema is a decay, in \[0, 1\) \(0: off\), got 1.0"),
    (["--ema", "-0.5"], r"--ema is a decay, in \[0, 1\)"),
    (["--ckpt-every", "-1"], "--ckpt-every must be at least 0"),
    (["--lr", "-0.1"], "--lr must be at least 0"),
    (["--lr", "nan"], "--lr: expected a finite number, got nan"),
    (["--lambda-idc", "inf"], "--lambda-idc: expected a finite number, got inf"),
    (["--device", "gpu"], "--device 'gpu': expected cpu, cuda"),
    (["--sources", "OCX", "--target", "M"], "unknown synthetic domain 'X'; choose from O, C, I, M"),
])
def test_config_names_the_bad_option(argv, message):
    with pytest.raises(ValueError, match=message):
        config.load(argv)


def test_config_file_values_are_checked(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("lr: 1e-4\ngamma: 1\n")  # YAML 1.1 reads 1e-4 as a string
    cfg = config.load(["--config", str(cfg_file)])
    assert (cfg.lr, cfg.gamma) == (1e-4, 1)
    for text, message in [("iters: abc\n", "--iters: expected int, got 'abc'"),
                          ("amp: 1\n", "--amp: expected bool, got 1"),
                          ("lr: fast\n", "--lr: expected a number, got 'fast'"),
                          ("norm: foo\n", "--norm: 'foo' is not one of")]:
        cfg_file.write_text(text)
        with pytest.raises(ValueError, match=message):
            config.load(["--config", str(cfg_file)])
    cfg = config.load(["--preset", "smoke"])
    cfg.img_size = 12  # set in code: the trainer checks it too
    with pytest.raises(ValueError, match="--img-size must be at least 16"):
        train.Trainer(cfg)


def test_cli_bad_option_is_a_usage_error(tmp_path, capsys):
    r = subprocess.run([sys.executable, "-m", "anrl_ext.train", "--img-size", "8"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "error: --img-size must be at least 16" in r.stderr
    with pytest.raises(SystemExit) as exit_:
        train.main(["--resume", str(tmp_path / "gone.pt")])
    assert exit_.value.code == 2 and "checkpoint not found: " in capsys.readouterr().err


def test_missing_data_ends_the_tools_with_its_message(tmp_path):
    """Data that is not there: the message naming it, exit status 1, no traceback."""
    with pytest.raises(SystemExit, match="anrl_ext.train: error: --data '.*nowhere': not 'synthetic' and not a"):
        train.main(["--data", str(tmp_path / "nowhere")])
    out = tmp_path / "run"
    train.run(config.load(["--preset", "smoke", "--iters", "1", "--out", str(out)]))
    (tmp_path / "root" / "M").mkdir(parents=True)
    with pytest.raises(SystemExit, match="anrl_ext.evaluate: error: list file not found: .*root/M/real.txt"):
        evaluate.main(["--checkpoint", str(out / "checkpoint.pt"), "--data", str(tmp_path / "root")])


def test_a_diverged_run_stops_there_and_keeps_its_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    """A loss that turns nan at iteration 3 (of 4; checkpoints every 2): the run stops after logging it,
    names it, and leaves checkpoint.pt at iteration 2, not the nan weights; no evaluation, no metrics.json."""
    step = train.Trainer.step

    def nan_at_3(self):
        logs = step(self)
        return {**logs, "dep": float("nan")} if self.iteration == 3 else logs

    monkeypatch.setattr(train.Trainer, "step", nan_at_3)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        train.main(["--preset", "smoke", "--out", str(out)])
    assert exit_.value.code == (f"python -m anrl_ext.train: error: the training diverged at iteration 3: dep nan "
                                f"(log.csv has every loss); a smaller --lr, --meta-lr or --inner-lr may help. "
                                f"{out / 'checkpoint.pt'} holds iteration 2, the last saved")
    assert checkpoint.load_run(str(out / "checkpoint.pt"))["iteration"] == 2
    with open(out / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["iter"] for r in rows] == ["1", "2", "3"] and rows[2]["dep"] == "nan"
    assert not (out / "metrics.json").exists()
    monkeypatch.undo()
    # a real divergence: a learning rate no network survives, before any checkpoint
    with pytest.raises(train.TrainingDiverged, match=r"at iteration \d+: .*nan.*This run saved no checkpoint$"):
        train.run(config.load(["--preset", "smoke", "--lr", "1e8", "--meta-lr", "1e8", "--inner-lr", "1e8",
                               "--out", str(tmp_path / "wild")]))
    assert not (tmp_path / "wild" / "checkpoint.pt").exists()
    state = checkpoint.load_run(str(out / "checkpoint.pt"))  # nan weights, as in a checkpoint saved after it
    state["model"]["extractor.stem.0.weight"][0, 0, 0, 0] = float("nan")
    checkpoint.save_atomic(state, str(tmp_path / "nan.pt"))
    with pytest.raises(SystemExit, match=r"^python -m anrl_ext.evaluate: error: .*nan.pt: the network's weights are "
                                         r"not finite \(extractor.stem.0.weight\): its run diverged$"):
        evaluate.main(["--checkpoint", str(tmp_path / "nan.pt")])
    with pytest.raises(SystemExit, match=r"^python -m anrl_ext.export: error: .*nan.pt: the network's weights"):
        export.main(["--checkpoint", str(tmp_path / "nan.pt"), "--out", str(tmp_path / "nan.onnx")])


def test_weights_that_turn_nan_under_finite_losses_are_never_saved_or_scored(tmp_path, monkeypatch):
    """An update that makes a weight nan after an iteration whose losses were finite: the run stops before the
    checkpoint of that iteration (checkpoint.pt keeps the last good one) and before an evaluation."""
    step = train.Trainer.step

    def nan_weight_at(n):
        def stepped(self):
            logs = step(self)
            if self.iteration == n:
                with torch.no_grad():
                    self.model.extractor.stem[0].weight[0, 0, 0, 0] = float("nan")
            return logs
        return stepped

    monkeypatch.setattr(train.Trainer, "step", nan_weight_at(4))  # a checkpoint iteration (every 2)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    with pytest.raises(train.TrainingDiverged) as diverged:
        train.run(config.load(["--preset", "smoke", "--out", str(ckpt.parent)]))
    assert str(diverged.value) == ("the training diverged at iteration 4: the network's weights are not finite "
                                   "(extractor.stem.0.weight), though its losses were finite; a smaller --lr, "
                                   f"--meta-lr or --inner-lr may help. {ckpt} holds iteration 2, the last saved")
    state = checkpoint.load_run(str(ckpt))
    assert state["iteration"] == 2 and checkpoint.delivered_weights(state, str(ckpt))  # finite: no InputError
    monkeypatch.setattr(train.Trainer, "step", nan_weight_at(1))
    monkeypatch.setattr(train.Trainer, "evaluate", lambda self, model=None: pytest.fail("nan weights scored"))
    with pytest.raises(train.TrainingDiverged, match=r"^the training diverged at iteration 1: the network's weights "
                                                     r"are not finite .*This run saved no checkpoint$"):
        train.run(config.load(["--preset", "smoke", "--eval-every", "1", "--out", str(tmp_path / "scored")]))


def test_non_finite_entries_names_the_first_three():
    weights = {"ok": torch.ones(2), "steps": torch.tensor([7]), "empty": torch.ones(0)}
    assert checkpoint.non_finite_entries(weights) == "" and checkpoint.non_finite_entries({}) == ""
    weights.update({f"w{i}": torch.tensor([1.0, float("nan") if i % 2 else float("-inf")]) for i in range(4)})
    assert checkpoint.non_finite_entries(weights) == "w0, w1, w2, ..."
    assert checkpoint.non_finite_entries({"w": torch.tensor([float("inf")], dtype=torch.bfloat16)}) == "w"


def test_other_processes_stop_on_their_own_diverged_loss():
    """Under torchrun a process other than rank 0 checks its own losses (its batch is not rank 0's)."""
    class Worker:
        rank, iteration, cfg = 1, 0, config.Config(iters=5)

        def step(self):
            self.iteration += 1
            return {"cls": 0.5, "val": float("inf") if self.iteration == 2 else 0.4}

    with pytest.raises(train.TrainingDiverged, match=r"^rank 1: the training diverged at iteration 2: val inf$"):
        train._run_worker(Worker())


def test_a_backend_the_device_cannot_run(tmp_path, monkeypatch):
    """Training: named before the data is built. Scoring a checkpoint of a GPU run with --backend cuda on a
    machine without a GPU: warnings, and the scores of any other backend on the CPU (the same function)."""
    monkeypatch.setattr(train, "build_datasets", lambda cfg: pytest.fail("data built before the check"))
    with pytest.raises(errors.OptionError, match=r"^--backend cuda with --device cpu: backend 'cuda' cannot run "
                                                 r"tensors on cpu; usable here: reference, cpu(, triton)?$"):
        train.Trainer(config.load(["--preset", "smoke", "--backend", "cuda"]))
    monkeypatch.undo()
    state = train.Trainer(config.load(["--preset", "smoke", "--backend", "reference"])).state_dict()
    checkpoint.save_atomic(state, str(tmp_path / "reference.pt"))
    checkpoint.save_atomic({**state, "config": {**state["config"], "backend": "cuda", "device": "cuda"}},
                           str(tmp_path / "gpu_run.pt"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this machine, also on a GPU one
    scores = {}
    for name in ("reference", "gpu_run"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # no --device: the checkpoint's, cuda for the GPU run, is not on this machine
            trainer, _ = train.trainer_from_checkpoint(str(tmp_path / f"{name}.pt"))
        said = [str(w.message) for w in caught if "was trained" in str(w.message)]
        assert said == ([f"{tmp_path / name}.pt was trained on cuda; this machine has no CUDA device: scoring "
                         f"on the CPU", f"{tmp_path / name}.pt was trained with --backend cuda, which cannot run "
                         "on cpu here; scoring with --backend auto (the same function)"] if name == "gpu_run" else [])
        assert trainer.cfg.backend == {"reference": "reference", "gpu_run": "auto"}[name]
        scores[name] = trainer.scores(eval_dataset(trainer.cfg, [trainer.cfg.domains()[1]]))[0]
    np.testing.assert_allclose(scores["gpu_run"], scores["reference"], rtol=1e-4, atol=1e-5)


def test_a_device_or_backend_this_machine_lacks_is_a_usage_error(tmp_path, monkeypatch, capsys):
    """--device cuda without a GPU, or a --backend the device cannot run: an OptionError (a ValueError, not a
    SystemExit) from Trainer before any data is built; a usage error naming the option from every tool."""
    state = train.Trainer(config.load(["--preset", "smoke"])).state_dict()
    checkpoint.save_atomic(state, str(tmp_path / "run.pt"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this machine, also on a GPU one
    monkeypatch.setattr(train, "build_datasets", lambda cfg: pytest.fail("data built before the check"))
    with pytest.raises(ValueError, match=r"^--device cuda: no CUDA device is available \(--device cpu runs on the "
                                         r"CPU; --preset paper asks for cuda\)$"):
        train.Trainer(config.load(["--preset", "smoke", "--device", "cuda"]))
    with monkeypatch.context() as two_gpus:
        two_gpus.setattr(torch.cuda, "is_available", lambda: True)
        two_gpus.setattr(torch.cuda, "device_count", lambda: 2)
        with pytest.raises(errors.OptionError, match=r"^--device cuda:2: this machine has 2 CUDA devices \(cuda:0 "
                                                     r"to cuda:1\)$"):
            train.Trainer(config.load(["--preset", "smoke", "--device", "cuda:2"]))
    tools = [(train.main, ["--preset", "smoke", "--out", str(tmp_path / "out")], "train"),
             (evaluate.main, ["--checkpoint", str(tmp_path / "run.pt")], "evaluate"),
             (gate_report.main, ["--checkpoint", str(tmp_path / "run.pt")], "gate_report")]
    for main, argv, name in tools:
        for extra, message in ((["--device", "cuda:1"], "--device cuda:1: no CUDA device is available"),
                               (["--backend", "cuda"], "--backend cuda with --device cpu: backend 'cuda' cannot")):
            if extra[0] == "--backend" and name != "train":
                continue  # scoring tools take the checkpoint's backend, or auto (test above)
            with pytest.raises(SystemExit) as exit_:
                main(argv + extra)
            err = capsys.readouterr().err
            assert exit_.value.code == 2, (name, extra)
            assert err.startswith("usage: ") and f"python -m anrl_ext.{name}: error: {message}" in err, err
    assert not (tmp_path / "out").exists()


def test_a_write_that_fails_mid_run_names_what_is_left(tmp_path, monkeypatch):
    """A disk that fills mid-run ends it (exit 1) with the error, the checkpoint it leaves and how to go on,
    which then finishes the run; a failure after the last checkpoint says how to score it; one before any
    checkpoint says there is none."""
    out, save, saving = tmp_path / "run", torch.save, []
    ckpt = out / "checkpoint.pt"

    def recording_save(obj, fh):
        saving.append(obj.get("iteration"))
        save(obj, fh)

    monkeypatch.setattr(torch, "save", recording_save)
    # the disk fills while iteration 4's checkpoint is written: the temporary goes, checkpoint.pt stays
    fail_atomic_writes(monkeypatch, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
                       when=lambda tmp: tmp.endswith(".pt") and saving[-1] == 4)
    with pytest.raises(SystemExit) as exit_:
        train.main(["--preset", "smoke", "--out", str(out)])
    assert exit_.value.code == (f"python -m anrl_ext.train: error: [Errno {errno.ENOSPC}] "
                                f"{os.strerror(errno.ENOSPC)}: '{ckpt}' (after iteration 4). {ckpt} holds iteration "
                                f"2, the last saved; once that is mended, go on with: python -m anrl_ext.train "
                                f"--resume {ckpt}")
    assert checkpoint.load_run(str(ckpt))["iteration"] == 2 and not (out / "metrics.json").exists()
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]
    monkeypatch.undo()
    train.main(["--resume", str(ckpt)])  # the command it printed
    assert checkpoint.load_run(str(ckpt))["iteration"] == 4 and (out / "metrics.json").exists()

    def no_permission(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(out / "roc.png"))

    from torch.utils import tensorboard

    writers = []

    class RecordedWriter(tensorboard.SummaryWriter):  # a Python caller keeps no writer thread after the error
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            writers.append(self)

    monkeypatch.setattr(tensorboard, "SummaryWriter", RecordedWriter)
    monkeypatch.setattr(train, "plot_roc", no_permission)
    with pytest.raises(train.TrainingStopped, match=re.escape(
            f"(after iteration 4). {ckpt} holds the trained network (iteration 4); once that is mended, "
            f"python -m anrl_ext.evaluate --checkpoint {ckpt} scores it")):
        train.run(config.load(["--preset", "smoke", "--out", str(out)]))
    assert len(writers) == 1 and writers[0].all_writers is None  # closed
    monkeypatch.setattr(config, "dump", no_permission)
    with pytest.raises(train.TrainingStopped, match=re.escape(
            f"(before its first iteration). This run saved no checkpoint; {ckpt}, which it resumed from, is as it "
            f"was")) as stopped:
        train.run(config.load(["--resume", str(ckpt), "--iters", "6"]))
    assert isinstance(stopped.value.__cause__, PermissionError)
    assert checkpoint.load_run(str(ckpt))["iteration"] == 4


def test_a_log_it_cannot_write_is_named(tmp_path):
    """log.csv is appended row by row, not written atomically; a disk that fills (/dev/full) while writing it
    still names it."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full (Linux)")
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.csv").symlink_to("/dev/full")
    with pytest.raises(train.TrainingStopped) as stopped:
        train.run(config.load(["--preset", "smoke", "--out", str(out)]))
    assert str(stopped.value) == (f"[Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}: '{out / 'log.csv'}' "
                                  f"(before its first iteration). This run saved no checkpoint")


def test_train_and_evaluate_cli(tmp_path, capsys, monkeypatch):
    out = tmp_path / "cli"
    env = dict(os.environ)
    trained = r = subprocess.run([sys.executable, "-m", "anrl_ext.train", "--preset", "smoke", "--norm", "bn",
                                  "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "HTER" in r.stdout and "AUC" in r.stdout
    r = subprocess.run([sys.executable, "-m", "anrl_ext.evaluate", "--checkpoint", str(out / "checkpoint.pt"),
                        "--domains", "MO", "--out", str(out / "scores" / "eval.json")], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]  # --out's folder is made, as train's is
    assert set(json.loads((out / "scores" / "eval.json").read_text())) == {"M", "O"}
    assert (out / "scores" / "eval.png").stat().st_size > 1000
    # --scores: every frame's score; the video-level metrics recomputed from the file are the ones printed
    drawn = {}
    monkeypatch.setattr(evaluate, "plot_roc", lambda curves, path, title, by_type: drawn.update(by_type))
    printed = evaluate.main(["--checkpoint", str(out / "checkpoint.pt"), "--domains", "MO",
                             "--scores", str(out / "scores" / "frames.csv"), "--out", str(tmp_path / "e.json")])
    with open(out / "scores" / "frames.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["domain", "video", "label", "score", "attack"]
    assert {r["domain"] for r in rows} == {"M", "O"}
    for d in "MO":
        mine = [r for r in rows if r["domain"] == d]
        scores, labels = [float(r["score"]) for r in mine], [int(r["label"]) for r in mine]
        videos, attacks = [r["video"] for r in mine], [r["attack"] for r in mine]
        again = compute_metrics(scores, labels, None, videos)
        by_type = printed[d].pop("attacks")  # the synthetic domains know each spoof video's attack type
        assert printed[d].pop("acer") == by_type["acer"] and again == printed[d]
        if d == "M":  # the run's target: its own evaluation reported the same, and printed it
            assert json.loads((out / "metrics.json").read_text())["metrics"]["paper"]["attacks"] == by_type
            assert f"\n{'':18}{describe_attacks(by_type)}\n" in trained.stdout
        assert by_type == attack_metrics(scores, labels, attacks, again["threshold"], videos)
        assert set(by_type["apcer"]) == {"print", "replay"} and by_type["bpcer"] == again["bpcer"]
        assert {a for a, label in zip(attacks, labels) if label == 1} == {"live"}
        # the ROC plot's curves per type: the domain's live frames and that type's, their scores
        assert set(drawn[f"domain {d}"]) == set(by_type["apcer"])
        for kind, (s, y) in drawn[f"domain {d}"].items():
            frames = [(score, label) for score, label, a in zip(scores, labels, attacks) if a in ("live", kind)]
            assert sorted(zip(s.tolist(), y.tolist())) == sorted(frames)
    said = capsys.readouterr().out
    assert f"wrote {len(rows)} frame scores to" in said and said.count("\n  print: APCER ") == 2
    for argv, message in [(["--domains", "MX"], "--domains 'MX': unknown synthetic domain 'X'"),
                          (["--threshold", "nan"], "argument --threshold: expected a finite number, got 'nan'"),
                          (["--device", "gpu"], "argument --device: 'gpu': expected cpu, cuda or cuda:<index>"),
                          (["--loader-threads", "-1"], "argument --loader-threads: expected 0 or more, got '-1'")]:
        with pytest.raises(SystemExit) as exit_:
            evaluate.main(["--checkpoint", str(out / "checkpoint.pt"), *argv])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    r = subprocess.run([sys.executable, "-m", "anrl_ext.train", "--help"], capture_output=True, text=True)
    assert "--first-order" in r.stdout and "--meta-lr" in r.stdout


def test_synthetic_is_deterministic_and_has_depth():
    a = synthetic.render("C", True, 5, 1, size=32, depth_size=8)
    b = synthetic.render("C", True, 5, 1, size=32, depth_size=8)
    assert (a[0] == b[0]).all() and a[1].max() > 0.5
    spoof = synthetic.render("C", False, 5, 1, size=32, depth_size=8)
    assert spoof[1].max() == 0 and spoof[2] in ("print", "replay")
    # the attack kind of each spoof video, as render draws it
    data = SyntheticDomains(["C"], SyntheticSpec(videos_per_class=40, frames_per_video=2, size=32), train=False)
    kinds = data.attack_types()
    assert len(kinds) == 40 and sorted(set(kinds.values())) == ["print", "replay"]
    assert all(synthetic.render("C", False, r["video_seed"], r["frame_seed"], 32)[2] == kinds[r["video"]]
               for r in data.records if r["label"] == 0)
    with pytest.raises(ValueError, match="unknown synthetic domain"):
        synthetic.render("Z", True, 0)


def test_package_lists_its_tools_and_each_has_help():
    r = subprocess.run([sys.executable, "-m", "anrl_ext"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    listed = [line.split()[0] for line in r.stdout.splitlines() if line.startswith("  ") and "python" not in line]
    assert listed == list(TOOLS)
    for tool in TOOLS:
        h = subprocess.run([sys.executable, "-m", f"anrl_ext.{tool}", "--help"], capture_output=True, text=True,
                           timeout=300)
        assert h.returncode == 0 and f"python -m anrl_ext.{tool}" in h.stdout, (tool, h.stderr[-3000:])


@pytest.mark.parametrize("tool", ("", *TOOLS))
def test_every_tool_prints_its_version(tool, capsys):
    """--version of the package and of each tool: package, torch build, backends usable here; then it exits 0
    (train without training, the tools with required options without asking for them)."""
    import importlib

    with pytest.raises(SystemExit) as stop:
        importlib.import_module(f"anrl_ext.{tool or '__main__'}").main(["--version"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"anrl_ext {anrl_ext.__version__}") and f"torch {torch.__version__}" in out
    assert f"on the cpu {', '.join(anrl_ext.available_backends('cpu'))}" in out


def test_version_names_the_checkout(monkeypatch):
    from anrl_ext import cli

    monkeypatch.setattr(provenance, "code_version", lambda: {"version": "9.9", "commit": "abcdef0123456789",
                                                               "dirty": True, "torch": torch.__version__})
    assert cli.version_text().startswith("anrl_ext 9.9 (git abcdef0123, with local changes)\n")
    monkeypatch.setattr(provenance, "code_version", lambda: {"version": "9.9", "commit": None, "dirty": None,
                                                               "torch": torch.__version__})
    assert cli.version_text().splitlines()[0] == "anrl_ext 9.9"  # e.g. installed from a wheel


def test_every_tool_has_a_console_script():
    import tomllib

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    scripts = tomllib.loads(pyproject.read_text())["project"]["scripts"]
    assert scripts == {f"anrl-{tool.replace('_', '-')}": f"anrl_ext.{tool}:main" for tool in TOOLS}


@pytest.mark.parametrize("norm", config.CHOICES["norm"])
def test_every_norm_trains(norm):
    """Algorithm 1's iteration (the normal step, and the second-order meta step for AFNM's gates) runs
    with each of Table 4's normalizations, to finite losses."""
    logs, _, trainer = trainer_steps(["--norm", norm])
    assert all(np.isfinite(v) for step in logs for v in step.values())
    assert trainer.use_meta == (norm == "afnm")
