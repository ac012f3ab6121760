"""Built-in synthetic multi-domain face anti-spoofing benchmark.

Procedural live and spoof "faces" in four domains named after the public
datasets they stand in for (O, C, I, M), so the usual leave-one-out
protocols (OCI-M, OMI-C, OCM-I, ICM-O) run unchanged. Deterministic by seed,
no download.

Live: a shaded face (ellipse, eyes, brows, nose, mouth) with skin texture;
its pseudo-depth map is the height of an ellipsoid over the face.
Spoof, two kinds (depth map all zeros):
  print:  reduced colour gamut, halftone dot pattern, paper fibre texture,
          a flat (not ellipsoidal) shading;
  replay: moire bands, a visible screen pixel grid, specular glare.
Domain nuisances: camera colour response (3x3 matrix + gamma), illumination
direction and level, sensor noise, blur / down-sampling, JPEG quality,
background. Each domain draws them from its own ranges, so a detector that
learns one domain's nuisances does not transfer: a true domain shift.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import cv2
import numpy as np

DOMAINS = ("O", "C", "I", "M")


@dataclass(frozen=True)
class DomainStyle:
    color: Tuple[Tuple[float, float, float], ...]  # camera colour matrix rows
    gamma: float
    light: Tuple[float, float]  # illumination level range
    noise: float  # sensor noise std (0..1 scale)
    blur: float  # gaussian blur sigma at 256 px
    down: float  # down-sampling factor before re-upsampling (resolution)
    jpeg: Tuple[int, int]  # JPEG quality range
    background: Tuple[float, float, float]  # mean background colour
    spoof_strength: float  # how visible the spoof artefacts are in this domain
    replay_share: float  # fraction of spoofs that are replays (the rest are prints)


STYLES: Dict[str, DomainStyle] = {
    "O": DomainStyle(((1.05, 0.05, 0.0), (0.0, 1.0, 0.0), (0.0, 0.05, 0.9)), 0.9, (0.9, 1.1),
                     0.01, 0.6, 1.0, (85, 95), (0.35, 0.35, 0.4), 0.9, 0.5),
    "C": DomainStyle(((0.85, 0.1, 0.05), (0.05, 0.95, 0.1), (0.1, 0.1, 1.15)), 1.15, (0.6, 0.9),
                     0.05, 1.4, 2.0, (55, 75), (0.55, 0.5, 0.45), 0.7, 0.3),
    "I": DomainStyle(((1.1, 0.0, 0.0), (0.1, 1.05, 0.0), (0.0, 0.0, 0.8)), 1.0, (1.0, 1.3),
                     0.03, 0.9, 1.5, (65, 85), (0.2, 0.25, 0.2), 0.8, 0.7),
    "M": DomainStyle(((0.95, 0.05, 0.0), (0.0, 0.9, 0.1), (0.05, 0.0, 1.05)), 1.25, (0.7, 1.2),
                     0.02, 1.8, 2.5, (45, 70), (0.5, 0.35, 0.3), 0.6, 0.5),
}


def _grid(size: int):
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return (xs + 0.5) / size * 2 - 1, (ys + 0.5) / size * 2 - 1


def _face(rng: np.random.Generator, size: int):
    """An RGB face in [0, 1] on a transparent background, its mask and its height map."""
    x, y = _grid(size)
    cx, cy = rng.uniform(-0.08, 0.08, 2)
    ax, ay = rng.uniform(0.48, 0.6), rng.uniform(0.62, 0.75)
    r2 = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2
    mask = (r2 < 1).astype(np.float32)
    height = np.sqrt(np.clip(1 - r2, 0, 1)) * mask
    skin = np.array([rng.uniform(0.55, 0.9), rng.uniform(0.4, 0.7), rng.uniform(0.3, 0.55)], np.float32)
    img = np.ones((size, size, 3), np.float32) * skin
    img *= (1 + 0.04 * rng.standard_normal((size, size, 1)).astype(np.float32))  # skin texture
    # eyes, brows, mouth, nose shadow
    for sx in (-1, 1):
        ex, ey = cx + sx * ax * 0.38, cy - ay * 0.2
        eye = ((x - ex) / (ax * 0.14)) ** 2 + ((y - ey) / (ay * 0.06)) ** 2 < 1
        img[eye] = np.array([0.95, 0.95, 0.95]) * 0.9
        pupil = ((x - ex) / (ax * 0.06)) ** 2 + ((y - ey) / (ay * 0.05)) ** 2 < 1
        img[pupil] = rng.uniform(0.05, 0.3, 3)
        brow = (np.abs(y - (ey - ay * 0.12)) < ay * 0.025) & (np.abs(x - ex) < ax * 0.17)
        img[brow] *= 0.35
    mouth = ((x - cx) / (ax * 0.3)) ** 2 + ((y - cy - ay * 0.45) / (ay * 0.06)) ** 2 < 1
    img[mouth] = np.array([0.6, 0.2, 0.25]) * rng.uniform(0.7, 1.1)
    nose = (np.abs(x - cx - ax * 0.05) < ax * 0.04) & (y > cy - ay * 0.1) & (y < cy + ay * 0.2)
    img[nose] *= 0.8
    return img, mask, height


def _shade(img, height, mask, rng, flat: bool, level: float):
    """Lambertian-style shading from a random light direction; flat for prints."""
    x, y = _grid(img.shape[0])
    lx, ly = rng.uniform(-0.7, 0.7, 2)
    if flat:
        shade = 0.85 + 0.15 * (lx * x + ly * y)
    else:
        gy, gx = np.gradient(height * 6)
        shade = np.clip(0.75 + 0.6 * (height * 0.4 - lx * gx - ly * gy), 0.2, 1.5)
    shade = np.where(mask > 0, shade, 1.0)
    return img * shade[..., None] * level


def _print_artifacts(img, rng, strength):
    size = img.shape[0]
    x, y = _grid(size)
    # reduced gamut: pull colours toward their mean and lift blacks
    img = img.mean(2, keepdims=True) * 0.35 * strength + img * (1 - 0.35 * strength)
    img = 0.08 * strength + img * (1 - 0.12 * strength)
    period = rng.uniform(3.0, 5.0) / 256 * 2
    theta = rng.uniform(0, np.pi)
    u = (x * np.cos(theta) + y * np.sin(theta)) / period
    v = (-x * np.sin(theta) + y * np.cos(theta)) / period
    dots = (np.cos(2 * np.pi * u) * np.cos(2 * np.pi * v)).astype(np.float32)
    img = img * (1 + 0.12 * strength * dots[..., None])
    fibre = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 1.5)
    return img * (1 + 0.15 * strength * fibre[..., None])


def _replay_artifacts(img, rng, strength):
    size = img.shape[0]
    x, y = _grid(size)
    f1, f2 = rng.uniform(8, 20, 2)
    a = rng.uniform(0, np.pi)
    moire = np.sin(f1 * (x * np.cos(a) + y * np.sin(a)) + f2 * x * y).astype(np.float32)
    img = img * (1 + 0.12 * strength * moire[..., None])
    pitch = max(2, int(round(size / 256 * rng.integers(3, 5))))
    grid = np.ones((size, size, 3), np.float32)
    grid[::pitch, :, :] *= 1 - 0.35 * strength
    grid[:, ::pitch, :] *= 1 - 0.35 * strength
    sub = np.arange(size) % 3
    for ch in range(3):  # RGB sub-pixel stripes
        grid[:, sub == ch, ch] *= 1 + 0.15 * strength
    img = img * grid
    gx, gy = rng.uniform(-0.6, 0.6, 2)
    glare = np.exp(-(((x - gx) ** 2 + (y - gy) ** 2) / rng.uniform(0.02, 0.08))).astype(np.float32)
    return img + 0.6 * strength * glare[..., None]


def _camera(img, rng, style: DomainStyle, size: int):
    m = np.array(style.color, np.float32) * rng.uniform(0.95, 1.05, (3, 3)).astype(np.float32)
    img = np.clip(img @ m.T, 0, None) ** style.gamma
    if style.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), style.blur * size / 256 + 1e-3)
    if style.down > 1:
        small = max(4, int(size / style.down))
        img = cv2.resize(cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA), (size, size),
                         interpolation=cv2.INTER_LINEAR)
    img = img + style.noise * rng.standard_normal(img.shape).astype(np.float32)
    u8 = np.clip(img * 255, 0, 255).astype(np.uint8)
    q = int(rng.integers(style.jpeg[0], style.jpeg[1] + 1))
    ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()


def check_domain(domain: str) -> None:
    """ValueError unless `domain` is one of the benchmark's letters."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown synthetic domain {domain!r}; choose from {', '.join(DOMAINS)}")


def _subject(rng: np.random.Generator, style: DomainStyle, live: bool, size: int):
    """A video's first draws: its face (image, mask, height), light level and attack kind ("live" if live)."""
    face, mask, height = _face(rng, size)
    level = rng.uniform(*style.light)
    kind = "live" if live else ("replay" if rng.uniform() < style.replay_share else "print")
    return face, mask, height, level, kind


def attack_kind(domain: str, video_seed: int, size: int = 256) -> str:
    """The attack kind ("print" or "replay") of a spoof video, as render() draws it (at the same size)."""
    check_domain(domain)
    return _subject(np.random.default_rng(video_seed), STYLES[domain], False, size)[-1]


def render(domain: str, live: bool, video_seed: int, frame_seed: int = 0, size: int = 256,
           depth_size: int = 32):
    """One frame: (RGB uint8 HxWx3, depth float32 depth_size^2 in [0, 1], attack kind).

    The subject, attack and scene come from `video_seed`; the camera's noise,
    compression and colour jitter from `frame_seed`, so frames of a video differ
    the way video frames do.
    """
    check_domain(domain)
    style = STYLES[domain]
    rng = np.random.default_rng(video_seed)
    face, mask, height, level, kind = _subject(rng, style, live, size)
    img = _shade(face, height, mask, rng, flat=not live, level=level)
    bg = np.array(style.background, np.float32) * rng.uniform(0.7, 1.3, 3).astype(np.float32)
    x, y = _grid(size)
    bg_img = bg * (1 + 0.2 * np.sin(rng.uniform(2, 6) * x + rng.uniform(0, 6)))[..., None]
    img = img * mask[..., None] + bg_img * (1 - mask[..., None])
    if kind == "print":
        img = _print_artifacts(img, rng, style.spoof_strength)
    elif kind == "replay":
        img = _replay_artifacts(img, rng, style.spoof_strength)
    rgb = _camera(img, np.random.default_rng([video_seed, frame_seed]), style, size)
    depth = cv2.resize(height, (depth_size, depth_size), interpolation=cv2.INTER_AREA) if live \
        else np.zeros((depth_size, depth_size), np.float32)
    return rgb, depth.astype(np.float32), kind


@dataclass
class SyntheticSpec:
    """How many subjects / videos / frames each synthetic domain has."""

    videos_per_class: int = 24
    frames_per_video: int = 4
    size: int = 64
    depth_size: int = 8
    seed: int = 0


def domain_records(domain: str, spec: SyntheticSpec) -> List[dict]:
    """The sample records of one domain: video id, frame seed, label (1 = live)."""
    check_domain(domain)
    d = DOMAINS.index(domain)
    records = []
    for label in (1, 0):
        for v in range(spec.videos_per_class):
            video = f"{domain}/{'live' if label else 'spoof'}_{v:03d}"
            seed = ((spec.seed * 1_000_003 + d) * 7919 + label) * 104_729 + v
            for f in range(spec.frames_per_video):
                records.append({"domain": domain, "video": video, "label": label, "video_seed": seed,
                                "frame_seed": f})
    return records
