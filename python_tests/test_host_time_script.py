"""benchmarks/host_time.py: every line of its table on a short run, the Python around the op and the layer among
them."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_line_times_every_mode():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "host_time.py"), "--calls", "10"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, check=True).stdout
    lines = {m.group(1): m.group(2) for m in re.finditer(r"^\s*(\w+): (.*)$", out, re.M)}
    assert set(lines) == {"paper", "sigmoid", "sigmoid2", "op", "wrapper", "layer", "bn", "ibn", "sync"}, out
    modes = {name: re.findall(r"([\w ,+()]+?)\s+(\d+\.\d) us", line) for name, line in lines.items()}
    for line, callers in (("wrapper", ["adaptive_norm", "adaptive_norm, Python checks"]), ("layer", ["AFNM"])):
        assert [m.strip() for m, _ in modes[line]] == [f"{caller} {what}" for caller in callers + ["op direct"]
                                                       for what in ("forward", "fwd+bwd")], lines[line]
    assert all(len(found) >= 3 and all(float(t) > 0 for _, t in found) for found in modes.values()), modes
