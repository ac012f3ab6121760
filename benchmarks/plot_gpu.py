"""Bar chart of a GPU benchmark table (forward + backward of the op, per shape).

    python benchmarks/plot_gpu.py benchmarks/results/gpu-h200-20261128-run3/gpu_bench.csv docs/gpu_bench.png
"""
import argparse
import csv
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ORDER = ["cuda", "triton", "cuda_chain", "triton_chain", "reference", "compiled_reference"]
LABELS = {"cuda": "cuda", "triton": "triton", "cuda_chain": "cuda, middle as small ops",
          "triton_chain": "triton, middle as small ops", "reference": "eager reference",
          "compiled_reference": "torch.compile(reference)"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("png")
    args = ap.parse_args()
    times = defaultdict(dict)  # (dtype, shape) -> impl -> ms
    gpu = ""
    with open(args.csv) as fh:
        for row in csv.DictReader(fh):
            if row["what"] == "op":
                times[(row["dtype"], row["shape"])][row["impl"]] = float(row["forward_backward_ms"])
                gpu = row["gpu"]
    dtypes = sorted({d for d, _ in times}, key=lambda d: d != "float32")
    fig, axes = plt.subplots(1, len(dtypes), figsize=(6.5 * len(dtypes), 4.6), sharey=True)
    axes = axes if len(dtypes) > 1 else [axes]
    for ax, dtype in zip(axes, dtypes):
        shapes = [s for d, s in times if d == dtype]
        impls = [i for i in ORDER if any(i in times[(dtype, s)] for s in shapes)]
        width = 0.8 / len(impls)
        for k, impl in enumerate(impls):
            xs = [j + (k - (len(impls) - 1) / 2) * width for j in range(len(shapes))]
            ax.bar(xs, [times[(dtype, s)].get(impl, 0) for s in shapes], width, label=LABELS.get(impl, impl))
        ax.set_xticks(range(len(shapes)), [s.replace("x", " x ") for s in shapes], fontsize=8)
        ax.set_title(f"{dtype}, forward + backward")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("ms (CUDA events, median)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(f"AFNM op on {gpu}: lower is better")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(args.png, dpi=110)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
