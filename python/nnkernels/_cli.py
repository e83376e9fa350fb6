"""Shared pieces of the command-line interfaces (``python -m nnkernels bench|train``)."""
from __future__ import annotations

import argparse
import os
from typing import Optional


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written (examples keep their lines) and every option's default in
    ``--help``: argparse appends "(default: ...)" to each option's help. Options whose default is
    None or False (flags, "derived from other options") say in their help text what happens."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def output_path_problem(path: str) -> Optional[str]:
    """Why the output file ``path`` cannot be written, or None; a missing folder is created. The CLIs
    call it while parsing their arguments, so that a run never ends in a failed write."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"{path!r} is a folder, expected a file name"
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        return f"cannot create the folder {folder!r} ({exc.strerror})"
    if not os.access(folder, os.W_OK):
        return f"the folder {folder!r} is not writable"
    return None
