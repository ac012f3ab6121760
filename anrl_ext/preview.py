"""`python -m anrl_ext.preview --data DATA --out preview.png`: the frames and depth targets the trainer reads.

A picture to check a dataset before training on it: for each domain, frames of a few live and a few
spoof videos as the trainer reads them (resized to --img-size, before augmentation), each above its
depth target (a live face's map, or the pseudo-depth where the data has none; zeros for a spoof).
Wrong labels, crops without faces, or a domain folder of the wrong dataset show at a glance. Takes
whatever --data the trainer takes: 'synthetic' (the default), a prepared root or SSDG's data_label
folder; --domains picks the domains (default: all four of the synthetic benchmark, or every domain
the folder holds). Prints each domain's count of live and spoof videos.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from . import checkpoint, cli, config, figures
from .data import ssdg
from .data.build import domains_in, eval_dataset

CLASSES = ((1, "live"), (0, "spoof"))
FORMATS = (".png", ".jpg", ".pdf", ".svg")


def pick_videos(records: List[dict], label: int, count: int) -> List[int]:
    """The first frame of `count` videos of one class, spread evenly over the class's videos in sorted order."""
    first: Dict[str, int] = {}
    for i, r in enumerate(records):
        if r["label"] == label:
            first.setdefault(r["video"], i)
    videos = sorted(first)
    if len(videos) > count:
        videos = [videos[j] for j in np.linspace(0, len(videos) - 1, count).round().astype(int)]
    return [first[v] for v in videos]


def preview(data: str = "synthetic", out: str = "preview.png", domains: str = "", videos: int = 4,
            img_size: int = 64, seed: int = 0) -> Dict[str, dict]:
    """Draw `videos` live and spoof videos of each domain into `out`; returns per domain the count of its
    live and spoof videos and the videos shown (live, then spoof)."""
    cfg = config.load(["--data", data, "--img-size", str(img_size), "--frames-per-video", "1", "--seed", str(seed)])
    names = list(domains) if domains else domains_in(data)
    if not names:
        raise FileNotFoundError(f"--data {data}: no domain found (prepared <letter>/real.txt and fake.txt, or "
                                f"SSDG's {', '.join(ssdg.FOLDERS.values())} folders of label lists)")
    rows, counts = [], {}
    for d in names:
        dataset = eval_dataset(cfg, [d])
        counts[d] = {name: len({r["video"] for r in dataset.records if r["label"] == label}) for label, name in CLASSES}
        print(f"domain {d}: {counts[d]['live']} live and {counts[d]['spoof']} spoof videos")
        shown = [(name, i) for label, name in CLASSES for i in pick_videos(dataset.records, label, videos)]
        counts[d]["shown"] = [dataset.records[i]["video"] for _, i in shown]
        rows.append((d, [(name, dataset.records[i]["video"], *dataset.load(i)) for name, i in shown]))
    _draw(rows, counts, out, videos)
    return counts


def _draw(rows, counts, out: str, videos: int) -> None:
    plt = figures.pyplot()

    cols = 2 * videos
    fig, axes = plt.subplots(2 * len(rows), cols, figsize=(1.3 * cols, 2.7 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for r, (domain, cells) in enumerate(rows):
        for c, (name, video, rgb, depth) in enumerate(cells):
            col = c if name == "live" else videos + c - sum(n == "live" for n, *_ in cells)
            top, bottom = axes[2 * r, col], axes[2 * r + 1, col]
            top.imshow(rgb)
            caption = video.split("/", 1)[-1][-20:]  # the video's folder below the domain, its end
            top.set_title(f"{name}\n{caption}", fontsize=6, color="green" if name == "live" else "firebrick")
            bottom.imshow(depth, cmap="gray", vmin=0, vmax=1)
        axes[2 * r, 0].text(-0.15, 0.5, f"{domain}\n{counts[domain]['live']} live\n{counts[domain]['spoof']} spoof",
                            transform=axes[2 * r, 0].transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle("frames as the trainer reads them (top) and their depth targets (bottom)", fontsize=9)
    fig.tight_layout()
    checkpoint.save_figure_atomic(fig, out, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = cli.parser("preview", __doc__.splitlines()[0])
    ap.add_argument("--data", default="synthetic", help="'synthetic', a prepared root or SSDG's data_label folder, "
                    "as python -m anrl_ext.train takes it (default: synthetic)")
    ap.add_argument("--out", default="preview.png", help=f"the picture ({', '.join(FORMATS)}; default: preview.png)")
    ap.add_argument("--domains", default="", help="domain letters, e.g. OCIM (default: every domain of --data)")
    ap.add_argument("--videos", type=cli.count, default=4, help="videos shown per class and domain (default: 4)")
    ap.add_argument("--img-size", type=cli.count, default=64, help="frame size in pixels, as the trainer's "
                    "--img-size (default: 64)")
    ap.add_argument("--seed", type=int, default=0, help="the synthetic data's seed (default: 0)")
    args = ap.parse_args(argv)
    if args.videos < 1 or args.img_size < 16:
        ap.error("--videos must be at least 1 and --img-size at least 16")
    cli.check_output(ap, "--out", args.out, formats=FORMATS)
    if args.domains:
        cli.domains(ap, args.data, args.domains)
    with cli.errors_exit(ap):
        counts = preview(args.data, args.out, args.domains, args.videos, args.img_size, args.seed)
    print(f"wrote {args.out}")
    return counts


if __name__ == "__main__":
    main()
