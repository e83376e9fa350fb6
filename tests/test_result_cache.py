"""The result cache: blocks of large results (>= 1 MB) are reused once no array uses them.

Checked here: reuse (same memory, hit counter), placement apart from each call's input on a
reused block, that a block still referenced by a view / buffer / other library is never handed
out, the limit (bytes kept, 0 disables, eviction returns memory to the OS), the
environment variable, threads, fork, and that many fresh calls of mixed sizes keep the
resident memory bounded.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import nnkernels as nk

MB = 1 << 20
N = 3 * MB // 4  # float32 elements of a 3 MB result


@pytest.fixture
def cache():
    """A cache with a known limit (64 MB unless set otherwise), emptied before and after."""
    before = nk.result_cache_info()["limit"]
    nk.set_result_cache_limit(64 * MB)
    nk.empty_result_cache()
    yield nk
    nk.set_result_cache_limit(before)
    nk.empty_result_cache()


def _x(n=N, seed=0):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def _delta(before, key):
    return nk.result_cache_info()[key] - before[key]


def test_fresh_results_reuse_the_freed_block(cache):
    x = _x()
    y = nk.tanh(x)
    p = y.ctypes.data
    info = nk.result_cache_info()
    assert info["blocks_in_use"] >= 1 and info["blocks"] == 0
    del y
    assert nk.result_cache_info()["blocks"] == 1
    before = nk.result_cache_info()
    y = nk.tanh(x)
    assert y.ctypes.data == p
    assert _delta(before, "hits") == 1 and _delta(before, "misses") == 0
    np.testing.assert_array_equal(y, nk.tanh(x, out=np.empty_like(x)))


def test_every_large_result_family_uses_the_cache(cache):
    x2 = _x(1024 * 512).reshape(1024, 512)
    labels = np.arange(1024) % 512
    calls = [lambda: nk.relu(x2), lambda: nk.layernorm_forward(x2)[0], lambda: nk.batchnorm_forward(x2)[0],
             lambda: nk.softmax_cross_entropy(x2, labels)[1], lambda: nk.sigmoid_backward(x2, x2)]
    for call in calls:
        call()  # first call: a miss, then the block is idle
        before = nk.result_cache_info()
        r = call()
        assert _delta(before, "hits") == 1, call
        assert not r.flags.owndata and r.flags.writeable and r.flags.c_contiguous


def test_small_results_bypass_the_cache(cache):
    before = nk.result_cache_info()
    y = nk.relu(_x(MB // 4 - 16))  # just under 1 MB
    assert y.flags.owndata
    assert _delta(before, "hits") == 0 and _delta(before, "misses") == 0


def test_a_reused_block_is_placed_apart_from_the_new_input(cache):
    """A block keeps a page of slack, so a result can sit half a page from whichever input it has."""
    base = _x(N + 4096)
    for shift in (0, 1024, 300, 4000, 0):  # float32 elements: page offsets 16, 16+4096, ...
        x = base[shift:shift + N]
        before = nk.result_cache_info()
        y = nk.relu(x)
        assert y.ctypes.data % 64 == 0
        assert abs((y.ctypes.data - x.ctypes.data) % 4096 - 2048) <= 128
        np.testing.assert_array_equal(y, np.maximum(x, 0))
        if shift != 0 or _delta(before, "misses") == 0:
            assert _delta(before, "hits") == 1
        del y


def test_a_two_input_result_is_placed_away_from_both_inputs(cache):
    """Backward activations stream dout and x (or y): the result goes midway between their page
    offsets, so its stores alias neither input's loads (at least ~1 KiB apart on the page)."""
    d = _x(seed=1)
    base = _x(N + 1024)
    for shift in (0, 4, 256, 512, 700, 1000):  # float32 elements: page offsets 16, 32, 1040, ...
        s = base[shift:shift + N]
        dx = nk.tanh_backward(d, s)
        assert dx.ctypes.data % 64 == 0
        for inp in (d, s):
            gap = (dx.ctypes.data - inp.ctypes.data) % 4096
            assert min(gap, 4096 - gap) >= 900, (shift, gap)
        np.testing.assert_allclose(dx, d * (1 - s.astype(np.float64) ** 2), rtol=1e-6, atol=1e-6)
        del dx


def test_a_smaller_result_reuses_a_larger_block_up_to_twice_its_size(cache):
    x = _x()
    y = nk.relu(x)
    del y
    before = nk.result_cache_info()
    y = nk.relu(x[: N * 3 // 4])
    assert _delta(before, "hits") == 1
    del y
    before = nk.result_cache_info()
    y = nk.relu(x[: N // 3])  # a third: a new block rather than tying up three times its size
    assert _delta(before, "hits") == 0 and _delta(before, "misses") == 1


def _keep_view(y):
    return y[10:], lambda k: k, 10


def _keep_asarray(y):
    return np.asarray(y), lambda k: k, 0


def _keep_memoryview(y):
    return memoryview(y), lambda k: np.frombuffer(k, np.float32), 0


def _keep_reshape_transpose(y):
    return y.reshape(-1, 4).T, lambda k: k.T.ravel(), 0


def _keep_frombuffer(y):
    return np.frombuffer(y, np.float32), lambda k: k, 0


@pytest.mark.parametrize("keep", [_keep_view, _keep_asarray, _keep_memoryview, _keep_reshape_transpose,
                                  _keep_frombuffer])
def test_a_block_still_referenced_is_never_handed_out(cache, keep):
    x = _x()
    expect = np.maximum(x, 0)
    y = nk.relu(x)
    lo, hi = y.ctypes.data, y.ctypes.data + y.nbytes
    kept, as_array, start = keep(y)
    del y
    assert nk.result_cache_info()["blocks"] == 0  # the capsule is still alive: nothing came back
    others = [nk.relu(-x) for _ in range(3)]  # same size: would take the block if it were idle
    for o in others:
        assert o.ctypes.data + o.nbytes <= lo or o.ctypes.data >= hi
    np.testing.assert_array_equal(as_array(kept), expect[start:])
    del others
    nk.empty_result_cache()
    del kept, as_array
    assert nk.result_cache_info()["blocks"] == 1  # now the block is idle


def test_pickled_results_own_their_copy(cache):
    x = _x()
    y = nk.relu(x)
    restored = pickle.loads(pickle.dumps(y[5:]))
    del y
    nk.relu(-x)  # reuses and overwrites the freed block
    np.testing.assert_array_equal(restored, np.maximum(x, 0)[5:])


def test_torch_from_numpy_keeps_the_block_alive(cache):
    torch = pytest.importorskip("torch")
    x = _x()
    y = nk.relu(x)
    t = torch.from_numpy(y)
    del y
    assert nk.result_cache_info()["blocks"] == 0
    others = [nk.relu(-x) for _ in range(2)]
    np.testing.assert_array_equal(t.numpy(), np.maximum(x, 0))
    del others, t
    assert nk.result_cache_info()["blocks"] >= 1


def test_limit_bounds_the_idle_bytes_and_evicts_oldest(cache):
    nk.set_result_cache_limit(5 * MB)
    x = _x()
    ys = [nk.relu(x) for _ in range(3)]  # three blocks of a bit over 3 MB each
    before = nk.result_cache_info()
    del ys
    info = nk.result_cache_info()
    assert 0 < info["bytes_cached"] <= 5 * MB and info["blocks"] == 1
    assert info["evictions"] - before["evictions"] == 2
    nk.set_result_cache_limit(1 * MB)  # lowering the limit evicts at once
    info = nk.result_cache_info()
    assert info["bytes_cached"] == 0 and info["blocks"] == 0 and info["limit"] == MB


def test_zero_disables(cache):
    nk.set_result_cache_limit(0)
    x = _x()
    nk.relu(x)
    before = nk.result_cache_info()
    assert before["blocks"] == 0 and before["bytes_cached"] == 0
    nk.relu(x)
    assert _delta(before, "hits") == 0 and _delta(before, "misses") == 1
    assert nk.result_cache_info()["blocks"] == 0


def test_empty_result_cache_leaves_live_results_alone(cache):
    x = _x()
    a, b = nk.relu(x), nk.tanh(x[: N // 2 + 1000])
    live = nk.sigmoid(x)
    del a, b
    assert nk.result_cache_info()["blocks"] == 2
    nk.empty_result_cache()
    info = nk.result_cache_info()
    assert info["blocks"] == 0 and info["bytes_cached"] == 0 and info["blocks_in_use"] >= 1
    np.testing.assert_allclose(live, 1 / (1 + np.exp(-x.astype(np.float64))), rtol=1e-6)


def test_info_and_build_info(cache):
    info = nk.result_cache_info()
    for key in ("limit", "bytes_cached", "blocks", "hits", "misses", "evictions", "bytes_in_use", "blocks_in_use"):
        assert isinstance(info[key], int) and info[key] >= 0, key
    assert info["min_result_bytes"] == MB
    assert info["limit"] == 64 * MB
    assert nk.build_info()["result_cache"].startswith(f"limit {64 * MB} bytes")


@pytest.mark.parametrize("bad", [1.5, "1M", None, True])
def test_set_limit_rejects_non_int(bad):
    with pytest.raises(TypeError, match="^limit: expected an int"):
        nk.set_result_cache_limit(bad)


def test_set_limit_rejects_negative():
    with pytest.raises(ValueError, match="^limit: expected a number of bytes >= 0"):
        nk.set_result_cache_limit(-1)


def _run(code, **env):
    full = dict(os.environ)
    full.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full,
                          timeout=120)


def test_default_limit_is_a_modest_share_of_ram():
    env = {k: v for k, v in os.environ.items() if k != "NNKERNELS_RESULT_CACHE_LIMIT"}
    r = subprocess.run([sys.executable, "-c", "import nnkernels as nk; print(nk.result_cache_info()['limit'])"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    expect = 2 << 30
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        expect = min(expect, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 10)
    assert int(r.stdout) == expect


@pytest.mark.parametrize("value,expect", [("3145728", 3 * MB), (" 2g ", 2 << 30), ("5MB", 5_000_000),
                                          ("1.5 KiB", 1536), ("0", 0)])
def test_env_var_sets_the_limit(value, expect):
    r = _run("import nnkernels as nk; print(nk.result_cache_info()['limit'])", NNKERNELS_RESULT_CACHE_LIMIT=value)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == expect


@pytest.mark.parametrize("value", ["lots", "-5", "1.5", "3 XB"])
def test_env_var_invalid_fails_at_import(value):
    r = _run("import nnkernels", NNKERNELS_RESULT_CACHE_LIMIT=value)
    assert r.returncode != 0
    assert "NNKERNELS_RESULT_CACHE_LIMIT: expected a byte count" in r.stderr


def test_threads_making_fresh_results_concurrently(cache):
    """Kernels release the GIL, so allocation, kernel and free of several threads interleave."""
    nk.set_result_cache_limit(16 * MB)
    base = _x(N + 8192)
    sizes = [N, N // 2 + 4096, N - 777, MB // 4 + 1]  # several size classes
    errors, made = [], [0] * 4
    before = nk.result_cache_info()

    def worker(k):
        try:
            for i in range(20):
                n = sizes[(k + i) % len(sizes)]
                x = base[k: k + n]
                y = nk.relu(x) if i % 2 else nk.tanh(x)
                ref = np.maximum(x, 0) if i % 2 else np.tanh(x)
                if i % 2:
                    np.testing.assert_array_equal(y, ref)
                else:
                    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-7)
                made[k] += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    info = nk.result_cache_info()
    assert (info["hits"] - before["hits"]) + (info["misses"] - before["misses"]) == sum(made) == 80
    assert info["hits"] - before["hits"] > 0
    assert info["blocks_in_use"] == before["blocks_in_use"] and info["bytes_cached"] <= 16 * MB


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_starts_with_an_empty_cache():
    r = _run("""
        import os
        import numpy as np
        import nnkernels as nk
        x = np.ones(1 << 20, np.float32)
        a, b = nk.relu(x), nk.relu(x[:600000])
        del a, b
        assert nk.result_cache_info()["blocks"] == 2
        live = nk.relu(-x)  # takes one of them
        pid = os.fork()
        if pid == 0:
            info = nk.result_cache_info()
            ok = info["blocks"] == 0 and info["bytes_cached"] == 0 and info["hits"] == 0 and info["misses"] == 0
            y = nk.relu(x)
            ok = ok and bool((y == 1).all()) and nk.result_cache_info()["misses"] == 1
            del y
            ok = ok and nk.result_cache_info()["blocks"] == 1
            del live  # inherited from the parent: freed into the child's own cache
            ok = ok and nk.result_cache_info()["blocks"] == 2
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0, status
        assert nk.result_cache_info()["blocks"] == 1  # the parent's idle block is still its own
        assert (live == 0).all()
        print("ok")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm")
def test_many_fresh_calls_of_mixed_sizes_keep_rss_bounded():
    """10,000 fresh results of 1-4 MB, three alive at a time, with a 16 MB limit: resident memory
    stays under the limit plus the working set (the 4 MB input, three live results) plus slack,
    and emptying the cache returns the idle blocks to the OS."""
    r = _run("""
        import collections
        import os
        import numpy as np
        import nnkernels as nk
        MB = 1 << 20
        page = os.sysconf("SC_PAGE_SIZE")
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * page
        nk.set_result_cache_limit(16 * MB)
        x = np.ones(MB, np.float32)  # 4 MB input
        sizes = np.random.default_rng(0).integers(MB // 4, MB, 10_000)  # 1-4 MB float32 results
        nk.relu(x)
        base = rss()
        peak = base
        live = collections.deque(maxlen=3)
        for i, n in enumerate(sizes):
            live.append(nk.relu(x[:n]))
            if i % 50 == 0:
                peak = max(peak, rss())
        live.clear()
        peak = max(peak, rss())
        info = nk.result_cache_info()
        assert info["bytes_cached"] <= 16 * MB, info
        assert info["hits"] > 5000 and info["evictions"] > 0, info
        assert peak - base <= 16 * MB + 3 * 5 * MB + 8 * MB, (peak - base) / MB
        nk.empty_result_cache()
        assert rss() - base <= 8 * MB, (rss() - base) / MB
        print("ok", info["hits"], info["misses"], info["evictions"], round((peak - base) / MB, 1))
    """, OMP_NUM_THREADS="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok"), r.stdout
