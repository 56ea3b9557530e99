"""MLX's own distributed communication tests (mlx_distributed_tests.py and
the mpi, ring and nccl variants in ml-explore/mlx python/tests), ported to
mlxd and numpy: the same cases, dtypes, sizes and tolerances, for any number
of ranks (MLX's assume 8 where they split; here the expected sizes and
values are worked out for the size at hand). The cases that need mlx.nn or
autograd (shard_linear, average_gradients, all_gather's vjp) are not
communication and are left out."""

import numpy as np
import pytest

import mlxd as mx
from mlxdtest import cast, is_bf16, uniform, values, world

W = world()
R, N = W.rank(), W.size()

SIZES = [(7,), (10,), (1024,), (1024, 1024)]
REDUCE_DTYPES = [
    (mx.int8, 0), (mx.uint8, 0), (mx.int32, 0), (mx.uint32, 0),
    (mx.float32, 1e-6), (mx.float16, 5e-3), (mx.bfloat16, 1e-1),
]
EXTRA_DTYPES = [(mx.int16, 0), (mx.uint16, 0), (mx.complex64, 1e-6)]


def check_reductions(g, dt, rtol, sh):
    x = cast(uniform((g.size(),) + sh) * 10, dt)
    mine = x[g.rank()]
    y = mx.distributed.all_sum(mine, group=g)
    assert y.dtype == mine.dtype and y.shape == mine.shape
    if rtol > 0:
        z = values(x, dt).sum(0)
        err = np.abs(values(y, dt) - z) / np.abs(z)
        assert err.max() <= rtol
    else:
        # Integers wrap as in C: the sum in the dtype itself.
        assert np.array_equal(y, x.sum(0, dtype=x.dtype))
    for op, ref in ((mx.distributed.all_max, np.max), (mx.distributed.all_min, np.min)):
        y = op(mine, group=g)
        if is_bf16(dt):
            assert np.array_equal(values(y, dt), ref(values(x, dt), 0))
        else:
            assert np.array_equal(y, ref(x, 0))


@pytest.mark.parametrize("dt,rtol", REDUCE_DTYPES, ids=lambda v: str(v))
def test_all_reduce(dt, rtol):
    for sh in SIZES:
        check_reductions(W, dt, rtol, sh)


@pytest.mark.parametrize("dt,rtol", EXTRA_DTYPES, ids=lambda v: str(v))
def test_all_reduce_extra(dt, rtol):
    group = W.split(R % 2)
    for sh in SIZES:
        for g in (W, group):
            check_reductions(g, dt, rtol, sh)


@pytest.mark.parametrize("dt,rtol", [(mx.float32, 1e-6), (mx.float16, 5e-3), (mx.bfloat16, 1e-1)],
                         ids=lambda v: str(v))
def test_all_reduce_split(dt, rtol):
    group = W.split(R % 2)
    for sh in SIZES:
        check_reductions(group, dt, rtol, sh)



@pytest.mark.parametrize("dt", [mx.int8, mx.uint8, mx.int32, mx.uint32, mx.float32, mx.float16,
                                mx.bfloat16, mx.int16, mx.uint16, mx.complex64], ids=str)
def test_all_gather(dt):
    sub = W.split(R % 2)
    for g in (None, sub):
        x = mx.ones((2, 2, 4), dtype=dt)
        y = mx.distributed.all_gather(x, group=g)
        size = N if g is None else g.size()
        assert y.shape == (size * 2, 2, 4)
        assert np.all(values(y, dt) == 1)


def test_groups():
    world = mx.distributed.init()
    assert 0 <= world.rank() < world.size() == N
    world2 = mx.distributed.init()
    assert world2 is world
    assert world.size() == world2.size() and world.rank() == world2.rank()

    sub = world.split(world.rank() % 2)
    assert sub.size() == (N + 1 - R % 2) // 2
    assert sub.rank() == world.rank() // 2

    sub = world.split(world.rank() // 2)
    assert sub.size() == min(2, N - 2 * (R // 2))


def test_mixed():
    # world: 0 1 2 3 ...; sub_1: the pairs {2k, 2k + 1}; sub_2: the ranks of
    # one parity, in order.
    sub_1 = W.split(R // 2)
    sub_2 = W.split(R % 2)
    x = mx.ones((1, 8)) * R
    y = mx.distributed.all_sum(x, group=sub_1)
    z = mx.distributed.all_gather(y, group=sub_2)
    pair_sum = [sum(r for r in (2 * k, 2 * k + 1) if r < N) for k in range(sub_2.size())]
    target = np.array(pair_sum, dtype=np.float32).reshape(-1, 1)
    assert z.shape == (sub_2.size(), 8)
    assert np.all(z == target)


def test_send_recv():
    pairs = W.split(R // 2)
    if pairs.size() < 2:
        pytest.skip("this rank has no partner")
    neighbor = (pairs.rank() + 1) % 2
    send = pairs.rank() == 0
    x = mx.ones(10)
    for _ in range(10):
        if send:
            mx.distributed.send(2 * x, neighbor, group=pairs)
        else:
            x = mx.distributed.recv_like(x, neighbor, group=pairs)
        send = not send
    assert np.all(x == (1024 if pairs.rank() == 0 else 512))


@pytest.mark.parametrize("dt", [mx.int8, mx.uint8, mx.int16, mx.uint16, mx.int32, mx.uint32, mx.float32,
                                mx.float16, mx.bfloat16, mx.complex64], ids=str)
def test_ring_send_recv(dt):
    if N < 2:
        pytest.skip("a ring needs two ranks")
    right, left = (R + 1) % N, (R + N - 1) % N
    for sh in SIZES:
        x = cast(uniform((N,) + sh) * 10, dt)
        if R % 2 == 0:
            y = mx.distributed.send(x[R], right)
            z = mx.distributed.recv_like(y, left)
        else:
            z = mx.distributed.recv_like(x[R], left)
            y = mx.distributed.send(x[R], right)
        assert np.array_equal(y, x[R])
        assert np.array_equal(z, x[left])
        assert z.dtype == x.dtype


@pytest.mark.parametrize("dt,rtol", [(mx.float32, 1e-6), (mx.float16, 5e-3), (mx.bfloat16, 1e-1)],
                         ids=lambda v: str(v))
def test_sum_scatter(dt, rtol):
    for sh in [(8 * N,), (64 * N,), (1024 * N,), (128 * N, 1024)]:
        x = cast(uniform(sh, seed=R + 1) * 10, dt)
        y = mx.distributed.sum_scatter(x)
        z = mx.distributed.all_sum(x)
        chunk = sh[0] // N
        z_ref = values(z[R * chunk:(R + 1) * chunk], dt)
        assert y.shape == (chunk,) + sh[1:]
        err = np.abs(values(y, dt) - z_ref) / np.abs(z_ref)
        assert err.max() <= rtol


def test_barrier_and_recv_by_shape():
    mx.distributed.barrier()
    if N < 2:
        return
    if R == 0:
        for dst in range(1, N):
            mx.distributed.send(np.arange(6, dtype=np.int64).reshape(2, 3) * dst, dst)
    else:
        got = mx.distributed.recv((2, 3), mx.int64, 0)
        assert got.dtype == np.int64 and np.array_equal(got, np.arange(6).reshape(2, 3) * R)
    mx.distributed.barrier(W)
