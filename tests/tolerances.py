"""One tolerance table for every kernel-vs-reference comparison in the suite.

`rtol`/`atol` apply to results compared with a float64 reference evaluated on the same
inputs. Ops with a tighter, documented contract (e.g. the ULP bounds of sigmoid/tanh)
assert it separately.
"""
import ml_dtypes
import numpy as np

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)

# 16-bit storage (float32 arithmetic, one rounding to the storage dtype at the end): PyTorch's
# defaults for these dtypes (torch.testing.assert_close), about 2 ulps of bfloat16 (8 significant
# bits) and float16 (11 bits) at 1.0.
TOL = {
    np.dtype(np.float32): {"rtol": 2e-5, "atol": 2e-6},
    np.dtype(np.float64): {"rtol": 1e-12, "atol": 1e-13},
    F16: {"rtol": 1e-3, "atol": 1e-5},
    BF16: {"rtol": 1.6e-2, "atol": 1e-5},
}

# Looser entries for reductions over long axes (norm statistics, global norms): error grows
# with the reduction length even with pairwise/blocked summation.
TOL_REDUCTION = {
    np.dtype(np.float32): {"rtol": 1e-4, "atol": 1e-5},
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
    F16: {"rtol": 1e-3, "atol": 1e-5},  # accumulated in float32: the storage rounding dominates
    BF16: {"rtol": 1.6e-2, "atol": 1e-5},
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
    if actual.dtype in (F16, BF16):
        actual = actual.astype(np.float64)
    expected = np.asarray(expected)
    if expected.dtype in (F16, BF16):
        expected = expected.astype(np.float64)
    np.testing.assert_allclose(actual, expected, equal_nan=True, **kw)


def round_to_16bit(x, dtype):
    """float64 values correctly rounded (to nearest even) to float16 or bfloat16. NumPy rounds float64
    to float16 directly; ml_dtypes rounds float64 to bfloat16 through float32, which can round twice
    (a float32 result exactly halfway between two bfloat16 numbers): those ties are re-decided here
    from the float64 value."""
    x = np.asarray(x, np.float64)
    dtype = np.dtype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        if dtype == F16:
            return x.astype(F16)
        f = x.astype(np.float32)
    u = f.view(np.uint32)
    hi = (u >> 16).astype(np.uint32)
    rounded = f.astype(BF16).view(np.uint16).astype(np.uint32)
    tie = ((u & 0xFFFF) == 0x8000) & (f != x) & np.isfinite(x)
    away = np.abs(x) > np.abs(f.astype(np.float64))  # x lies beyond the tie: round up in magnitude
    rounded = np.where(tie, np.where(away, hi + 1, hi), rounded)
    return rounded.astype(np.uint16).view(BF16)


def _ordered(bits):
    b = bits.astype(np.int64)
    return np.where(b & 0x8000, -(b & 0x7FFF), b)


def ulps_16bit(actual, expected64, dtype):
    """Distance in units in the last place of `dtype` (float16 / bfloat16) between `actual` and the
    correctly rounded float64 `expected64` (0 where both are NaN, large where only one is)."""
    dtype = np.dtype(dtype)
    a = np.asarray(actual)
    assert a.dtype == dtype, (a.dtype, dtype)
    r = round_to_16bit(expected64, dtype)
    d = np.abs(_ordered(a.view(np.uint16)) - _ordered(r.view(np.uint16)))
    na, nr = np.isnan(a.astype(np.float32)), np.isnan(r.astype(np.float32))
    return np.where(na & nr, 0, np.where(na | nr, 1 << 20, d))


def assert_within_ulps(actual, expected64, dtype, ulps=1):
    """16-bit results within `ulps` of the correctly rounded float64 reference (0: exact)."""
    d = ulps_16bit(actual, expected64, dtype)
    if d.size and d.max() > ulps:
        i = int(np.argmax(d.reshape(-1)))
        raise AssertionError(f"{int((d > ulps).sum())} of {d.size} results beyond {ulps} ulp of {np.dtype(dtype)}; "
                             f"worst {int(d.reshape(-1)[i])} ulp: got {np.asarray(actual).reshape(-1)[i]!r}, "
                             f"float64 reference {np.asarray(expected64, np.float64).reshape(-1)[i]!r}")
