"""mlxd.alloc: zero-filled arrays in memory shared with the daemon, usable
by every op, surviving the group they were made with, and freed (unmapped)
with the last reference to the array or to a view of it."""

import gc

import numpy as np

import mlxd as mx
from mlxdtest import world

W = world()
R, N = W.rank(), W.size()


def mappings():
    """How many mlxd_alloc segments this process has mapped."""
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if "memfd:mlxd" in line)


def test_alloc_gives_a_zeroed_array_the_ops_use_in_place():
    a = mx.alloc((4, 256), mx.float32)
    assert a.shape == (4, 256) and a.dtype == np.float32 and not a.any()
    a[:] = R + 1
    assert np.all(mx.all_sum(a) == N * (N + 1) / 2)
    assert np.all(mx.all_gather(a[1:3]) == np.repeat(np.arange(1, N + 1, dtype=np.float32), 2)[:, None])


def test_alloc_survives_its_group_and_goes_with_the_last_reference():
    base = mappings()
    sub = W.split(0)
    a = mx.alloc((1 << 16,), mx.int32, group=sub)
    assert mappings() == base + 1
    del sub
    gc.collect()
    a[:] = 1
    assert np.all(mx.all_sum(a) == N)  # on the world group, after its own group is gone
    view = a[10:20]
    del a
    gc.collect()
    assert mappings() == base + 1  # the view keeps it
    assert np.all(view == 1)
    del view
    gc.collect()
    assert mappings() == base
    mx.barrier()


def test_alloc_of_every_dtype():
    for dt in (mx.bool_, mx.uint16, mx.int64, mx.float16, mx.bfloat16, mx.float64, mx.complex64):
        a = mx.alloc((3,), dt)
        assert a.dtype == np.dtype(dt) and a.nbytes == 3 * np.dtype(dt).itemsize
