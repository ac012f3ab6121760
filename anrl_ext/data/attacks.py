"""The attack type of each spoof video (ISO/IEC 30107-3's presentation attack instrument species: print,
replay, mask, ...), for APCER per type (metrics.attack_metrics).

Three sources, the first that names a video's type wins in evaluate:
* a CSV file (`evaluate --attacks`): a header with `video` and `attack` columns, one row per video or per
  frame, the video ids of `python -m anrl_ext.evaluate --scores` (whose CSV has an `attack` column to fill
  in: the file can be given back as it is). Live videos may be named `live` or left empty; rows with an
  empty attack are not read;
* the dataset's own naming (ATTACKS below), which `python -m anrl_ext.prepare` writes to a domain's
  attacks.txt and the SSDG label folders' video paths carry;
* the synthetic domains' renderer (print or replay, as synthetic.render draws them).
"""
from __future__ import annotations

import csv
import os
import re
import warnings
from pathlib import Path
from typing import Callable, Dict, Optional

from .lists import DataError

LIVE = "live"  # the attack column of a live video in evaluate's --scores CSV


# -- the datasets' naming: a spoof video's path relative to the dataset's root -> its attack type or None --
def attack_oulu(rel: str) -> Optional[str]:
    """OULU-NPU: Phone_Session_User_File, File 2-3 printed photos, 4-5 replayed videos (two printers, two
    displays; its protocols report APCER for print and for display attacks)."""
    m = re.match(r"^\d+_\d+_\d+_(\d+)$", Path(rel).stem)
    return None if not m else {"2": "print", "3": "print", "4": "replay", "5": "replay"}.get(m.group(1))


def attack_casia(rel: str) -> Optional[str]:
    """CASIA-FASD: videos 3-4 and HR_2 warped photos, 5-6 and HR_3 cut photos, 7-8 and HR_4 video replays."""
    kinds = {"warped_print": ("3", "4", "HR_2"), "cut_print": ("5", "6", "HR_3"), "replay": ("7", "8", "HR_4")}
    stem = Path(rel).stem
    return next((kind for kind, stems in kinds.items() if stem in stems), None)


def attack_replay(rel: str) -> Optional[str]:
    """Idiap Replay-Attack: attack_print_..., attack_mobile_... (an iPhone's screen), attack_highdef_... (an
    iPad's screen)."""
    m = re.search(r"attack_(print|mobile|highdef)_", Path(rel).name)
    return None if not m else {"print": "print", "mobile": "mobile_replay", "highdef": "highdef_replay"}[m.group(1)]


def attack_msu(rel: str) -> Optional[str]:
    """MSU-MFSD: attack_..._printed_photo_..., attack_..._ipad_video_..., attack_..._iphone_video_..."""
    name = Path(rel).name
    if "printed_photo" in name:
        return "print"
    m = re.search(r"_(ipad|iphone)_video", name)
    return None if not m else f"{m.group(1)}_replay"


ATTACKS: Dict[str, Callable[[str], Optional[str]]] = {
    "oulu": attack_oulu, "casia": attack_casia, "replay": attack_replay, "msu": attack_msu,
    "generic": lambda rel: None}


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
    when given, else what the dataset knows itself (dataset.attack_types()); None where neither names them
    all (with a warning where the dataset names some). A DataError names the spoof videos `named` leaves out
    and a live video it gives an attack type."""
    if named is None:
        own = dataset.attack_types()
        spoof = {r["video"] for r in dataset.records if r["label"] == 0}
        if own and set(own) != spoof:
            first = sorted(spoof - set(own))[0]
            warnings.warn(f"domain {', '.join(dataset.domains)}: the dataset's naming gives {len(spoof - set(own))} "
                          f"of its {len(spoof)} spoof videos no attack type (the first: {first!r}), so no APCER "
                          "per type; --attacks FILE names them", stacklevel=2)
            return None
        return own or None
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
