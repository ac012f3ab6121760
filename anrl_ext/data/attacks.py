"""The attack type of each spoof video (ISO/IEC 30107-3's presentation attack instrument species: print,
replay, mask, ...), for APCER per type (metrics.attack_metrics).

The synthetic domains know theirs (print or replay, as synthetic.render draws them). For real data a CSV
file names them: a header with `video` and `attack` columns, one row per video or per frame, the video ids
of `python -m anrl_ext.evaluate --scores` (whose CSV has an `attack` column to fill in: the file can be
given back as it is). Live videos may be named `live` or left empty; rows with an empty attack are not read.
"""
from __future__ import annotations

import csv
import os
from typing import Dict, Optional

from .lists import DataError

LIVE = "live"  # the attack column of a live video in evaluate's --scores CSV


def read_attack_file(path: str) -> Dict[str, str]:
    """{video: attack type} from a CSV with `video` and `attack` columns; a DataError names the file and row
    of a malformed file or of a video given two types."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"attack type file not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows, header = list(reader), reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a UTF-8 CSV file ({e})") from None
    if not {"video", "attack"} <= set(header):
        raise DataError(f"{path}: needs a header with `video` and `attack` columns (as evaluate --scores "
                        f"writes), got {', '.join(header) or 'an empty file'}")
    types: Dict[str, str] = {}
    for line, row in enumerate(rows, 2):
        video, attack = (row["video"] or "").strip(), (row["attack"] or "").strip()
        if not video:
            raise DataError(f"{path}:{line}: no video")
        if not attack:
            continue
        if types.setdefault(video, attack) != attack:
            raise DataError(f"{path}:{line}: video {video!r} is {attack!r} here and {types[video]!r} above")
    return types


def video_attacks(dataset, named: Optional[Dict[str, str]] = None, source: str = "") -> Optional[Dict[str, str]]:
    """{video: attack type} for every spoof video of `dataset`: from `named` (read from the file `source`)
    when given, else what the dataset knows itself (dataset.attack_types()); None where neither names any.
    A DataError names the spoof videos `named` leaves out and a live video it gives an attack type."""
    if named is None:
        return dataset.attack_types()
    labels = {r["video"]: r["label"] for r in dataset.records}
    live = sorted(v for v, label in labels.items() if label == 1 and named.get(v, LIVE) != LIVE)
    if live:
        raise DataError(f"{source}: {len(live)} live videos have an attack type (the first: {live[0]!r} is "
                        f"{named[live[0]]!r}); a live video's type is {LIVE!r} or empty")
    spoof = sorted(v for v, label in labels.items() if label == 0)
    missing = [v for v in spoof if v not in named]
    if missing:
        raise DataError(f"{source} names no attack type for {len(missing)} of the {len(spoof)} spoof videos of "
                        f"domain {', '.join(dataset.domains)} (the first: {missing[0]!r}); its video ids are "
                        "those of evaluate --scores")
    return {v: named[v] for v in spoof}
