"""What the synthetic and the list-file datasets share: a frame's way from its file to a sample.

A sample is made in three steps, so that a loader may spread the two that draw nothing at random over
threads and keep the one that does in order (data/prefetch.py):

  load(i)             the frame and its depth map, read and resized (the dataset's own)
  augmented(loaded)   flipped and jittered when training: draws from augment_rng, so in sample order
  to_sample(i, frame) RGB + HSV channels in [-1, 1], depth, label, domain, video
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch.utils.data import Dataset

from .transforms import augment, rgb_hsv6


class FrameDataset(Dataset):
    """Frames of `records` (dicts with domain, label, video) from `domains`; augmented when `train`, from
    `augment_rng`. Subclasses give load(i)."""

    records: List[dict]
    domains: List[str]
    train: bool

    def __len__(self) -> int:
        return len(self.records)

    def load(self, i: int):
        """(uint8 RGB frame, float32 depth map) of sample i, before augmentation."""
        raise NotImplementedError

    def augmented(self, loaded):
        """A load()'s frame and depth map, augmented when training (drawing from augment_rng)."""
        rgb, depth = loaded
        return augment(rgb, depth, self.augment_rng) if self.train else (rgb, depth)

    def to_sample(self, i: int, frame) -> dict:
        """Sample i in the trainer's format from its augmented() frame and depth map."""
        r = self.records[i]
        rgb, depth = frame
        return {"image": rgb_hsv6(rgb), "depth": torch.from_numpy(depth)[None], "label": r["label"],
                "domain": self.domains.index(r["domain"]), "video": r["video"]}

    def __getitem__(self, i: int) -> dict:
        return self.to_sample(i, self.augmented(self.load(i)))

    def attack_types(self) -> Optional[Dict[str, str]]:
        """{video: attack type} of the spoof videos whose type the dataset knows (data/attacks.py); None where
        it knows none."""
        return None

    def indices(self, domain: int, label: Optional[int] = None) -> List[int]:
        """The samples of domain number `domain` (of the given label)."""
        name = self.domains[domain]
        return [i for i, r in enumerate(self.records) if r["domain"] == name and (label is None or r["label"] == label)]
