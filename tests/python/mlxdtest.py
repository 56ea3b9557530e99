"""What the Python tests share: the job's world (strict: a daemon must
answer), MLX-style random data that is the same on every rank, the casts to
each dtype (bfloat16 in mlxd's representation), and file rendezvous between
the ranks in $MLXT_DIR (or $MH_DIR) with a deadline."""

import os
import time

import numpy as np

import mlxd as mx

DIR = os.environ.get("MLXT_DIR") or os.environ.get("MH_DIR") or "/tmp"
JOB = os.environ.get("MLXD_JOB", "nojob")


def world():
    return mx.init(strict=True)


def uniform(shape, seed=0):
    """Uniform [0, 1) float32 values, the same on every rank for one seed."""
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def is_bf16(dt):
    return dt is mx.bfloat16


def cast(x, dt):
    """x (float32) as dtype dt, as MLX's astype does."""
    return mx.to_bfloat16(x) if is_bf16(dt) else x.astype(dt)


def values(a, dt):
    """The numbers in an array of dtype dt, in a wide type to compute with."""
    if is_bf16(dt):
        return mx.from_bfloat16(a).astype(np.float64)
    if np.dtype(dt).kind == "c":
        return a.astype(np.complex128)
    if np.dtype(dt).kind == "f":
        return a.astype(np.float64)
    return a


def touch(name):
    open(os.path.join(DIR, f"{JOB}.{name}"), "w").close()


def wait_file(name, timeout=60.0):
    path = os.path.join(DIR, f"{JOB}.{name}")
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"no {path} within {timeout} s"
        time.sleep(0.002)


def write(name, text):
    path = os.path.join(DIR, f"{JOB}.{name}")
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def read(name, timeout=60.0):
    wait_file(name, timeout)
    with open(os.path.join(DIR, f"{JOB}.{name}")) as f:
        return f.read()
