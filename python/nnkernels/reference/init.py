"""Reference weight initialisation: Philox4x32-10 and the transforms of csrc/cpu/init.hpp in NumPy.

Same element layout and the same IEEE operation sequence as the kernels (see the comment at
the top of csrc/cpu/init.hpp), so the results are bit-identical to nnkernels.init; written
for clarity with uint64 arithmetic and plain float32/float64 NumPy operations.
Generator: Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC'11).
"""
from __future__ import annotations

import numpy as np

__all__ = ["philox4x32_10", "init_fill", "fan_in_and_fan_out"]

_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK = 0xFFFFFFFF


def philox4x32_10(ctr, key):
    """Philox4x32-10 of counters ctr (4 arrays/ints of uint32) under key (2 uint32): 4 uint32 arrays."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in ctr)
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for _ in range(10):
        p0 = np.uint64(_M0) * c0
        p1 = np.uint64(_M1) * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & np.uint64(_MASK)
        hi1, lo1 = p1 >> np.uint64(32), p1 & np.uint64(_MASK)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + np.uint64(_W0)) & np.uint64(_MASK)
        k1 = (k1 + np.uint64(_W1)) & np.uint64(_MASK)
    return [c.astype(np.uint32) for c in (c0, c1, c2, c3)]


def _log_unit(x, T):
    """log x for x in (0, 1], as vlog_unit in csrc/cpu/init.cpp."""
    m, e = np.frexp(x)  # x = m 2^e, m in [1/2, 1)
    m = (m * T(2)).astype(T)
    e = (e - 1).astype(T)
    big = m > T(1.4142135623730951)
    m = np.where(big, m * T(0.5), m).astype(T)
    e = np.where(big, e + T(1), e).astype(T)
    f = m - T(1)
    s = f / (m + T(1))
    a = s * s
    if T is np.float32:
        coef = [1 / 9, 1 / 7, 1 / 5, 1 / 3]
        ln2_hi, ln2_lo = 0.693145751953125, 1.428606765330187045e-06
    else:
        coef = [1 / 21, 1 / 19, 1 / 17, 1 / 15, 1 / 13, 1 / 11, 1 / 9, 1 / 7, 1 / 5, 1 / 3]
        ln2_hi, ln2_lo = 6.93147180369123816490e-01, 1.90821492927058770002e-10
    p = a * T(coef[0]) + T(coef[1])
    for c in coef[2:]:
        p = p * a + T(c)
    s2 = s + s
    logm = s2 + s2 * (a * p)
    t = logm + e * T(ln2_lo)
    return e * T(ln2_hi) + t


_SIN = [1.5707963267948966, -0.6459640975062463, 0.07969262624616705, -0.004681754135318688,
        0.00016044118478735983, -3.598843235212085e-06, 5.692172921967927e-08, -6.688035109811468e-10,
        6.0669357311061955e-12]
_COS = [-1.2337005501361697, 0.25366950790104803, -0.02086348076335296, 0.0009192602748394266,
        -2.5202042373060607e-05, 4.710874778818172e-07, -6.386603083791852e-09, 6.565963114979473e-11,
        -5.294400200734623e-13]


def _box_muller(u1, y, T):
    """(R cos(2 pi u2), R sin(2 pi u2)) with y = 4 u2, as vbox_muller in csrc/cpu/init.cpp."""
    R = np.sqrt(_log_unit(u1, T) * T(-2))
    magic = T(12582912.0) if T is np.float32 else T(6755399441055744.0)
    n = (y + magic) - magic
    r = y - n
    a = r * r
    k = 5 if T is np.float32 else 9
    sc, cc = _SIN[:k][::-1], _COS[:k][::-1]
    ps = a * T(sc[0]) + T(sc[1])
    for c in sc[2:]:
        ps = ps * a + T(c)
    pc = a * T(cc[0]) + T(cc[1])
    for c in cc[2:]:
        pc = pc * a + T(c)
    s = r * ps
    c = pc * a + T(1)
    swap = (n == 1) | (n == 3)
    sn = np.where(swap, c, s)
    cs = np.where(swap, s, c)
    sn = np.where((n == 2) | (n == 3), -sn, sn)
    cs = np.where((n == 1) | (n == 2), -cs, cs)
    return R * cs, R * sn


def init_fill(n, dtype, dist, seed, a=0.0, b=1.0):
    """n numbers (uniform: a + b*u, normal: a + b*z) with nnkernels' Philox layout."""
    T = np.dtype(dtype).type
    per = 64 if T is np.float32 else 32
    groups = -(-n // per)
    j = np.arange(groups * 16, dtype=np.uint64)
    key = (seed & _MASK, (seed >> 32) & _MASK)
    W = philox4x32_10((j & np.uint64(_MASK), j >> np.uint64(32), np.zeros_like(j), np.zeros_like(j)), key)
    W = [w.reshape(groups, 16) for w in W]  # W[w][g, l]
    ta, tb = T(a), T(b)
    with np.errstate(all="ignore"):
        if T is np.float32:
            if dist == 0:
                outs = [((w >> np.uint32(8)).astype(T) * T(2.0 ** -24)) * tb + ta for w in W]
            else:
                outs = []
                for h in range(2):
                    u1 = ((W[2 * h] >> np.uint32(8)).astype(np.int64) + 1).astype(T) * T(2.0 ** -24)
                    y = (W[2 * h + 1] >> np.uint32(8)).astype(T) * T(2.0 ** -22)
                    z0, z1 = _box_muller(u1, y, T)
                    outs += [z0 * tb + ta, z1 * tb + ta]
        else:
            def u53(w0, w1, add):
                k = (w0 >> np.uint32(5)).astype(T) * T(67108864.0) + (w1 >> np.uint32(6)).astype(T)
                if add:
                    k = k + T(1)
                return k * T(2.0 ** -53)
            if dist == 0:
                outs = [u53(W[0], W[1], 0) * tb + ta, u53(W[2], W[3], 0) * tb + ta]
            else:
                z0, z1 = _box_muller(u53(W[0], W[1], 1), u53(W[2], W[3], 0) * T(4.0), T)
                outs = [z0 * tb + ta, z1 * tb + ta]
    full = np.stack(outs, axis=1).astype(T)  # (groups, words, 16)
    return full.reshape(-1)[:n].copy()


def fan_in_and_fan_out(shape):
    """2-D (fan_in, fan_out) as used by x @ W; >= 3-D (out_channels, in_channels, *kernel)."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError("shape: fans need at least 2 dimensions")
    if len(shape) == 2:
        return shape[0], shape[1]
    rf = int(np.prod(shape[2:], dtype=np.int64))
    return shape[1] * rf, shape[0] * rf
