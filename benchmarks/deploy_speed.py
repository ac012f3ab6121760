"""Inference time of the ANRL model on the CPU: PyTorch on the fused and the reference backend, each also
under torch.compile, its torch.export program (.pt2, `python -m anrl_ext.export`), that program compiled by
AOTInductor (`--aoti`) and its ONNX model in ONNX Runtime.

    python benchmarks/deploy_speed.py [--checkpoint runs/anrl/checkpoint.pt] [--batch 1 32] [--threads 2]

Without --checkpoint: the default model (the trainer's defaults, 64 px, width 0.25) with its initial
weights; the time does not depend on the weights. Eval mode, no autograd; every variant on the same
input, rounds interleaved across the variants so that drift of the machine hits all alike; median of
the rounds' time per call. Writes the table to benchmarks/results/deploy_speed.md.
"""
import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from anrl_ext import config, export, provenance
from anrl_ext.model import ANRLNet
from anrl_ext.nn import set_backend
from anrl_ext.ops import fast_blend


def per_call(fn, x, calls):
    start = time.perf_counter()
    for _ in range(calls):
        fn(x)
    return (time.perf_counter() - start) / calls


def variants(scorer, img_size, folder, threads):
    """{name: run(x)} of the model's five deployment forms, the .pt2 program as exported before
    2026-12-07 (each layer as moments, the middle in small aten ops, and the map: `fast_blend.ENABLED`
    off while exporting), side by side with the one-op-per-layer program of today, the AOTInductor
    package of the model on the reference backend, and torch.compile (Inductor) of the model on either
    backend (the fused one's graph holds each layer's one op, since 2026-12-07)."""
    example = torch.zeros(2, 6, img_size, img_size)
    meta = {"img_size": img_size}
    export.to_pt2(scorer, example, meta, str(folder / "m.pt2"))
    fast_blend.ENABLED = False
    try:
        export.to_pt2(scorer, example, meta, str(folder / "composed.pt2"))
    finally:
        fast_blend.ENABLED = True
    export.to_pt2(scorer, example, meta, str(folder / "aoti.pt2"), aoti=True)
    export.to_onnx(scorer, example, meta, str(folder / "m.onnx"))
    reference = set_backend(copy.deepcopy(scorer), "reference")
    # Inductor's own code for the layers (batch_norm, instance_norm, the gate) instead of the package's ops
    export.to_pt2(reference, example, meta, str(folder / "aoti_reference.pt2"), aoti=True)
    return {"PyTorch, fused cpu backend": scorer, "PyTorch, reference backend": reference,
            "torch.compile, fused cpu backend": torch.compile(scorer),
            "torch.compile, reference backend": torch.compile(reference),
            "torch.export (.pt2)": export.load_exported(str(folder / "m.pt2"))[0],
            "torch.export (.pt2), composed layers": export.load_exported(str(folder / "composed.pt2"))[0],
            "AOTInductor (.pt2 --aoti)": export.load_exported(str(folder / "aoti.pt2"))[0],
            "AOTInductor, reference backend": export.load_exported(str(folder / "aoti_reference.pt2"))[0],
            "ONNX Runtime (.onnx)": export.load_exported(str(folder / "m.onnx"), threads)[0]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--checkpoint", default=None, help="a trained checkpoint (default: the default model)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="batch sizes to time")
    ap.add_argument("--threads", type=int, default=2, help="threads of torch and of ONNX Runtime")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default="benchmarks/results/deploy_speed.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        scorer, cfg, _ = export.load_scorer(args.checkpoint)
    else:
        cfg = config.Config()
        torch.manual_seed(0)
        scorer = export.LiveScorer(ANRLNet(cfg.width, cfg.norm, cfg.gate, reduction=cfg.reduction)).eval()
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        runs = variants(scorer, cfg.img_size, Path(tmp), args.threads)
        rows = []
        for n in args.batch:
            x = torch.randn(n, 6, cfg.img_size, cfg.img_size, generator=torch.Generator().manual_seed(n))
            calls = max(3, 64 // n)
            for run in runs.values():  # warm-up; the outputs must agree before anything is timed
                torch.testing.assert_close(run(x)[0], runs["PyTorch, fused cpu backend"](x)[0], rtol=1e-4, atol=1e-5)
            times = {name: [] for name in runs}
            for _ in range(args.rounds):
                for name, run in runs.items():
                    times[name].append(per_call(run, x, calls))
            fused = statistics.median(times["PyTorch, fused cpu backend"])
            for name, t in times.items():
                m = statistics.median(t)
                rows.append(f"| {n} | {name} | {1e3 * m:.2f} ms | {fused / m:.2f}x |")
    code = provenance.code_version()
    text = "\n".join([
        "`" + " ".join(["python benchmarks/deploy_speed.py", *(sys.argv[1:] if argv is None else argv)]) + "`", "",
        f"Model: {args.checkpoint or 'the default model, initial weights'} ({cfg.img_size} px, width {cfg.width}, "
        f"norm {cfg.norm}); {args.threads} threads; median of {args.rounds} interleaved rounds; torch "
        f"{torch.__version__}; commit {str(code['commit'])[:10]}.", "",
        "| batch | variant | time per batch | speed relative to the fused PyTorch model |", "|---|---|---|---|",
        *rows]) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
