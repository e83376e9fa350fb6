"""Shared pieces of the command-line interfaces (``python -m nnkernels bench|train``)."""
from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written (examples keep their lines) and every option's default in
    ``--help``: argparse appends "(default: ...)" to each option's help. Options whose default is
    None or False (flags, "derived from other options") say in their help text what happens."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)
