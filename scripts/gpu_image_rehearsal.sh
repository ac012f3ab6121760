#!/usr/bin/env bash
# Rehearse the lent GPU machine's software stack here, on the CPU: build and test
# the working tree with the Python, torch and Triton of the GPU image instead of
# the README's torch 2.14.1 / Triton 3.8. The device check
# (benchmarks/gpu_check.sh) builds and runs under that image, so an API that
# moved between the versions would otherwise first show up on a 15-minute GPU lease.
#
#     bash scripts/gpu_image_rehearsal.sh        # CI runs this after the main tests
#
# The image, as read on the lent H200 machines (device KINDS.md, 2026-11-17):
# Python 3.12, torch 2.11.0+cu130, triton 3.6.0. Override with GPU_IMAGE_PYTHON,
# GPU_IMAGE_TORCH; the virtual environment (GPU_IMAGE_VENV, default
# .venv-gpu-image) is kept for reuse. PyPI's torch 2.11.0 for Linux is the
# cu130 build and pins triton 3.6.0, so both come with one install.
#
# Steps: that environment with the project's own dependencies (read from
# pyproject.toml, torch pin replaced); a copy of the tracked and
# untracked-not-ignored files; gpu_check.sh's build (CUDA kernels for sm_90,
# in place); then the whole CPU test suite in the copy (the GPU tests skip), over the cores (pytest-xdist).
# NumPy stays below 2.3 here: Triton 3.6's interpreter (TRITON_INTERPRET=1,
# used by the Triton tests on the CPU) fails on NumPy 2.4's scalar conversion;
# the GPU image's NumPy 2.5 never meets the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TORCH=${GPU_IMAGE_TORCH:-2.11.0}
# The image's Python where this machine has it (a pyenv shim may name it and not run it), else python3.
find_python() {
    for c in python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12; do
        command -v "$c" > /dev/null 2>&1 && "$c" -c "" > /dev/null 2>&1 && { command -v "$c"; return; }
    done
    command -v python3
}
PY=${GPU_IMAGE_PYTHON:-$(find_python)}
VENV=${GPU_IMAGE_VENV:-$ROOT/.venv-gpu-image}
WORK=$(mktemp -d /tmp/anrl_gpu_image.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
t0=$(date +%s)
step() { echo; echo "== gpu image rehearsal: $1 ($(( $(date +%s) - t0 )) s)"; }

step "environment ($PY, torch==$TORCH) in $VENV"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
mapfile -t deps < <("$VENV/bin/python" - <<'EOF'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for dep in project["dependencies"] + project["optional-dependencies"]["test"]:
    if not re.match(r"(torch|numpy)\b", dep):  # torch: the image's; numpy: see the header
        print(dep.split("#")[0].strip())
EOF
)
"$VENV/bin/pip" install -q "torch==$TORCH" setuptools wheel ninja pybind11 "numpy<2.3" "${deps[@]}"
. "$VENV/bin/activate"
python -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__)"

step "copy of the working tree"
git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar -c --null -T - -f - | tar -x -C "$WORK"

step "build, as benchmarks/gpu_check.sh does (CUDA kernels for sm_90)"
(cd "$WORK" && ANRL_EXT_CUDA=1 ANRL_EXT_CUDA_ARCH=9.0 MAX_JOBS=$(nproc) python setup.py -q build_ext --inplace \
    > "$WORK/build.log" 2>&1) || { tail -40 "$WORK/build.log"; echo "BUILD FAILED under torch $TORCH"; exit 1; }
(cd "$WORK" && python -c "import anrl_ext._C as c; assert c.with_cuda; import anrl_ext; print('backends on cpu:', anrl_ext.available_backends('cpu'))")

step "CPU test suite under torch $TORCH"
(cd "$WORK" && PYTHONPATH="$WORK" python -m pytest python_tests -q -p no:cacheprovider -n auto --maxprocesses 4)
step "passed"
