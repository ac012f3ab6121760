"""Run `python -m anrl_ext.train` once per setting, or reuse a finished run that trained with the same settings.

Shared by the comparison scripts (bn_vs_afnm.py, ablation.py, domain_gap.py). A run is reused when its
metrics.json holds the same value for every trainer setting (the defaults filled in), not only for the
ones a script sets: a changed default reruns it (the settings: anrl_ext.run_records). metrics.json also
records which code made the run (anrl_ext.provenance), so a report can say which commits its numbers come
from (run_records.code_line), and `--same-commit` reruns everything the current commit did not make.
"""
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from anrl_ext import provenance
from anrl_ext.run_records import as_flags, full_settings, stored_settings


def command(overrides, out):
    """The trainer's command line for these settings."""
    return [sys.executable, "-m", "anrl_ext.train", *as_flags(overrides), "--out", str(out)]


def made_by_current_code(result, current):
    """Whether a finished run was made by the current commit with no uncommitted changes."""
    code = result.get("code") or {}
    return bool(current.get("commit")) and not current.get("dirty") and \
        code.get("commit") == current["commit"] and code.get("dirty") is False


def reusable(result, overrides, same_commit=False, current=None):
    """Whether a finished run (its metrics.json) can stand for a run with these settings."""
    if stored_settings(result) != full_settings(overrides):
        return False
    return not same_commit or made_by_current_code(result, current or provenance.code_version())


def run_one(out, overrides, args, threads):
    """metrics.json of a run with these settings in folder `out`: the finished one there when reusable,
    else a new run (args.fresh: always a new run; args.same_commit: reuse only the current commit's)."""
    done = Path(out) / "metrics.json"
    if done.exists() and not args.fresh:
        finished = json.loads(done.read_text())
        if reusable(finished, overrides, getattr(args, "same_commit", False)):
            return finished
    run_command(command(overrides, out), threads)
    return json.loads(done.read_text())


def run_command(cmd, threads):
    """Run cmd on `threads` cores, its output discarded; a failure raises with the command and its stderr."""
    r = subprocess.run(cmd, env=thread_env(threads), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {r.returncode}):\n{r.stderr[-2000:]}")


def thread_env(threads):
    """The environment of a subprocess that may use `threads` cores."""
    return dict(os.environ, OMP_NUM_THREADS=str(threads))


def run_jobs(todo, work, jobs, desc):
    """[work(job, threads) for job in todo], `jobs` at a time with the cores split between them."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ThreadPoolExecutor(jobs) as pool:  # threads suffice: each job waits on a subprocess
        return list(tqdm(pool.map(lambda job: work(job, threads), todo), total=len(todo), desc=desc, unit="run"))


def parse_run_arguments(ap, script, argv, runs, unit):
    """Add the options of every script that trains runs (`runs`: default folder, `unit`: what one run is
    per seed, e.g. "arm"), parse argv; return (args, unique seeds in order, the command line)."""
    # unit "seed": a study of one arm
    each, per = ("seed", "seed") if unit == "seed" else (f"({unit}, seed)", f"{unit} and seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help=f"one run per {per}")
    ap.add_argument("--iters", type=int, default=300, help="training iterations of every run")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time (the cores are split between them)")
    ap.add_argument("--runs", default=runs, help="run folders")
    ap.add_argument("--fresh", action="store_true", help=f"rerun every {each}, even when its results exist")
    ap.add_argument("--same-commit", action="store_true",
                    help="reuse only runs made by the current commit (needs a checkout with no uncommitted changes)")
    args = ap.parse_args(argv)
    check_same_commit(args)
    command = (f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    return args, list(dict.fromkeys(args.seeds)), command


def check_same_commit(args):
    """--same-commit needs a commit to compare with: a git checkout with no uncommitted changes."""
    if getattr(args, "same_commit", False):
        current = provenance.code_version()
        if not current.get("commit") or current.get("dirty"):
            raise SystemExit("--same-commit needs a git checkout of anrl_ext with no uncommitted changes "
                             f"(found commit {current.get('commit')}, uncommitted changes: {current.get('dirty')})")
