"""Input transforms: the paper's 6-channel RGB+HSV input, augmentation, normalisation."""
from __future__ import annotations

import cv2
import numpy as np
import torch


def rgb_hsv6(rgb: np.ndarray) -> torch.Tensor:
    """uint8 RGB HxWx3 -> float (6, H, W): RGB and HSV, each channel scaled to [-1, 1]."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 RGB image, got {rgb.dtype} {rgb.shape}")
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)
    # Written channel-first at once and scaled in place: the float32 arithmetic of x / 127.5 - 1 (the same
    # values) in two passes over the output rather than five copies; numpy lets go of Python's lock for them.
    six = np.empty((6, *rgb.shape[:2]), np.float32)
    six[:3] = rgb.transpose(2, 0, 1)
    six[3:] = hsv.transpose(2, 0, 1)
    np.divide(six, np.float32(127.5), out=six)
    np.subtract(six, np.float32(1.0), out=six)
    return torch.from_numpy(six)


def augment(rgb: np.ndarray, depth: np.ndarray, rng: np.random.Generator):
    """Horizontal flip (image and depth) and mild brightness/contrast jitter."""
    if rng.uniform() < 0.5:
        # copies: numpy calls a flipped 1-pixel-wide map contiguous, and torch rejects its negative stride
        rgb, depth = rgb[:, ::-1].copy(), depth[:, ::-1].copy()
    a, b = rng.uniform(0.9, 1.1), rng.uniform(-10, 10)
    rgb = np.clip(rgb.astype(np.float32) * a + b, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb), np.ascontiguousarray(depth)
