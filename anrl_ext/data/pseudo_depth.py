"""The pseudo-depth map of a live face, for data without depth maps.

The published methods supervise the depth head with PRNet 3-D face reconstructions, which are not
available here. A live face's map is approximated by the height of an ellipsoid inscribed in the face
(1 at the nose, 0 at the face border and outside): it carries the "live faces have 3-D shape, spoofs
are flat" signal the depth loss needs, but none of the face's real geometry. `python -m
anrl_ext.prepare` writes it next to every live frame; a list dataset gives it to a live frame whose
list names no depth map.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np


def pseudo_depth(size: int, margin: float = 1.2) -> np.ndarray:
    """Ellipsoid height map of a face filling 1/margin of a square crop, uint8."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    u = ((xs + 0.5) / size * 2 - 1) * margin / 0.85
    v = ((ys + 0.5) / size * 2 - 1) * margin
    return (np.sqrt(np.clip(1 - u ** 2 - v ** 2, 0, 1)) * 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _depth_target(img_size: int, depth_size: int) -> np.ndarray:
    depth = cv2.resize(pseudo_depth(img_size), (depth_size, depth_size), interpolation=cv2.INTER_AREA) / 255.0
    return depth.astype(np.float32)


def pseudo_depth_target(img_size: int, depth_size: int) -> np.ndarray:
    """The float32 depth target in [0, 1] a list dataset reads from `prepare`'s map of a crop of `img_size`
    pixels, at `depth_size`: the same resize and scale as a map read from disk. A copy of a cached map."""
    return _depth_target(img_size, depth_size).copy()
