"""Threads: every wait releases the GIL (another thread makes progress while
one waits), and calls on one Group from several threads take turns
(serialized), so that each call is one whole op of this member."""

import threading

import numpy as np
import pytest

import mlxd as mx
from mlxdtest import read, write, world

W = world()
R, N = W.rank(), W.size()


def test_another_thread_runs_while_one_waits():
    if N < 2:
        pytest.skip("needs a member to wait for")
    if R == 0:
        done = threading.Event()
        result = {}

        def waiter():
            result["sum"] = mx.all_sum(np.ones(4))
            done.set()

        t = threading.Thread(target=waiter)
        t.start()
        # Rank 1 joins the all_sum only once this thread has counted to
        # 200000 in Python while the other waits: with the GIL held by the
        # waiter this would never happen.
        count = 0
        while count < 200000:
            count += 1
        write("counted", str(count))
        assert done.wait(60)
        t.join()
        assert np.all(result["sum"] == N)
    else:
        assert int(read("counted")) == 200000
        assert np.all(mx.all_sum(np.ones(4)) == N)


def test_calls_from_several_threads_on_one_group_are_serialized():
    errors = []

    def worker(k):
        try:
            for _ in range(200):
                y = mx.all_sum(np.full(8, R + 1, np.int64))
                assert np.all(y == N * (N + 1) // 2)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    mx.barrier()


def test_init_from_several_threads_gives_one_group():
    # A process of its own, whose first init() the threads race for.
    import os
    import subprocess
    import sys

    code = ("import threading, mlxd\n"
            "got = []\n"
            "ts = [threading.Thread(target=lambda: got.append(mlxd.init())) for _ in range(8)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\n"
            "assert len(got) == 8 and all(g is got[0] for g in got), got\n"
            "print('one group')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLXD_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "one group", out.stderr
