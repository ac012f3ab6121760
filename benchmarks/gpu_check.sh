#!/usr/bin/env bash
# The device check for a lent GPU machine (torch, triton, pybind11, ninja, pytest
# preinstalled, no network). Builds, runs the GPU tests, the benchmark table and a
# short GPU training run; everything it prints also goes to $OUT (default
# benchmarks/results/gpu-<date>). Budget: under 8 minutes on an H100.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu-$(date +%Y%m%d)}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
t0=$(date +%s)
echo "== build"
ANRL_EXT_CUDA=1 ANRL_EXT_CUDA_ARCH="9.0" MAX_JOBS=16 pip install --no-build-isolation --no-deps -e . -q || exit 1
echo "build took $(( $(date +%s) - t0 )) s"
echo "== GPU tests"
python -m pytest -q python_tests/test_gpu.py -x -p no:cacheprovider --junitxml="$OUT/gpu_tests.xml"
tests_rc=$?
echo "== benchmark"
(cd benchmarks && OUT="../$OUT" timeout 240 python run_gpu.py --out "../$OUT")
echo "== training iteration, GPU"
timeout 120 python benchmarks/train_iteration.py --device cuda --img-size 128 --width 0.5 --iters 10
echo "== short GPU training run"
timeout 120 python -m anrl_ext.train --device cuda --iters 30 --out "$OUT/train_smoke" | tail -3
echo "gpu_check done in $(( $(date +%s) - t0 )) s, GPU tests rc=$tests_rc"
exit $tests_rc
