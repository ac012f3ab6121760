"""python -m anrl_ext.export: a trained checkpoint to ONNX, to torch.export's .pt2 and to an AOTInductor package,
scores and metadata."""
import json
import os
import re
import sys

import pytest
import torch

from anrl_ext import checkpoint, config, export, train
from anrl_ext.data.build import eval_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train.run(config.load(["--preset", "smoke", "--out", str(out)]))
    return out


def evaluation_scores(ckpt):
    """Scores of the target domain as the trainer's evaluation computes them, and the images."""
    state = checkpoint.load(ckpt)
    cfg = config.Config(**state["config"])
    trainer = train.Trainer(cfg)
    trainer.model.load_state_dict(state["model"])
    data = eval_dataset(cfg, [cfg.domains()[1]])
    scores, _, _ = trainer.scores(data)
    return torch.from_numpy(scores), torch.stack([data[i]["image"] for i in range(len(data))])


@pytest.mark.parametrize("ext, flags", [(".onnx", []), (".pt2", []), (".pt2", ["--aoti"])])
def test_exported_model_reproduces_the_evaluation_scores_and_carries_its_metadata(trained, ext, flags, tmp_path):
    """ONNX, the torch.export program and its AOTInductor package: the evaluation's scores, whole set and one
    face (the program's batch is dynamic), and the same metadata."""
    ckpt = str(trained / "checkpoint.pt")
    path = export.main(["--checkpoint", ckpt, "--out", str(tmp_path / f"model{ext}"), *flags])
    if ext == ".pt2":
        assert export.is_aoti_package(path) == bool(flags)
    want, images = evaluation_scores(ckpt)
    with torch.no_grad():
        for batch in (images, images[:1]):  # the whole target set and a single face
            score, depth = export.run_exported(path, batch)
            torch.testing.assert_close(score, want[:len(batch)], rtol=1e-5, atol=1e-5)
            assert depth.shape == (len(batch), 1, images.shape[2] // 8, images.shape[3] // 8)
    meta = export.read_metadata(path)  # the same dict, with its types, from both formats
    assert meta == export.load_scorer(ckpt)[2]
    source = json.loads((trained / "metrics.json").read_text())["metrics"]["source"]
    assert meta["threshold_source"] == source["threshold"] and meta["img_size"] == images.shape[2]
    assert "rgb_hsv6" in meta["input"]


def test_aoti_without_a_compiler_is_a_clear_usage_error(trained, tmp_path):
    """--aoti where no C++ compiler works (CXX naming a missing one): a usage error saying what AOTInductor
    needs and how to do without, no traceback, and no file written."""
    import subprocess

    out = tmp_path / "m.pt2"
    run = subprocess.run([sys.executable, "-m", "anrl_ext.export", "--checkpoint", str(trained / "checkpoint.pt"),
                          "--out", str(out), "--aoti"], capture_output=True, text=True,
                         env={**os.environ, "CXX": str(tmp_path / "no-such-g++")}, timeout=600)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "--aoti: AOTInductor could not compile the program" in run.stderr and "export without --aoti" in run.stderr
    assert "Traceback" not in run.stderr and not out.exists()


def test_onnx_graph_has_standard_operators_only(trained, tmp_path):
    import onnx

    path = export.main(["--checkpoint", str(trained / "checkpoint.pt"), "--out", str(tmp_path / "m.onnx"),
                        "--no-check"])
    nodes = onnx.load(path).graph.node
    assert {n.domain for n in nodes} <= {"", "ai.onnx"}
    assert {"Conv", "Sigmoid", "Softmax"} <= {n.op_type for n in nodes}  # the gate and the score are in it


def test_threshold_is_taken_only_from_the_metrics_of_this_model(trained, tmp_path):
    state = checkpoint.load(str(trained / "checkpoint.pt"))
    metrics = json.loads((trained / "metrics.json").read_text())
    assert export.load_scorer(str(trained / "checkpoint.pt"))[2]["threshold_source"] == \
        metrics["metrics"]["source"]["threshold"]
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    checkpoint.save_atomic({**state, "iteration": state["iteration"] - 2}, str(tmp_path / "mid.pt"))
    assert "threshold_source" not in export.load_scorer(str(tmp_path / "mid.pt"))[2]  # written mid-training
    checkpoint.save_atomic({**state, "iteration": state["iteration"] - 2, "metrics": {"source": {"threshold": 0.25}}},
                           str(tmp_path / "best.pt"))
    assert export.load_scorer(str(tmp_path / "best.pt"))[2]["threshold_source"] == 0.25  # its own evaluation


def test_bad_requests_name_what_is_wrong(trained, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        export.main(["--checkpoint", str(trained / "checkpoint.pt"), "--out", str(tmp_path / "m.txt")])
    assert exit_.value.code == 2 and "m.txt: unknown format '.txt'; use one of .onnx, .pt2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        export.main(["--checkpoint", str(trained / "checkpoint.pt"), "--out", str(tmp_path / "m.onnx"), "--aoti"])
    assert exit_.value.code == 2 and "--aoti compiles a .pt2 program; " in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(SystemExit, match="checkpoint not found"):
        export.main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "m.onnx")])
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(SystemExit, match="export: error: .*other.pt is not a checkpoint written by anrl_ext.train"):
        export.main(["--checkpoint", str(tmp_path / "other.pt"), "--out", str(tmp_path / "m.onnx")])
    assert not list(tmp_path.glob("m.*"))  # nothing written by a failed request


def test_missing_onnx_packages_and_a_failed_check_are_named(trained, tmp_path, monkeypatch):
    """Without onnxscript: an ImportError naming the packages for callers, the tool's message for users. An
    exported model that scores otherwise than its checkpoint: named, and not left behind."""
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "onnxscript", None)  # import onnxscript raises ImportError
        with pytest.raises(ImportError, match="ONNX export needs the onnx and onnxscript packages"):
            export.to_onnx(None, None, {}, str(tmp_path / "m.onnx"))
        with pytest.raises(SystemExit, match=r"^python -m anrl_ext.export: error: ONNX export needs the onnx and "
                                             r"onnxscript packages .*; pip install onnx onnxscript, or export to "
                                             r"\.pt2$"):
            export.main(["--checkpoint", str(trained / "checkpoint.pt"), "--out", str(tmp_path / "m.onnx")])
    run_exported = export.run_exported
    monkeypatch.setattr(export, "run_exported", lambda path, x: [y + 1e-3 for y in run_exported(path, x)])
    out = str(tmp_path / "m.pt2")
    with pytest.raises(SystemExit, match=rf"^python -m anrl_ext.export: error: {re.escape(out)}: the exported model "
                                         r"differs from the checkpoint's by \d\.\d\de-0[34]; removed it "
                                         r"\(--no-check keeps it\)$"):
        export.main(["--checkpoint", str(trained / "checkpoint.pt"), "--out", out])
    assert not list(tmp_path.glob("m.*"))
    export.main(["--checkpoint", str(trained / "checkpoint.pt"), "--out", out, "--no-check"])
    assert os.path.isfile(out)
