"""Plain NumPy reference implementations of every nnkernels op.

Written for clarity, not speed; they compute in the dtype they are given, so pass float64
for a high-accuracy reference. The tests compare every kernel against these. One module
per op family (same file stem as the kernel, wrapper, test and benchmark); each module's
``__all__`` is re-exported here.
"""
import importlib as _importlib
import pkgutil as _pkgutil

__all__ = []
for _info in sorted(_pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if _info.name.startswith("_"):
        continue
    _mod = _importlib.import_module(f"{__name__}.{_info.name}")
    globals()[_info.name] = _mod
    for _name in getattr(_mod, "__all__", ()):
        globals()[_name] = getattr(_mod, _name)
        __all__.append(_name)
del _info, _mod, _name
