"""No Python file of the project refers to an undefined global name.

Mostly for the code only a GPU runs: `test_gpu.py`'s tests skip here, so a
helper it calls without importing would fail only on a lent GPU, in its few
minutes. symtable lists each function's references to module globals; every
one must be bound in the module (import, def, assignment), a builtin or a
module attribute such as __file__.
"""
import builtins
import symtable
from pathlib import Path

ROOT = Path(__file__).parent.parent
FILES = sorted(str(p.relative_to(ROOT)) for folder in ("anrl_ext", "benchmarks", "python_tests", "scripts")
               for p in (ROOT / folder).rglob("*.py"))
MODULE_ATTRIBUTES = {"__file__", "__name__", "__doc__", "__spec__", "__package__", "__loader__"}


def undefined_globals(path: Path) -> list:
    top = symtable.symtable(path.read_text(), str(path), "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    bound |= {s.get_name() for s in top.get_symbols() if s.is_namespace()}  # def / class
    bound |= MODULE_ATTRIBUTES
    missing = []

    def walk(table):
        for child in table.get_children():
            for sym in child.get_symbols():
                name = sym.get_name()
                if sym.is_global() and name not in bound and not hasattr(builtins, name):
                    missing.append(f"{child.get_name()}: {name}")
            walk(child)

    walk(top)
    return sorted(set(missing))


def test_no_undefined_global_names():
    assert "python_tests/test_gpu.py" in FILES and "benchmarks/run_gpu.py" in FILES
    found = {path: undefined_globals(ROOT / path) for path in FILES}
    assert {path: names for path, names in found.items() if names} == {}


def test_the_check_finds_an_undefined_name(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\nX = 1\n\ndef f(a):\n    b = a + X\n    return check_missing(b, os)\n")
    assert undefined_globals(f) == ["f: check_missing"]
