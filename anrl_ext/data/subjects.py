"""Who each video films, from a dataset's naming, so that held-out validation videos share no one with
training. Each rule takes a video's path relative to the dataset's root (a video file or a folder of
frames) and gives its subject, or None where the path names none (the video is then its own subject).
Used by `python -m anrl_ext.prepare` and by the trainer on SSDG-style label folders (data/ssdg.py)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Optional


def subject_oulu(rel: str) -> Optional[str]:
    m = re.match(r"^\d+_\d+_(\d+)_\d+$", Path(rel).stem)  # Phone_Session_User_File; users differ per split
    return None if not m else f"user{int(m.group(1))}"


def subject_casia(rel: str) -> Optional[str]:
    parent = Path(rel).parent  # train_release/<n>/ and test_release/<n>/ are different people
    return None if parent == Path(".") else "_".join(parent.parts)


def subject_client(rel: str) -> Optional[str]:
    m = re.search(r"client0*(\d+)", rel, re.IGNORECASE)  # Replay-Attack, MSU-MFSD: clientNNN in the name
    return None if not m else f"client{int(m.group(1))}"


def subject_by_pattern(pattern: str) -> Callable[[str], Optional[str]]:
    """Subjects named by a regular expression's first match in the path (its first group, if any)."""
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise ValueError(f"subject pattern {pattern!r} is not a regular expression: {e}") from None

    def subject(rel: str) -> Optional[str]:
        m = regex.search(Path(rel).as_posix())
        return None if not m else (m.group(1) if regex.groups else m.group(0)) or None
    return subject


SUBJECTS = {"oulu": subject_oulu, "casia": subject_casia, "replay": subject_client, "msu": subject_client,
            "generic": lambda rel: None}
