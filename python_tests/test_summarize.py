"""python -m anrl_ext.summarize: finished runs grouped by task and setting, mean and spread over seeds."""
import csv
import json
from dataclasses import asdict

import numpy as np
import pytest

from anrl_ext import config, summarize, train
from anrl_ext.config import Config

KEYS = ("auc", "eer", "hter", "apcer", "bpcer", "tpr@fpr=1%")


def scores(base):
    """A score set whose every metric is derived from `base`, so each can be checked apart."""
    return {k: base + i / 100 for i, k in enumerate(KEYS)} | {"threshold": 0.5}


def record(folder, seed, base, task="OCI-M", extra_config=None, drop_config=(), **extra):
    """A metrics.json as the trainer writes it, in `folder`."""
    cfg = {**asdict(Config()), "seed": seed, "iters": 10, "out": str(folder), **(extra_config or {})}
    for key in drop_config:
        del cfg[key]
    result = {"task": task, "config": cfg, "code": {"commit": "c" * 40, "dirty": False},
              "metrics": {"paper": scores(base), "source": scores(base / 2), "source_heldout": scores(base / 4)},
              **extra}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(result))
    return result


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_groups_by_task_and_setting_with_mean_and_sample_sd(tmp_path, capsys):
    hter = {("bn", 0): 0.30, ("bn", 1): 0.20, ("bn", 2): 0.37, ("afnm", 0): 0.10, ("afnm", 1): 0.25}
    for (norm, seed), base in hter.items():
        record(tmp_path / "runs" / f"{norm}{seed}", seed, base, extra_config={"norm": norm})
    record(tmp_path / "runs" / "deeper" / "icmo", 4, 0.4, task="ICM-O", extra_config={"norm": "afnm"})
    groups = summarize.main([str(tmp_path / "runs"), "--metrics", "hter", "auc", "eer",
                             "--csv", str(tmp_path / "t.csv")])
    out = capsys.readouterr().out
    rows = read_csv(tmp_path / "t.csv")
    # by task, then by setting: the folder names and the order the files were found in do not matter
    assert [(r["task"], r["settings"], r["runs"], r["seeds"]) for r in rows] == [
        ("ICM-O", "--norm afnm", "1", "4"), ("OCI-M", "--norm afnm", "2", "0-1"), ("OCI-M", "--norm bn", "3", "0-2")]
    assert [len(g.runs) for g in groups] == [1, 2, 3]
    for row, norm in zip(rows[1:], ("afnm", "bn")):
        for metric, offset in (("hter", 0.02), ("auc", 0.0), ("eer", 0.01)):
            v = 100 * (np.array([b for (n, _), b in hter.items() if n == norm]) + offset)
            assert float(row[f"{metric}_mean_percent"]) == pytest.approx(v.mean(), abs=1e-4)
            assert float(row[f"{metric}_sd_percent"]) == pytest.approx(v.std(ddof=1), abs=1e-4)
            # Student's t quantiles from the tables: 12.7062 (1 degree of freedom), 4.3027 (2)
            t = {2: 12.7062, 3: 4.3027}[len(v)]
            assert float(row[f"{metric}_ci95_percent"]) == pytest.approx(t * v.std(ddof=1) / len(v) ** 0.5, rel=1e-4)
    assert rows[0]["hter_sd_percent"] == rows[0]["hter_ci95_percent"] == ""  # one run: no spread
    # the shared setting that is not the default is said once; the table tells the groups apart by --norm
    assert "Every run: --iters 10 (and the settings below)." in out
    bn = 100 * np.array([0.32, 0.22, 0.39])
    assert f"| OCI-M | --norm bn | 3 | 0-2 | {bn.mean():.2f} ± {bn.std(ddof=1):.2f} |" in out
    assert "Runs made by: commit cccccccccc (6 runs)." in out


def test_score_sets_and_networks(tmp_path, capsys):
    unaveraged = {"paper": scores(0.6), "source": scores(0.7), "source_heldout": scores(0.8)}
    record(tmp_path / "ema", 0, 0.1, extra_config={"ema": 0.99}, metrics_unaveraged=unaveraged)
    record(tmp_path / "pick", 1, 0.2, extra_config={"eval_every": 2},
           selected={"iteration": 2, "metrics": {"paper": scores(0.9), "source": scores(0.8),
                                                 "source_heldout": scores(0.7)}})
    record(tmp_path / "plain", 2, 0.3)

    def hter(*options):
        groups = summarize.main([str(tmp_path), *options])
        return {g.runs[0].path.parent.name: g.runs[0].scores["hter"] for g in groups}

    assert hter() == pytest.approx({"ema": 12.0, "pick": 22.0, "plain": 32.0})
    assert hter("--scores", "source") == pytest.approx({"ema": 7.0, "pick": 12.0, "plain": 17.0})
    assert hter("--scores", "heldout") == pytest.approx({"ema": 4.5, "pick": 7.0, "plain": 9.5})
    capsys.readouterr()
    assert hter("--weights", "unaveraged", "--scores", "source") == pytest.approx({"ema": 72.0})
    err = capsys.readouterr().err
    assert "left out, 2 runs without source scores (hter, auc) of the unaveraged network (only runs trained with " \
        "--ema)" in err
    assert str(tmp_path / "pick" / "metrics.json") in err and str(tmp_path / "plain" / "metrics.json") in err
    assert hter("--weights", "selected") == pytest.approx({"pick": 92.0})


def test_a_run_without_an_asked_for_metric_is_left_out(tmp_path, capsys):
    old = record(tmp_path / "old", 0, 0.1)
    del old["metrics"]["paper"]["tpr@fpr=1%"]
    (tmp_path / "old" / "metrics.json").write_text(json.dumps(old))
    record(tmp_path / "new", 1, 0.3)
    assert [r.seed for g in summarize.main([str(tmp_path), "--metrics", "eer"]) for r in g.runs] == [0, 1]
    assert [r.seed for g in summarize.main([str(tmp_path), "--metrics", "tpr@fpr=1%"]) for r in g.runs] == [1]
    assert "left out, 1 run without paper scores (tpr@fpr=1%) of the final network" in capsys.readouterr().err


def test_a_setting_a_run_predates_counts_as_its_default(tmp_path, capsys):
    """metrics.json of a run made before --ema existed groups with runs that give --ema 0 explicitly."""
    record(tmp_path / "new", 1, 0.3, extra_config={"ema": 0.0, "lr": 1})
    record(tmp_path / "old", 0, 0.1, drop_config=("ema",), extra_config={"lr": 1.0})  # 1.0 and 1: one value
    groups = summarize.main([str(tmp_path)])
    assert len(groups) == 1 and [r.seed for r in groups[0].runs] == [0, 1]
    assert "| OCI-M | (every run's) | 2 | 0-1 |" in capsys.readouterr().out


def test_ignored_settings_do_not_tell_runs_apart(tmp_path, capsys):
    record(tmp_path / "cpu", 0, 0.1, extra_config={"backend": "cpu"})
    record(tmp_path / "ref", 1, 0.3, extra_config={"backend": "reference", "norm": "bn"})
    record(tmp_path / "ref2", 2, 0.5, extra_config={"backend": "reference", "norm": "bn"})
    assert [len(g.runs) for g in summarize.main([str(tmp_path)])] == [1, 2]
    capsys.readouterr()
    groups = summarize.main([str(tmp_path), "--ignore", "backend"])
    out = capsys.readouterr().out
    assert [len(g.runs) for g in groups] == [1, 2] and "Not telling runs apart: --backend." in out
    groups = summarize.main([str(tmp_path), "--ignore", "backend", "norm", "--csv", str(tmp_path / "t.csv")])
    assert [len(g.runs) for g in groups] == [3]
    row, = read_csv(tmp_path / "t.csv")
    assert float(row["hter_mean_percent"]) == pytest.approx(100 * (0.3 + 0.02), abs=1e-4)
    with pytest.raises(SystemExit):  # argparse: not a trainer setting (or the seed, which never tells apart)
        summarize.main([str(tmp_path), "--ignore", "seed"])


def test_unfinished_runs_and_repeated_seeds_are_reported(tmp_path, capsys):
    record(tmp_path / "a", 0, 0.1)
    record(tmp_path / "b", 0, 0.3)  # the same seed and settings twice: counted, and said
    (tmp_path / "stopped").mkdir()
    (tmp_path / "stopped" / "checkpoint.pt").write_bytes(b"")
    # a, found in tmp_path and named again (spelt otherwise): read once
    groups = summarize.main([str(tmp_path), str(tmp_path / "b" / ".." / "a" / "metrics.json")])
    err = capsys.readouterr().err
    assert len(groups) == 1 and len(groups[0].runs) == 2
    assert f"left out, unfinished (checkpoint.pt, no metrics.json): {tmp_path / 'stopped'}" in err
    assert "note: seed 0 of OCI-M (every run's) is counted 2 times" in err


def test_seed_ranges():
    assert summarize.seed_list([0, 1, 2, 4, 6, 7]) == "0-2, 4, 6-7"
    assert summarize.seed_list([3]) == "3" and summarize.seed_list([1, 1, 2]) == "1-2; repeated: 1"
    assert summarize.seed_list([0, 0, 1, 1, 2, 3, 3, 4]) == "0-4; repeated: 0-1, 3"


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file or folder"),
    ("empty", "no metrics.json under"),
    ("broken", "cannot read it as JSON"),
    ("foreign", "not a metrics.json written by python -m anrl_ext.train (no task, config)"),
    ("nothing_asked_for", "no finished run with paper scores (hter, auc) of the selected network under"),
    ("edited_scores", "metrics.json: its paper scores are not numbers (hter '12%', auc None)"),
    ("edited_config", "metrics.json: its config is not a mapping of settings"),
])
def test_bad_input_ends_with_a_message_naming_it(tmp_path, capsys, case, message):
    target = tmp_path / "runs"
    if case != "missing":
        target.mkdir()
    if case == "broken":
        (target / "metrics.json").write_text('{"task": ')
    elif case == "foreign":
        (target / "metrics.json").write_text('{"metrics": {}}')
    elif case == "nothing_asked_for":
        record(target, 0, 0.1)
    elif case == "edited_scores":
        result = record(target, 0, 0.1)
        result["metrics"]["paper"].update(hter="12%", auc=None)
        (target / "metrics.json").write_text(json.dumps(result))
    elif case == "edited_config":
        record(target, 0, 0.1, config=["not", "settings"])
    options = ["--weights", "selected"] if case == "nothing_asked_for" else []
    with pytest.raises(SystemExit) as e:
        summarize.main([str(target), *options])
    assert str(e.value).startswith("python -m anrl_ext.summarize: error: ") and message in str(e.value)
    assert str(target) in str(e.value)


def test_summary_of_real_runs_and_its_plot(tmp_path, capsys):
    """Two trainer runs (smoke size) per setting: the table holds the mean of their own metrics.json."""
    results = {}
    for norm in ("bn", "afnm"):
        for seed in (0, 1):
            out = tmp_path / f"{norm}_seed{seed}"
            results[norm, seed] = train.run(config.load(["--preset", "smoke", "--iters", "1", "--norm", norm,
                                                         "--seed", str(seed), "--out", str(out)]))
    capsys.readouterr()
    groups = summarize.main([str(tmp_path), "--plot", str(tmp_path / "fig" / "summary.png"),
                             "--csv", str(tmp_path / "t.csv")])
    out = capsys.readouterr().out
    assert [(g.task, g.settings["norm"], [r.seed for r in g.runs]) for g in groups] == [
        ("OCI-M", "afnm", [0, 1]), ("OCI-M", "bn", [0, 1])]
    for row, norm in zip(read_csv(tmp_path / "t.csv"), ("afnm", "bn")):
        for metric in ("hter", "auc"):
            mean = 100 * np.mean([results[norm, s]["metrics"]["paper"][metric] for s in (0, 1)])
            assert float(row[f"{metric}_mean_percent"]) == pytest.approx(mean, abs=1e-4)
    # every smoke setting but the seed and the norm is shared, and said
    assert "Every run: --iters 1 --batch-size 4 --img-size 32" in out and "--norm" not in out.split("\n")[1]
    # the synthetic target's attack types are known: each run has its ACER, which --metrics acer summarises;
    # a run without (an older version's, or real data without attack types) is left out, saying why
    old = results["bn", 1] | {"metrics": {**results["bn", 1]["metrics"], "paper": {
        k: v for k, v in results["bn", 1]["metrics"]["paper"].items() if k not in ("acer", "attacks")}}}
    (tmp_path / "bn_seed1" / "metrics.json").write_text(json.dumps(old))
    groups = summarize.main([str(tmp_path), "--metrics", "acer"])
    assert [(g.settings["norm"], g.values("acer")) for g in groups] == [
        ("afnm", [100 * results["afnm", s]["metrics"]["paper"]["attacks"]["acer"] for s in (0, 1)]),
        ("bn", [100 * results["bn", 0]["metrics"]["paper"]["acer"]])]
    assert ("left out, 1 run without paper scores (acer) of the final network (always there; acer only where the "
            "target's attack types are known") in capsys.readouterr().err
    assert (tmp_path / "fig" / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
