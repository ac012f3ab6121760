"""SSDG's data_label layout as --data: records, subjects, pseudo-depth, training and scoring from it."""
import contextlib
import json
import os
import re
import shutil
import warnings

import cv2
import numpy as np
import pytest

from anrl_ext import config, evaluate, train
from anrl_ext.data.build import build_datasets, fingerprint, read_domain
from anrl_ext.data.lists import NO_DEPTH_MAP, DataError, ListDataset
from anrl_ext.data.pseudo_depth import pseudo_depth, pseudo_depth_target

# Each dataset's video folders as SSDG's preprocessing names them: (live, spoof) of subject s, subject 3 in the
# test split (so the frames' common root is the dataset's folder, as with SSDG's all_label.json).
VIDEOS = {
    "oulu": lambda s: tuple(f"{'Test' if s == 3 else 'Train'}_files/1_1_0{s}_{f}" for f in (1, 2)),
    "casia": lambda s: tuple(f"{'test' if s == 3 else 'train'}_release/{s}/{v}" for v in ("HR_1", "3")),
    "replay": lambda s: (f"replayattack-{'test' if s == 3 else 'train'}/real/client00{s}_session01_webcam_"
                         "authenticate_adverse_1",
                         f"replayattack-{'test' if s == 3 else 'train'}/attack/hand/attack_highdef_client00{s}_"
                         "session01_highdef_photo"),
    "msu": lambda s: (f"real/real_client00{s}_android_SD_scene01",
                      f"attack/attack_client00{s}_android_SD_printed_photo_scene01"),
}
SUBJECTS = {"oulu": "user{}", "casia": "{}_release_{}", "replay": "client{}", "msu": "client{}"}
ATTACKS = {"oulu": "print", "casia": "warped_print", "replay": "highdef_replay", "msu": "print"}  # of VIDEOS' spoofs


def write_ssdg(frames_root, label_root, subjects=3, frames=3, size=24, class_lists=("msu",)):
    """Face-crop frames under frames_root/<dataset>_256/ and data_label/<dataset>/all_label.json with absolute
    photo paths, as SSDG's generate_label.py writes them; the datasets in `class_lists` have real_label.json and
    fake_label.json only."""
    rng = np.random.default_rng(0)
    for name, videos in VIDEOS.items():
        items = []
        for s in range(1, subjects + 1):
            for label, video in zip((1, 0), videos(s)):
                folder = frames_root / f"{name}_256" / video
                folder.mkdir(parents=True)
                for f in range(1, frames + 1):
                    path = folder / f"{f}.png"
                    cv2.imwrite(str(path), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
                    items.append({"photo_path": str(path), "photo_label": label})
        (label_root / name).mkdir(parents=True)
        if name in class_lists:
            for file, label in (("real_label.json", 1), ("fake_label.json", 0)):
                (label_root / name / file).write_text(json.dumps([i for i in items if i["photo_label"] == label]))
        else:
            (label_root / name / "all_label.json").write_text(json.dumps(items, indent=4))
    return label_root


@contextlib.contextmanager
def pseudo_depth_expected():
    """SSDG's crops have no depth maps: the pseudo-depth warning, expected and not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=re.escape(NO_DEPTH_MAP))
        yield


@pytest.fixture
def ssdg_root(tmp_path):
    return write_ssdg(tmp_path / "frames", tmp_path / "data_label")


def test_domains_read_with_their_subjects(ssdg_root):
    """O, C, I, M from oulu, casia, replay, msu (msu from its two class lists): every frame with its label, the
    video named by its folder below the frames' common root, the subject and a spoof video's attack type by the
    dataset's naming."""
    for domain, name in zip("OCIM", ("oulu", "casia", "replay", "msu")):
        records = read_domain(str(ssdg_root), domain)
        assert len(records) == 3 * 2 * 3 and {r["domain"] for r in records} == {domain}
        live, spoof = VIDEOS[name](1)
        by_video = {r["video"]: r for r in records}
        assert by_video[f"{domain}/{live}"]["label"] == 1 and by_video[f"{domain}/{spoof}"]["label"] == 0
        subjects = {f"{domain}/{SUBJECTS[name].format(*(['test' if s == 3 else 'train'] if name == 'casia' else []), s)}"
                    for s in (1, 2, 3)}
        assert {r["subject"] for r in records} == subjects
        assert all(r["depth"] == "" for r in records)  # SSDG's crops come without depth maps
        assert [r.get("attack") for r in records if r["label"] == 0] == [ATTACKS[name]] * 9
        assert not any("attack" in r for r in records if r["label"] == 1)


def test_video_names_do_not_depend_on_where_the_data_lies(ssdg_root, tmp_path):
    """The frames moved and the lists rewritten for the new place: the same videos and subjects, so a
    checkpoint's fingerprint of its held-out set still matches."""
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "frames", moved)
    for lst in ssdg_root.glob("*/*.json"):
        lst.write_text(lst.read_text().replace(str(tmp_path / "frames"), str(moved)))
    cfg = config.load(["--preset", "smoke", "--data", str(ssdg_root), "--heldout-subject-every", "2"])
    with pseudo_depth_expected():
        before = [fingerprint(d) for d in build_datasets(cfg)]
        shutil.rmtree(tmp_path / "frames")
        assert [fingerprint(d) for d in build_datasets(cfg)] == before
    records = read_domain(str(ssdg_root), "I")
    assert {r["video"].split("/", 2)[1] for r in records} == {"replayattack-train", "replayattack-test"}


def test_live_frames_without_a_depth_map_get_the_pseudo_depth(ssdg_root):
    """Not zeros, which would teach the depth head that live faces are flat; with a warning saying so."""
    records = read_domain(str(ssdg_root), "M")
    with pytest.warns(UserWarning, match="get the pseudo-depth"):
        dataset = ListDataset(records, ["M"], img_size=32, train=False)
    target = pseudo_depth_target(32, 4)
    assert target.shape == (4, 4) and 0 < target.min() and target.max() <= 1  # a 4x4 map of the inner face
    assert target[1:3, 1:3].min() > target[0].max()  # highest at the centre: a face's height, not a flat map
    for i, r in enumerate(records):
        depth = dataset[i]["depth"][0].numpy()
        np.testing.assert_array_equal(depth, target if r["label"] == 1 else np.zeros((4, 4), np.float32))
    spoof_only = [r for r in records if r["label"] == 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about without live frames
        ListDataset(spoof_only, ["M"], img_size=32, train=False)


def test_depth_maps_beside_the_frames_are_used(tmp_path):
    """A photo path with a `frames` folder whose `depth` twin holds the maps: those maps, as in the prepared
    layout. With prepare's pseudo-depth map of the crop written there, the target is the one a frame without
    a map gets: the same map, resized and scaled the same way."""
    frames = tmp_path / "frames" / "v1"
    frames.mkdir(parents=True)
    (tmp_path / "depth" / "v1").mkdir(parents=True)
    maps = {"1.png": np.full((32, 32), 255, np.uint8), "2.png": pseudo_depth(32)}
    for name, depth in maps.items():
        cv2.imwrite(str(frames / name), np.zeros((32, 32, 3), np.uint8))
        cv2.imwrite(str(tmp_path / "depth" / "v1" / name), depth)
    (tmp_path / "labels" / "Z").mkdir(parents=True)
    (tmp_path / "labels" / "Z" / "all_label.json").write_text(
        json.dumps([{"photo_path": str(frames / name), "photo_label": 1} for name in maps]))
    records = read_domain(str(tmp_path / "labels"), "Z")  # a folder named by the domain's letter
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = ListDataset(records, ["Z"], img_size=32, train=False)
    assert dataset[0]["depth"].min() == 1.0
    np.testing.assert_array_equal(dataset[1]["depth"][0].numpy(), pseudo_depth_target(32, 4))


def test_missing_domain_and_frames_are_named(ssdg_root, tmp_path):
    shutil.rmtree(ssdg_root / "msu")
    with pytest.raises(FileNotFoundError, match=r"domain M: no all_label.json \(or real_label.json and "
                                                r"fake_label.json\) in .*data_label.msu or .*data_label.M"):
        read_domain(str(ssdg_root), "M")
    with pytest.raises(FileNotFoundError, match=r"--data .*data_label.casia: the label lists of one dataset; give "
                                                r"the folder above it, which holds one such folder per domain"):
        read_domain(str(ssdg_root / "casia"), "C")
    (ssdg_root / "oulu" / "all_label.json").write_text("[]")
    with pytest.raises(DataError, match=r"domain 'O' in .*oulu is empty"):
        read_domain(str(ssdg_root), "O")
    first = json.loads((ssdg_root / "casia" / "all_label.json").read_text())[0]["photo_path"]
    os.remove(first)
    with pytest.raises(DataError, match=r"1 of the \d+ files the lists name are missing; the first: .*HR_1.1.png "
                                        r"\(listed at .*casia.all_label.json\[0\]\)"):
        ListDataset(read_domain(str(ssdg_root), "C"), ["C"], img_size=8)


def test_trainer_and_evaluate_on_an_ssdg_label_folder(ssdg_root, tmp_path):
    """python -m anrl_ext.train --data data_label: a run holding out source subjects, and its checkpoint scored
    on a label folder of the target only."""
    out = tmp_path / "run"
    with pseudo_depth_expected():
        res = train.run(config.load(["--preset", "smoke", "--data", str(ssdg_root), "--protocol", "OCI-M",
                                     "--heldout-subject-every", "2", "--out", str(out)]))
        assert res["iterations"] == 4 and (out / "metrics.json").is_file()
        assert json.loads((out / "metrics.json").read_text())["data_split"]["heldout"]["subjects"] > 0
        shutil.copytree(ssdg_root / "msu", tmp_path / "target_only" / "msu")
        scored = evaluate.main(["--checkpoint", str(out / "checkpoint.pt"), "--data",
                                str(tmp_path / "target_only"), "--domains", "M"])
    assert set(scored) == {"M"} and 0 <= scored["M"]["auc"] <= 1
    assert scored["M"]["attacks"]["count"] == {"print": 3}  # MSU-MFSD's printed_photo videos, by their names
