"""Datasets for a trainer config: the synthetic benchmark, a prepared root or SSDG's label folder, same interface."""
from __future__ import annotations

import hashlib
import os
from typing import Dict, List, Sequence, Set

from . import ssdg
from .datasets import SyntheticDomains
from .lists import DataError, ListDataset, is_prepared_domain, read_prepared_domain, sample_frames
from .synthetic import DOMAINS, SyntheticSpec


def _spec(cfg, seed_offset=0, videos=None):
    return SyntheticSpec(videos or cfg.videos_per_class, cfg.frames_per_video, cfg.img_size,
                         max(1, cfg.img_size // 8), cfg.seed + seed_offset)


def _records(cfg, domains: Sequence[str]) -> List[dict]:
    if not os.path.isdir(cfg.data):
        raise FileNotFoundError(f"--data {cfg.data!r}: not 'synthetic' and not a folder "
                                "(prepare one with python -m anrl_ext.prepare, or give SSDG's data_label folder)")
    out = []
    for d in domains:
        out += sample_frames(read_domain(cfg.data, d), cfg.frames_per_video, cfg.seed)
    return out


def read_domain(root: str, domain: str) -> List[dict]:
    """One domain of a --data folder: the prepared layout (ROOT/<domain>/real.txt and fake.txt, what
    python -m anrl_ext.prepare writes) or SSDG's label layout (ROOT/oulu/all_label.json, ...; data/ssdg.py)."""
    prepared = is_prepared_domain(root, domain)
    if not prepared and (ssdg.domain_folder(root, domain) or ssdg.is_ssdg_root(root)):
        return ssdg.read_ssdg_domain(root, domain)
    if not prepared and ssdg.label_files(root):
        raise FileNotFoundError(f"--data {root}: the label lists of one dataset; give the folder above it, which "
                                f"holds one such folder per domain ({', '.join(ssdg.FOLDERS.values())})")
    return read_prepared_domain(root, domain)


def domains_in(data: str) -> List[str]:
    """The domains a --data value holds: the synthetic benchmark's four, or a folder's prepared domains and
    SSDG label folders, in the order O, C, I, M, then the rest."""
    if data == "synthetic":
        return list(DOMAINS)
    if not os.path.isdir(data):
        raise FileNotFoundError(f"--data {data!r}: not 'synthetic' and not a folder")
    letters = {n for n in os.listdir(data) if len(n) == 1 and n.isalnum()} | set(ssdg.FOLDERS)
    found = [d for d in letters if is_prepared_domain(data, d) or ssdg.domain_folder(data, d)]
    return sorted(found, key=lambda d: ("OCIM".find(d) % 5, d))  # O, C, I, M first (find: -1 % 5 = 4)


def build_datasets(cfg):
    """(train, source_val, target): source_val holds out subjects / videos of the source domains."""
    sources, target = cfg.domains()
    if cfg.data == "synthetic":
        train = SyntheticDomains(sources, _spec(cfg), train=True, split_seed=cfg.seed)
        source_val = SyntheticDomains(sources, _spec(cfg, 7777, cfg.heldout_videos()), train=False)
        return train, source_val, SyntheticDomains([target], _spec(cfg), train=False)
    recs = _records(cfg, sources)
    held = heldout_videos(recs, cfg.heldout_subject_every)
    train = ListDataset([r for r in recs if r["video"] not in held], sources, cfg.img_size, train=True,
                        seed=cfg.seed)
    source_val = ListDataset([r for r in recs if r["video"] in held], sources, cfg.img_size, train=False)
    return train, source_val, eval_dataset(cfg, [target], scored=True)


def subject_of(record: dict) -> str:
    """Who a record's video films: its subject where the data names one, else the video itself."""
    return record.get("subject", record["video"])


def heldout_videos(records: Sequence[dict], every: int) -> Set[str]:
    """The source videos held out of training on prepared data: all videos of every `every`-th subject, by
    name, of each source domain and kind of subject (filmed live only, spoof only, or both) that has two
    or more, so training keeps subjects of each kind and shares none with the held-out set. Where the
    layout names no subjects (no subjects.txt), each video is its own subject.

    They score --eval-every's picks and give the "source" protocol its threshold, which needs live and
    spoof videos: a DataError says so before training if one class has none to spare."""
    videos: Dict[str, Set[str]] = {}
    labels: Dict[str, Set[int]] = {}
    domain: Dict[str, str] = {}
    for r in records:
        subject = subject_of(r)
        videos.setdefault(subject, set()).add(r["video"])
        labels.setdefault(subject, set()).add(r["label"])
        domain[subject] = r["domain"]
    kinds: Dict[tuple, List[str]] = {}
    for subject in sorted(videos):
        kinds.setdefault((domain[subject], frozenset(labels[subject])), []).append(subject)
    held = {v for subjects in kinds.values() if len(subjects) >= 2 for s in subjects[::every] for v in videos[s]}
    held_labels = {r["label"] for r in records if r["video"] in held}
    for label, name in ((1, "live"), (0, "spoof")):
        if label not in held_labels:
            counts = ", ".join(f"{d}: {sum(domain[s] == d and label in labels[s] for s in videos)}"
                               for d in sorted(set(domain.values())))
            raise DataError(f"no {name} source video can be held out for validation: that needs a source domain "
                            f"with two or more subjects of one kind (live only, spoof only, or both; one stays for "
                            f"training) filmed {name}; subjects with {name} videos per source domain: {counts}")
    return held


def split_summary(train, heldout, target) -> Dict[str, Dict[str, int]]:
    """Videos and subjects (a video without a named subject counts as its own) of each set of a run."""
    def counts(dataset):
        videos = {r["video"]: subject_of(r) for r in dataset.records}
        return {"videos": len(videos), "subjects": len(set(videos.values()))}

    return {"train": counts(train), "heldout": counts(heldout), "target": counts(target)}


def fingerprint(dataset) -> str:
    """A digest of which videos, with which labels (and synthetic seeds), a dataset holds: equal for
    the same held-out set wherever its root lies."""
    videos = sorted({f"{r['video']} {r['label']} {r.get('video_seed', '')}" for r in dataset.records})
    return hashlib.sha256("\n".join(videos).encode()).hexdigest()


def eval_dataset(cfg, domains: Sequence[str], scored: bool = False):
    """All frames of `domains`, no augmentation. `scored`: AUC, EER and HTER will be computed on them,
    which needs live and spoof videos; a DataError says so before any scoring if one class is missing."""
    if cfg.data == "synthetic":
        return SyntheticDomains(list(domains), _spec(cfg), train=False)
    records = _records(cfg, domains)
    if scored:
        videos = {label: len({r["video"] for r in records if r["label"] == label}) for label in (1, 0)}
        if not all(videos.values()):
            raise DataError(f"domain {''.join(domains)} of {cfg.data} has {videos[1]} live and {videos[0]} spoof "
                            "videos: AUC, EER and HTER need both")
    return ListDataset(records, list(domains), cfg.img_size, train=False)
