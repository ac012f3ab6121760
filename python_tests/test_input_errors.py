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
    return d


NOT_READABLE = r"{d}/garbage.pt: not a readable checkpoint \(UnpicklingError"
NOT_OURS = r"{d}/foreign.pt is not a checkpoint written by anrl_ext.train"


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
