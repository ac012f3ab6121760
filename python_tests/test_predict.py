"""python -m anrl_ext.predict: the training pipeline's preprocessing, the model formats, thresholds, errors."""
import csv

import cv2
import numpy as np
import pytest
import torch

from anrl_ext import config, export, predict, train
from anrl_ext.data.lists import ListDataset
from anrl_ext.data.synthetic import render
from anrl_ext.prepare import crop, read_frames


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A smoke checkpoint, its ONNX export, and a folder of face crops (synthetic live and spoof faces)."""
    root = tmp_path_factory.mktemp("predict")
    train.run(config.load(["--preset", "smoke", "--out", str(root / "run")]))
    export.main(["--checkpoint", str(root / "run" / "checkpoint.pt"), "--out", str(root / "m.onnx"), "--no-check"])
    faces = root / "faces"
    faces.mkdir()
    for i in range(5):
        rgb, _, _ = render("M", i % 2 == 0, i, 0, size=72)
        cv2.imwrite(str(faces / f"face{i}.png"), rgb[..., ::-1])
    return root


def test_crops_are_scored_as_the_training_data_pipeline_scores_them(trained):
    ckpt = str(trained / "run" / "checkpoint.pt")
    rows = predict.predict(ckpt, [str(trained / "faces")], crop_mode="none", show_progress=False)
    assert [r["input"] for r in rows] == sorted(str(p) for p in (trained / "faces").glob("*.png"))
    assert all(r["face"] == "whole image" and r["frames"] == 1 for r in rows)
    # the same files through the list dataset the trainer reads prepared data with, then the model
    records = [{"path": r["input"], "label": 0, "video": "v", "domain": "M", "depth": "", "where": ""} for r in rows]
    scorer, cfg, _ = export.load_scorer(ckpt)
    images = ListDataset(records, ["M"], cfg.img_size, train=False)
    with torch.no_grad():
        want = scorer(torch.stack([images[i]["image"] for i in range(len(images))]))[0]
    np.testing.assert_allclose([r["score"] for r in rows], want.numpy(), rtol=1e-6, atol=1e-6)


def test_exported_model_gives_the_checkpoints_scores_and_carries_the_threshold(trained):
    faces = [str(trained / "faces")]
    from_ckpt = predict.predict(str(trained / "run" / "checkpoint.pt"), faces, "none", show_progress=False)
    from_onnx = predict.predict(str(trained / "m.onnx"), faces, "none", show_progress=False)
    np.testing.assert_allclose([r["score"] for r in from_onnx], [r["score"] for r in from_ckpt], atol=1e-5)
    threshold = export.load_scorer(str(trained / "run" / "checkpoint.pt"))[2]["threshold_source"]
    assert [r["decision"] for r in from_onnx] == ["live" if r["score"] >= threshold else "spoof" for r in from_onnx]
    assert {r["decision"] for r in predict.predict(str(trained / "m.onnx"), faces, "none", threshold=0.0,
                                                   show_progress=False)} == {"live"}
    assert {r["decision"] for r in predict.predict(str(trained / "m.onnx"), faces, "none", threshold=1.01,
                                                   show_progress=False)} == {"spoof"}


def test_aot_inductor_package_gives_the_checkpoints_scores(trained):
    """An AOTInductor package (export --aoti) is a model predict takes, with the checkpoint's scores."""
    path = str(trained / "m_aoti.pt2")
    export.main(["--checkpoint", str(trained / "run" / "checkpoint.pt"), "--out", path, "--aoti", "--no-check"])
    faces = [str(trained / "faces")]
    from_ckpt = predict.predict(str(trained / "run" / "checkpoint.pt"), faces, "none", show_progress=False)
    from_aoti = predict.predict(path, faces, "none", show_progress=False)
    np.testing.assert_allclose([r["score"] for r in from_aoti], [r["score"] for r in from_ckpt], atol=1e-5)
    assert [r["decision"] for r in from_aoti] == [r["decision"] for r in from_ckpt]


def test_face_input_crops_as_prepare_does():
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    x, how, box = predict.face_input(bgr, 32, lambda img: (30, 20, 50, 60))
    want = cv2.resize(crop(bgr, (30, 20, 50, 60), predict.PREPARE_SIZE), (32, 32), interpolation=cv2.INTER_AREA)
    assert (how, box) == ("detected", (30, 20, 50, 60))
    assert predict.describe_faces([how], [box]) == "detected at 30 20 50 60"
    torch.testing.assert_close(x[:3], torch.from_numpy(want[..., ::-1].astype(np.float32).transpose(2, 0, 1)) / 127.5 - 1)
    x, how, box = predict.face_input(bgr, 32, lambda img: None)  # no face: the centre square
    want = cv2.resize(crop(bgr, (20, 0, 120, 120), predict.PREPARE_SIZE), (32, 32), interpolation=cv2.INTER_AREA)
    assert (how, box) == ("centre crop", (20, 0, 120, 120))
    torch.testing.assert_close(x[:3], torch.from_numpy(want[..., ::-1].astype(np.float32).transpose(2, 0, 1)) / 127.5 - 1)
    # no face in a video frame: the previous frame's box, as prepare does
    assert predict.face_input(bgr, 32, lambda img: None, fallback=(1, 2, 30, 30))[1:] == ("previous box", (1, 2, 30, 30))
    assert predict.describe_faces(["detected", "previous box", "detected"], [(0, 0, 9, 9)] * 3) == \
        "detected 2/3, previous box 1/3"


def test_video_score_is_the_mean_over_its_evenly_spaced_frames(trained, tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (72, 72))
    for f in range(7):
        writer.write(render("M", True, 3, f, size=72)[0][..., ::-1])
    writer.release()
    model = str(trained / "m.onnx")
    (row,) = predict.predict(model, [str(path)], "none", frames=3, show_progress=False)
    assert row["frames"] == 3 and row["face"] == "whole image 3/3"
    frames = [tmp_path / f"f{i}.png" for i in range(3)]
    for f, bgr in zip(frames, read_frames(str(path), 3)):  # frames 0, 3 and 6
        cv2.imwrite(str(f), bgr)
    each = predict.predict(model, [str(f) for f in frames], "none", show_progress=False)
    assert row["score"] == pytest.approx(np.mean([r["score"] for r in each]), abs=1e-6)


def test_cli_writes_csv_and_bad_input_is_named(trained, tmp_path, capsys):
    out = tmp_path / "rows" / "scores.csv"  # a folder that --out makes
    predict.main(["--model", str(trained / "m.onnx"), "--crop", "none", str(trained / "faces" / "face0.png"),
                  str(trained / "faces" / "face1.png"), "--out", str(out)])
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["input"] for r in rows] == [str(trained / "faces" / f"face{i}.png") for i in (0, 1)]
    assert set(rows[0]) == {"input", "face", "frames", "score", "decision"} and 0 <= float(rows[0]["score"]) <= 1
    assert "face0.png" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no such image, video or folder: .*nope.png"):
        predict.main(["--model", str(trained / "m.onnx"), str(tmp_path / "nope.png")])
    with pytest.raises(SystemExit, match="model file not found"):
        predict.main(["--model", str(tmp_path / "missing.onnx"), str(out)])
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((90, 120, 3), 128, np.uint8))  # OpenCV's detector: no face
    (row,) = predict.predict(str(trained / "m.onnx"), [str(tmp_path / "wall.png")], show_progress=False)
    assert row["face"] == "centre crop at 15 0 90 90" and 0 <= row["score"] <= 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images or videos"):
        predict.predict(str(trained / "m.onnx"), [str(tmp_path / "empty")])
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="unreadable image: .*broken.png"):
        predict.predict(str(trained / "m.onnx"), [str(tmp_path / "broken.png")], show_progress=False)
    with pytest.raises(ValueError, match="not an image or video file: .*scores.csv"):
        predict.predict(str(trained / "m.onnx"), [str(out)], show_progress=False)
    with pytest.raises(SystemExit):
        predict.main(["--model", str(trained / "m.onnx"), "--frames", "0", str(out)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        predict.main(["--model", str(trained / "m.onnx"), "--threshold", "inf", str(out)])
    assert exit_.value.code == 2 and "--threshold: expected a finite number, got 'inf'" in capsys.readouterr().err


def test_skip_unreadable_scores_the_rest(trained, tmp_path, capsys):
    """An unreadable input stops predict, naming it; with --skip-unreadable it gets no row, a warning, and the
    list of skipped inputs; the others are scored as without it."""
    good = str(trained / "faces" / "face0.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "broken.avi").write_bytes(b"not a video")
    broken = [str(tmp_path / "broken.png"), str(tmp_path / "broken.avi")]
    model = str(trained / "m.onnx")
    with pytest.raises(SystemExit, match=r"unreadable image: .*broken.png \(--skip-unreadable skips"):
        predict.main(["--model", model, "--crop", "none", broken[0], good])
    (want,) = predict.predict(model, [good], "none", show_progress=False)
    with pytest.warns(UserWarning) as caught:
        rows = predict.main(["--model", model, "--crop", "none", broken[0], good, broken[1], "--skip-unreadable"])
    assert rows == [want]
    assert [str(w.message) for w in caught] == [f"skipped: unreadable image: {broken[0]}",
                                                f"skipped: cannot open video: {broken[1]}"]
    assert f"skipped 2 unreadable input(s): {', '.join(broken)}" in capsys.readouterr().out
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="none of the 2 inputs could be read"):
        predict.predict(model, broken, "none", show_progress=False, skipped=[])
