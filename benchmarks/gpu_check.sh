#!/usr/bin/env bash
# The device check for a lent GPU machine (torch, triton, pybind11, ninja, pytest
# preinstalled, no network). Builds the extension for this GPU, runs the GPU tests,
# the benchmark table and the GPU training checks. Its log, test report, CSV table
# and training metrics go to $OUT (default benchmarks/results/gpu-<date>).
# Each step has its own time limit, cut to what is left of GPU_CHECK_DEADLINE (default 470 s: the
# issue's 8 minutes, less the shell's own): a training step that might not finish in that is skipped,
# so the whole script ends within 8 minutes. Order: build, tests, the table's op rows (the issue's
# targets), the issue's training check, the table's other sections, the other training timings.
#
#     bash benchmarks/gpu_check.sh            # optional: put wheels to install in .whl/
#     GPU_CHECK_TRAIN=0 bash benchmarks/gpu_check.sh   # build, tests and table only
#     GPU_CHECK_TRAIN_BEFORE=290 bash benchmarks/gpu_check.sh   # training steps only if under 290 s so far
#     GPU_CHECK_TABLE=0 bash benchmarks/gpu_check.sh   # no table (the tests run in 4 processes;
#                                                      GPU_CHECK_SHARDS=1: in one)
#     GPU_CHECK_TESTS=0 GPU_CHECK_TABLE=0 bash benchmarks/gpu_check.sh   # the training steps alone
# A lease may refuse a second call (run 4's was): the first call should be the whole check (the
# training steps that do not fit are skipped), and a second call, if the lease allows it, the training
# steps alone.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu-$(date +%Y%m%d)}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
PY=$(command -v python3 || command -v python)
t0=$(date +%s)
step() { echo; echo "== $1 ($(( $(date +%s) - t0 )) s)"; }
DEADLINE=${GPU_CHECK_DEADLINE:-470}
left() { echo $(( DEADLINE - ($(date +%s) - t0) )); }
# limit <seconds>: a step's time limit, cut to what is left of the deadline (at least 1 s)
limit() { local l; l=$(left); [ "$l" -lt "$1" ] && echo $(( l > 1 ? l : 1 )) || echo "$1"; }

if compgen -G ".whl/*.whl" > /dev/null; then  # test-only extras the image lacks (expecttest for opcheck)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/anrl_site .whl/*.whl \
        && export PYTHONPATH=/tmp/anrl_site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv || true
"$PY" -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, 'gpu', torch.cuda.get_device_name(), 'cc', torch.cuda.get_device_capability())" || exit 1
ARCH=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")

step "build (sm_${ARCH/./})"
ANRL_EXT_CUDA=1 ANRL_EXT_CUDA_ARCH="$ARCH" MAX_JOBS=$(nproc) timeout "$(limit 360)" \
    "$PY" setup.py -q build_ext --inplace > "$OUT/build.log" 2>&1 \
    || { tail -40 "$OUT/build.log"; echo "BUILD FAILED"; exit 1; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import anrl_ext; print('backends on cuda:', anrl_ext.available_backends('cuda'))" || exit 1

step "GPU tests"
# One line per test into gpu_tests*.log as it runs (stdout is unbuffered), so a run cut short by the
# time limit still says which tests passed; the junit reports are only written at the end.
# Most of the tests' time is Triton compiling kernels on the CPU: GPU_CHECK_SHARDS pytest processes
# (default 4; ANRL_TEST_SHARD in python_tests/conftest.py) run a share each, side by side.
# GPU_CHECK_PYTEST (e.g. "-n 4" where pytest-xdist is installed) runs one pytest with those options.
run_tests() {  # run_tests <suffix> [pytest options]
    local suffix=$1; shift
    timeout "$(limit 280)" "$PY" -m pytest -v python_tests/test_gpu.py -p no:cacheprovider -o addopts="" \
        --junitxml="$OUT/gpu_tests$suffix.xml" -rfE --durations=5 "$@" > "$OUT/gpu_tests$suffix.log" 2>&1
}
SHARDS=${GPU_CHECK_SHARDS:-4}
tests_rc=0
run_shards() {  # the tests in $SHARDS processes side by side; sets tests_rc
    local pids=() i pid rc
    for i in $(seq 0 $(( SHARDS - 1 ))); do
        ANRL_TEST_SHARD="$i/$SHARDS" run_tests "_$i" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid"; rc=$?
        [ "$rc" != 0 ] && [ "$tests_rc" != 124 ] && tests_rc=$rc  # a time limit hit anywhere is what to report
    done
}
if [ "${GPU_CHECK_TESTS:-1}" = "0" ]; then
    echo "GPU tests skipped (GPU_CHECK_TESTS=0)"
else
    if [ -n "${GPU_CHECK_PYTEST:-}" ] || [ "$SHARDS" -le 1 ]; then
        run_tests "" ${GPU_CHECK_PYTEST:-}; tests_rc=$?
    else
        run_shards
    fi
    [ "$tests_rc" = 124 ] && echo "GPU TESTS CUT SHORT by the time limit: see gpu_tests*.log"
    cat "$OUT"/gpu_tests*.log | grep -cE " PASSED" | sed 's/^/tests passed: /'
    for log in "$OUT"/gpu_tests*.log; do
        echo "-- $(basename "$log")"
        sed -n '/short test summary\|slowest/,$p' "$log" | tail -30
    done
fi

# The table in two parts: its op rows (the issue's targets) first, then, after the issue's training check,
# the other sections, added to the same CSV. A long table then cannot crowd out the training check.
table() {  # table <time limit> <title> <run_gpu.py options>
    local lim=$1 title=$2; shift 2
    [ "${GPU_CHECK_TABLE:-1}" = "0" ] && return 0
    step "$title"
    timeout "$(limit "$lim")" "$PY" benchmarks/run_gpu.py --out "$OUT" "$@"
}
table 150 "benchmark table: the op rows" --sections op

# fits <seconds> <title>: starts a training step that takes up to <seconds>, or skips it (false) when
# less than that is left of the deadline: a step cut short would say nothing. No training step at all with
# GPU_CHECK_TRAIN=0, or past GPU_CHECK_TRAIN_BEFORE seconds.
skipped_steps=0
training=1
[ "${GPU_CHECK_TRAIN:-1}" = "0" ] && training=0 && echo "training steps skipped (GPU_CHECK_TRAIN=0)"
fits() {
    [ "$training" = 1 ] || return 1
    if [ -n "${GPU_CHECK_TRAIN_BEFORE:-}" ] && [ $(( $(date +%s) - t0 )) -ge "$GPU_CHECK_TRAIN_BEFORE" ]; then
        echo "training steps skipped: past ${GPU_CHECK_TRAIN_BEFORE} s"; training=0; return 1
    fi
    step "$2"
    [ "$(left)" -ge "$1" ] && return 0
    echo "skipped: $(left) s left of GPU_CHECK_DEADLINE=${DEADLINE} s, the step takes up to $1 s"
    skipped_steps=$(( skipped_steps + 1 ))
    return 1
}

# The issue's training check (an iteration fused vs reference, then a short run of the trainer), then the
# rest of the table, then the settings' and the loader's timings.
fits 60 "one training iteration at the paper's size, fused vs reference" \
    && timeout 60 "$PY" benchmarks/train_iteration.py --device cuda --img-size 256 --width 1.0 --batch-size 10 \
        --iters 8

rm -rf /tmp/anrl_gpu_run
if fits 55 "short training run on the GPU (fused backend, second-order meta-learning)"; then
    timeout 55 "$PY" -m anrl_ext.train --device cuda --iters 40 --videos-per-class 8 --frames-per-video 2 \
        --out /tmp/anrl_gpu_run 2>&1 | grep -v "it/s]" | tail -8
    cp /tmp/anrl_gpu_run/metrics.json "$OUT/train_metrics.json" 2>/dev/null
    cp /tmp/anrl_gpu_run/log.csv "$OUT/train_log.csv" 2>/dev/null
fi

table 200 "benchmark table: the other sections" --skip op --append

fits 75 "one training iteration, fused backend: NCHW / channels_last x float32 / --amp (bf16)" \
    && timeout 75 "$PY" benchmarks/train_iteration.py --device cuda --img-size 256 --width 1.0 --batch-size 10 \
        --iters 5 --formats

fits 60 "reading frames in the background at the paper's size: --loader-threads 0 / 2 / 4" \
    && timeout 60 "$PY" benchmarks/loader_threads.py --device cuda --width 1.0 --rounds 3 --threads 0 2 4

step "done: GPU tests rc=$tests_rc, training steps skipped for time: $skipped_steps"
exit "$tests_rc"
