"""Trainer configuration: defaults, presets, YAML files and the command line share one schema."""
from __future__ import annotations

import argparse
import math
import os
import warnings
from dataclasses import asdict, dataclass, fields, replace
from typing import List, Optional

import torch
import yaml

from . import cli
from .checkpoint import load_run, write_text_atomic
from .errors import InputError

HELDOUT_SUBJECT_EVERY = 5  # the default share of held-out source subjects on prepared data: one in five
# The four leave-one-domain-out tasks, and the two limited-source tasks of the domain-generalisation papers
# since SSDG (CVPR 2020): two sources, M and I, for the two larger targets.
PROTOCOLS = {"OCI-M": ("OCI", "M"), "OMI-C": ("OMI", "C"), "OCM-I": ("OCM", "I"), "ICM-O": ("ICM", "O"),
             "MI-C": ("MI", "C"), "MI-O": ("MI", "O")}


@dataclass
class Config:
    data: str = "synthetic"  # "synthetic", a root written by python -m anrl_ext.prepare, or SSDG's data_label
    protocol: str = "OCI-M"
    sources: Optional[str] = None  # e.g. "OCI"; overrides --protocol together with --target
    target: Optional[str] = None
    iters: int = 300
    batch_size: int = 8  # per source domain
    img_size: int = 64
    width: float = 0.25
    lr: float = 1e-3
    meta_lr: float = 1e-3  # beta2
    inner_lr: float = 1e-3  # beta1
    lambda_idc: float = 0.1
    lambda_ics: float = 0.01
    gamma: float = 0.9
    norm: str = "afnm"
    gate: str = "paper"
    reduction: int = 16  # AFNM gate: hidden units d = max(1, C // reduction)
    backend: str = "auto"
    device: str = "cpu"
    amp: bool = False  # bfloat16 autocast of the forward passes
    channels_last: bool = False  # network and inputs in channels_last memory format
    seed: int = 0
    first_order: bool = False
    sync_stats: bool = False  # torchrun: AFNM BN statistics over all processes
    meta: bool = True
    videos_per_class: int = 24
    heldout_videos_per_class: int = 0  # synthetic data; 0: half of videos_per_class, at least 2
    heldout_subject_every: int = HELDOUT_SUBJECT_EVERY  # prepared data: hold out every N-th source subject
    frames_per_video: int = 4
    loader_threads: int = 0  # 0: load each iteration's images in the training loop
    eval_every: int = 0  # 0: only at the end
    ema: float = 0.0  # decay of a moving average of the weights, evaluated instead of them; 0: off
    ckpt_every: int = 100
    out: str = "runs/anrl"
    resume: Optional[str] = None

    def domains(self) -> (List[str], str):
        if self.sources or self.target:
            if not (self.sources and self.target):
                raise ValueError("--sources and --target go together")
            src, tgt = list(self.sources), self.target
        else:
            if self.protocol not in PROTOCOLS:
                raise ValueError(f"unknown protocol {self.protocol!r}; choose from {sorted(PROTOCOLS)}")
            src, tgt = list(PROTOCOLS[self.protocol][0]), PROTOCOLS[self.protocol][1]
        if tgt in src:
            raise ValueError(f"target domain {tgt!r} is also a source")
        twice = sorted({d for d in src if src.count(d) > 1})
        if twice:
            raise ValueError(f"--sources {''.join(src)!r} names domain{'s' if len(twice) > 1 else ''} "
                             f"{', '.join(twice)} more than once")
        return src, tgt

    def heldout_videos(self) -> int:
        """Held-out source videos per class and domain of the synthetic data: what --eval-every's
        model selection and the source-threshold protocol are scored on."""
        return self.heldout_videos_per_class or max(2, self.videos_per_class // 2)

    def validate(self) -> "Config":
        """Raise ValueError naming the option whose value is of the wrong type or out of range."""
        for f in fields(self):
            value, kind = getattr(self, f.name), str(f.type)
            flag = _flag(f.name)
            if value is None and kind.startswith("Optional"):
                continue
            kind = kind.removeprefix("Optional[").removesuffix("]")
            # bool is an int to Python, so it is kept apart; an int is a fine float
            accepted = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}[kind]
            if isinstance(value, bool) != (kind == "bool") or not isinstance(value, accepted):
                raise ValueError(f"{flag}: expected {'a number' if kind == 'float' else kind}, got {value!r}")
            # nan slips past every comparison below, and inf is no step size or weight
            if kind == "float" and not math.isfinite(value):
                raise ValueError(f"{flag}: expected a finite number, got {value!r}")
            if f.name in CHOICES and value not in CHOICES[f.name]:
                raise ValueError(f"{flag}: {value!r} is not one of {CHOICES[f.name]}")
            if f.name in LOWER_BOUNDS and value < LOWER_BOUNDS[f.name][0]:
                low, why = LOWER_BOUNDS[f.name]
                raise ValueError(f"{flag} must be at least {low}{why}, got {value}")
        if not 0 < self.width:
            raise ValueError(f"--width must be positive, got {self.width}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"--ema is a decay, in [0, 1) (0: off), got {self.ema}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"--gamma is a momentum, in [0, 1], got {self.gamma}")
        try:
            check_device(self.device)
        except ValueError as e:
            raise ValueError(f"--device {e}") from None
        if self.heldout_videos_per_class and self.data != "synthetic":
            raise ValueError("--heldout-videos-per-class is for the synthetic data; from a prepared root "
                             "--heldout-subject-every sets the held-out source subjects")
        if self.heldout_subject_every != HELDOUT_SUBJECT_EVERY and self.data == "synthetic":
            raise ValueError("--heldout-subject-every is for prepared data (a folder given to --data); "
                             "--heldout-videos-per-class sets the synthetic held-out source set")
        sources, target = self.domains()
        if self.data == "synthetic":
            from .data.synthetic import check_domain

            for d in sources + [target]:
                check_domain(d)
        return self


PRESETS = {
    # The paper's settings (256x256x6, full-width RFM extractor); meant for a GPU.
    "paper": dict(img_size=256, width=1.0, batch_size=10, iters=4000, lr=1e-3, meta_lr=1e-3, inner_lr=1e-3,
                  lambda_idc=0.1, lambda_ics=0.01, device="cuda", videos_per_class=200, frames_per_video=8),
    # Seconds, for tests.
    "smoke": dict(img_size=32, width=0.125, batch_size=4, iters=4, videos_per_class=3, frames_per_video=2,
                  ckpt_every=2),
}

HELP = {
    "iters": "training iterations (each: a normal step and a meta step)",
    "img_size": "input size in pixels (paper: 256); the depth map is img_size / 8",
    "lr": "Adam learning rate of theta_base (everything but the AFNM gates)",
    "gamma": "momentum of the IDC/ICS centroids",
    "device": "cpu or cuda",
    "amp": "bfloat16 autocast of every forward pass (convolutions and linear layers in bfloat16; AFNM statistics, "
           "losses, weights and optimiser state stay float32); for GPUs with bfloat16 tensor cores",
    "channels_last": "keep the network's weights and inputs in channels_last (NHWC) memory format "
                     "(AFNM has channels_last kernels on every backend)",
    "seed": "seed of weights, sampling, augmentation and the synthetic data",
    "videos_per_class": "synthetic data: videos per class and domain (prepared data: unused)",
    "heldout_videos_per_class": "synthetic data: held-out source videos per class and domain, other subjects than "
                                "the training videos; --eval-every picks best.pt on them and the source protocol "
                                "takes its threshold from them (0: half of --videos-per-class, at least 2; "
                                "prepared data: see --heldout-subject-every)",
    "heldout_subject_every": "prepared data: hold out of training every video of every N-th subject, by name, of "
                             "each source domain and kind of subject (live only, spoof only, or both) that has two "
                             "or more; --eval-every picks best.pt on them and the source protocol takes its "
                             "threshold from them",
    "frames_per_video": "frames sampled per video",
    "loader_threads": "0: read each iteration's images in the training loop; N: read the next iteration's in the "
                      "background while this one trains, N images at a time (the same batches and losses; for "
                      "a GPU, which would otherwise wait while the images are read)",
    "ckpt_every": "write checkpoint.pt every N iterations (0: only at the end)",
    "data": "'synthetic' (built-in benchmark), a folder written by python -m anrl_ext.prepare, or SSDG's "
            "data_label folder (oulu/, casia/, replay/, msu/ with all_label.json lists of face crops)",
    "protocol": f"task: sources-target, one of {list(PROTOCOLS)} (the last two: limited sources)",
    "sources": "source domain letters, e.g. OCI (with --target)",
    "target": "held-out target domain letter (with --sources)",
    "batch_size": "samples per source domain per iteration (half live, half spoof)",
    "width": "channel multiplier of the network (1.0 = paper; no layer gets fewer than 4 channels)",
    "meta_lr": "beta2: Adam step of the meta-update of the AFNM gates (with --no-meta: of their plain step)",
    "inner_lr": "beta1: inner (meta-train) step size of the gates",
    "lambda_idc": "lambda1, weight of the IDC loss",
    "lambda_ics": "lambda2, weight of the ICS loss",
    "norm": "normalization of the extractor: bn, in, half, bin, ibn, afnm",
    "gate": "AFNM gate: paper, sigmoid, sigmoid2",
    "reduction": "AFNM gate: channels per hidden unit, d = max(1, C // reduction) (paper: 16); at small widths "
                 "a gate has few units, and one whose units are all 0 on every sample never trains "
                 "(python -m anrl_ext.gate_report shows the live units)",
    "backend": "AFNM op backend: auto, reference, cpu, cuda, triton",
    "first_order": "first-order meta-gradient (no create_graph)",
    "sync_stats": "with torchrun: AFNM's BN branch uses statistics of the whole distributed batch "
                  "(one all-gather of the per-sample moments per layer); in one process, nothing to synchronise",
    "meta": "meta-learn the AFNM gates (Algorithm 1); --no-meta trains them plainly, with the ordinary loss",
    "out": "output directory (logs, checkpoints, metrics.json, roc.png)",
    "resume": "checkpoint to go on from; its run's settings are the defaults, and options given here "
              "replace them (not those of the network or the domains)",
    "ema": "keep an exponential moving average of the weights (parameters and BN running statistics) with this "
           "decay, e.g. 0.99, and evaluate and deliver it instead of the last weights (metrics.json also scores "
           "the last weights, as metrics_unaveraged); it does not change training. 0: off",
    "eval_every": "evaluate every N iterations (0: only at the end), and keep in best.pt the network that "
                  "scores best on held-out source subjects (never the target)",
}


CHOICES = {"norm": ["bn", "in", "half", "bin", "ibn", "afnm"], "gate": ["paper", "sigmoid", "sigmoid2"],
           "backend": ["auto", "reference", "cpu", "cuda", "triton"]}

# The least value of each numeric option (width and gamma have their own checks), and why where it is not obvious.
LOWER_BOUNDS = {
    "iters": (0, ""), "seed": (0, ""), "reduction": (1, ""),
    "batch_size": (2, " (one live and one spoof sample per source domain)"),
    "img_size": (16, " (the extractor halves it three times, the classifier once more)"),
    "lr": (0, ""), "meta_lr": (0, ""), "inner_lr": (0, ""), "lambda_idc": (0, ""), "lambda_ics": (0, ""),
    "videos_per_class": (1, ""), "frames_per_video": (1, ""), "loader_threads": (0, " (0: no background loading)"),
    "heldout_videos_per_class": (0, " (0: half of --videos-per-class, at least 2)"),
    "heldout_subject_every": (2, " (1 would hold out every subject)"),
    "eval_every": (0, " (0: only at the end)"), "ckpt_every": (0, " (0: only at the end)"),
}


def check_device(name: str) -> None:
    """ValueError unless `name` is cpu, cuda or cuda:<index>."""
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name!r}: expected cpu, cuda or cuda:<index>")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parser() -> argparse.ArgumentParser:
    p = cli.parser("train", "Train ANRL on a leave-one-domain-out task and report HTER/AUC.")
    p.add_argument("--config", help="YAML file with any of the options below (command line wins)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="named settings: paper (GPU), smoke (tests)")
    for f in fields(Config):
        flag = _flag(f.name)
        if f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=HELP.get(f.name))
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            p.add_argument(flag, type=kind, default=None, choices=CHOICES.get(f.name),
                           help=f"{HELP.get(f.name, '')} (default: {f.default})".strip())
    return p


def load(argv=None) -> Config:
    """The run's Config: defaults, then with --resume the checkpoint's run, then --preset, --config and
    the command line, each over the one before."""
    args = parser().parse_args(argv)
    known = {f.name for f in fields(Config)}
    saved, saved_at = None, 0
    if args.resume:  # the run goes on with its own settings unless told otherwise
        state = load_run(args.resume)
        saved, saved_at = from_checkpoint(state["config"], args.resume), state.get("iteration", 0)
    values = asdict(saved) if saved else {}
    if args.preset:
        values.update(PRESETS[args.preset])
    if args.config:
        from_file = read_file(args.config)
        unknown = set(from_file) - known
        if unknown:
            raise ValueError(f"--config {args.config}: unknown keys {sorted(unknown, key=str)}")
        for f in fields(Config):  # PyYAML (YAML 1.1) reads 1e-4, with no dot, as a string
            if str(f.type) == "float" and isinstance(from_file.get(f.name), str):
                try:
                    from_file[f.name] = float(from_file[f.name])
                except ValueError:
                    pass  # validate() names the option
        values.update(from_file)
    values.update({k: v for k, v in vars(args).items() if k in known and v is not None})
    cfg = Config(**values).validate()  # early, before any data is built
    if saved:
        check_resumable(saved, cfg, saved_at)
    return cfg


def from_checkpoint(saved, path: str, data: Optional[str] = None) -> Config:
    """The validated settings of the run that wrote the checkpoint at `path` (its 'config' entry); with
    `data`, to score on that data instead. Settings this version of anrl_ext does not know are dropped with
    a warning; InputError naming the file if the rest are not valid."""
    if not isinstance(saved, dict):
        raise InputError(f"{path}: its 'config' entry holds no settings (a {type(saved).__name__})")
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(saved) - known, key=str)
    if unknown:  # a checkpoint of a later version: what this one builds from it is checked by its weights
        warnings.warn(f"{path}: settings unknown to this version of anrl_ext, ignored: {unknown}", stacklevel=2)
    cfg = Config(**{k: v for k, v in saved.items() if k in known})
    if data is not None and data != cfg.data:
        # The held-out source set is set for one kind of data only (validate); scoring builds none, so the
        # run's setting for the other kind is dropped rather than refused.
        if data == "synthetic":
            cfg = replace(cfg, data=data, heldout_subject_every=HELDOUT_SUBJECT_EVERY)
        else:
            cfg = replace(cfg, data=data, heldout_videos_per_class=0)
    try:
        return cfg.validate()
    except ValueError as e:
        raise InputError(f"{path}: the settings of its run are not valid here: {e}") from None


def read_file(path: str) -> dict:
    """A YAML config file's options (ValueError, FileNotFoundError naming the file if it has none)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        with open(path) as fh:
            from_file = yaml.safe_load(fh)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"--config {path}: not a readable YAML file ({' '.join(str(e).split())})") from None
    if not isinstance(from_file, (dict, type(None))):
        raise ValueError(f"--config {path}: expected option names and values, got a {type(from_file).__name__}")
    return from_file or {}


# What the checkpoint's network, gate optimiser, domain calibration and weight average were built for. Not --data:
# a dataset moved to another folder (or machine) is the same task.
RESUME_FIXED = ("norm", "gate", "width", "reduction", "ema")


def check_resumable(saved: Config, cfg: Config, iteration: int = 0) -> None:
    """ValueError naming each setting that --resume's checkpoint, written after `iteration`, cannot continue
    under."""
    if iteration > cfg.iters:  # it would train nothing and record a run of --iters that trained more
        raise ValueError(f"--resume {cfg.resume}: the checkpoint is at iteration {iteration}, past --iters "
                         f"{cfg.iters}: give --iters {iteration} or more")
    changed = [f"{_flag(n)} {getattr(saved, n)!r} -> {getattr(cfg, n)!r}"
               for n in RESUME_FIXED if getattr(saved, n) != getattr(cfg, n)]
    (was, was_target), (now, now_target) = saved.domains(), cfg.domains()
    if (was, was_target) != (now, now_target):
        changed.append(f"domains {''.join(was)}->{was_target} -> {''.join(now)}->{now_target}")
    # The checkpoint's evaluations, which best.pt is picked from, were scored on its held-out set.
    if saved.eval_every and saved.data == "synthetic" and saved.heldout_videos() != cfg.heldout_videos():
        changed.append(f"held-out source videos per class {saved.heldout_videos()} -> {cfg.heldout_videos()} "
                       f"(keep them with --heldout-videos-per-class {saved.heldout_videos()})")
    if changed:
        raise ValueError(f"--resume {cfg.resume}: the checkpoint's run cannot go on with other settings of its "
                         f"network, domains or model selection: {'; '.join(changed)}")


def dump(cfg: Config, path: str) -> None:
    write_text_atomic(path, yaml.safe_dump(asdict(cfg), sort_keys=False))
