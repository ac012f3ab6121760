"""`python -m anrl_ext`: which command-line tools there are, one line each."""
from __future__ import annotations

import importlib

from . import __version__, cli

# In the order of a project: data, training, inspection, deployment.
TOOLS = ("prepare", "preview", "train", "evaluate", "summarize", "gate_report", "export", "predict")


def main(argv=None) -> None:
    cli.parser("", "List anrl_ext's command-line tools.").parse_args(argv)  # --help, --version, or nothing
    print(f"anrl_ext {__version__}: python -m anrl_ext.<tool> --help tells each tool's options\n")
    for tool in TOOLS:
        summary = importlib.import_module(f"anrl_ext.{tool}").__doc__.splitlines()[0]
        print(f"  {tool:<12} {summary.split(': ', 1)[1]}")
    print("\n  python -m anrl_ext.train runs the whole ANRL task on its built-in synthetic data.")


if __name__ == "__main__":
    main()
