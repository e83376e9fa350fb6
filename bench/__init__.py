"""Microbenchmarks of nnkernels against NumPy, PyTorch and other peers.

Installed as ``nnkernels.bench``; run with ``python -m nnkernels bench``. One module per op
family (``bench/<family>.py``), sharing the harness in ``_harness.py``.
"""
