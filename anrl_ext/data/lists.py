"""Real face anti-spoofing datasets in the list-file layouts of the public code.

Two formats, one record type ({path, label (1 = live), video, domain, depth}):

* ANRL / official-code lists: text lines `relative/frame/path label` with
  0 = real, 1 = fake, usually one file per domain and class (real.txt,
  fake.txt). The depth map of a frame is found by swapping the `frames`
  directory for `depth` in its path (what `python -m anrl_ext.prepare` writes).
* SSDG-style JSON: a list of {"photo_path": ..., "photo_label": 1 = real}
  (a whole label folder as trainer data: data/ssdg.py).

A live frame whose path gives no depth map gets the pseudo-depth of
data/pseudo_depth.py, with a warning.

Bad data gives an error naming the file and line; `skip_bad=True` skips such
entries with a warning and counts them instead.
"""
from __future__ import annotations

import json
import os
import warnings
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..errors import InputError
from .frames import FrameDataset
from .pseudo_depth import pseudo_depth_target


SUBJECTS_FILE = "subjects.txt"  # prepared layout: `frames/<video> subject` per line
ATTACKS_FILE = "attacks.txt"  # prepared layout: `frames/<video> attack type` per spoof video the naming types
PREPARED_LISTS = ("real.txt", "fake.txt")  # prepared layout: ROOT/<domain>/ holds one or both
NO_DEPTH_MAP = ("live frames without a depth map (no `depth` twin of a `frames` folder in their paths, as SSDG's "
                "face crops) get the pseudo-depth of python -m anrl_ext.prepare: an ellipsoid inscribed in the face "
                "crop, not the PRNet depth of the paper")


class DataError(InputError):
    """A dataset file or entry that cannot be used, with where it is."""


def depth_path_for(frame_path: str) -> str:
    """frames/<video>/<i>.png -> depth/<video>/<i>.png (the prepared layout)."""
    parts = frame_path.replace("\\", "/").split("/")
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "frames":
            parts[i] = "depth"
            return "/".join(parts)
    return ""


def _video_of(path: str) -> str:
    return os.path.dirname(path.replace("\\", "/"))


def _report(msg: str, skip_bad: bool, skipped: List[str]):
    if not skip_bad:
        raise DataError(msg)
    skipped.append(msg)


def read_anrl_list(list_file: str, domain: str = "", root: Optional[str] = None,
                   skip_bad: bool = False) -> List[dict]:
    """Records of an ANRL-style list (`path label`, 0 = real, 1 = fake)."""
    if not os.path.isfile(list_file):
        raise FileNotFoundError(f"list file not found: {list_file}")
    root = os.path.dirname(os.path.abspath(list_file)) if root is None else root
    records, skipped = [], []
    for lineno, fields in text_fields(list_file):
        if len(fields) != 2:
            _report(f"{list_file}:{lineno}: expected 'path label', got {' '.join(fields)!r}", skip_bad, skipped)
            continue
        path, raw = fields
        if raw not in ("0", "1"):
            _report(f"{list_file}:{lineno}: label must be 0 (real) or 1 (fake), got {raw!r}", skip_bad, skipped)
            continue
        full = os.path.join(root, path)
        d = depth_path_for(path)
        records.append({"path": full, "label": 1 - int(raw), "video": f"{domain}/{_video_of(path)}",
                        "domain": domain, "depth": os.path.join(root, d) if d else "",
                        "where": f"{list_file}:{lineno}"})
    if skipped:
        warnings.warn(f"{list_file}: skipped {len(skipped)} bad line(s); first: {skipped[0]}")
    return records


def read_ssdg_json(json_file: str, domain: str = "", skip_bad: bool = False) -> List[dict]:
    """Records of an SSDG-style JSON list ({photo_path, photo_label: 1 = real})."""
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"JSON list not found: {json_file}")
    try:
        with open(json_file) as fh:
            items = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{json_file}: not valid JSON ({exc})") from None
    if not isinstance(items, list):
        raise DataError(f"{json_file}: expected a JSON list of {{photo_path, photo_label}}")
    records, skipped = [], []
    for i, item in enumerate(items):
        where = f"{json_file}[{i}]"
        if not isinstance(item, dict) or "photo_path" not in item or "photo_label" not in item:
            _report(f"{where}: needs photo_path and photo_label", skip_bad, skipped)
            continue
        if item["photo_label"] not in (0, 1):
            _report(f"{where}: photo_label must be 0 (fake) or 1 (real), got {item['photo_label']!r}", skip_bad,
                    skipped)
            continue
        path = item["photo_path"]
        records.append({"path": path, "label": int(item["photo_label"]), "video": f"{domain}/{_video_of(path)}",
                        "domain": domain, "depth": depth_path_for(path), "where": where})
    if skipped:
        warnings.warn(f"{json_file}: skipped {len(skipped)} bad entr(ies); first: {skipped[0]}")
    return records


def read_prepared_domain(root: str, domain: str, skip_bad: bool = False) -> List[dict]:
    """ROOT/<domain>/{real,fake}.txt as written by `python -m anrl_ext.prepare`."""
    ddir = os.path.join(root, domain)
    if not os.path.isdir(ddir):
        raise FileNotFoundError(f"domain folder not found: {ddir} (prepare it with python -m anrl_ext.prepare)")
    records = []
    for name in PREPARED_LISTS:
        records += read_anrl_list(os.path.join(ddir, name), domain, ddir, skip_bad)
    if not records:
        raise DataError(f"domain {domain!r} in {root} is empty")
    subjects = read_video_names(os.path.join(ddir, SUBJECTS_FILE), "subject")
    attacks = read_video_names(os.path.join(ddir, ATTACKS_FILE), "attack type")
    for r in records:  # a video the file does not name (or no file: an older layout) is its own subject
        video = r["video"].split("/", 1)[1]
        r["subject"] = f"{domain}/{subjects.get(video, video)}"
        if r["label"] == 0 and video in attacks:
            r["attack"] = attacks[video]
    return records


def is_prepared_domain(root: str, domain: str) -> bool:
    """Whether ROOT/<domain> holds a prepared domain's lists."""
    return any(os.path.isfile(os.path.join(root, domain, name)) for name in PREPARED_LISTS)


def read_video_names(path: str, what: str) -> Dict[str, str]:
    """{frames/<video>: name} from a prepared domain's subjects.txt or attacks.txt (`what`: subject or attack
    type); {} when there is none."""
    if not os.path.isfile(path):
        return {}
    out = {}
    for lineno, fields in text_fields(path):
        if len(fields) != 2:
            raise DataError(f"{path}:{lineno}: expected 'frames/<video> {what}', got {' '.join(fields)!r}")
        out[fields[0]] = fields[1]
    return out


def text_fields(path: str) -> Iterator[Tuple[int, List[str]]]:
    """(line number, whitespace-separated fields) of each line of a text file but blank and # lines;
    DataError naming the file if it is not UTF-8 text."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.readlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            yield lineno, fields


def sample_frames(records: List[dict], per_video: int, seed: int = 0) -> List[dict]:
    """At most `per_video` evenly spaced frames of each video; short videos keep all their frames."""
    if per_video < 1:
        raise ValueError("per_video must be >= 1")
    by_video: Dict[str, List[dict]] = {}
    for r in records:
        by_video.setdefault(r["video"], []).append(r)
    out = []
    for frames in by_video.values():
        frames = sorted(frames, key=lambda r: r["path"])
        if len(frames) <= per_video:
            out += frames
        else:
            idx = np.linspace(0, len(frames) - 1, per_video).round().astype(int)
            out += [frames[i] for i in idx]
    return out


def read_image(path: str, where: str = "") -> np.ndarray:
    """uint8 RGB image, or a DataError naming the file (and the list line)."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        loc = f" (listed at {where})" if where else ""
        raise DataError(f"missing or unreadable image: {path}{loc}")
    return img[..., ::-1].copy()


def check_files_exist(records: Sequence[dict]) -> None:
    """DataError naming how many images (and live frames' depth maps) the records list but the disk lacks, and
    the first of them: before a run, not at the step that first loads one. A file that is there but does not
    decode still fails when it is loaded."""
    wanted = [(r["path"], f"listed at {r['where']}") for r in records]
    wanted += [(r["depth"], f"the depth map of {r['path']}, listed at {r['where']}")
               for r in records if r["label"] == 1 and r["depth"]]
    absent = [(path, why) for path, why in wanted if not os.path.isfile(path)]
    if absent:
        path, why = absent[0]
        raise DataError(f"{len(absent)} of the {len(wanted)} files the lists name are missing; the first: {path} "
                        f"({why})")


class ListDataset(FrameDataset):
    """Frames from list records, in the trainer's sample format."""

    def __init__(self, records: Sequence[dict], domains: Sequence[str], img_size: int = 256,
                 depth_size: Optional[int] = None, train: bool = True, seed: int = 0):
        if not records:
            raise DataError("no samples: the lists are empty")
        self.records, self.domains = list(records), list(domains)
        missing = sorted({r["domain"] for r in self.records} - set(self.domains))
        if missing:
            raise DataError(f"records from domains {missing} not in {self.domains}")
        check_files_exist(self.records)
        self.img_size, self.depth_size = img_size, depth_size or max(1, img_size // 8)
        self.train = train
        self.augment_rng = np.random.default_rng(seed)
        if any(r["label"] == 1 and not r["depth"] for r in self.records):
            # Zeros would tell the depth head that these live faces are flat, as spoofs are. The warning names
            # this line, not the caller's: Python shows it once a run, not once for each of the run's sets.
            warnings.warn(NO_DEPTH_MAP, stacklevel=1)

    def attack_types(self) -> Optional[Dict[str, str]]:
        """{video: attack type} of the spoof videos whose type the dataset's naming gives (prepare's
        attacks.txt, the SSDG folders' paths); None where it gives none."""
        return {r["video"]: r["attack"] for r in self.records if r["label"] == 0 and r.get("attack")} or None

    def load(self, i: int):
        """Sample i's frame and depth map, read and resized (OpenCV lets go of Python's lock while it decodes,
        so threads may load in parallel)."""
        r = self.records[i]
        rgb = cv2.resize(read_image(r["path"], r["where"]), (self.img_size, self.img_size),
                         interpolation=cv2.INTER_AREA)
        if r["label"] == 1 and not r["depth"]:
            return rgb, pseudo_depth_target(self.img_size, self.depth_size)
        depth = np.zeros((self.depth_size, self.depth_size), np.float32)
        if r["label"] == 1:
            d = cv2.imread(r["depth"], cv2.IMREAD_GRAYSCALE)
            if d is None:
                raise DataError(f"missing or unreadable depth map: {r['depth']} (for {r['path']}, {r['where']})")
            depth = cv2.resize(d, (self.depth_size, self.depth_size), interpolation=cv2.INTER_AREA) / 255.0
            depth = depth.astype(np.float32)
        return rgb, depth
