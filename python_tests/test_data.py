"""List-file datasets, the prepare tool on small generated videos, bad data, sampler."""
import copy
import csv
import errno
import gc
import hashlib
import json
import os
import re
import shutil
import warnings
from dataclasses import asdict

import cv2
import numpy as np
import pytest
import torch

from anrl_ext import checkpoint, config, evaluate, gate_report, prepare, train
from anrl_ext.data import BalancedDomainSampler, SyntheticDomains, SyntheticSpec, subjects
from anrl_ext.data.attacks import read_attack_file
from anrl_ext.data.build import build_datasets, split_summary
from anrl_ext.data.lists import (DataError, ListDataset, read_anrl_list, read_prepared_domain, read_ssdg_json,
                                 sample_frames)
from anrl_ext.data.pseudo_depth import pseudo_depth
from anrl_ext.data.synthetic import render
from anrl_ext.data.transforms import augment, rgb_hsv6
from anrl_ext.metrics import attack_metrics


def write_video(path, live, seed, frames=5, size=96):
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size + 32, size))
    assert vw.isOpened()
    for f in range(frames):
        rgb, _, _ = render("O", live, seed, f, size=size)
        vw.write(cv2.copyMakeBorder(rgb[..., ::-1], 0, 0, 16, 16, cv2.BORDER_CONSTANT))
    vw.release()


@pytest.fixture(scope="module")
def replay_src(tmp_path_factory):
    """A tiny Replay-Attack-like tree: real/ and attack/ videos plus a frame folder."""
    root = tmp_path_factory.mktemp("replay_src")
    (root / "real").mkdir()
    (root / "attack" / "hand").mkdir(parents=True)
    for i in range(3):
        write_video(root / "real" / f"client{i}.avi", True, i)
        write_video(root / "attack" / "hand" / f"print{i}.avi", False, 100 + i, frames=2 + i)
    folder = root / "real" / "client9_frames"
    folder.mkdir()
    for f in range(3):
        cv2.imwrite(str(folder / f"{f:03d}.jpg"), render("O", True, 9, f, size=64)[0][..., ::-1])
    return root


def test_prepare_writes_the_list_layout(replay_src, tmp_path):
    stats = prepare.prepare("replay", str(replay_src), str(tmp_path / "fas"), "I", frames_per_video=4, size=48,
                            show_progress=False)
    assert stats["videos"] == 7 and stats["live"] == 3 * 4 + 3 and stats["spoof"] == 2 + 3 + 4
    assert stats["subjects"] == 7  # client0-2 and client9 by name; the three print videos name none
    recs = read_prepared_domain(str(tmp_path / "fas"), "I")
    assert {r["subject"] for r in recs if r["label"] == 1} == {"I/client0", "I/client1", "I/client2", "I/client9"}
    assert {r["subject"] for r in recs if r["label"] == 0} == {f"I/attack_hand_print{i}" for i in range(3)}
    assert sum(r["label"] for r in recs) == stats["live"]
    for live in [r for r in recs if r["label"] == 1]:  # every live frame's map: the pseudo-depth, lossless
        assert live["depth"].endswith(".png")
        np.testing.assert_array_equal(cv2.imread(live["depth"], cv2.IMREAD_UNCHANGED), pseudo_depth(48))
    img = cv2.imread(recs[0]["path"])
    assert img.shape == (48, 48, 3)
    ds = ListDataset(recs, ["I"], img_size=32)
    item = ds[0]
    assert item["image"].shape == (6, 32, 32) and item["depth"].shape == (1, 4, 4)


def test_prepare_with_box_file_and_cli(replay_src, tmp_path):
    boxes = tmp_path / "boxes.txt"
    boxes.write_text("".join(f"{p} 20 10 60 70\n" for p in
                             ["real/client0.avi", "real/client1.avi", "real/client2.avi",
                              "attack/hand/print0.avi", "attack/hand/print1.avi", "attack/hand/print2.avi",
                              "real/client9_frames"]))
    prepare.main(["--dataset", "replay", "--src", str(replay_src), "--out", str(tmp_path / "o"), "--domain", "I",
                  "--frames-per-video", "2", "--size", "40", "--boxes", str(boxes)])
    assert len(read_prepared_domain(str(tmp_path / "o"), "I")) == 7 * 2  # every input has >= 2 frames
    assert prepare.read_boxes(str(boxes))[("real/client0.avi", None)] == (20, 10, 60, 70)
    per_frame = tmp_path / "per_frame.txt"
    per_frame.write_text("# video frame x y w h\n\nreal/client0.avi 3 20 10 60 70\n")  # comment, blank line
    assert prepare.read_boxes(str(per_frame)) == {("real/client0.avi", 3): (20, 10, 60, 70)}
    per_frame.write_text(per_frame.read_text() + "real/client1.avi 1 2 3\n")
    with pytest.raises(ValueError, match=r"per_frame.txt:4: expected 'video x y w h' or 'video frame x y w h'"):
        prepare.read_boxes(str(per_frame))
    with pytest.raises(FileNotFoundError, match="source folder not found"):
        prepare.prepare("msu", str(tmp_path / "nope"), str(tmp_path / "o"), "M")
    with pytest.raises(ValueError, match="domain 'Idiap': one letter or digit"):
        prepare.prepare("replay", str(replay_src), str(tmp_path / "o"), "Idiap")
    with pytest.raises(ValueError, match=r"the crops' size \(--size\) must be at least 16 pixels, got 8"):
        prepare.prepare("replay", str(replay_src), str(tmp_path / "o"), "I", frames_per_video=2, size=8)
    with pytest.raises(SystemExit) as usage:  # the CLI: a usage error, no traceback
        prepare.main(["--dataset", "replay", "--src", str(replay_src), "--out", str(tmp_path / "o"),
                      "--domain", "I", "--frames-per-video", "0"])
    assert usage.value.code == 2


def test_prepare_box_file_marks_and_bounds(replay_src, tmp_path, capsys):
    """A box of zero width or height (some annotations' mark of a frame without a face) counts as none: the
    frame takes the previous box, as when the detector misses; a box whose centre lies outside its frame, or
    larger than twice the frame, is refused, naming it."""
    boxes = tmp_path / "boxes.txt"
    boxes.write_text("real/client0.avi 0 20 10 60 70\nreal/client0.avi 1 0 0 0 0\nreal/client1.avi 0 0 0 0\n")
    argv = ["--dataset", "replay", "--src", str(replay_src), "--domain", "I", "--frames-per-video", "2", "--size", "40"]
    prepare.main(argv + ["--out", str(tmp_path / "marked"), "--boxes", str(boxes)])
    # 7 inputs of 2 frames; only client0's first has a box
    assert capsys.readouterr().out.startswith(f"I: 7 videos of 7 subjects, 14 frames (8 live, 6 spoof), "
                                              f"13 without a box in {boxes}")
    (tmp_path / "every.txt").write_text("real/client0.avi 20 10 60 70\n")
    prepare.main(argv + ["--out", str(tmp_path / "every"), "--boxes", str(tmp_path / "every.txt")])
    frame = "I/frames/real_client0/0001.png"
    assert (tmp_path / "marked" / frame).read_bytes() == (tmp_path / "every" / frame).read_bytes()
    for box in ("200 10 60 70", "-100 -100 300 300"):
        boxes.write_text(f"real/client0.avi 1 {box}\n")
        with pytest.raises(ValueError, match=f"boxes.txt, real/client0.avi frame 1: box {box} does not fit the "
                                             r"128x96 frame \(its centre must lie in the frame"):
            prepare.prepare("replay", str(replay_src), str(tmp_path / "refused"), "I", frames_per_video=2, size=40,
                            boxes_file=str(boxes), show_progress=False)
    with pytest.raises(FileNotFoundError, match="box file not found: .*gone.txt"):
        prepare.read_boxes(str(tmp_path / "gone.txt"))


def test_prepare_names_a_frame_it_could_not_write(replay_src, tmp_path):
    """A frame whose write fails (here /dev/full, a disk with no room) ends the tool naming it, before any
    list file names the frames; cv2.imwrite would have reported success."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full (Linux)")
    frame = tmp_path / "o" / "I" / "frames" / prepare.safe_name("real/client0") / "0001.png"
    frame.parent.mkdir(parents=True)
    frame.symlink_to("/dev/full")
    with pytest.raises(SystemExit) as exit_:
        prepare.main(["--dataset", "replay", "--src", str(replay_src), "--out", str(tmp_path / "o"), "--domain", "I",
                      "--frames-per-video", "2", "--size", "32"])
    assert exit_.value.code == (f"python -m anrl_ext.prepare: error: [Errno {errno.ENOSPC}] "
                                f"{os.strerror(errno.ENOSPC)}: '{frame}'")
    assert not [f for f in (tmp_path / "o" / "I").iterdir() if f.suffix == ".txt"]


def test_prepare_skips_unreadable_inputs_only_when_asked(replay_src, tmp_path, capsys):
    """A video OpenCV cannot open stops prepare, naming it; with --skip-unreadable it is skipped and counted, and
    a frame folder loses only its undecodable image."""
    src = tmp_path / "src"
    shutil.copytree(replay_src, src)
    (src / "real" / "client7.avi").write_bytes(b"not a video")
    (src / "real" / "client9_frames" / "001.jpg").write_bytes(b"not an image")
    argv = ["--dataset", "replay", "--src", str(src), "--out", str(tmp_path / "o"), "--domain", "I",
            "--frames-per-video", "3", "--size", "32"]
    with pytest.raises(SystemExit) as usage:
        prepare.main(argv)
    assert usage.value.code == 2
    assert re.search(r"cannot open video: .*client7.avi \(--skip-unreadable skips", capsys.readouterr().err)
    assert not (tmp_path / "o" / "I" / "real.txt").exists()
    with pytest.warns(UserWarning) as caught:
        prepare.main(argv + ["--skip-unreadable"])
    assert sorted(str(w.message) for w in caught) == [
        f"skipped an unreadable image: {src / 'real' / 'client9_frames' / '001.jpg'}",
        f"skipped: cannot open video: {src / 'real' / 'client7.avi'}"]
    # 8 inputs, one skipped; client9's frames 000 and 002 kept
    assert capsys.readouterr().out.startswith("I: 7 videos of 7 subjects, 19 frames (11 live, 8 spoof), detector "
                                              "misses 0, skipped as unreadable: 1 videos and 1 images")
    recs = read_prepared_domain(str(tmp_path / "o"), "I")
    assert sum(r["video"].endswith("client9_frames") for r in recs) == 2
    assert not any(r["video"].endswith("client7") for r in recs)
    (src / "real" / "client9_frames" / "000.jpg").write_bytes(b"")
    (src / "real" / "client9_frames" / "002.jpg").write_bytes(b"")
    with pytest.warns(UserWarning) as caught:  # a folder of no readable image: skipped whole
        stats = prepare.prepare("replay", str(src), str(tmp_path / "o"), "I", frames_per_video=3, size=32,
                                show_progress=False, skip_unreadable=True)
    assert [str(w.message) for w in caught] == [f"skipped: cannot open video: {src / 'real' / 'client7.avi'}",
                                                f"skipped: unreadable image(s) in {src / 'real' / 'client9_frames'}: "
                                                "['000.jpg', '001.jpg', '002.jpg']"]
    assert (stats["videos"], stats["skipped_videos"], stats["skipped_images"]) == (6, 2, 0)


def test_prepare_subject_pattern(replay_src, tmp_path, capsys):
    base = ["--dataset", "replay", "--src", str(replay_src), "--out", str(tmp_path / "o"), "--domain", "I",
            "--frames-per-video", "1", "--size", "16"]
    prepare.main(base + ["--subject-pattern", r"\d+"])  # no group: the whole match, the first number in the path
    assert "I: 7 videos of 4 subjects" in capsys.readouterr().out
    recs = read_prepared_domain(str(tmp_path / "o"), "I")
    assert {r["subject"] for r in recs if r["video"].endswith(("print1", "client1"))} == {"I/1"}
    prepare.main(base + ["--subject-pattern", r"(client)\d"])  # its group; a video it misses is its own subject
    assert "I: 7 videos of 4 subjects" in capsys.readouterr().out
    assert {r["subject"] for r in read_prepared_domain(str(tmp_path / "o"), "I")} == {
        "I/client", "I/attack_hand_print0", "I/attack_hand_print1", "I/attack_hand_print2"}
    prepare.main(base + ["--subject-pattern", "/"])  # a name of no letters or digits: no name
    assert "I: 7 videos of 7 subjects" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        prepare.main(base + ["--subject-pattern", "client(("])
    assert usage.value.code == 2 and "subject pattern 'client((' is not a regular expression" in capsys.readouterr().err


def test_flip_of_a_one_pixel_depth_map():
    # numpy calls a flipped 1-wide array contiguous; torch.from_numpy rejects its negative stride
    rng = np.random.default_rng(0)
    rgb, depth = np.zeros((8, 8, 3), np.uint8), np.arange(1, dtype=np.float32).reshape(1, 1)
    for _ in range(8):
        out_rgb, out_depth = augment(rgb, depth, rng)
        assert torch.from_numpy(out_depth).shape == (1, 1) and torch.from_numpy(out_rgb).shape == (8, 8, 3)
    wide = np.arange(6, dtype=np.float32).reshape(2, 3)
    flips = {tuple(augment(rgb, wide, rng)[1][0]) for _ in range(16)}
    assert flips == {(0, 1, 2), (2, 1, 0)}


def test_dataset_labels():
    assert prepare.label_oulu("Train_files/1_1_01_1.avi") == 1
    assert prepare.label_oulu("Train_files/1_1_01_4.avi") == 0
    assert prepare.label_casia("train_release/1/HR_1.avi") == 1 and prepare.label_casia("train_release/1/5.avi") == 0
    assert prepare.label_casia("train_release/1/readme.avi") is None
    assert prepare.label_oulu("notes.avi") is None


def test_dataset_subjects():
    oulu = ["Train_files/1_1_01_1.avi", "Train_files/6_3_01_4.avi"]
    assert {subjects.subject_oulu(p) for p in oulu} == {"user1"}
    assert subjects.subject_oulu("Dev_files/1_1_25_2.avi") == "user25" and subjects.subject_oulu("notes.avi") is None
    # CASIA numbers the subjects of each release from 1: different people
    assert subjects.subject_casia("train_release/7/HR_1.avi") == subjects.subject_casia("train_release/7/5.avi")
    assert subjects.subject_casia("train_release/1/HR_1.avi") != subjects.subject_casia("test_release/1/HR_1.avi")
    replay = ["train/real/client001_session01_webcam_authenticate_adverse_1.mov",
              "train/attack/hand/attack_highdef_client001_session01_highdef_photo_adverse.mov"]
    msu = ["scene01/real/real_client002_android_SD_scene01.mp4",
           "scene01/attack/attack_client002_android_SD_ipad_video_scene01.mp4"]
    assert {subjects.subject_client(p) for p in replay} == {"client1"}
    assert {subjects.subject_client(p) for p in msu} == {"client2"}
    assert subjects.subject_client("real/face.avi") is None


def prepare_ocim(replay_src, root):
    """The replay-like source as four prepared domains, O, C, I and M, under `root`."""
    for d in "OCIM":
        prepare.prepare("replay", str(replay_src), str(root), d, frames_per_video=3, size=32, show_progress=False)
    return root


def test_trainer_on_prepared_data(replay_src, tmp_path):
    root = prepare_ocim(replay_src, tmp_path / "fas")
    out = tmp_path / "run"
    res = train.run(config.load(["--preset", "smoke", "--data", str(root), "--out", str(out)]))
    assert res["iterations"] == 4 and (out / "metrics.json").is_file()
    # scoring a checkpoint needs only the domain scored, not the run's sources
    shutil.copytree(root / "M", tmp_path / "target_only" / "M")
    scored = evaluate.main(["--checkpoint", str(out / "checkpoint.pt"), "--data", str(tmp_path / "target_only"),
                            "--domains", "M"])
    assert set(scored) == {"M"} and 0 <= scored["M"]["auc"] <= 1
    (tmp_path / "target_only" / "M" / "fake.txt").write_text("")  # live videos only: nothing to score against
    with pytest.raises(SystemExit, match="error: domain M of .*target_only has 4 live and 0 spoof videos: AUC, "
                                         "EER and HTER need both"):
        evaluate.main(["--checkpoint", str(out / "checkpoint.pt"), "--data", str(tmp_path / "target_only"),
                       "--domains", "M"])


@pytest.mark.parametrize("shape", [(64, 64), (31, 17), (1, 1)])
def test_rgb_hsv6_is_rgb_and_hsv_scaled_to_unit_range(shape):
    """The network's input: RGB and OpenCV's full-range HSV, each x / 127.5 - 1 in float32, channel first; the
    same bits as the plain numpy expression."""
    rgb = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)
    plain = np.concatenate([rgb, hsv], axis=2).astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0
    six = rgb_hsv6(rgb)
    assert six.dtype == torch.float32 and six.is_contiguous() and torch.equal(six, torch.from_numpy(plain))
    with pytest.raises(ValueError, match="expected a uint8 HxWx3 RGB image, got float32"):
        rgb_hsv6(rgb.astype(np.float32))


def run_steps(args, steps, state_after=None):
    """A smoke-size Trainer's logs over `steps` iterations, the sampler and augmentation state its checkpoint
    would store after each, its final weights, its whole state after iteration `state_after`, and its scores of
    the target domain."""
    trainer = train.Trainer(config.load(["--preset", "smoke", *args]))
    logs, states, saved = [], [], None
    for it in range(steps):
        logs.append(trainer.step())
        s = trainer.state_dict()
        states.append((s["sampler"], s["augment_rng"]))
        saved = copy.deepcopy(s) if it + 1 == state_after else saved  # a checkpoint's copy, not live tensors
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.close()
    return logs, states, weights, saved, trainer.scores(trainer.target_set)


@pytest.mark.parametrize("data", ["synthetic", "prepared"])
def test_loader_threads_give_the_same_run(replay_src, tmp_path, data):
    """--loader-threads N: the batches, losses, weights, checkpointed random state and target scores of loading
    in the training loop, for N = 1 and 3; a run resumed with it from a checkpoint goes on as the run that was
    not stopped, and so does one whose loader was closed between two steps."""
    args = [] if data == "synthetic" else ["--data", str(prepare_ocim(replay_src, tmp_path / "fas"))]
    logs, states, weights, _, scores = run_steps(args, 4)
    for threads in ("1", "3"):
        ahead = run_steps(args + ["--loader-threads", threads], 4, state_after=2)
        assert ahead[0] == logs and ahead[1] == states, threads
        assert all(torch.equal(ahead[2][k], v) for k, v in weights.items()), threads
        assert all(np.array_equal(a, b) for a, b in zip(ahead[4], scores)), threads  # frames read in parallel
        resumed = train.Trainer(config.load(["--preset", "smoke", *args, "--loader-threads", threads]))
        resumed.load_state_dict(ahead[3])
        assert resumed.step() == logs[2], threads
        resumed.close()  # the loader had drawn further: close() puts the generators back
        assert resumed.step() == logs[3], threads
        resumed.close()


def test_loader_threads_raise_a_load_error_at_the_step(replay_src, tmp_path):
    """An image that no longer decodes, read in the background, stops the step that needed it with the error
    naming it, and every step after."""
    root = prepare_ocim(replay_src, tmp_path / "fas")
    trainer = train.Trainer(config.load(["--preset", "smoke", "--data", str(root), "--loader-threads", "2"]))
    for image in root.glob("[OCI]/**/*.png"):  # every source frame (the check at construction has passed)
        image.write_bytes(b"not an image")
    for _ in range(2):
        with pytest.raises(DataError, match=r"missing or unreadable image: .*\.png \(listed at .*\.txt:\d+\)"):
            trainer.step()
    assert trainer.iteration == 0
    trainer.close()


def test_a_dropped_trainer_ends_its_loader_thread():
    trainer = train.Trainer(config.load(["--preset", "smoke", "--loader-threads", "2"]))
    trainer.step()
    thread = trainer.prefetcher._thread
    assert thread.is_alive()
    del trainer  # without close(): a script's or a notebook's Trainer
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()


def write_lists(root, domain, live, spoof, frames=2, subject=None):
    """A prepared domain's lists, with empty files for its images and depth maps (splitting the videos reads
    none, but the datasets check that they are there); with `subject` (kind, number -> name) also its
    subjects.txt."""
    (root / domain).mkdir(parents=True)
    for name, kind, count, raw in (("real.txt", "live", live, 0), ("fake.txt", "spoof", spoof, 1)):
        frame_paths = [f"frames/{kind}{v}/{f:04d}.png" for v in range(count) for f in range(frames)]
        (root / domain / name).write_text("".join(f"{path} {raw}\n" for path in frame_paths))
        for path in frame_paths + [p.replace("frames/", "depth/", 1) for p in frame_paths if kind == "live"]:
            (root / domain / path).parent.mkdir(parents=True, exist_ok=True)
            (root / domain / path).touch()
    if subject:
        lines = [f"frames/{kind}{v} {subject(kind, v)}\n" for kind, count in (("live", live), ("spoof", spoof))
                 for v in range(count)]
        (root / domain / "subjects.txt").write_text("".join(lines))


@pytest.mark.parametrize("every", [None, 2])
def test_prepared_heldout_is_every_nth_video_of_each_domain_and_class(tmp_path, every):
    videos = {"O": (11, 6), "C": (1, 3), "I": (5, 2), "M": (2, 2)}  # (live, spoof) videos
    for d, (live, spoof) in videos.items():
        write_lists(tmp_path, d, live, spoof)
    share = ["--heldout-subject-every", str(every)] if every else []
    train_set, heldout, _ = build_datasets(config.load(["--preset", "smoke", "--data", str(tmp_path)] + share))
    every = every or 5

    def groups(ds):
        out = {}
        for r in ds.records:
            out.setdefault((r["domain"], r["label"]), set()).add(r["video"])
        return out

    held, kept = groups(heldout), groups(train_set)
    for d in "OCI":
        for label, n in zip((1, 0), videos[d]):
            # every fifth (every-th) of those with two or more, by name; training keeps the rest, at least one
            assert len(held.get((d, label), ())) == (-(-n // every) if n >= 2 else 0), (d, label)
            assert len(kept[(d, label)]) == n - len(held.get((d, label), ()))
            assert not held.get((d, label), set()) & kept[(d, label)]
    by_name = sorted(f"O/frames/live{v}" for v in range(11))  # 0 1 10 2 3 4 ...
    assert sorted(held[("O", 1)]) == by_name[::every]


def test_prepared_heldout_subjects_share_no_one_with_training(tmp_path):
    write_lists(tmp_path, "O", 10, 20, subject=lambda kind, v: f"p{v if kind == 'live' else v // 2}")
    write_lists(tmp_path, "C", 4, 4, subject=lambda kind, v: f"p{v}")
    write_lists(tmp_path, "I", 3, 3)  # no subjects.txt: each video is its own subject
    write_lists(tmp_path, "M", 2, 2)
    train_set, heldout, _ = build_datasets(config.load(["--preset", "smoke", "--data", str(tmp_path)]))
    held = {r["video"] for r in heldout.records}
    assert held == {"O/frames/live0", "O/frames/live5", "O/frames/spoof0", "O/frames/spoof1", "O/frames/spoof10",
                    "O/frames/spoof11", "C/frames/live0", "C/frames/spoof0", "I/frames/live0", "I/frames/spoof0"}
    assert {r["subject"] for r in heldout.records} == {"O/p0", "O/p5", "C/p0", "I/frames/live0", "I/frames/spoof0"}
    assert not {r["subject"] for r in heldout.records} & {r["subject"] for r in train_set.records}
    # O: 10 subjects (30 videos), C: 4 (8), I: 6 videos, each its own subject
    assert split_summary(train_set, heldout, heldout) == {"train": {"videos": 44 - 10, "subjects": 8 + 3 + 4},
                                                          "heldout": {"videos": 10, "subjects": 5},
                                                          "target": {"videos": 10, "subjects": 5}}
    (tmp_path / "O" / "subjects.txt").write_text("frames/live0 p0\nframes/live1\n")
    with pytest.raises(DataError, match=r"O.subjects.txt:2: expected 'frames/<video> subject', got 'frames/live1'"):
        build_datasets(config.load(["--preset", "smoke", "--data", str(tmp_path)]))


def test_prepared_sources_short_of_spoof_videos_stop_before_training(tmp_path):
    for d in "OCIM":
        write_lists(tmp_path, d, live=3, spoof=1)
    with pytest.raises(DataError, match="no spoof source video can be held out for validation: .*"
                                        "subjects with spoof videos per source domain: C: 1, I: 1, O: 1$"):
        build_datasets(config.load(["--preset", "smoke", "--data", str(tmp_path)]))
    with pytest.raises(SystemExit, match="python -m anrl_ext.train: error: no spoof source video"):
        train.main(["--preset", "smoke", "--data", str(tmp_path), "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run" / "log.csv").exists()
    shutil.rmtree(tmp_path / "O")
    write_lists(tmp_path, "O", live=3, spoof=0)
    for d in "CI":
        (tmp_path / d / "fake.txt").write_text("frames/spoof0/0000.png 1\nframes/spoof1/0000.png 1\n")
        (tmp_path / d / "frames" / "spoof1").mkdir()
        (tmp_path / d / "frames" / "spoof1" / "0000.png").touch()
    # the sampler counts training frames: two of the three live videos, two frames each
    with pytest.raises(SystemExit, match=r"error: domain 'O' needs both live and spoof samples \(has 4 live, 0 spoof"):
        train.main(["--preset", "smoke", "--data", str(tmp_path), "--out", str(tmp_path / "run")])


def test_a_target_of_one_class_stops_before_training(tmp_path):
    for d in "OCI":
        write_lists(tmp_path, d, live=3, spoof=3)
    write_lists(tmp_path, "M", live=0, spoof=2)
    with pytest.raises(DataError, match=r"domain M of .* has 0 live and 2 spoof videos: AUC, EER and HTER need both"):
        build_datasets(config.load(["--preset", "smoke", "--data", str(tmp_path)]))


def test_resume_refuses_held_out_videos_its_picks_were_not_scored_on(replay_src, tmp_path):
    root, out = tmp_path / "fas", tmp_path / "run"
    for d in "OCIM":
        prepare.prepare("replay", str(replay_src), str(root), d, frames_per_video=2, size=32, show_progress=False)
    train.run(config.load(["--preset", "smoke", "--iters", "1", "--eval-every", "1", "--data", str(root),
                           "--out", str(out)]))
    ck = str(out / "checkpoint.pt")
    refused = r"error: --resume .*checkpoint.pt: the held-out source videos are not those its 1 evaluation\(s\)"

    def written():  # each output file's modification time and digest
        return {str(p.relative_to(out)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()[:12])
                for p in out.rglob("*") if p.is_file()}

    before = written()
    subjects = (root / "O" / "subjects.txt").read_text()
    (root / "O" / "subjects.txt").write_text(subjects.replace("real_client1 client1", "real_client1 client0"))
    with pytest.raises(SystemExit, match=refused + " were scored on, so the data or the options that choose them"):
        train.main(["--resume", ck, "--iters", "2"])
    assert written() == before  # refused before any output: no file added, changed or rewritten
    (root / "O" / "subjects.txt").write_text(subjects)  # the data it had
    with pytest.raises(SystemExit, match=refused):  # every second subject: others than every fifth
        train.main(["--resume", ck, "--iters", "2", "--heldout-subject-every", "2"])
    assert written() == before
    # every fourth subject holds out the same videos here (no kind has more than four subjects): it goes on
    assert train.run(config.load(["--resume", ck, "--iters", "2", "--heldout-subject-every", "4"]))["iterations"] == 2


def test_anrl_list_errors(tmp_path):
    img = tmp_path / "frames" / "v1"
    img.mkdir(parents=True)
    cv2.imwrite(str(img / "0.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "depth" / "v1").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "depth" / "v1" / "0.png"), np.full((8, 8), 255, np.uint8))
    lst = tmp_path / "real.txt"
    lst.write_text("frames/v1/0.png 0\nframes/v1/1.png 0\n")
    recs = read_anrl_list(str(lst), "X")
    assert [r["label"] for r in recs] == [1, 1]  # 0 = real in the list -> 1 = live here
    # a missing image stops the dataset's construction (before a run), naming how many and the first
    with pytest.raises(DataError, match=r"2 of the 4 files the lists name are missing; the first: .*v1.1.png "
                                        r"\(listed at .*real.txt:2\)"):
        ListDataset(recs, ["X"], img_size=8, train=False)
    (img / "1.png").write_bytes(b"not a png")  # there, but does not decode: named when loaded
    with pytest.raises(DataError, match=r"1 of the 4 files .* the first: .*depth.v1.1.png \(the depth map of "
                                        r".*v1.1.png, listed at .*real.txt:2\)"):
        ListDataset(recs, ["X"], img_size=8, train=False)
    shutil.copy(tmp_path / "depth" / "v1" / "0.png", tmp_path / "depth" / "v1" / "1.png")
    ds = ListDataset(recs, ["X"], img_size=8, train=False)
    assert ds[0]["depth"].min() == 1.0
    with pytest.raises(DataError, match=r"missing or unreadable image: .*1.png \(listed at .*real.txt:2\)"):
        ds[1]
    bad = tmp_path / "bad.txt"
    bad.write_text("frames/v1/0.png 0\nframes/v1/0.png 7\nonly_a_path\n")
    with pytest.raises(DataError, match=r"bad.txt:2: label must be 0 \(real\) or 1 \(fake\)"):
        read_anrl_list(str(bad))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert len(read_anrl_list(str(bad), skip_bad=True)) == 1
    assert "skipped 2 bad line" in str(w[0].message)
    with pytest.raises(FileNotFoundError, match="list file not found"):
        read_anrl_list(str(tmp_path / "nope.txt"))
    with pytest.raises(DataError, match="empty"):
        (tmp_path / "E").mkdir()
        (tmp_path / "E" / "real.txt").write_text("")
        (tmp_path / "E" / "fake.txt").write_text("")
        read_prepared_domain(str(tmp_path), "E")
    (tmp_path / "E" / "real.txt").write_bytes(b"frames/v1/0.png 0\n\xff\xfe\x00 0\n")  # not text
    with pytest.raises(DataError, match=r"E/real.txt: not a UTF-8 text file \(invalid start byte at byte 18\)"):
        read_prepared_domain(str(tmp_path), "E")
    (tmp_path / "E" / "real.txt").write_text("frames/v1/0.png 0\n")
    (tmp_path / "E" / "subjects.txt").write_bytes(b"frames/v1 \xe9\n")  # Latin-1
    with pytest.raises(DataError, match=r"E/subjects.txt: not a UTF-8 text file"):
        read_prepared_domain(str(tmp_path), "E")


def test_ssdg_json(tmp_path):
    j = tmp_path / "train.json"
    j.write_text(json.dumps([{"photo_path": "/d/v1/1.png", "photo_label": 1},
                             {"photo_path": "/d/v2/1.png", "photo_label": 0}]))
    recs = read_ssdg_json(str(j), "M")
    assert [r["label"] for r in recs] == [1, 0] and recs[0]["video"] == "M//d/v1"
    j.write_text(json.dumps([{"photo_path": "x", "photo_label": 3}]))
    with pytest.raises(DataError, match=r"train.json\[0\]: photo_label"):
        read_ssdg_json(str(j))
    for not_json in (b"{not json", b"\xff\xfe[]"):
        j.write_bytes(not_json)
        with pytest.raises(DataError, match="train.json: not valid JSON"):
            read_ssdg_json(str(j))


def test_sample_frames_short_videos():
    recs = [{"video": "a", "path": f"a/{i}"} for i in range(10)] + [{"video": "b", "path": "b/0"}]
    out = sample_frames(recs, 4)
    assert len([r for r in out if r["video"] == "a"]) == 4 and [r for r in out if r["video"] == "b"]


def test_balanced_sampler_and_empty_class():
    ds = SyntheticDomains(["O", "C"], SyntheticSpec(videos_per_class=2, frames_per_video=1, size=16, depth_size=2))
    batches = BalancedDomainSampler(ds, 4, seed=0).sample()
    assert len(batches) == 2
    for d, b in enumerate(batches):
        assert b["label"].tolist().count(1) == 2 and (b["domain"] == d).all()
        assert b["image"].shape == (4, 6, 16, 16)
    ds.records = [r for r in ds.records if not (r["domain"] == "C" and r["label"] == 0)]
    with pytest.raises(DataError, match="domain 'C' needs both live and spoof"):
        BalancedDomainSampler(ds, 4)


@pytest.mark.parametrize("trained_on", ["synthetic", "prepared"])
def test_a_checkpoint_scores_on_the_other_kind_of_data(replay_src, tmp_path, trained_on):
    """--data of evaluate and gate_report may name the other kind of data than the run's: its held-out source
    setting, which is for one kind only and is not used to score, does not stop them."""
    root = tmp_path / "fas"
    prepare.prepare("replay", str(replay_src), str(root), "M", frames_per_video=2, size=32, show_progress=False)
    own = (["--heldout-videos-per-class", "2"] if trained_on == "synthetic"
           else ["--data", str(root), "--heldout-subject-every", "2"])
    cfg = config.load(["--preset", "smoke"] + own)
    ck = str(tmp_path / "checkpoint.pt")
    checkpoint.save_atomic({"model": train.Trainer(cfg, with_data=False).model.state_dict(), "config": asdict(cfg)},
                           ck)
    other = str(root) if trained_on == "synthetic" else "synthetic"
    scored = evaluate.main(["--checkpoint", ck, "--data", other, "--domains", "M"])
    assert set(scored) == {"M"} and 0 <= scored["M"]["auc"] <= 1
    stats = gate_report.main(["--checkpoint", ck, "--data", other, "--domains", "M",
                              "--out", str(tmp_path / "gates.json")])
    assert stats and (tmp_path / "gates.json").is_file()
    # frames read 3 at a time: the same scores and gates
    threads = ["--loader-threads", "3"]
    assert evaluate.main(["--checkpoint", ck, "--data", other, "--domains", "M", *threads]) == scored
    assert gate_report.main(["--checkpoint", ck, "--data", other, "--domains", "M", *threads,
                             "--out", str(tmp_path / "gates.json")]) == stats


def test_evaluate_reports_attack_types_a_file_names(replay_src, tmp_path, capsys):
    """List files name no attack types: evaluate reports none until --attacks names them. Its own --scores
    file with the attack column filled in is such a file. A spoof video the file leaves out, or a live video
    it gives a type, stops evaluate before any scoring, naming the file and the video."""
    root = tmp_path / "fas"
    prepare.prepare("replay", str(replay_src), str(root), "M", frames_per_video=2, size=32, show_progress=False)
    cfg = config.load(["--preset", "smoke", "--heldout-videos-per-class", "2"])
    ck = str(tmp_path / "checkpoint.pt")
    checkpoint.save_atomic({"model": train.Trainer(cfg, with_data=False).model.state_dict(), "config": asdict(cfg)},
                           ck)
    run = ["--checkpoint", ck, "--data", str(root), "--domains", "M"]
    plain = evaluate.main([*run, "--scores", str(tmp_path / "frames.csv")])
    assert "attacks" not in plain["M"] and "APCER" not in capsys.readouterr().out
    with open(tmp_path / "frames.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["attack"] for r in rows if r["label"] == "1"} == {"live"}
    assert {r["attack"] for r in rows if r["label"] == "0"} == {""}
    spoof = sorted({r["video"] for r in rows if r["label"] == "0"})
    assert len(spoof) == 3
    for r in rows:
        if r["label"] == "0":
            r["attack"] = "print" if r["video"] == spoof[0] else "replay"

    def attack_file(name, rows):
        with open(tmp_path / name, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        return str(tmp_path / name)

    named = evaluate.main([*run, "--attacks", attack_file("attacks.csv", rows)])
    by_type = named["M"].pop("attacks")
    assert named["M"].pop("acer") == by_type["acer"] and named == plain
    assert by_type["count"] == {"print": 1, "replay": 2}
    assert by_type == attack_metrics([float(r["score"]) for r in rows], [int(r["label"]) for r in rows],
                                     [r["attack"] for r in rows], plain["M"]["threshold"], [r["video"] for r in rows])
    assert f"\n  {evaluate.describe_attacks(by_type)}\n" in capsys.readouterr().out
    left_out = [r for r in rows if r["video"] != spoof[1]]
    live_typed = [dict(r, attack="print") if r["label"] == "1" else r for r in rows]
    for name, bad, message in [
            ("left_out.csv", left_out, f"left_out.csv names no attack type for 1 of the 3 spoof videos of domain M "
                                       f"(the first: '{spoof[1]}')"),
            ("live.csv", live_typed, "live.csv: 4 live videos have an attack type")]:
        with pytest.raises(SystemExit) as stop:
            evaluate.main([*run, "--attacks", attack_file(name, bad)])
        assert message in str(stop.value.code)


def test_attack_file_errors(tmp_path):
    f = tmp_path / "attacks.csv"
    with pytest.raises(FileNotFoundError, match="attack type file not found: .*attacks.csv"):
        read_attack_file(str(f))
    for text, message in [("video,label\nM/a,0\n", "needs a header with `video` and `attack` columns .* got "
                                                    "video, label"),
                          ("", "got an empty file"),
                          ("video,attack\nM/a,print\nM/b,\n,replay\n", r"attacks.csv:4: no video"),
                          ("video,attack\nM/a,print\nM/a,replay\n", "attacks.csv:3: video 'M/a' is 'replay' here "
                                                                    "and 'print' above")]:
        f.write_text(text)
        with pytest.raises(DataError, match=message):
            read_attack_file(str(f))
    f.write_bytes(b"video,attack\nM/\xff,print\n")
    with pytest.raises(DataError, match="attacks.csv: not a UTF-8 CSV file"):
        read_attack_file(str(f))
    f.write_text("video,attack,score\nM/a,print,0.5\nM/a, print ,0.4\nM/b,,0.1\nM/c,live,0.9\n")
    assert read_attack_file(str(f)) == {"M/a": "print", "M/c": "live"}  # an empty attack is not read


def test_prepare_names_attack_types_and_evaluate_reports_them(tmp_path, capsys):
    """A tree named as Idiap Replay-Attack names its videos: prepare writes each spoof video's attack type to
    attacks.txt, and evaluate reports APCER per type from it with no --attacks. A spoof video the file leaves
    out (a name the rule does not know) gives a warning and no report per type; --attacks still names them."""
    src = tmp_path / "replayattack"
    names = {"real/client001_session01_webcam_authenticate_adverse_1": True,
             "real/client002_session01_webcam_authenticate_controlled_2": True,
             "attack/hand/attack_print_client001_session01_highdef_photo_adverse": False,
             "attack/fixed/attack_highdef_client002_session01_highdef_video_controlled": False,
             "attack/hand/attack_mobile_client002_session01_mobile_photo_adverse": False}
    for i, (name, live) in enumerate(names.items()):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        write_video(src / f"{name}.avi", live, 200 + i, frames=2)
    root = tmp_path / "fas"
    prepare.main(["--dataset", "replay", "--src", str(src), "--out", str(root), "--domain", "I",
                  "--frames-per-video", "2", "--size", "32"])
    assert "attack types: highdef_replay 1, mobile_replay 1, print 1\n" in capsys.readouterr().out
    lines = (root / "I" / "attacks.txt").read_text().splitlines()
    assert sorted(lines) == ["frames/attack_fixed_attack_highdef_client002_session01_highdef_video_controlled "
                             "highdef_replay",
                             "frames/attack_hand_attack_mobile_client002_session01_mobile_photo_adverse mobile_replay",
                             "frames/attack_hand_attack_print_client001_session01_highdef_photo_adverse print"]
    cfg = config.load(["--preset", "smoke", "--heldout-videos-per-class", "2"])
    ck = str(tmp_path / "checkpoint.pt")
    checkpoint.save_atomic({"model": train.Trainer(cfg, with_data=False).model.state_dict(), "config": asdict(cfg)},
                           ck)
    run = ["--checkpoint", ck, "--data", str(root), "--domains", "I"]
    scored = evaluate.main(run)["I"]
    assert scored["attacks"]["count"] == {"highdef_replay": 1, "mobile_replay": 1, "print": 1}
    assert scored["attacks"]["bpcer"] == scored["bpcer"]
    (root / "I" / "attacks.txt").write_text("\n".join(lines[:2]) + "\n")
    with pytest.warns(UserWarning, match=r"domain I: the dataset's naming gives 1 of its 3 spoof videos no attack "
                                         r"type \(the first: 'I/frames/attack_hand_attack_print.*--attacks FILE"):
        assert "attacks" not in evaluate.main(run)["I"]
    named = tmp_path / "attacks.csv"
    named.write_text("video,attack\n" + "".join(f"I/{line.split()[0]},screen\n" for line in lines))
    assert evaluate.main([*run, "--attacks", str(named)])["I"]["attacks"]["count"] == {"screen": 3}
    (root / "I" / "attacks.txt").write_text(lines[0].split()[0] + "\n")  # a line without its type
    with pytest.raises(SystemExit) as stop:
        evaluate.main(run)
    assert "attacks.txt:1: expected 'frames/<video> attack type', got 'frames/attack_fixed" in str(stop.value.code)
