"""Every op with CUDA arguments can be captured in a CUDA graph and replayed (skips without a GPU).

Capture fails on any host<->device copy or stream synchronisation, so this proves that no op hides one: each op
of the op registry (the table of tests/test_bad_input.py) runs eagerly on one copy of its valid call in torch
CUDA tensors, and is captured with ``torch.cuda.graph`` on a second copy and replayed once; results and arrays
updated in place must match the eager run bitwise (the same kernels run on the same data).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

import array_libraries as AL
import test_bad_input as registry

pytestmark = pytest.mark.gpu

_SPECS = [s for s in registry._build_specs()
          if s.arrays and not isinstance(s.fn, type) and s.family not in ("runtime",)]


def _call_on_gpu(spec, rng_seed=0):
    kw = spec.make(np.random.default_rng(rng_seed))
    kw = {k: (copy.deepcopy(v) if isinstance(v, (np.ndarray, list)) else v) for k, v in kw.items()}
    return AL.convert_call(kw, "torch-cuda")[0]


def _flat(r, acc):
    if isinstance(r, (list, tuple)):
        for e in r:
            _flat(e, acc)
    elif r is not None:
        acc.append(r)
    return acc


@pytest.mark.skipif("torch-cuda" not in AL.LIBRARIES, reason="needs a CUDA build, a GPU and PyTorch with CUDA")
@pytest.mark.parametrize("spec", _SPECS, ids=[s.name for s in _SPECS])
def test_op_captures_in_a_cuda_graph(spec):
    import torch

    eager_kw = _call_on_gpu(spec)
    graph_kw = _call_on_gpu(spec)
    warm_kw = _call_on_gpu(spec)
    eager = spec.fn(**eager_kw)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside capture (library handles, allocator pools)
        spec.fn(**warm_kw)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = spec.fn(**graph_kw)
    graph.replay()
    torch.cuda.synchronize()
    got, want = _flat(captured, []), _flat(eager, [])
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if isinstance(w, (float, int)):
            pytest.fail(f"{spec.name} returned a host value {w!r} for CUDA inputs (expected a 0-d device array)")
        np.testing.assert_array_equal(AL.to_numpy(g), AL.to_numpy(w))
    for k in spec.mutable:
        if k in eager_kw and eager_kw[k] is not None:
            for g, w in zip(_flat(graph_kw[k], []), _flat(eager_kw[k], [])):
                np.testing.assert_array_equal(AL.to_numpy(g), AL.to_numpy(w))
