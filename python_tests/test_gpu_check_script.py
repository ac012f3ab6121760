"""benchmarks/gpu_check.sh's own logic, on the CPU: which steps it runs, under which time limits, and
what it exits with, for each of its settings. A shell error found on a lent GPU costs minutes of a
15-minute lease; here `python3`, `timeout` and `nvidia-smi` are stubs that log their arguments, so
every step "runs" at once and only the script's control flow is checked."""
import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

STUBS = {
    # Logs each call (with its test shard); answers the two questions the script asks; the GPU tests
    # print a PASSED line and exit with STUB_PYTEST_RC, in the shard STUB_FAILING_SHARD only.
    "python3": r'''#!/usr/bin/env bash
echo "python ${ANRL_TEST_SHARD:--} $*" >> "$STUB_LOG"
case "$*" in
    *"print('%d.%d'"*) echo "9.0" ;;
    *"-m pytest"*) echo "python_tests/test_gpu.py::test_stub PASSED"
                   [ "${ANRL_TEST_SHARD:-}" = "${STUB_FAILING_SHARD:-none}" ] && exit 1 ;;
esac
exit 0
''',
    # Logs the time limit, then runs the command as the real timeout would.
    "timeout": '''#!/usr/bin/env bash
echo "timeout $1" >> "$STUB_LOG"
shift
exec "$@"
''',
    "nvidia-smi": "#!/usr/bin/env bash\necho 'name, memory.total'\n",
}


def run_check(tmp_path, **settings):
    """(exit code, stdout, [logged calls]) of gpu_check.sh with the stubs first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in STUBS.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.log"
    log.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPU_CHECK_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", STUB_LOG=str(log), OUT=str(tmp_path / "out"), **settings)
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    return proc.returncode, proc.stdout + proc.stderr, log.read_text().splitlines()


def commands(calls, *words):
    """The logged python calls whose arguments hold every one of `words`."""
    return [c for c in calls if c.startswith("python ") and all(w in c for w in words)]


def limits(calls):
    return [int(c.split()[1]) for c in calls if c.startswith("timeout ")]


def test_the_whole_check_runs_every_step(tmp_path):
    rc, out, calls = run_check(tmp_path)
    assert rc == 0, out
    assert len(commands(calls, "setup.py", "build_ext")) == 1
    shards = sorted(c.split()[1] for c in commands(calls, "-m pytest", "python_tests/test_gpu.py"))
    assert shards == ["0/4", "1/4", "2/4", "3/4"]
    # the table in two parts into one CSV: the op rows, then every other section added to them
    tables = commands(calls, "benchmarks/run_gpu.py")
    assert len(tables) == 2 and "--sections op" in tables[0] and "--skip op --append" in tables[1], tables
    assert len(commands(calls, "benchmarks/train_iteration.py")) == 2
    assert len(commands(calls, "benchmarks/loader_threads.py")) == 1
    assert len(commands(calls, "-m anrl_ext.train", "--device cuda")) == 1
    # build, four test shards, the table's two parts, four training steps: each under its own limit
    assert sorted(limits(calls)) == sorted([360, 280, 280, 280, 280, 150, 200, 60, 75, 60, 55])
    assert "tests passed: 4" in out and "training steps skipped for time: 0" in out
    # the op rows, then the training check (an iteration fused vs reference, the trainer), then the
    # table's other sections and the other timings: a long table cannot crowd out what the issue needs
    python_calls = commands(calls)
    order = [python_calls.index(commands(calls, *words)[0])
             for words in (["--sections op"], ["--iters 8"], ["-m anrl_ext.train"], ["--skip op"], ["--formats"],
                           ["loader_threads.py"])]
    assert order == sorted(order)
    assert (tmp_path / "out" / "gpu_check.log").exists()


def test_the_training_steps_alone(tmp_path):
    rc, out, calls = run_check(tmp_path, GPU_CHECK_TESTS="0", GPU_CHECK_TABLE="0")
    assert rc == 0, out
    assert not commands(calls, "-m pytest") and not commands(calls, "benchmarks/run_gpu.py")
    assert len(commands(calls, "benchmarks/train_iteration.py")) == 2 and commands(calls, "-m anrl_ext.train")
    assert "GPU tests skipped" in out and "tests passed" not in out


@pytest.mark.parametrize("deadline, skipped", [(74, 1), (59, 3)])
def test_training_steps_that_would_pass_the_deadline_are_skipped(tmp_path, deadline, skipped):
    """GPU_CHECK_DEADLINE: the training steps (60, 55, 75 and 60 s) that do not fit in what is left are skipped,
    the others run; the build, tests and table limits are cut to the deadline."""
    rc, out, calls = run_check(tmp_path, GPU_CHECK_DEADLINE=str(deadline))
    assert rc == 0, out
    assert f"training steps skipped for time: {skipped}" in out
    assert out.count("skipped: ") == skipped
    assert len(commands(calls, "--formats")) == 0  # the 75-s step fits in neither
    assert len(commands(calls, "-m anrl_ext.train")) == 1  # the 55-s step fits in both
    assert max(limits(calls)) <= deadline


def test_a_failing_test_shard_is_the_exit_code(tmp_path):
    rc, out, calls = run_check(tmp_path, STUB_FAILING_SHARD="2/4")
    assert rc == 1 and "GPU tests rc=1" in out
    assert commands(calls, "benchmarks/run_gpu.py")  # the table and training still run
    assert commands(calls, "-m anrl_ext.train")


def test_no_training_steps(tmp_path):
    rc, out, calls = run_check(tmp_path, GPU_CHECK_TRAIN="0")
    assert rc == 0, out
    assert len(commands(calls, "benchmarks/run_gpu.py")) == 2 and not commands(calls, "train_iteration.py")
    assert not commands(calls, "-m anrl_ext.train") and "training steps skipped (GPU_CHECK_TRAIN=0)" in out


def test_training_steps_only_before_the_given_time(tmp_path):
    """GPU_CHECK_TRAIN_BEFORE: no training step once that many seconds have passed (0: none at all); the
    table's two parts still run."""
    rc, out, calls = run_check(tmp_path, GPU_CHECK_TRAIN_BEFORE="0")
    assert rc == 0, out
    assert not commands(calls, "train_iteration.py") and not commands(calls, "-m anrl_ext.train")
    assert len(commands(calls, "benchmarks/run_gpu.py")) == 2
    assert out.count("training steps skipped: past 0 s") == 1
