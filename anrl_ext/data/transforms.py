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
    six = np.concatenate([rgb, hsv], axis=2).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(six.transpose(2, 0, 1).copy())


def augment(rgb: np.ndarray, depth: np.ndarray, rng: np.random.Generator):
    """Horizontal flip (image and depth) and mild brightness/contrast jitter."""
    if rng.uniform() < 0.5:
        # copies: numpy calls a flipped 1-pixel-wide map contiguous, and torch rejects its negative stride
        rgb, depth = rgb[:, ::-1].copy(), depth[:, ::-1].copy()
    a, b = rng.uniform(0.9, 1.1), rng.uniform(-10, 10)
    rgb = np.clip(rgb.astype(np.float32) * a + b, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb), np.ascontiguousarray(depth)
