"""No leak: 10,000 ops of several dtypes leave the process's memory (RSS)
and the reference counts of what they touched flat."""

import gc
import os
import sys

import numpy as np

import mlxd as mx
from mlxdtest import world

W = world()
R, N = W.rank(), W.size()


def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4


def rounds(k, arrays):
    for i in range(k):
        x = arrays[i % len(arrays)]
        mx.all_sum(x)
        mx.all_max(x, group=W)
        mx.all_gather(x)
        if N > 1:
            if R == 0:
                mx.send(x, 1)
            elif R == 1:
                mx.recv_like(x, 0)


def test_ten_thousand_ops_leave_rss_and_refcounts_flat():
    arrays = [np.ones(16, dt) for dt in (np.float32, np.int64, np.float16, np.uint8, np.complex64)]
    arrays.append(mx.to_bfloat16(np.ones(16, np.float32)))
    rounds(500, arrays)  # warm up: allocator pools, numpy caches
    gc.collect()
    refs = [sys.getrefcount(a) for a in arrays] + [sys.getrefcount(a.dtype) for a in arrays]
    group_refs = sys.getrefcount(W)
    objects = len(gc.get_objects())
    before = rss_kib()
    rounds(2500, arrays)  # 10,000 ops: 4 per round
    gc.collect()
    grown = rss_kib() - before
    print(f"RSS grew {grown} KiB over 10,000 ops")
    assert [sys.getrefcount(a) for a in arrays] + [sys.getrefcount(a.dtype) for a in arrays] == refs
    assert sys.getrefcount(W) == group_refs
    assert len(gc.get_objects()) <= objects + 50
    # Under ASan (preloaded in a sanitizer build) freed memory sits in its
    # quarantine: RSS says nothing there, ASan itself checks the heap.
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):
        assert grown < 2048, f"RSS grew {grown} KiB over 10,000 ops"
