"""Plain NumPy reference implementations of every nnkernels op.

Written for clarity, not speed; they compute in the dtype they are given, so pass float64
for a high-accuracy reference. The tests compare every kernel against these.
"""
from .activations import *  # noqa: F401,F403
from .activations import __all__ as _act_all

__all__ = list(_act_all)
