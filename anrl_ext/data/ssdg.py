"""SSDG's `data_label` layout as trainer data: `--data data_label` trains on it as it stands.

SSDG (CVPR 2020) and much of the domain-generalisation code after it keep each dataset's labels as JSON
lists of face crops, one folder per dataset:

    data_label/
      oulu/    all_label.json  (also real_label.json, fake_label.json, train_label.json, ...)
      casia/   all_label.json
      replay/  all_label.json
      msu/     all_label.json

Each list holds {"photo_path": <frame image>, "photo_label": 1 = real, 0 = fake} for every frame of every
video, the frames of one video in one folder. The trainer's domains O, C, I and M are read from oulu,
casia, replay and msu (a folder named by a domain's letter is taken too): all_label.json, or
real_label.json and fake_label.json together where there is no all_label.json. In SSDG's lists
all_label.json leaves out the OULU-NPU and Replay-Attack development sets, as its training does.

Relative photo paths are taken from the current directory, as SSDG's loaders open them. Who a video
films (for the held-out source subjects) comes from the dataset's naming, as in `python -m
anrl_ext.prepare` (OULU-NPU's user, CASIA-FASD's subject folder, clientNNN in Replay-Attack and
MSU-MFSD); a video whose path names none is its own subject. The naming also gives a spoof video's attack
type (data/attacks.py: print, replay, ...), for evaluate's APCER per type. The lists carry no depth maps: a live
frame's depth target is the pseudo-depth of data/pseudo_depth.py, unless its path has a `frames` folder
whose `depth` twin holds the video's maps, as in the prepared layout.
"""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

from .attacks import ATTACKS
from .lists import DataError, read_ssdg_json
from .subjects import SUBJECTS

FOLDERS = {"O": "oulu", "C": "casia", "I": "replay", "M": "msu"}  # the trainer's domain letters
ALL_LABELS = "all_label.json"
CLASS_LABELS = ("real_label.json", "fake_label.json")


def label_files(folder: str) -> List[str]:
    """The lists of one dataset's folder that hold all its frames; [] if it has neither kind."""
    if os.path.isfile(os.path.join(folder, ALL_LABELS)):
        return [os.path.join(folder, ALL_LABELS)]
    if all(os.path.isfile(os.path.join(folder, name)) for name in CLASS_LABELS):
        return [os.path.join(folder, name) for name in CLASS_LABELS]
    return []


def domain_folder(root: str, domain: str) -> Optional[Tuple[str, str]]:
    """(folder, dataset name) of `domain` in an SSDG label root, or None where the root has no lists for it."""
    for name in (FOLDERS.get(domain), domain):
        if name and label_files(os.path.join(root, name)):
            return os.path.join(root, name), name
    return None


def is_ssdg_root(root: str) -> bool:
    """Whether `root` holds the lists of at least one domain in SSDG's layout."""
    return any(domain_folder(root, d) for d in FOLDERS) or (
        os.path.isdir(root) and any(len(n) == 1 and label_files(os.path.join(root, n)) for n in os.listdir(root)))


def read_ssdg_domain(root: str, domain: str) -> List[dict]:
    """The records of one domain of an SSDG label root, with each video's subject; FileNotFoundError naming
    the folders it looked in where there are no lists for the domain."""
    found = domain_folder(root, domain)
    if found is None:
        looked = " or ".join(os.path.join(root, n) for n in (FOLDERS.get(domain), domain) if n)
        raise FileNotFoundError(f"domain {domain}: no {ALL_LABELS} (or {' and '.join(CLASS_LABELS)}) in {looked}")
    folder, name = found
    records = []
    for path in label_files(folder):
        records += read_ssdg_json(path, domain)
    if not records:
        raise DataError(f"domain {domain!r} in {folder} is empty")
    # Videos by their folder relative to the frames' common root: names that stay when the data moves (the
    # checkpoint's fingerprint of the held-out set compares them), and the paths the subject rules read.
    video_folders = [os.path.dirname(os.path.abspath(r["path"])) for r in records]
    folders = sorted(set(video_folders))
    base = os.path.commonpath(folders) if len(folders) > 1 else os.path.dirname(folders[0])
    subject_of = SUBJECTS.get(name, SUBJECTS["generic"])
    attack_of = ATTACKS.get(name, ATTACKS["generic"])
    has_depth = {}  # a video's depth folder, looked for once per video: the lists name every frame
    for r, video_folder in zip(records, video_folders):
        if r["depth"]:  # a `frames` folder in the path: its `depth` twin, where there is one
            folder_of_maps = os.path.dirname(r["depth"])
            if folder_of_maps not in has_depth:
                has_depth[folder_of_maps] = os.path.isdir(folder_of_maps)
            r["depth"] = r["depth"] if has_depth[folder_of_maps] else ""
        video = os.path.relpath(video_folder, base).replace(os.sep, "/")
        r["video"] = f"{domain}/{video}"
        r["subject"] = f"{domain}/{subject_of(video) or video}"
        kind = attack_of(video) if r["label"] == 0 else None
        if kind:
            r["attack"] = kind
    return records
