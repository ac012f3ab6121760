"""`python -m anrl_ext.export --checkpoint FILE --out model.onnx|model.pt2`: a trained model for deployment.

The exported model takes a batch of the trainer's inputs, (N, 6, S, S) float32: RGB and HSV
(OpenCV's HSV_FULL) of an S x S face crop, each channel scaled to [-1, 1]
(`anrl_ext.data.transforms.rgb_hsv6`), S the checkpoint's --img-size; the batch size is free.
It returns (score, depth): the probability that each face is live (label 1), and the estimated
depth map (N, 1, S/8, S/8).

* `.onnx`: standard ONNX operators (the layers run on the reference backend for the export), for
  ONNX Runtime and the like; needs the onnx and onnxscript packages.
* `.pt2`: `torch.export` with the fused kernels, one operator per normalisation layer; load with
  `import anrl_ext` then `torch.export.load(path).module()`.
* `.pt2 --aoti`: that program compiled by AOTInductor into native code for this machine's CPU
  (needs a C++ compiler here); load with `import anrl_ext` then `torch._inductor.aoti_load_package(path)`,
  on a CPU with the instruction sets of this one (the package's AOTI_CPU_ISA metadata names them).

All carry the settings a deployment needs as metadata (ONNX metadata_props; the pt2 archive's
extra file `anrl_ext.json`; the AOTInductor package's metadata entry `anrl_ext.json`): the input
size and layout, the source-protocol threshold from the run's metrics.json when there is one
(chosen on held-out source subjects, no target data), and the code that made the model. After
writing, the file is loaded again and its outputs are compared with the PyTorch model's on a
random batch.
"""
from __future__ import annotations

import copy
import io
import json
import os
import tempfile
import zipfile

import torch
from torch import nn

from . import checkpoint, cli, config, provenance
from .errors import InputError, OptionError
from .model import ANRLNet
from .nn import set_backend

FORMATS = (".onnx", ".pt2")
PT2_METADATA = "anrl_ext.json"


class LiveScorer(nn.Module):
    """ANRLNet for deployment: (N, 6, S, S) -> (probability of live (N,), depth map (N, 1, S/8, S/8))."""

    def __init__(self, net: ANRLNet):
        super().__init__()
        self.net = net

    def forward(self, x):
        out = self.net(x)
        return torch.softmax(out["logits"].float(), 1)[:, 1], out["depth"]


def load_scorer(path: str) -> tuple[LiveScorer, config.Config, dict]:
    """The checkpoint's model in eval mode on the CPU, its config, and the metadata to ship with it."""
    state = checkpoint.load_run(path)
    cfg = config.from_checkpoint(state["config"], path)
    net = ANRLNet(cfg.width, cfg.norm, cfg.gate, "auto", cfg.reduction)
    checkpoint.load_weights(net, checkpoint.delivered_weights(state, path), path)
    meta = {"input": "float32 (N, 6, S, S): RGB and HSV (OpenCV HSV_FULL) of the face crop, each channel "
                     "scaled to [-1, 1] (anrl_ext.data.transforms.rgb_hsv6)",
            "img_size": cfg.img_size, "outputs": "score: probability of live (label 1), (N,); depth: (N, 1, S/8, S/8)",
            "trained_on": "".join(cfg.domains()[0]), "norm": cfg.norm, "code": provenance.code_version()}
    threshold = source_threshold(path, state)
    if threshold is not None:
        meta["threshold_source"] = threshold
        meta["threshold_note"] = ("score >= threshold_source: live; the EER threshold of held-out source "
                                  "subjects (the 'source' protocol of the run's evaluation of this model)")
    return LiveScorer(net).eval(), cfg, meta


def source_threshold(path: str, state: dict):
    """The source-protocol threshold of this very model, or None: from the evaluation the
    checkpoint carries (best.pt), else from the metrics.json next to it when that belongs to the
    checkpoint (not another run in the folder, nor, for one written mid-training, the finished run)."""
    carried = state.get("metrics", {}).get("source", {})
    if "threshold" in carried:
        return carried["threshold"]
    metrics = os.path.join(os.path.dirname(os.path.abspath(path)), "metrics.json")
    if not os.path.isfile(metrics):
        return None
    with open(metrics) as fh:
        run = json.load(fh)
    source = run.get("metrics", {}).get("source", {})
    same = run.get("iterations") == state.get("iteration") and run.get("config") == state["config"]
    return source["threshold"] if "threshold" in source and same else None


def _batch_dim():
    return torch.export.Dim("batch", min=1, max=4096)


def to_onnx(scorer: LiveScorer, example: torch.Tensor, meta: dict, out: str) -> None:
    try:
        import onnx  # noqa: F401  (the exporter's own dependencies: named here for a clear error)
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ImportError(f"ONNX export needs the onnx and onnxscript packages ({e}); "
                          "pip install onnx onnxscript, or export to .pt2") from e
    reference = set_backend(copy.deepcopy(scorer), "reference")  # standard operators only, no custom ops
    program = torch.onnx.export(reference, (example,), dynamo=True, verbose=False, input_names=["x"],
                                output_names=["score", "depth"], dynamic_shapes=({0: _batch_dim()},))
    proto = program.model_proto
    for key, value in meta.items():  # ONNX metadata values are strings: every value as JSON text
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    checkpoint.write_atomic(out, lambda fh: fh.write(proto.SerializeToString()))


def to_pt2(scorer: LiveScorer, example: torch.Tensor, meta: dict, out: str, aoti: bool = False) -> None:
    """The scorer as a torch.export program, or (aoti) that program compiled by AOTInductor."""
    program = torch.export.export(scorer, (example,), dynamic_shapes=({0: _batch_dim()},))
    buffer = io.BytesIO()
    if aoti:
        configs = {"aot_inductor.metadata": {PT2_METADATA: json.dumps(meta)}}
        with tempfile.TemporaryDirectory() as folder:  # a path: what every torch release's packager takes
            package = os.path.join(folder, "model.pt2")
            try:
                torch._inductor.aoti_compile_and_package(program, package_path=package, inductor_configs=configs)
            except Exception as e:  # most often no working C++ compiler; the remedy is the same
                why = " ".join(str(e).split())[:300]
                raise OptionError(f"--aoti: AOTInductor could not compile the program ({type(e).__name__}: {why}); "
                                  "it needs a working C++ compiler (g++ or clang++, or the one CXX names), "
                                  "or export without --aoti") from e
            with open(package, "rb") as fh:
                buffer.write(fh.read())
    else:
        torch.export.save(program, buffer, extra_files={PT2_METADATA: json.dumps(meta)})
    checkpoint.write_atomic(out, lambda fh: fh.write(buffer.getbuffer()))


def load_exported(path: str, threads: int | None = None):
    """(run, metadata) of an exported model file: run(x) -> (score, depth) as tensors, with ONNX Runtime for
    .onnx (on `threads` threads, default: its own choice), torch.export.load or, for an AOTInductor
    package, aoti_load_package for .pt2 (torch's threads); metadata as written, the same dict for all."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    try:  # whatever the runtime says of a file it cannot load, the user's fix is another file
        run, meta = _load_onnx(path, threads) if path.endswith(".onnx") else _load_pt2(path)
    except Exception as e:
        raise InputError(f"{path}: not a readable {os.path.splitext(path)[1]} model "
                         f"({type(e).__name__}: {' '.join(str(e).split())[:300]})") from e
    if "img_size" not in meta:
        raise InputError(f"{path} is not a model written by anrl_ext.export (it carries no anrl_ext metadata)")
    return run, meta


def _load_onnx(path: str, threads: int | None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run(x):
        return tuple(torch.from_numpy(t) for t in session.run(None, {"x": x.numpy()}))

    return run, {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}


def _load_pt2(path: str):
    if is_aoti_package(path):
        model = torch._inductor.aoti_load_package(path)
        return (lambda x: tuple(model(x))), json.loads(model.get_metadata().get(PT2_METADATA) or "{}")
    extra = {PT2_METADATA: ""}
    module = torch.export.load(path, extra_files=extra).module()
    return module, json.loads(extra[PT2_METADATA] or "{}")


def is_aoti_package(path: str) -> bool:
    """Whether a .pt2 file holds AOTInductor's compiled model rather than a torch.export program."""
    with zipfile.ZipFile(path) as archive:
        return any("/data/aotinductor/" in name for name in archive.namelist())


def run_exported(path: str, x: torch.Tensor):
    """(score, depth) of an exported model file on x."""
    return load_exported(path)[0](x)


def read_metadata(path: str) -> dict:
    """The metadata an exported file carries."""
    return load_exported(path)[1]


def main(argv=None):
    ap = cli.parser("export", __doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="checkpoint.pt written by anrl_ext.train")
    ap.add_argument("--out", required=True, help=f"output file, its format by the extension: {', '.join(FORMATS)}")
    ap.add_argument("--aoti", action="store_true",
                    help=".pt2 only: compile the program with AOTInductor into native code for this machine's CPU "
                         "(needs a C++ compiler; 10-30 s; run it on a CPU with this one's instruction sets)")
    ap.add_argument("--no-check", action="store_true", help="skip running the written file against PyTorch")
    args = ap.parse_args(argv)
    ext = os.path.splitext(cli.check_output(ap, "--out", args.out, formats=FORMATS))[1].lower()
    if args.aoti and ext != ".pt2":
        ap.error(f"--aoti compiles a .pt2 program; {args.out} is {ext}")
    with cli.errors_exit(ap):
        scorer, cfg, meta = load_scorer(args.checkpoint)
        example = torch.zeros(2, 6, cfg.img_size, cfg.img_size)
        try:
            if ext == ".onnx":
                to_onnx(scorer, example, meta, args.out)
            else:
                to_pt2(scorer, example, meta, args.out, aoti=args.aoti)
        except ImportError as e:  # the exporter's optional packages
            raise SystemExit(f"{ap.prog}: error: {e}") from None
    kind = " (AOTInductor package)" if args.aoti else ""
    print(f"wrote {args.out}{kind}: input (N, 6, {cfg.img_size}, {cfg.img_size}), outputs score (N,) and depth; "
          + (f"source-protocol threshold {meta['threshold_source']:.4f}" if "threshold_source" in meta
             else "no threshold (neither carried by the checkpoint nor in a metrics.json of it next to it)"))
    if not args.no_check:
        x = torch.randn(3, 6, cfg.img_size, cfg.img_size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            want = scorer(x)
            got = run_exported(args.out, x)
        err = max(float((g - w).abs().max()) for g, w in zip(got, want))
        if err > 1e-4:  # a model that scores otherwise than its checkpoint is not left to be used
            os.remove(args.out)
            raise SystemExit(f"{ap.prog}: error: {args.out}: the exported model differs from the checkpoint's by "
                             f"{err:.2e}; removed it (--no-check keeps it)")
        print(f"checked: on a random batch of 3 the exported model matches PyTorch to {err:.1e}")
    return args.out


if __name__ == "__main__":
    main()
