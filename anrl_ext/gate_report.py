"""`python -m anrl_ext.gate_report --checkpoint FILE`: where a trained network leans to BN or to IN.

For every blend layer (AFNM, and the BN / IN / half / BIN / IBN baselines),
the blend weight alpha (1 = BatchNorm, 0 = InstanceNorm) averaged over the
frames of each domain, live and spoof apart, in eval mode: which layers
normalise each sample by its own statistics and which by the batch's, and
whether AFNM's choice moves with the domain (the point of a per-sample gate).
For gates with a hidden layer (AFNM's paper and sigmoid2 gates) it also
counts the hidden units that are positive on at least one frame: a gate
whose units are all 0 passes no gradient to its weights and stays where it
is. Writes a JSON table (`gates.json`: per layer, domain and class the mean
alpha, its spread over frames and the per-channel means; per layer the live
hidden units) and a plot (`gates.png`), and prints the table.
"""
from __future__ import annotations

import argparse
import json
import os
from contextlib import contextmanager
from typing import Dict, List

import torch

from . import checkpoint, cli, figures
from .data.prefetch import in_batches
from .data.build import eval_dataset
from .nn import BlendNorm2d

CLASSES = {1: "live", 0: "spoof"}


@contextmanager
def recording_alpha(model: torch.nn.Module):
    """Within the block, every forward of a blend layer appends its alpha (N, C), float32 on the CPU,
    to `records["alpha"][layer name]`, and for a gate with a hidden layer (AFNM's paper and sigmoid2
    gates) which hidden units are positive (N, d) to `records["hidden"][layer name]`; the layers'
    outputs are unchanged."""
    records: Dict[str, Dict[str, List[torch.Tensor]]] = {"alpha": {}, "hidden": {}}
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, BlendNorm2d)]

    def recorder(name, module):
        method = type(module).forward
        hidden = getattr(getattr(module, "gate", None), "hidden", None)

        def forward(x, return_alpha=False):
            y, alpha = method(module, x, return_alpha=True)
            records["alpha"].setdefault(name, []).append(alpha.detach().float().cpu())
            if hidden is not None:  # the gate's input S is the per-sample channel mean (eq. 1)
                z = hidden(x.detach().float().mean((2, 3)))
                records["hidden"].setdefault(name, []).append((z > 0).cpu())
            return (y, alpha) if return_alpha else y
        return forward

    for name, m in layers:
        m.forward = recorder(name, m)  # an instance attribute shadows the class's forward
    try:
        yield records
    finally:
        for _, m in layers:
            del m.forward


def layer_table(model: torch.nn.Module) -> List[dict]:
    """Name, kind and channel count of every blend layer, in forward order of definition."""
    return [dict(name=name, kind=type(m).__name__, channels=m.num_features)
            for name, m in model.named_modules() if isinstance(m, BlendNorm2d)]


def summarise(alpha: torch.Tensor) -> dict:
    """mean alpha, its standard deviation over frames (of the per-frame channel mean), per-channel means."""
    per_frame = alpha.mean(1)
    return dict(frames=int(alpha.shape[0]), mean=float(alpha.mean()),
                frame_std=float(per_frame.std(unbiased=False)), channel_means=alpha.mean(0).tolist())


def gate_statistics(trainer, datasets: Dict[str, object], batch: int = 64, progress=None) -> dict:
    """alpha of every blend layer of `trainer.model` over the frames of each dataset in
    `datasets` (domain letter -> dataset; eval mode, the trainer's precision and memory format):
    {"layers": [...], "domains": {d: {"live": {layer: summary}, "spoof": {...}}}}."""
    model = trainer.model
    layers = layer_table(model)
    if not layers:
        raise ValueError("the network has no blend layers (AFNM, BN, IN, half, BIN, IBN) to inspect")
    model.eval()
    result = {"layers": layers, "domains": {}}
    live: Dict[str, torch.Tensor] = {}
    for d, dataset in datasets.items():
        per_layer: Dict[str, torch.Tensor] = {}
        labels = []
        with torch.no_grad(), recording_alpha(model) as records:
            for items in in_batches(dataset, batch, trainer.cfg.loader_threads):
                trainer.forward(items["image"].to(trainer.device))
                labels.append(items["label"])
                if progress:
                    progress(len(labels[-1]))
        for name, chunks in records["alpha"].items():
            per_layer[name] = torch.cat(chunks)
        y = torch.cat(labels)
        result["domains"][d] = {cls: {name: summarise(a[y == label]) for name, a in per_layer.items()}
                                for label, cls in CLASSES.items() if bool((y == label).any())}
        for name, chunks in records["hidden"].items():  # units positive on at least one frame of d
            live.setdefault(name, torch.zeros(chunks[0].shape[1], dtype=torch.bool))
            live[name] |= torch.cat(chunks).any(0)
    for layer in layers:
        if layer["name"] in live:
            layer.update(hidden_units=len(live[layer["name"]]), live_hidden_units=int(live[layer["name"]].sum()))
    return result


def short_name(layer: str) -> str:
    """'extractor.blocks.0.1.1' -> 'blocks.0.1': the conv block that the norm layer belongs to."""
    name = layer.removeprefix("extractor.")
    return name.removesuffix(".1") if name.count(".") else name


def channel_alpha(stats: dict, layer: str, domains=None) -> List[float]:
    """A layer's per-channel mean alpha over the given domains (default all), every (domain, class)
    weighing the same."""
    groups = [by_class[layer]["channel_means"] for d, classes in stats["domains"].items()
              if domains is None or d in domains for by_class in classes.values()]
    return [sum(c) / len(c) for c in zip(*groups)]


def domain_gap(stats: dict, layer: str) -> float:
    """The largest difference of one channel's mean alpha between two domains of the report."""
    per_domain = [channel_alpha(stats, layer, [d]) for d in stats["domains"]]
    return max(max(c) - min(c) for c in zip(*per_domain))


def frame_spread(stats: dict, layer: str) -> float:
    """A layer's spread of alpha over frames (frame_std), averaged over the (domain, class) groups."""
    groups = [by_class[layer]["frame_std"] for classes in stats["domains"].values() for by_class in classes.values()]
    return sum(groups) / len(groups)


def plot(stats: dict, path: str, target: str = None, title: str = "") -> None:
    """Left: mean alpha per layer, a colour per domain, live solid, spoof dashed, the band spanning the
    channels' mean alphas. Right: how much alpha moves with the domain (the largest difference of a
    channel's mean alpha between two domains) and from frame to frame (spread over frames)."""
    plt = figures.pyplot()

    names = [layer["name"] for layer in stats["layers"]]
    xs = range(len(names))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(max(10.0, 1.1 * len(names) + 3), 4.2),
                                  gridspec_kw={"width_ratios": [3, 2]})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    per_channel = [channel_alpha(stats, n) for n in names]
    ax.fill_between(xs, [min(c) for c in per_channel], [max(c) for c in per_channel], color="0.85",
                    label="channels' range")
    for k, (d, by_class) in enumerate(stats["domains"].items()):
        for cls, style in (("live", "-"), ("spoof", "--")):
            if cls in by_class:
                label = f"{d}{' (target)' if d == target else ''} {cls}"
                ax.plot(xs, [by_class[cls][n]["mean"] for n in names], style, marker="o", ms=3,
                        color=colours[k % len(colours)], label=label)
    ax.axhline(0.5, color="0.6", lw=0.8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("mean alpha (1 = BN, 0 = IN)")
    ax.set_title(title or "blend weight per layer", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    gap = [domain_gap(stats, n) for n in names]
    spread = [frame_spread(stats, n) for n in names]
    ax2.bar([x - 0.2 for x in xs], [max(v, 1e-7) for v in gap], 0.4, label="largest domain difference of a channel")
    ax2.bar([x + 0.2 for x in xs], [max(v, 1e-7) for v in spread], 0.4, label="spread over frames (std)")
    ax2.set_yscale("log")
    ax2.set_ylim(1e-7, 1)
    ax2.set_title("how much alpha adapts", fontsize=9)
    ax2.legend(fontsize=7)
    for a in (ax, ax2):
        a.set_xticks(list(xs))
        a.set_xticklabels([short_name(n) for n in names], rotation=45, ha="right", fontsize=7)
    fig.tight_layout()
    checkpoint.save_figure_atomic(fig, path, dpi=130)
    plt.close(fig)


def format_table(stats: dict) -> str:
    """One row per layer, one column per domain and class: mean alpha."""
    cols = [(d, cls) for d, by_class in stats["domains"].items() for cls in by_class]
    width = max(len(layer["name"]) for layer in stats["layers"])
    lines = [f"{'layer':{width}}  C    live/hidden " + "  ".join(f"{d + ' ' + cls:>9}" for d, cls in cols)]
    for layer in stats["layers"]:
        n = layer["name"]
        units = f"{layer['live_hidden_units']}/{layer['hidden_units']}" if "hidden_units" in layer else "-"
        lines.append(f"{n:{width}}  {layer['channels']:<4} {units:>11} "
                     + "  ".join(f"{stats['domains'][d][cls][n]['mean']:9.3f}" for d, cls in cols))
    return "\n".join(lines)


def main(argv=None):
    ap = cli.parser("gate_report", __doc__.splitlines()[0])
    cli.add_checkpoint_arguments(ap)
    ap.add_argument("--domains", default=None, help="domain letters, e.g. OCIM (default: the run's sources "
                                                    "and target)")
    ap.add_argument("--out", default=None, help="JSON path; the plot goes next to it as .png "
                                                "(default: gates.json beside the checkpoint)")
    args = ap.parse_args(argv)
    if args.out:
        cli.check_output(ap, "--out", args.out)
    with cli.errors_exit(ap):
        return _report(ap, args)


def _report(ap: argparse.ArgumentParser, args: argparse.Namespace):
    from tqdm import tqdm

    from .train import trainer_from_checkpoint

    trainer, state = trainer_from_checkpoint(args.checkpoint, args.data, args.device, args.loader_threads)
    out = args.out or cli.check_output(ap, "the default --out", os.path.join(
        os.path.dirname(os.path.abspath(args.checkpoint)), "gates.json"))  # before the scoring
    cfg = trainer.cfg
    sources, target = cfg.domains()
    domains = cli.domains(ap, cfg.data, args.domains) if args.domains else [*sources, target]
    datasets = {d: eval_dataset(cfg, [d]) for d in domains}
    with tqdm(total=sum(map(len, datasets.values())), desc="alpha per domain", unit="frame", disable=None) as bar:
        stats = gate_statistics(trainer, datasets, progress=bar.update)
    stats.update(checkpoint=os.path.abspath(args.checkpoint), iteration=state.get("iteration"), target=target)
    checkpoint.write_text_atomic(out, json.dumps(stats, indent=1))
    png = os.path.splitext(out)[0] + ".png"
    plot(stats, png, target, title=f"{''.join(sources)} -> {target}, norm={cfg.norm}, "
                                    f"iteration {state.get('iteration')} (eval mode)")
    print(format_table(stats))
    print(f"wrote {out} and {png}")
    return stats


if __name__ == "__main__":
    main()
