"""Command line: ``python -m nnkernels {bench,train,experiments} ...``."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"bench": "nnkernels.bench.cli", "train": "nnkernels.train", "experiments": "nnkernels.experiments"}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print("usage: python -m nnkernels {" + ",".join(commands) + "} [options]   (each takes --help)")
        return 0 if (not argv or argv[0] in ("-h", "--help")) else 2
    import importlib

    module = importlib.import_module(commands[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
