"""One tolerance table for every kernel-vs-reference comparison in the suite.

`rtol`/`atol` apply to results compared with a float64 reference evaluated on the same
inputs. Ops with a tighter, documented contract (e.g. the ULP bounds of sigmoid/tanh)
assert it separately.
"""
import numpy as np

TOL = {
    np.dtype(np.float32): {"rtol": 2e-5, "atol": 2e-6},
    np.dtype(np.float64): {"rtol": 1e-12, "atol": 1e-13},
}

# Looser entries for reductions over long axes (norm statistics, global norms): error grows
# with the reduction length even with pairwise/blocked summation.
TOL_REDUCTION = {
    np.dtype(np.float32): {"rtol": 1e-4, "atol": 1e-5},
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
}

# Documented accuracy of the transcendental activations, in units in the last place of
# the output dtype, against a float64 (for float32) or long double (for float64) reference.
ULP_BOUND = {
    "sigmoid": {np.dtype(np.float32): 3.0, np.dtype(np.float64): 3.0},
    "tanh": {np.dtype(np.float32): 3.0, np.dtype(np.float64): 3.0},
}


def tol(dtype, table=TOL):
    return table[np.dtype(dtype)]


def assert_close(actual, expected, dtype=None, table=TOL, **override):
    """Compare `actual` with a reference; tolerances from the table for `dtype`."""
    actual = np.asarray(actual)
    kw = dict(table[np.dtype(dtype or actual.dtype)])
    kw.update(override)
    np.testing.assert_allclose(actual, np.asarray(expected), equal_nan=True, **kw)
