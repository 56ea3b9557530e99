"""Nonblocking ops (wait=False): several requests in flight on one group are
matched in the order each member issued them, test() polls without
blocking, a Request dropped without wait() is waited for when it goes,
errors come out of wait() (the same one every time), and the results are
the blocking ops' own. Run with 2 and 3 ranks."""

import gc
import threading
import time
import weakref

import numpy as np
import pytest

import mlxd as mx
from mlxdtest import cast, read, uniform, values, write, world

W = world()
R, N = W.rank(), W.size()
pytestmark = pytest.mark.skipif(N < 2, reason="needs peers")
DEADLINE = 120.0


def test_requests_in_flight_are_matched_in_issue_order():
    a = mx.all_sum(np.full(5, R + 1, np.int64), wait=False)
    b = mx.all_max(np.full(3, float(R), np.float32), wait=False)
    c = mx.all_gather(np.int32(R), wait=False)
    # A ring: every rank sends to the next and receives from the one before.
    s = mx.send(np.arange(4, dtype=np.int16) + 10 * R, (R + 1) % N, wait=False)
    v = mx.recv((4,), np.int16, (R - 1) % N, wait=False)
    # A blocking op behind the requests: issuing did not keep the group.
    d = mx.all_min(np.full(2, R, np.int8))
    e = mx.sum_scatter(np.ones((2 * N, 2), np.float64), wait=False)
    assert isinstance(a, mx.Request) and "all_sum" in repr(a)
    # Waited for in another order than issued.
    assert np.array_equal(e.wait(), np.full((2, 2), N, np.float64))
    assert np.array_equal(v.wait(), np.arange(4, dtype=np.int16) + 10 * ((R - 1) % N))
    assert np.array_equal(s.wait(), np.arange(4, dtype=np.int16) + 10 * R)
    assert np.array_equal(c.wait(), np.arange(N, dtype=np.int32))
    assert np.array_equal(b.wait(), np.full(3, N - 1, np.float32))
    assert np.array_equal(a.wait(), np.full(5, N * (N + 1) // 2, np.int64))
    assert np.array_equal(d, np.zeros(2, np.int8))
    # A second wait gives the same array.
    assert a.wait() is a.wait() and a.test()


def test_test_polls_until_the_op_ended():
    if R == 0:
        req = mx.all_sum(np.ones(8, np.float32), wait=False)
        # The others join only once this rank saw the op unfinished.
        assert req.test() is False
        write("polled", "1")
        deadline = time.monotonic() + DEADLINE
        while not req.test():
            assert time.monotonic() < deadline, f"test() not True within {DEADLINE} s"
            time.sleep(0.001)
        assert req.test() is True
        assert np.array_equal(req.wait(), np.full(8, N, np.float32))
    else:
        read("polled", DEADLINE)
        assert np.array_equal(mx.all_sum(np.ones(8, np.float32)), np.full(8, N, np.float32))


def test_request_dropped_without_wait_is_waited_for_and_keeps_its_arrays():
    x = np.full(1000, R + 1, np.float64)
    alive = weakref.ref(x)
    if R == 0:
        req = mx.all_sum(x, wait=False)
        del x
        gc.collect()
        assert alive() is not None, "the request let go of its input"
        write("dropping", "1")
        del req  # waits until the others joined
        gc.collect()
        assert alive() is None, "the dropped request kept its input"
    else:
        read("dropping", DEADLINE)
        assert np.array_equal(mx.all_sum(x), np.full(1000, N * (N + 1) / 2))
    # The group goes on: the next op is matched with the next op.
    assert np.array_equal(mx.all_sum(np.full(3, R, np.int32)), np.full(3, N * (N - 1) // 2, np.int32))


def test_errors_come_out_of_wait_the_same_each_time():
    x = np.ones(3, np.float32 if R == 0 else np.int32)
    req = mx.all_sum(x, wait=False)
    with pytest.raises(mx.MismatchError) as first:
        req.wait()
    assert first.value.code == -3 and first.value.name == "MLXD_EMISMATCH"
    with pytest.raises(mx.MismatchError) as second:
        req.wait()
    assert second.value is first.value and req.test() is True
    # What the library refuses before sending raises at the issue, as blocking.
    with pytest.raises(mx.InvalidError):
        mx.send(np.ones(2), R, wait=False)
    with pytest.raises(mx.InvalidError):
        mx.barrier(wait=False)
    mx.barrier()


DTYPES = [mx.int8, mx.uint8, mx.int16, mx.uint16, mx.int32, mx.uint32, mx.int64,
          mx.float16, mx.bfloat16, mx.float32, mx.float64, mx.complex64]


@pytest.mark.parametrize("dt", DTYPES, ids=str)
def test_results_equal_the_blocking_ops(dt):
    x = cast(uniform((N, 2 * N, 3), seed=7) * 10, dt)[R]
    ops = [mx.all_sum, mx.all_max, mx.all_min, mx.all_gather, mx.sum_scatter]
    reqs = [op(x, wait=False) for op in ops]
    peer = mx.recv_like(x, (R - 1) % N, wait=False)
    mx.send(x, (R + 1) % N)
    blocking = [op(x) for op in ops]
    for req, want in zip(reqs, blocking):
        got = req.wait()
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(values(got, dt), values(want, dt))
    want = cast(uniform((N, 2 * N, 3), seed=7) * 10, dt)[(R - 1) % N]
    assert np.array_equal(values(peer.wait(), dt), values(want, dt))


def test_another_thread_calls_on_the_group_while_a_request_is_out():
    req = mx.all_sum(np.full(4, 2, np.int32), wait=False)
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("y", mx.all_sum(np.full(4, 3, np.int32))))
    t.start()
    t.join(DEADLINE)
    assert not t.is_alive(), "a later op on the group hung behind an outstanding request"
    assert np.array_equal(req.wait(), np.full(4, 2 * N, np.int32))
    assert np.array_equal(got["y"], np.full(4, 3 * N, np.int32))
