"""Datasets: the built-in synthetic domains and list-file real datasets, one sample format.

A sample is a dict: image (6, S, S) float, depth (1, D, D) float, label
(1 = live / bona fide, 0 = spoof), domain (int index), video (str).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from . import synthetic
from .frames import FrameDataset
from .lists import DataError


class SyntheticDomains(FrameDataset):
    """Frames of the built-in synthetic benchmark for the given domains, rendered once and cached."""

    def __init__(self, domains: Sequence[str], spec: Optional[synthetic.SyntheticSpec] = None,
                 train: bool = True, split_seed: int = 0):
        self.spec = spec or synthetic.SyntheticSpec()
        self.domains = list(domains)
        self.train = train
        self.records: List[dict] = []
        for d in self.domains:
            self.records += synthetic.domain_records(d, self.spec)
        self._cache = {}
        self.augment_rng = np.random.default_rng(split_seed)

    def _render(self, i: int):
        if i not in self._cache:
            r = self.records[i]
            self._cache[i] = synthetic.render(r["domain"], bool(r["label"]), r["video_seed"], r["frame_seed"],
                                              self.spec.size, self.spec.depth_size)[:2]
        return self._cache[i]

    def load(self, i: int):
        """Sample i's frame and depth map, rendered once and kept."""
        return self._render(i)

    def attack_types(self) -> Dict[str, str]:
        """{video: "print" or "replay"} of every spoof video, as rendered."""
        seeds = {r["video"]: (r["domain"], r["video_seed"]) for r in self.records if r["label"] == 0}
        return {video: synthetic.attack_kind(d, seed, self.spec.size) for video, (d, seed) in seeds.items()}


def collate(samples: List[dict]) -> dict:
    return {"image": torch.stack([s["image"] for s in samples]),
            "depth": torch.stack([s["depth"] for s in samples]),
            "label": torch.tensor([s["label"] for s in samples]),
            "domain": torch.tensor([s["domain"] for s in samples]),
            "video": [s["video"] for s in samples]}


class BalancedDomainSampler:
    """Yields per-domain batches with live and spoof in equal numbers (for meta-splits)."""

    def __init__(self, dataset, batch_per_domain: int, seed: int = 0):
        if batch_per_domain < 2:
            raise ValueError("batch_per_domain must be >= 2 (one live, one spoof at least)")
        self.dataset, self.batch = dataset, batch_per_domain
        self.pools = []
        for d, name in enumerate(dataset.domains):
            live, spoof = dataset.indices(d, 1), dataset.indices(d, 0)
            if not live or not spoof:
                raise DataError(f"domain {name!r} needs both live and spoof samples "
                                f"(has {len(live)} live, {len(spoof)} spoof)")
            self.pools.append((live, spoof))
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]

    def draw(self) -> List[List[int]]:
        """The dataset indices of one batch per domain (live first, then spoof)."""
        k = self.batch // 2
        return [[int(i) for i in (*self.rng.choice(live, k), *self.rng.choice(spoof, self.batch - k))]
                for live, spoof in self.pools]

    def sample(self) -> List[dict]:
        """One batch per domain, as collated dicts."""
        return [collate([self.dataset[i] for i in idx]) for idx in self.draw()]
