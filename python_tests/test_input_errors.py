"""A checkpoint, model, image or video a tool cannot use ends it with a message naming the file (exit
status 1), not a traceback."""
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from anrl_ext import checkpoint, config, evaluate, export, gate_report, predict, train
from anrl_ext.errors import InputError


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A usable checkpoint and image, and one unusable file of each kind."""
    d = tmp_path_factory.mktemp("inputs")
    checkpoint.save_atomic(train.Trainer(config.load(["--preset", "smoke"])).state_dict(), str(d / "good.pt"))
    cv2.imwrite(str(d / "face.png"), np.full((64, 64, 3), 128, np.uint8))
    for name in ("garbage.pt", "garbage.onnx", "garbage.pt2", "broken.png", "broken.mp4"):
        (d / name).write_bytes(b"not what the name says\n")
    torch.save({"weights": torch.ones(2)}, d / "foreign.pt")  # readable, but not the trainer's
    torch.export.save(torch.export.export(torch.nn.Linear(2, 1), (torch.ones(1, 2),)), str(d / "foreign.pt2"))
    (d / "notes.txt").write_text("x")
    (d / "empty").mkdir()
    good = torch.load(d / "good.pt", weights_only=False)
    edited = {"other_width": {"width": good["config"]["width"] * 2}, "other_norm": {"norm": "bn"},
              "bad_setting": {"img_size": "abc"}, "added_later": {"added_later": 1}}
    for name, change in edited.items():  # a file whose settings someone edited, or a later version wrote
        checkpoint.save_atomic({**good, "config": {**good["config"], **change}}, str(d / f"{name}.pt"))
    checkpoint.save_atomic({**good, "model": [1, 2]}, str(d / "list_of_weights.pt"))
    (d / "run").mkdir()  # a run's folder, given instead of the checkpoint in it
    checkpoint.save_atomic(good, str(d / "run" / "checkpoint.pt"))
    return d


NOT_READABLE = r"{d}/garbage.pt: not a readable checkpoint \(UnpicklingError"
NOT_OURS = r"{d}/foreign.pt is not a checkpoint written by anrl_ext.train"
NOT_FITTING = r"{d}/other_width.pt: its weights do not fit the network its run's settings describe: \d+ of another " \
              r"shape \(first extractor.stem.0.weight: \(8, 6, 3, 3\) in the file, \(16, 6, 3, 3\) in the network\)"


@pytest.mark.parametrize("tool, argv, message", [
    (evaluate, ["--checkpoint", "{d}/garbage.pt"], NOT_READABLE),
    (evaluate, ["--checkpoint", "{d}/foreign.pt"], NOT_OURS),
    (gate_report, ["--checkpoint", "{d}/foreign.pt", "--out", "{d}/out/gates.json"], NOT_OURS),
    (export, ["--checkpoint", "{d}/garbage.pt", "--out", "{d}/out/m.onnx"], NOT_READABLE),
    (export, ["--checkpoint", "{d}/foreign.pt", "--out", "{d}/out/m.pt2"], NOT_OURS),
    (predict, ["--model", "{d}/foreign.pt", "{d}/face.png"], NOT_OURS),
    (predict, ["--model", "{d}/garbage.onnx", "{d}/face.png"],
     r"{d}/garbage.onnx: not a readable .onnx model \(InvalidProtobuf: "),
    (predict, ["--model", "{d}/garbage.pt2", "{d}/face.png"],
     r"{d}/garbage.pt2: not a readable .pt2 model \(BadZipFile: "),
    (predict, ["--model", "{d}/foreign.pt2", "{d}/face.png"],
     r"{d}/foreign.pt2 is not a model written by anrl_ext.export \(it carries no anrl_ext metadata\)"),
    (predict, ["--model", "{d}/good.pt", "--crop", "none", "{d}/broken.png"], r"unreadable image: {d}/broken.png"),
    (predict, ["--model", "{d}/good.pt", "{d}/broken.mp4"], r"cannot open video: {d}/broken.mp4"),
    (predict, ["--model", "{d}/good.pt", "{d}/notes.txt"], r"not an image or video file: {d}/notes.txt \(expected"),
    (predict, ["--model", "{d}/good.pt", "{d}/empty"], r"no images or videos in {d}/empty$"),
    (evaluate, ["--checkpoint", "{d}/other_width.pt"], NOT_FITTING),
    (predict, ["--model", "{d}/other_width.pt", "{d}/face.png"], NOT_FITTING),
    (train, ["--resume", "{d}/other_width.pt", "--out", "{d}/out/run"], NOT_FITTING),
    (export, ["--checkpoint", "{d}/other_norm.pt", "--out", "{d}/out/m.onnx"],
     r"{d}/other_norm.pt: its weights do not fit .*: \d+ unexpected \(first extractor.stem.1.in_weight\)\. Was the "
     r"file edited, or written by another version of anrl_ext\?"),
    (gate_report, ["--checkpoint", "{d}/bad_setting.pt", "--out", "{d}/out/gates.json"],
     r"{d}/bad_setting.pt: the settings of its run are not valid here: --img-size: expected int, got 'abc'$"),
    (evaluate, ["--checkpoint", "{d}/list_of_weights.pt"],
     r"{d}/list_of_weights.pt: its network weights are not a state dict of named tensors \(a list\)"),
    (evaluate, ["--checkpoint", "{d}/run"],
     r"{d}/run is a folder, not a checkpoint file; its run's checkpoint is {d}/run/checkpoint.pt$"),
])
def test_an_unusable_input_file_is_named(tool, argv, message, files):
    with pytest.raises(SystemExit) as exit_:
        tool.main([a.format(d=files) for a in argv])
    assert isinstance(exit_.value.code, str), exit_.value.code  # printed to stderr, exit status 1
    assert exit_.value.code.startswith(f"python -m anrl_ext.{tool.__name__.split('.')[-1]}: error: ")
    assert re.search(message.format(d=files), exit_.value.code), exit_.value.code
    assert not (files / "out").exists()


def test_library_callers_get_a_value_error_naming_the_file(files):
    """InputError is a ValueError: code that catches those keeps working."""
    for load in (checkpoint.load_run, export.load_exported):
        with pytest.raises(ValueError, match="foreign.pt"):
            load(str(files / ("foreign.pt" if load is checkpoint.load_run else "foreign.pt2")))
    assert issubclass(InputError, ValueError)


def test_the_command_line_shows_no_traceback(files):
    r = subprocess.run([sys.executable, "-m", "anrl_ext.evaluate", "--checkpoint", str(files / "foreign.pt")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.strip() == f"python -m anrl_ext.evaluate: error: {files}/foreign.pt is not a checkpoint " \
                               f"written by anrl_ext.train (no 'model' or 'config' entry)"


def test_settings_of_a_later_version_are_ignored_with_a_warning(files):
    """A checkpoint whose run has a setting this version does not know: scored all the same (its weights fit),
    with a warning naming the setting."""
    with pytest.warns(UserWarning, match=r"added_later.pt: settings unknown to this version of anrl_ext, "
                                         r"ignored: \['added_later'\]"):
        scored = evaluate.main(["--checkpoint", str(files / "added_later.pt")])
    assert 0 <= scored["M"]["auc"] <= 1


@pytest.mark.parametrize("tool, argv", [(evaluate, ["--checkpoint", "{d}/good.pt"]),
                                        (predict, ["--model", "{d}/good.pt", "{d}/face.png"])])
@pytest.mark.parametrize("threshold", ["1.5", "-0.1"])
def test_a_threshold_is_a_probability(tool, argv, threshold, files, capsys):
    with pytest.raises(SystemExit) as exit_:
        tool.main([a.format(d=files) for a in argv] + ["--threshold", threshold])
    assert exit_.value.code == 2
    assert f"argument --threshold: expected a probability in [0, 1], got '{threshold}'" in capsys.readouterr().err
