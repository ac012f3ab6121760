"""`python -m anrl_ext.predict --model anrl.onnx IMAGE|FOLDER ...`: is each face live or a spoof?

    python -m anrl_ext.predict --model anrl.onnx photos/ selfie.jpg --out scores.csv
    python -m anrl_ext.predict --model runs/anrl/checkpoint.pt data/fas/M/frames/v1 --crop none

The model is an exported file (`python -m anrl_ext.export`: .onnx, .pt2) or a training checkpoint
(.pt). Each image goes through the training data's pipeline: the largest face found by OpenCV's
Haar detector (`--crop detect`, the default; a centre crop when none is found, marked in the output),
cropped as `python -m anrl_ext.prepare` crops (1.2 x the box, square, 256 px), resized to the
model's input size, RGB + HSV scaled to [-1, 1]. `--crop none` takes each image as an already
cropped face, as prepare writes them. Prints, and with --out writes as CSV, one row per image:
the face box, the score (probability of live) and, with a threshold, the decision. The threshold
is --threshold, else the one the model carries (the source-protocol threshold of its run).
"""
from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np
import torch
from tqdm import tqdm

from .data.transforms import rgb_hsv6
from .export import load_exported, load_scorer
from .prepare import IMAGE_EXT, FaceDetector, crop

PREPARE_SIZE = 256  # prepare's default crop size: the frames a model trains on were cropped at it


def load_model(path: str):
    """(run(x) -> scores (N,), input size, threshold or None) of an exported file or a checkpoint."""
    if path.endswith((".onnx", ".pt2")):
        run, meta = load_exported(path)
        threshold = meta.get("threshold_source")
        return (lambda x: run(x)[0]), int(meta["img_size"]), None if threshold is None else float(threshold)
    scorer, cfg, meta = load_scorer(path)
    return (lambda x: scorer(x)[0]), cfg.img_size, meta.get("threshold_source")


def find_images(paths: List[str]) -> List[str]:
    """The image files named, and those directly inside the folders named, in order."""
    found = []
    for p in paths:
        if os.path.isdir(p):
            found += sorted(str(f) for f in Path(p).iterdir() if f.suffix.lower() in IMAGE_EXT)
        elif os.path.isfile(p):
            found.append(p)
        else:
            raise FileNotFoundError(f"no such image or folder: {p}")
    if not found:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_EXT))}) in {paths}")
    return found


def face_input(bgr: np.ndarray, img_size: int, detector: Optional[FaceDetector]):
    """(model input (6, S, S), how the face was found: 'x y w h', 'centre crop' or 'whole image')."""
    if detector is None:
        face, how = bgr, "whole image"
    else:
        box = detector(bgr)
        how = "x y w h = " + " ".join(map(str, box)) if box else "centre crop (no face found)"
        if box is None:
            s = min(bgr.shape[:2])
            box = ((bgr.shape[1] - s) // 2, (bgr.shape[0] - s) // 2, s, s)
        face = crop(bgr, box, PREPARE_SIZE)
    rgb = cv2.resize(face, (img_size, img_size), interpolation=cv2.INTER_AREA)[..., ::-1]
    return rgb_hsv6(np.ascontiguousarray(rgb)), how


def predict(model: str, paths: List[str], crop_mode: str = "detect", threshold: Optional[float] = None,
            batch: int = 32, show_progress: bool = True) -> List[dict]:
    """One dict per image: image, face, score and (with a threshold) decision."""
    run, img_size, carried = load_model(model)
    threshold = carried if threshold is None else threshold
    detector = FaceDetector() if crop_mode == "detect" else None
    images = find_images(paths)
    rows = []
    for i in tqdm(range(0, len(images), batch), desc="scoring", unit="batch", disable=not show_progress):
        names = images[i:i + batch]
        inputs, hows = [], []
        for name in names:
            bgr = cv2.imread(name, cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"unreadable image: {name}")
            x, how = face_input(bgr, img_size, detector)
            inputs.append(x)
            hows.append(how)
        with torch.no_grad():
            scores = run(torch.stack(inputs)).float().tolist()
        for name, how, score in zip(names, hows, scores):
            row = {"image": name, "face": how, "score": score}
            if threshold is not None:
                row["decision"] = "live" if score >= threshold else "spoof"
            rows.append(row)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m anrl_ext.predict", description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+", help="image files and folders of images")
    ap.add_argument("--model", required=True, help="exported model (.onnx, .pt2) or training checkpoint (.pt)")
    ap.add_argument("--crop", choices=["detect", "none"], default="detect",
                    help="detect: find the face (default); none: the images are face crops already")
    ap.add_argument("--threshold", type=float, default=None, help="live when score >= this (default: the model's)")
    ap.add_argument("--out", default=None, help="also write the rows as CSV here")
    args = ap.parse_args(argv)
    try:
        rows = predict(args.model, args.images, args.crop, args.threshold)
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    for r in rows:
        print(f"{r['score']:.4f}  {r.get('decision', '-'):5}  {r['image']}  ({r['face']})")
    if "decision" not in rows[0]:
        print("no threshold: the model carries none and --threshold was not given")
    if args.out:
        with open(args.out, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
