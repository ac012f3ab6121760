"""`python -m anrl_ext.predict --model anrl.onnx IMAGE|VIDEO|FOLDER ...`: is each face live or a spoof?

    python -m anrl_ext.predict --model anrl.onnx photos/ selfie.jpg clip.mp4 --out scores.csv
    python -m anrl_ext.predict --model runs/anrl/checkpoint.pt data/fas/M/frames/v1 --crop none

The model is an exported file (`python -m anrl_ext.export`: .onnx, .pt2 with or without --aoti) or a training checkpoint
(.pt). Each image goes through the training data's pipeline: the largest face found by OpenCV's
Haar detector (`--crop detect`, the default; a centre crop when none is found, marked in the output),
cropped as `python -m anrl_ext.prepare` crops (1.2 x the box, square, 256 px), resized to the
model's input size, RGB + HSV scaled to [-1, 1]. `--crop none` takes each image as an already
cropped face, as prepare writes them. A video is scored as the evaluation scores videos: --frames
evenly spaced frames (each frame's face, or the previous frame's box when none is found), their
scores averaged. Folders contribute the images directly inside them. Prints, and with --out writes
as CSV, one row per image or video: how the face was found, the number of frames, the score
(probability of live) and, with a threshold, the decision. The threshold is --threshold, else the
one the model carries (the source-protocol threshold of its run). An image or video OpenCV cannot
read stops the run, naming it; with --skip-unreadable it is skipped with a warning and listed.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np
import torch
from tqdm import tqdm

from . import checkpoint, cli
from .data.transforms import rgb_hsv6
from .errors import InputError
from .export import load_exported, load_scorer
from .prepare import IMAGE_EXT, VIDEO_EXT, FaceDetector, crop, read_frames

PREPARE_SIZE = 256  # prepare's default crop size: the frames a model trains on were cropped at it


def load_model(path: str):
    """(run(x) -> scores (N,), input size, threshold or None) of an exported file or a checkpoint."""
    if path.endswith((".onnx", ".pt2")):
        run, meta = load_exported(path)
        return (lambda x: run(x)[0]), meta["img_size"], meta.get("threshold_source")
    scorer, cfg, meta = load_scorer(path)
    return (lambda x: scorer(x)[0]), cfg.img_size, meta.get("threshold_source")


def find_inputs(paths: List[str]) -> List[str]:
    """The image and video files named, and the images directly inside the folders named, in order."""
    found = []
    for p in paths:
        if os.path.isdir(p):
            found += sorted(str(f) for f in Path(p).iterdir() if f.suffix.lower() in IMAGE_EXT)
        elif os.path.isfile(p):
            if Path(p).suffix.lower() not in IMAGE_EXT | VIDEO_EXT:
                raise InputError(f"not an image or video file: {p} "
                                 f"(expected one of {', '.join(sorted(IMAGE_EXT | VIDEO_EXT))})")
            found.append(p)
        else:
            raise FileNotFoundError(f"no such image, video or folder: {p}")
    if not found:
        raise InputError(f"no images or videos in {', '.join(paths)}")
    return found


def face_input(bgr: np.ndarray, img_size: int, detector: Optional[FaceDetector], fallback: Optional[tuple] = None):
    """(model input (6, S, S), how the face was found, the box used or None). how is "whole image" (no
    detector), "detected", "previous box" (none found: the fallback, a video's previous frame) or
    "centre crop" (none found, no fallback)."""
    if detector is None:
        face, how, box = bgr, "whole image", None
    else:
        box, how = detector(bgr), "detected"
        if box is None and fallback is not None:
            box, how = fallback, "previous box"
        if box is None:
            s = min(bgr.shape[:2])
            box, how = ((bgr.shape[1] - s) // 2, (bgr.shape[0] - s) // 2, s, s), "centre crop"
        face = crop(bgr, box, PREPARE_SIZE)
    rgb = cv2.resize(face, (img_size, img_size), interpolation=cv2.INTER_AREA)[..., ::-1]
    return rgb_hsv6(np.ascontiguousarray(rgb)), how, box


def describe_faces(hows: List[str], boxes: List[Optional[tuple]]) -> str:
    """The face column: "detected at x y w h" for one frame; "detected 8/10, previous box 2/10" for a video."""
    if len(hows) == 1:
        return hows[0] + (" at " + " ".join(map(str, boxes[0])) if boxes[0] is not None else "")
    return ", ".join(f"{how} {hows.count(how)}/{len(hows)}" for how in dict.fromkeys(hows))


def _frames_of(path: str, frames: int) -> List[np.ndarray]:
    if Path(path).suffix.lower() in VIDEO_EXT:
        return read_frames(path, frames)  # raises naming the file when it cannot be read
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"unreadable image: {path}")
    return [bgr]


def predict(model: str, paths: List[str], crop_mode: str = "detect", threshold: Optional[float] = None,
            frames: int = 10, batch: int = 32, show_progress: bool = True,
            skipped: Optional[List[str]] = None) -> List[dict]:
    """One dict per image or video: input, face, frames, score (a video's: the mean over its frames) and,
    with a threshold, decision. An input OpenCV cannot read raises, naming it; with a `skipped` list it
    gets no row, a warning, and its path appended there."""
    run, img_size, carried = load_model(model)
    threshold = carried if threshold is None else threshold
    detector = FaceDetector() if crop_mode == "detect" else None
    rows = []
    for name in tqdm(find_inputs(paths), desc="scoring", unit="input", disable=not show_progress):
        inputs, hows, boxes = [], [], [None]
        try:
            bgrs = _frames_of(name, frames)
        except InputError as e:
            if skipped is None:
                raise InputError(f"{e} (--skip-unreadable skips such inputs and goes on)") from None
            warnings.warn(f"skipped: {e}", stacklevel=2)
            skipped.append(name)
            continue
        for bgr in bgrs:
            x, how, box = face_input(bgr, img_size, detector, fallback=boxes[-1])
            inputs.append(x)
            hows.append(how)
            boxes.append(box)
        with torch.no_grad():
            scores = torch.cat([run(torch.stack(inputs[i:i + batch])).float()
                                for i in range(0, len(inputs), batch)])
        score = float(scores.mean())
        row = {"input": name, "face": describe_faces(hows, boxes[1:]), "frames": len(inputs), "score": score}
        if threshold is not None:
            row["decision"] = "live" if score >= threshold else "spoof"
        rows.append(row)
    if not rows:
        raise InputError(f"none of the {len(skipped or [])} inputs could be read")
    return rows


def main(argv=None):
    ap = cli.parser("predict", __doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", help="image files, video files and folders of images")
    ap.add_argument("--model", required=True, help="exported model (.onnx, .pt2) or training checkpoint (.pt)")
    ap.add_argument("--crop", choices=["detect", "none"], default="detect",
                    help="detect: find the face (default); none: the images are face crops already")
    ap.add_argument("--threshold", type=cli.probability, default=None,
                    help="live when score >= this (default: the model's)")
    ap.add_argument("--frames", type=int, default=10, help="frames scored per video, evenly spaced (default 10)")
    ap.add_argument("--out", default=None, help="also write the rows as CSV here")
    ap.add_argument("--skip-unreadable", action="store_true", help="skip, with a warning, an image or video "
                    "OpenCV cannot read (it gets no row) rather than stop at it")
    args = ap.parse_args(argv)
    if args.frames < 1:
        ap.error(f"--frames must be at least 1, got {args.frames}")
    if args.out:
        cli.check_output(ap, "--out", args.out)
    with cli.errors_exit(ap):
        skipped: Optional[List[str]] = [] if args.skip_unreadable else None
        rows = predict(args.model, args.inputs, args.crop, args.threshold, args.frames, skipped=skipped)
        for r in rows:
            print(f"{r['score']:.4f}  {r.get('decision', '-'):5}  {r['input']}  ({r['frames']} frame"
                  f"{'s' * (r['frames'] != 1)}; face: {r['face']})")
        if skipped:
            print(f"skipped {len(skipped)} unreadable input(s): {', '.join(skipped)}")
        if "decision" not in rows[0]:
            print("no threshold: the model carries none and --threshold was not given")
        if args.out:
            fields = list(rows[0])
            checkpoint.write_csv_atomic(args.out, [fields] + [[r.get(f, "") for f in fields] for r in rows])
            print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
