"""An output path a tool could not write is a usage error naming the option, before any work is done; a write
that fails later (a disk that fills) ends the tool with its message."""
import argparse
import errno
import os

import cv2
import numpy as np
import pytest

from anrl_ext import cli, config, evaluate, export, gate_report, predict, prepare, summarize, train
from helpers import fail_atomic_writes


def check(tmp_path, path, **kw):
    """cli.check_output's verdict: None when the path is fine, else argparse's message."""
    ap = argparse.ArgumentParser(prog="tool")
    ap.error = lambda message: (_ for _ in ()).throw(ValueError(message))
    try:
        assert cli.check_output(ap, "--out", str(path), **kw) == str(path)
    except ValueError as e:
        return str(e)
    return None


def test_writable_paths_pass_and_nothing_is_created(tmp_path):
    (tmp_path / "old.csv").write_text("x")
    before = sorted(tmp_path.rglob("*"))
    assert check(tmp_path, tmp_path / "new" / "deeper" / "a.csv") is None  # folders made when writing
    assert check(tmp_path, tmp_path / "old.csv") is None  # overwritten
    assert check(tmp_path, tmp_path, folder=True) is None
    assert check(tmp_path, tmp_path / "run" / "1", folder=True) is None
    assert check(tmp_path, tmp_path / "plot.PNG", formats=[".png", ".pdf"]) is None
    assert sorted(tmp_path.rglob("*")) == before


def test_what_is_wrong_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file"
    assert check(tmp_path, tmp_path) == f"--out {tmp_path}: is a folder, expected a file"
    assert check(tmp_path, out, folder=True) == f"--out {out}: is a file, expected a folder"
    for path, folder in [(out / "a.csv", False), (out / "sub" / "a.csv", False), (out / "run", True)]:
        assert check(tmp_path, path, folder=folder) == f"--out {path}: cannot be created: {out} is a file"
    assert check(tmp_path, tmp_path / "m.txt", formats=(".onnx", ".pt2")) == \
        f"--out {tmp_path / 'm.txt'}: unknown format '.txt'; use one of .onnx, .pt2"
    assert check(tmp_path, tmp_path / "m", formats=(".onnx",)) == \
        f"--out {tmp_path / 'm'}: unknown format '(no extension)'; use one of .onnx"


def test_no_permission_is_named(tmp_path, monkeypatch):
    """os.access stands in for a read-only folder or file (the tests may run as root, who may write anywhere)."""
    locked = {str(tmp_path / "locked"), str(tmp_path / "file.csv")}
    (tmp_path / "locked").mkdir()
    (tmp_path / "file.csv").write_text("x")
    monkeypatch.setattr(os, "access", lambda path, mode: os.path.abspath(path) not in locked)
    for path, folder in [(tmp_path / "locked" / "a" / "b.csv", False), (tmp_path / "locked", True),
                         (tmp_path / "locked" / "run", True)]:
        assert check(tmp_path, path, folder=folder) == \
            f"--out {path}: no permission to write in {tmp_path / 'locked'}"
    assert check(tmp_path, tmp_path / "file.csv") == f"--out {tmp_path / 'file.csv'}: no permission to write it"
    assert check(tmp_path, tmp_path / "free.csv") is None


@pytest.mark.parametrize("tool, argv, option", [
    # every input is missing too: had the tool started its work, it would have failed on that instead
    (train, ["--data", "{tmp}/nowhere", "--out", "{bad}/run"], "--out"),
    (evaluate, ["--checkpoint", "{tmp}/gone.pt", "--out", "{bad}/eval.json"], "--out"),
    (evaluate, ["--checkpoint", "{tmp}/gone.pt", "--scores", "{bad}/frames.csv"], "--scores"),
    (gate_report, ["--checkpoint", "{tmp}/gone.pt", "--out", "{bad}/gates.json"], "--out"),
    (predict, ["{tmp}/gone.png", "--model", "{tmp}/gone.onnx", "--out", "{bad}/scores.csv"], "--out"),
    (export, ["--checkpoint", "{tmp}/gone.pt", "--out", "{bad}/model.onnx"], "--out"),
    (prepare, ["--dataset", "oulu", "--src", "{tmp}/gone", "--out", "{bad}/prepared", "--domain", "O"], "--out"),
    (summarize, ["{tmp}/gone", "--csv", "{bad}/table.csv"], "--csv"),
    (summarize, ["{tmp}/gone", "--plot", "{bad}/table.png"], "--plot"),
    (summarize, ["{tmp}/gone", "--plot", "{tmp}/table.txt"], "--plot"),
])
def test_each_tool_checks_its_output_first(tool, argv, option, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    argv = [a.format(tmp=tmp_path, bad=tmp_path / "file") for a in argv]
    with pytest.raises(SystemExit) as exit_:
        tool.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    path = argv[argv.index(option) + 1]
    assert f"error: {option} {path}: " in err, err
    assert ("unknown format '.txt'" if path.endswith(".txt") else f"{tmp_path / 'file'} is a file") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A finished smoke run's folder (checkpoint.pt, metrics.json) and a face image to score."""
    out = tmp_path_factory.mktemp("run")
    train.run(config.load(["--preset", "smoke", "--out", str(out)]))
    cv2.imwrite(str(out / "face.png"), np.full((64, 64, 3), 128, np.uint8))
    return out


@pytest.mark.parametrize("tool, argv, out", [
    (evaluate, ["--checkpoint", "{run}/checkpoint.pt", "--out", "{tmp}/eval.json"], "eval.json"),
    (evaluate, ["--checkpoint", "{run}/checkpoint.pt", "--out", "{tmp}/eval.json"], "eval.png"),
    (gate_report, ["--checkpoint", "{run}/checkpoint.pt", "--out", "{tmp}/gates.json"], "gates.json"),
    (gate_report, ["--checkpoint", "{run}/checkpoint.pt", "--out", "{tmp}/gates.json"], "gates.png"),
    (predict, ["{run}/face.png", "--crop", "none", "--model", "{run}/checkpoint.pt", "--out", "{tmp}/s.csv"],
     "s.csv"),
    (export, ["--checkpoint", "{run}/checkpoint.pt", "--out", "{tmp}/model.pt2"], "model.pt2"),
    (summarize, ["{run}", "--csv", "{tmp}/table.csv"], "table.csv"),
    (summarize, ["{run}", "--plot", "{tmp}/table.png"], "table.png"),
])
def test_a_disk_that_fills_while_writing_is_named(tool, argv, out, smoke_run, tmp_path, monkeypatch):
    """A write that fails after the checks at the start, as a disk that fills does (an error naming no file,
    a few bytes in): the tool's message naming the file, exit status 1, no traceback; the file as it was
    and no part of the new one."""
    path = tmp_path / out
    path.write_text("as it was")
    fail_atomic_writes(monkeypatch, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
                       when=lambda tmp: tmp.endswith(path.suffix), room=10)
    with pytest.raises(SystemExit) as exit_:
        tool.main([a.format(run=smoke_run, tmp=tmp_path) for a in argv])
    assert exit_.value.code == (f"python -m anrl_ext.{tool.__name__.split('.')[-1]}: error: [Errno {errno.ENOSPC}] "
                                f"{os.strerror(errno.ENOSPC)}: '{path}'")
    assert path.read_text() == "as it was" and not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]

