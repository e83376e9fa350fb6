"""Reference softmax cross-entropy (NumPy, cs231n style)."""
from __future__ import annotations

import numpy as np

__all__ = ["softmax_cross_entropy"]


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

    Returns ``(loss, dlogits)`` with ``dlogits = (softmax(logits) - onehot(labels)) / N``.
    The row maximum is subtracted first so that ``exp`` never overflows.
    """
    x = np.asarray(logits)
    y = np.asarray(labels)
    n = x.shape[0]
    shifted = x - x.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    log_probs = shifted - np.log(s)
    rows = np.arange(n)
    loss = float(-log_probs[rows, y].astype(np.float64).sum() / n) if n else float("nan")
    d = e / s
    d[rows, y] -= 1
    d /= n
    return loss, d.astype(x.dtype, copy=False)
