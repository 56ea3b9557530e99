"""mlxd: MLX's distributed communication, served by the host's mlxd daemon.

The names are those of ``mlx.core.distributed``, so that a program written
for MLX runs with ``import mlx.core as mx`` changed to ``import mlxd as mx``
(``mlxd.distributed`` is this module itself). Arrays are numpy arrays:
every op takes anything numpy reads as an array and returns a new
``numpy.ndarray`` of the input's dtype.

Functions
---------
is_available([backend])
    Check if a communication backend (an mlxd daemon) is available.
init([strict, backend])
    Initialize the communication backend and create the global
    communication group (the same object on every call).
all_sum(x, *[, group, stream])
    All reduce sum.
all_max(x, *[, group, stream]), all_min(x, *[, group, stream])
    All reduce max and min.
all_gather(x, *[, group, stream])
    Gather arrays from all processes.
sum_scatter(x, *[, group, stream])
    Sum across processes and shard the result along the first axis.
send(x, dst, *[, group, stream])
    Send an array from the current process to the process that has rank
    dst in the group.
recv(shape, dtype, src, *[, group, stream])
    Recv an array with shape shape and dtype dtype from process with rank
    src.
recv_like(x, src, *[, group, stream])
    Recv an array with shape and type like x from process with rank src.
barrier([group])
    Wait for every process of the group.
alloc(shape, dtype, *[, group])
    A numpy array in memory the daemon reads and writes in place.

Nonblocking ops
---------------
Every op takes ``wait=True``; with ``wait=False`` it is issued and returns
an mlxd.Request at once, so that the program computes while it runs:
Request.wait() returns the result (the new array; for send, x as an
array) or raises the op's error, the same on every later call;
Request.test() never blocks and is True once the op ended. The Request
keeps the arrays alive until the op ended: do not write x or touch the
result before wait(). One dropped without wait() is waited for when it
goes. Ops are matched in the order every member issued them, with or
without wait. barrier has no nonblocking form (wait=False raises
InvalidError).

Group
-----
An mlxd.Group represents a group of independent processes that can
communicate: rank(), size(), split(color, key=-1).

Dtypes
------
MLX's names: bool_, uint8, uint16, uint32, uint64, int8, int16, int32,
int64, float16, bfloat16, float32, float64, complex64. All but bfloat16
are numpy's own. bfloat16 is ml_dtypes' when that package is installed;
otherwise it is ``numpy.dtype(numpy.uint16, metadata={"mlxd": "bfloat16"})``:
arrays of it hold bfloat16 bit patterns, made from float32 values with
to_bfloat16() (or array/ones/zeros with dtype=bfloat16) and read back as
float32 with from_bfloat16(). (numpy's own ``astype`` would convert the
numbers to integers, not to bfloat16: use to_bfloat16.)

Conversions follow MLX: a Python int becomes int32, a float float32, a
complex complex64 (also inside lists); other arrays keep their dtype, and
a non-contiguous array is copied.

Errors
------
Every failure raises mlxd.Error (a RuntimeError) with .code (the
negative MLXD_E* code) and .name, or one of its subclasses, one per code:
InvalidError (also ValueError), UnavailableError, MismatchError,
PeerError, TimeoutError (also the builtin TimeoutError), LimitError (also
MemoryError), ProtocolError, DeniedError (also PermissionError),
InternalError.

Threads and signals
-------------------
Every wait releases the GIL. Calls on one Group from several threads take
turns; Request.wait() takes the group's turn for the whole wait (issuing
with wait=False only for the issue). Ctrl-C interrupts an op waiting on the main thread within about
20 ms, raising KeyboardInterrupt; the process has then left that group
(what it had handed over still completes; the other members' ops that can
no longer complete get PeerError).

Not distributed
---------------
array, ones, zeros and eval are the few numpy-backed stand-ins for
mlx.core's array functions that MLX's distributed examples use, so that
they run unchanged: array(a, dtype=None) converts as above, ones/zeros
default to float32, and eval(*arrays) does nothing (numpy is eager).
"""

import sys as _sys

import numpy as _np

from ._core import (
    DeniedError,
    Error,
    Group,
    InternalError,
    InvalidError,
    LimitError,
    MismatchError,
    PeerError,
    ProtocolError,
    Request,
    TimeoutError,
    UnavailableError,
    __version__,
    all_gather,
    all_max,
    all_min,
    all_sum,
    alloc,
    barrier,
    init,
    is_available,
    recv,
    recv_like,
    send,
    sum_scatter,
)

# ---- dtypes, by MLX's names ----

bool_ = _np.bool_
uint8 = _np.uint8
uint16 = _np.uint16
uint32 = _np.uint32
uint64 = _np.uint64
int8 = _np.int8
int16 = _np.int16
int32 = _np.int32
int64 = _np.int64
float16 = _np.float16
float32 = _np.float32
float64 = _np.float64
complex64 = _np.complex64

try:
    import ml_dtypes as _ml_dtypes

    bfloat16 = _np.dtype(_ml_dtypes.bfloat16)
except ImportError:
    _ml_dtypes = None
    bfloat16 = _np.dtype(_np.uint16, metadata={"mlxd": "bfloat16"})

# mlxd's own bfloat16 representation, also when ml_dtypes is there.
_bf16_bits = _np.dtype(_np.uint16, metadata={"mlxd": "bfloat16"})


def _is_bfloat16(dt):
    dt = _np.dtype(dt)
    return (dt.metadata or {}).get("mlxd") == "bfloat16" or (
        dt.itemsize == 2 and dt.type.__name__ == "bfloat16"
    )


def to_bfloat16(x):
    """to_bfloat16(x)

    A bfloat16 array (of ``mlxd.bfloat16``) of the values of x, rounded to
    nearest even from float32.
    """
    f = _np.ascontiguousarray(x, dtype=_np.float32)
    if _ml_dtypes is not None:
        return f.astype(bfloat16)
    u = f.view(_np.uint32)
    bits = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(_np.uint16)
    bits[_np.isnan(f)] = 0x7FC0
    return bits.view(_bf16_bits)


def from_bfloat16(x):
    """from_bfloat16(x)

    The values of a bfloat16 array (mlxd's or ml_dtypes') as float32.
    """
    x = _np.ascontiguousarray(x)
    if x.dtype.type.__name__ == "bfloat16":
        return x.astype(_np.float32)
    return (x.view(_np.uint16).astype(_np.uint32) << 16).view(_np.float32)


# ---- the few array functions of mlx.core the examples use ----


def _mlx_dtype(a):
    """The dtype MLX would give a Python value: int32, float32, complex64."""
    k = a.dtype.kind
    if k == "i" and a.dtype.itemsize == 8:
        return a.astype(_np.int32)
    if k == "f" and a.dtype.itemsize == 8:
        return a.astype(_np.float32)
    if k == "c" and a.dtype.itemsize == 16:
        return a.astype(_np.complex64)
    return a


def array(a, dtype=None):
    """array(a, dtype=None)

    A numpy array of a, converted as MLX converts: Python ints become int32,
    floats float32; other arrays keep their dtype unless dtype is given.
    """
    if dtype is not None:
        if _is_bfloat16(dtype):
            return to_bfloat16(a)
        return _np.array(a, dtype=dtype)
    if isinstance(a, _np.ndarray) or isinstance(a, _np.generic):
        return _np.array(a)
    return _mlx_dtype(_np.array(a))


def ones(shape, dtype=float32):
    """ones(shape, dtype=float32)

    An array of ones (numpy-backed stand-in for mlx.core.ones).
    """
    if _is_bfloat16(dtype):
        return to_bfloat16(_np.ones(shape, _np.float32))
    return _np.ones(shape, dtype)


def zeros(shape, dtype=float32):
    """zeros(shape, dtype=float32)

    An array of zeros (numpy-backed stand-in for mlx.core.zeros).
    """
    if _is_bfloat16(dtype):
        return to_bfloat16(_np.zeros(shape, _np.float32))
    return _np.zeros(shape, dtype)


def eval(*args):
    """eval(*args)

    Does nothing: numpy computes eagerly (stand-in for mlx.core.eval).
    """
    return None


# mlxd.distributed is this module, so that mx.distributed.init() works with
# `import mlxd as mx`, and `import mlxd.distributed` finds it too.
distributed = _sys.modules[__name__]
_sys.modules[__name__ + ".distributed"] = distributed

__all__ = [
    "Error", "InvalidError", "UnavailableError", "MismatchError", "PeerError",
    "TimeoutError", "LimitError", "ProtocolError", "DeniedError", "InternalError",
    "Group", "Request", "is_available", "init", "all_sum", "all_max", "all_min", "all_gather",
    "sum_scatter", "send", "recv", "recv_like", "barrier", "alloc",
    "bool_", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
    "float16", "bfloat16", "float32", "float64", "complex64",
    "to_bfloat16", "from_bfloat16", "array", "ones", "zeros", "eval", "distributed",
]
