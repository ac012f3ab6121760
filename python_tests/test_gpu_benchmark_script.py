"""benchmarks/run_gpu.py runs every section to the end (on the CPU, tiny, `--smoke`).

The script's real run is on a lent GPU with minutes of device time; a Python
error in a section found there costs that section's numbers. This runs the
same code on CPU tensors with the cpu backend and checks the CSV holds a row
of every kind. The numbers themselves mean nothing here.
"""
import csv
import gzip
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_side_by_side

ROOT = Path(__file__).parent.parent

# the gated middle's two launches forced (one block / program; per phase): cuda and Triton (cpu in --smoke)
FORCED_GATE_LAUNCHES = {"gated_middle_kernels_one_block", "gated_middle_kernels_per_phase"}
SECTIONS = {"op", "afnm_layer", "op_backward_same_thread", "op_host_time", "op_profile", "op_pipelined", "op_compiled",
            "op_graphed", "afnm_layer_graphed", "middle_kernels", "gated_middle_kernels", *FORCED_GATE_LAUNCHES,
            "primitive_kernels", "primitive_bandwidth", "primitive_bandwidth_channels_last"}


# run_gpu.py --sections for the interpreted Triton smoke test in two processes of about equal time (seconds
# of each section, measured on 2026-12-07: op 109, pipelined 99, host 81, graph 45, profile 42, layer 37,
# thread 18, bandwidth 5, middle 2, primitive 2)
TRITON_SECTION_GROUPS = (["op", "pipelined", "middle", "primitive", "bandwidth"],
                         ["host", "graph", "profile", "layer", "thread", "compiled"])


def run_smoke(tmp_path, backends, env=None, section_groups=None):
    """run_gpu.py --smoke on the CPU: the rows of its CSV. section_groups: lists of --sections, each in
    its own process, side by side (the interpreted Triton sections take minutes of one core each);
    otherwise one process, writing to tmp_path."""
    argv = [sys.executable, "benchmarks/run_gpu.py", "--device", "cpu", "--backends", *backends, "--smoke"]
    if section_groups is None:
        outs, runs = [tmp_path], [(argv + ["--out", str(tmp_path)], env, ROOT)]
    else:
        outs = [tmp_path / f"group_{k}" for k in range(len(section_groups))]
        runs = [(argv + ["--out", str(out), "--sections", *group], env, ROOT)
                for out, group in zip(outs, section_groups)]
    rows = []
    for out, (argv, _, _), (returncode, log) in zip(outs, runs, run_side_by_side(runs, tmp_path, timeout=900)):
        # a section's failure, reported as "  <what> failed..." (--smoke raises on one, too)
        assert returncode == 0 and not re.search(r"^  .* failed", log, re.M), " ".join(argv[2:]) + "\n" + log[-6000:]
        with open(out / "gpu_bench.csv") as fh:
            rows += list(csv.DictReader(fh))
    return rows


def test_sections_choose_the_parts(tmp_path):
    """--sections runs those parts only, --append adds their rows to the CSV's (gpu_check.sh runs the table
    in two parts), and an unknown section is a usage error naming the choices."""
    def run(*sections, append=False):
        proc = subprocess.run([sys.executable, "benchmarks/run_gpu.py", "--device", "cpu", "--backends", "cpu",
                               "--smoke", "--out", str(tmp_path), "--sections", *sections]
                              + (["--append"] if append else []), cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        with open(tmp_path / "gpu_bench.csv") as fh:
            return sorted(r["what"] for r in csv.DictReader(fh))

    thread = run("thread")
    assert set(thread) == {"op_backward_same_thread"}
    both = run("primitive", append=True)
    assert set(both) == {"op_backward_same_thread", "primitive_kernels"}
    assert both.count("op_backward_same_thread") == len(thread)  # the first part's rows kept, once
    assert not list(tmp_path.glob("*.part"))
    assert set(run("thread", "primitive")) == set(both) and run("thread") == thread  # without --append: replaced
    proc = subprocess.run([sys.executable, "benchmarks/run_gpu.py", "--sections", "op", "tabel"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "invalid choice: 'tabel'" in proc.stderr and "graph" in proc.stderr, proc.stderr


def test_every_section_runs_on_cpu(tmp_path):
    rows = run_smoke(tmp_path, ["cpu"])
    assert {r["what"] for r in rows} == SECTIONS
    op_impls = {r["impl"] for r in rows if r["what"] == "op"}
    assert op_impls == {"cpu", "cpu_python_function", "cpu_separate", "cpu_chain", "reference"}
    assert {r["impl"] for r in rows if r["what"] == "afnm_layer"} == {"cpu", "cpu_python_function", "cpu_gate_torch",
                                                                      "cpu_chain", "reference"}
    for layout in ("", "_channels_last"):
        kernels = {r["impl"] for r in rows if r["what"] == "primitive_bandwidth" + layout}
        assert kernels == {f"cpu:{k}" for k in ("moments", "reduce", "affine", "affine2")}
    parts = {r["impl"]: float(r["forward_ms"]) for r in rows if r["what"] == "op_host_time"}
    python_function = ("cpu_python_function", "cpu_python_function_same_thread")
    assert set(parts) == {f"{impl}:{part}" for impl in ("cpu", "cpu_same_thread") for part in ("forward", "backward")} \
        | {f"{impl}:{part}" for impl in python_function
           for part in ("forward", "backward", "handover", "in_backward", "after_backward")}
    for impl in python_function:  # the three parts of one grad call add up to it (each rounded to 1e-4 ms)
        inside = sum(parts[f"{impl}:{p}"] for p in ("handover", "in_backward", "after_backward"))
        assert 0 < parts[f"{impl}:in_backward"] and abs(inside - parts[f"{impl}:backward"]) <= 3e-4, parts
    assert {r["impl"] for r in rows if r["what"] == "op_pipelined"} == {"cpu", "cpu_python_function", "reference"}
    assert {r["impl"] for r in rows if r["what"] == "op_compiled"} == {"cpu", "cpu_composed", "cpu_eager"}
    assert {r["impl"] for r in rows if r["what"] == "op_graphed"} == {"cpu", "reference"}
    assert {r["impl"] for r in rows if r["what"] == "afnm_layer_graphed"} == {"afnm_layer_cpu"}
    profiled = {r["impl"]: float(r["forward_ms"]) for r in rows if r["what"] == "op_profile"}
    profiled_impls = {"cpu": "blend_apply_forward", "cpu_python_function": "blend_apply_forward",
                      "afnm_layer_cpu": "gate_blend_apply"}  # -> an operator its trace must show
    assert set(profiled) == {f"{impl}:{part}" for impl in profiled_impls
                             for part in ("host", "handover", "gpu_busy", "gpu_span", "gpu_idle")}
    for impl, op in profiled_impls.items():  # no GPU and no device thread here: only the host time
        assert profiled[f"{impl}:host"] > 0 and math.isnan(profiled[f"{impl}:handover"]), profiled
        with gzip.open(tmp_path / f"profile_{impl}.json.gz") as fh:
            names = {e.get("name") for e in json.load(fh)["traceEvents"]}
        assert {"op call 0", "grad call 0", f"anrl_ext::{op}"} <= names, impl
        assert "Self CPU" in (tmp_path / f"profile_{impl}.txt").read_text()
    for r in rows:
        if r["what"] in ("op_pipelined", "op_compiled", "op_graphed", "afnm_layer_graphed"):
            assert float(r["forward_backward_ms"]) > 0 and 0 < float(r["fb_bandwidth_fraction"]), r
        if r["what"] in ("op", "primitive_bandwidth", "primitive_bandwidth_channels_last"):
            assert float(r["forward_ms"]) > 0 and 0 < float(r["fb_bandwidth_fraction"]), r


def test_every_section_runs_with_triton_interpreted(tmp_path):
    """The triton rows (direct path, registered ops, the fold) on CPU tensors under
    TRITON_INTERPRET=1, set in the child before triton is imported."""
    pytest.importorskip("triton")
    rows = run_smoke(tmp_path, ["triton"], dict(os.environ, TRITON_INTERPRET="1"), TRITON_SECTION_GROUPS)
    assert {r["what"] for r in rows} == SECTIONS
    assert {r["impl"] for r in rows if r["what"] == "primitive_kernels"} == {"triton", "triton_op"}
    assert {r["impl"] for r in rows if r["what"] == "op_compiled"} == {"triton", "triton_eager"}
    assert {r["impl"] for r in rows if r["what"] == "afnm_layer"} == {"triton", "triton_python_function",
                                                                      "triton_gate_torch", "triton_chain", "reference"}
    # the fold kernels one plane block a program, as before 2026-12-06, side by side
    assert {r["impl"] for r in rows if r["what"] == "op_graphed"} == {"triton", "triton_one_plane_block", "reference"}
    for layout in ("", "_channels_last"):  # the Welford moments of before 2026-12-06 side by side
        kernels = {r["impl"] for r in rows if r["what"] == "primitive_bandwidth" + layout}
        # channels_last: the reduce variant loading a part at once, at 8 and 16 warps
        variants = ("reduce_part_at_once", "reduce_part_at_once_16w") if layout else ()
        assert kernels == {f"triton:{k}" for k in ("moments", "moments_welford", "reduce", "affine", "affine2",
                                                   *variants)}
