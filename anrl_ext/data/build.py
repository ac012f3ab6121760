"""Datasets for a trainer config: the synthetic benchmark or a prepared root, same interface."""
from __future__ import annotations

import os
from typing import List, Sequence

from .datasets import SyntheticDomains
from .lists import ListDataset, read_prepared_domain, sample_frames
from .synthetic import SyntheticSpec


def _spec(cfg, seed_offset=0, videos=None):
    return SyntheticSpec(videos or cfg.videos_per_class, cfg.frames_per_video, cfg.img_size,
                         max(1, cfg.img_size // 8), cfg.seed + seed_offset)


def _records(cfg, domains: Sequence[str]) -> List[dict]:
    if not os.path.isdir(cfg.data):
        raise FileNotFoundError(f"--data {cfg.data!r}: not 'synthetic' and not a folder "
                                "(prepare one with python -m anrl_ext.prepare)")
    out = []
    for d in domains:
        out += sample_frames(read_prepared_domain(cfg.data, d), cfg.frames_per_video, cfg.seed)
    return out


def build_datasets(cfg):
    """(train, source_val, target): source_val holds out subjects / videos of the source domains."""
    sources, target = cfg.domains()
    if cfg.data == "synthetic":
        train = SyntheticDomains(sources, _spec(cfg), train=True, split_seed=cfg.seed)
        source_val = SyntheticDomains(sources, _spec(cfg, 7777, cfg.heldout_videos()), train=False)
        return train, source_val, SyntheticDomains([target], _spec(cfg), train=False)
    recs = _records(cfg, sources)
    videos = sorted({r["video"] for r in recs})
    held = set(videos[::5])  # every fifth source video for the "source" protocol threshold
    train = ListDataset([r for r in recs if r["video"] not in held], sources, cfg.img_size, train=True,
                        seed=cfg.seed)
    source_val = ListDataset([r for r in recs if r["video"] in held], sources, cfg.img_size, train=False)
    return train, source_val, eval_dataset(cfg, [target])


def eval_dataset(cfg, domains: Sequence[str]):
    """All frames of `domains`, no augmentation."""
    if cfg.data == "synthetic":
        return SyntheticDomains(list(domains), _spec(cfg), train=False)
    return ListDataset(_records(cfg, domains), list(domains), cfg.img_size, train=False)
