"""`python -m anrl_ext.prepare`: turn a face anti-spoofing dataset into the list layout.

    python -m anrl_ext.prepare --dataset oulu --src /data/Oulu_NPU --out data/fas --domain O
    python -m anrl_ext.prepare --dataset casia --src /data/CASIA_FASD --out data/fas --domain C
    python -m anrl_ext.prepare --dataset replay --src /data/replayattack --out data/fas --domain I
    python -m anrl_ext.prepare --dataset msu --src /data/MSU-MFSD --out data/fas --domain M

Writes OUT/<domain>/frames/<video>/<i>.png (face crops, --size square),
OUT/<domain>/depth/<video>/<i>.png (pseudo-depth, live only) and the lists
OUT/<domain>/real.txt and fake.txt (`frames/... label`, 0 = real, 1 = fake,
as the official ANRL code), OUT/<domain>/subjects.txt (`frames/<video>
subject`, from the dataset's naming; the video itself where it names none)
and OUT/<domain>/attacks.txt (`frames/<video> type` for each spoof video
whose attack type the dataset's naming gives: print, replay, ...; evaluate
reports APCER per type from it).
Then `python -m anrl_ext.train --data OUT --protocol OCI-M` trains on them.

Inputs are video files (.avi .mov .mp4 .mkv .webm) or folders of frames.
Faces come from a box file when given (--boxes; lines `video x y w h` or
`video frame x y w h`, video relative to --src; a box of zero width or
height, as some datasets' annotations mark a frame without a face, counts as
none) or from OpenCV's bundled Haar detector (largest face); the previous
box, then a centre crop, when none is found. A video or image OpenCV cannot
read stops the run, naming it; --skip-unreadable skips it with a warning and
counts it (a frame folder keeps its readable images).

Pseudo-depth: the published methods use PRNet 3D face reconstruction, which
is not available here. We approximate the live face's depth with the height
of an ellipsoid inscribed in the face box (1 at the nose, 0 at the face
border and outside): it carries the "live faces have 3-D shape, spoofs are
flat" signal the depth loss needs, but none of the face's real geometry.
"""
from __future__ import annotations

import argparse
import os
import re
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from . import checkpoint, cli
from .data.attacks import ATTACKS
from .data.lists import ATTACKS_FILE, SUBJECTS_FILE, text_fields
from .data.pseudo_depth import pseudo_depth
from .data.subjects import SUBJECTS, subject_by_pattern
from .errors import InputError

VIDEO_EXT = {".avi", ".mov", ".mp4", ".mkv", ".webm", ".m4v"}
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp"}
Box = Tuple[int, int, int, int]


# -- labels: 1 = live, 0 = spoof, None = not a sample ----------------------
def label_oulu(rel: str) -> Optional[int]:
    m = re.match(r"^\d+_\d+_\d+_(\d+)$", Path(rel).stem)  # Phone_Session_User_File; File 1 = real
    return None if not m else int(m.group(1) == "1")


def label_casia(rel: str) -> Optional[int]:
    stem = Path(rel).stem
    if not re.match(r"^(HR_)?\d+$", stem):
        return None
    return int(stem in ("1", "2", "HR_1"))


def _by_words(rel: str) -> Optional[int]:
    parts = [p.lower() for p in Path(rel).parts[:-1]] + [Path(rel).stem.lower()]
    if any(p in ("real", "live", "genuine", "bonafide") or p.startswith("real_") for p in parts):
        return 1
    if any(p in ("attack", "attacks", "spoof", "fake") or p.startswith(("attack_", "spoof_", "fake_"))
           for p in parts):
        return 0
    return None


LABELERS = {"oulu": label_oulu, "casia": label_casia, "replay": _by_words, "msu": _by_words,
            "generic": _by_words}


def safe_name(text: str) -> str:
    """`text` as one path component without spaces, as the list files need."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


# -- inputs ------------------------------------------------------------------
def find_inputs(src: str) -> List[str]:
    """Video files and frame folders under src, as paths relative to src."""
    out = []
    for dirpath, _, files in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        if any(Path(f).suffix.lower() in IMAGE_EXT for f in files):
            out.append(rel_dir)
        out += [os.path.normpath(os.path.join(rel_dir, f)) for f in files if Path(f).suffix.lower() in VIDEO_EXT]
    return sorted(out)


def read_frames(path: str, count: int, unreadable: Optional[List[str]] = None) -> List[np.ndarray]:
    """`count` evenly spaced BGR frames of a video file or frame folder (fewer if it is short).
    An image of a frame folder that OpenCV cannot decode raises, or with an `unreadable` list is
    dropped and its path appended there; a video or folder with no readable frame always raises."""
    if os.path.isdir(path):
        names = sorted(f for f in os.listdir(path) if Path(f).suffix.lower() in IMAGE_EXT)
        idx = np.unique(np.linspace(0, len(names) - 1, min(count, len(names))).round().astype(int))
        frames = [cv2.imread(os.path.join(path, names[i])) for i in idx]
        bad = [names[i] for i, f in zip(idx, frames) if f is None]
        if bad and (unreadable is None or len(bad) == len(frames)):
            raise InputError(f"unreadable image(s) in {path}: {bad[:3]}")
        if unreadable is not None:
            unreadable += [os.path.join(path, name) for name in bad]
        return [f for f in frames if f is not None]
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise InputError(f"cannot open video: {path}")
    frames = []
    while True:  # decode all, then pick: frame counts in headers are unreliable
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise InputError(f"video has no readable frames: {path}")
    idx = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    return [frames[i] for i in idx]


def read_boxes(path: str) -> Dict[Tuple[str, Optional[int]], Box]:
    """The face boxes of a box file: {(video, frame or None for every frame): (x, y, w, h)}."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"box file not found: {path}")
    boxes = {}
    for lineno, f in text_fields(path):
        try:
            if len(f) == 5:
                boxes[(os.path.normpath(f[0]), None)] = tuple(int(float(v)) for v in f[1:])
            elif len(f) == 6:
                boxes[(os.path.normpath(f[0]), int(f[1]))] = tuple(int(float(v)) for v in f[2:])
            else:
                raise ValueError
        except ValueError:
            raise InputError(f"{path}:{lineno}: expected 'video x y w h' or 'video frame x y w h'") from None
    return boxes


class FaceDetector:
    def __init__(self):
        xml = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
        self.cascade = cv2.CascadeClassifier(xml)
        if self.cascade.empty():
            raise RuntimeError(f"could not load OpenCV's face detector from {xml}")

    def __call__(self, bgr: np.ndarray) -> Optional[Box]:
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        faces = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4,
                                              minSize=(max(16, gray.shape[0] // 10),) * 2)
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda b: b[2] * b[3])
        return int(x), int(y), int(w), int(h)


def check_box(box: Box, frame: np.ndarray, where: str) -> Optional[Box]:
    """A box from a box file for `frame`; None for one of zero width or height (how some datasets' face
    annotations mark a frame without a face). InputError naming `where` if it does not fit the frame: its
    centre outside it, or a side over twice the frame's (whose crop would need a frame of that size padded)."""
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return None
    rows, cols = frame.shape[:2]
    if not (0 <= x + w // 2 < cols and 0 <= y + h // 2 < rows) or max(w, h) > 2 * max(rows, cols):
        raise InputError(f"{where}: box {' '.join(map(str, box))} does not fit the {cols}x{rows} frame (its centre "
                         "must lie in the frame and its sides be at most twice the frame's)")
    return box


def crop(bgr: np.ndarray, box: Box, size: int, margin: float = 1.2) -> np.ndarray:
    """Square crop around the box (enlarged by `margin`), padded at borders, resized to size."""
    x, y, w, h = box
    side = int(max(w, h) * margin)
    cx, cy = x + w // 2, y + h // 2
    x0, y0 = cx - side // 2, cy - side // 2
    pad = max(0, -x0, -y0, x0 + side - bgr.shape[1], y0 + side - bgr.shape[0])
    img = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else bgr
    patch = img[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side]
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)


def encode_png(image: np.ndarray, path: Path) -> bytes:
    """`image` as the bytes of a PNG file, for `path` (named if OpenCV cannot encode it)."""
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"OpenCV could not encode the image for {path} as PNG ({image.shape}, {image.dtype})")
    return png.tobytes()


def write_png(path: Path, image) -> None:
    """`image` (an array, or the bytes of `encode_png`) as a PNG file at `path`. Not cv2.imwrite: it
    reports success where the file system failed (OpenCV 4.14 returns True writing to /dev/full);
    Python's write raises, naming the file."""
    png = image if isinstance(image, bytes) else encode_png(image, path)
    with checkpoint.os_errors_naming(str(path)):
        path.write_bytes(png)


def prepare(dataset: str, src: str, out: str, domain: str, frames_per_video: int = 10, size: int = 256,
            boxes_file: Optional[str] = None, show_progress: bool = True,
            subject_pattern: Optional[str] = None, skip_unreadable: bool = False) -> Dict[str, object]:
    """Write one domain of the prepared layout from a dataset's videos; returns counts (videos, spoof
    videos, subjects, frames, live and spoof frames, detector misses, frames the box file has no box for,
    videos and images skipped as unreadable; attack_types: spoof videos per attack type the naming gives).
    `subject_pattern`: a regular expression whose first match in a video's path names its subject
    (its first group, if it has one) in place of the dataset's own rule.
    `skip_unreadable`: a video (or frame folder) OpenCV cannot read, or an image of a frame folder it
    cannot decode, is skipped with a warning and counted, rather than stopping the run."""
    if dataset not in LABELERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(LABELERS)}")
    if not os.path.isdir(src):
        raise FileNotFoundError(f"source folder not found: {src}")
    if len(domain) != 1 or not domain.isalnum():
        # the trainer names domains by letter: --sources OCI --target M
        raise ValueError(f"domain {domain!r}: one letter or digit, as the trainer's --sources / --target name them")
    if frames_per_video < 1:
        raise ValueError(f"frames per video (--frames-per-video) must be at least 1, got {frames_per_video}")
    if size < 16:
        raise ValueError(f"the crops' size (--size) must be at least 16 pixels, got {size}")
    subject_of = SUBJECTS[dataset] if subject_pattern is None else subject_by_pattern(subject_pattern)
    inputs = [(rel, LABELERS[dataset](rel)) for rel in find_inputs(src)]
    inputs = [(rel, lab) for rel, lab in inputs if lab is not None]
    if not inputs:
        raise ValueError(f"no labelled videos or frame folders found under {src} for dataset {dataset!r}")
    boxes = read_boxes(boxes_file) if boxes_file else {}
    detector = None if boxes_file else FaceDetector()
    ddir = Path(out) / domain
    lists, subjects, attacks = {1: [], 0: []}, {}, {}  # subjects: {video: subject}; attacks: {video: type}
    depth_png = encode_png(pseudo_depth(size), ddir / "depth")  # the same map for every live frame
    stats = {"videos": 0, "frames": 0, "detector_misses": 0, "unboxed": 0, "skipped_videos": 0, "skipped_images": 0,
             "spoof_videos": 0}
    for rel, label in tqdm(inputs, desc=f"prepare {dataset} -> {domain}", disable=not show_progress):
        unreadable: Optional[List[str]] = [] if skip_unreadable else None
        try:
            frames = read_frames(os.path.join(src, rel), frames_per_video, unreadable)
        except InputError as e:
            if not skip_unreadable:
                raise InputError(f"{e} (--skip-unreadable skips such inputs and goes on)") from None
            warnings.warn(f"skipped: {e}", stacklevel=2)
            stats["skipped_videos"] += 1
            continue
        for path in unreadable or []:
            warnings.warn(f"skipped an unreadable image: {path}", stacklevel=2)
        stats["skipped_images"] += len(unreadable or [])
        video = safe_name(os.path.splitext(rel)[0])
        subjects[video] = safe_name(subject_of(rel) or "") or video
        kind = ATTACKS[dataset](rel) if label == 0 else None
        if kind:
            attacks[video] = kind
        last: Optional[Box] = None
        for i, frame in enumerate(frames):
            box = boxes.get((os.path.normpath(rel), i)) or boxes.get((os.path.normpath(rel), None))
            if box is not None:
                box = check_box(box, frame, f"{boxes_file}, {rel} frame {i}")
            if box is None and detector is not None:
                box = detector(frame)
                if box is None:
                    stats["detector_misses"] += 1
            elif box is None:
                stats["unboxed"] += 1
            box = box or last
            if box is None:  # centre crop
                s = min(frame.shape[:2])
                box = ((frame.shape[1] - s) // 2, (frame.shape[0] - s) // 2, s, s)
            last = box
            rel_frame = f"frames/{video}/{i:04d}.png"
            (ddir / "frames" / video).mkdir(parents=True, exist_ok=True)
            write_png(ddir / rel_frame, crop(frame, box, size))
            if label == 1:
                (ddir / "depth" / video).mkdir(parents=True, exist_ok=True)
                write_png(ddir / "depth" / video / f"{i:04d}.png", depth_png)
            lists[label].append(f"{rel_frame} {1 - label}")  # list files: 0 = real, 1 = fake
            stats["frames"] += 1
        stats["videos"] += 1
        stats["spoof_videos"] += label == 0
    ddir.mkdir(parents=True, exist_ok=True)
    subject_lines = [f"frames/{video} {subject}" for video, subject in subjects.items()]
    attack_lines = [f"frames/{video} {kind}" for video, kind in attacks.items()]
    for name, lines in (("real.txt", lists[1]), ("fake.txt", lists[0]), (SUBJECTS_FILE, subject_lines),
                        (ATTACKS_FILE, attack_lines)):
        checkpoint.write_text_atomic(str(ddir / name), "\n".join(lines) + ("\n" if lines else ""))
    stats.update(live=len(lists[1]), spoof=len(lists[0]), subjects=len(set(subjects.values())),
                 attack_types={k: list(attacks.values()).count(k) for k in sorted(set(attacks.values()))})
    return stats


def main(argv=None):
    ap = cli.parser("prepare", __doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                    epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--dataset", required=True, choices=sorted(LABELERS))
    ap.add_argument("--src", required=True, help="the dataset's folder of videos / frame folders")
    ap.add_argument("--out", required=True, help="output root (one sub-folder per domain)")
    ap.add_argument("--domain", required=True, help="domain name to write, e.g. O, C, I or M")
    ap.add_argument("--frames-per-video", type=int, default=10, help="frames taken per video, evenly spaced "
                    "(default: 10)")
    ap.add_argument("--size", type=int, default=256, help="side of the square face crops in pixels (default: 256)")
    ap.add_argument("--boxes", help="face box file instead of the detector")
    ap.add_argument("--skip-unreadable", action="store_true", help="skip, with a warning, a video or image "
                    "OpenCV cannot read, and count it, rather than stop at it")
    ap.add_argument("--subject-pattern", help="regular expression naming a video's subject by its first match in "
                    "the video's path (its first group, if it has one), for datasets whose naming the tool does not "
                    r"know, e.g. '/(\d{3})/'; default: the dataset's own rule")
    args = ap.parse_args(argv)
    cli.check_output(ap, "--out", args.out, folder=True)
    with cli.errors_exit(ap):  # another OSError (a disk that fills): the message, exit status 1
        try:
            stats = prepare(args.dataset, args.src, args.out, args.domain, args.frames_per_video, args.size,
                            args.boxes, subject_pattern=args.subject_pattern,
                            skip_unreadable=args.skip_unreadable)
        except (ValueError, FileNotFoundError) as e:  # bad arguments or input: usage and the message, status 2
            ap.error(str(e))
    print(f"{args.domain}: {stats['videos']} videos of {stats['subjects']} subjects, {stats['frames']} frames "
          f"({stats['live']} live, {stats['spoof']} spoof), "
          + (f"{stats['unboxed']} without a box in {args.boxes}" if args.boxes
             else f"detector misses {stats['detector_misses']}")
          + (f", skipped as unreadable: {stats['skipped_videos']} videos and {stats['skipped_images']} images"
             if args.skip_unreadable else ""))
    if stats["live"] == 0 or stats["spoof"] == 0:
        print("warning: one class is empty; training needs both live and spoof frames in each domain")
    typed = sum(stats["attack_types"].values())
    if typed:
        print("attack types: " + ", ".join(f"{kind} {n}" for kind, n in stats["attack_types"].items())
              + (f"; {stats['spoof_videos'] - typed} spoof videos whose names give none" if typed <
                 stats["spoof_videos"] else ""))


if __name__ == "__main__":
    main()
