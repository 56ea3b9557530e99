"""The module's surface, as MLX programs see it: names, docstrings, the
cached group, conversions of inputs as MLX converts them, results of the
input's dtype, non-contiguous inputs copied, stream= accepted."""

import inspect
import pydoc

import numpy as np

import mlxd as mx
from mlxdtest import world

W = world()
R, N = W.rank(), W.size()


def test_distributed_is_the_module_itself():
    import mlxd.distributed

    assert mx.distributed is mx and mlxd.distributed is mx


def test_every_function_has_a_docstring_and_help_reads_like_mlx():
    for name in mx.__all__:
        obj = getattr(mx, name)
        if callable(obj) and not isinstance(obj, type(np.float32)) and not isinstance(obj, np.dtype):
            assert obj.__doc__ and obj.__doc__.strip(), name
    for m in ("rank", "size", "split"):
        assert getattr(mx.Group, m).__doc__
    for m in ("wait", "test"):
        assert getattr(mx.Request, m).__doc__
    # MLX's signatures, and mlxd's wait= (DESIGN.md: nonblocking operations).
    assert str(inspect.signature(mx.all_sum)) == "(x, *, group=None, stream=None, wait=True)"
    assert str(inspect.signature(mx.recv)) == "(shape, dtype, src, *, group=None, stream=None, wait=True)"
    text = pydoc.render_doc(mx, renderer=pydoc.plaintext)
    for words in ("All reduce sum.", "Gather arrays from all processes.", "init(strict=False, backend='any')"):
        assert words in text


def test_init_returns_the_same_group_every_time():
    assert mx.init() is W and mx.init(strict=True, backend="mpi") is W
    assert mx.is_available() is True


def test_python_values_convert_as_mlx_does():
    assert mx.all_sum(1).dtype == np.int32
    assert mx.all_sum(1.5).dtype == np.float32
    assert mx.all_sum(True).dtype == np.bool_
    assert mx.all_sum(1 + 2j).dtype == np.complex64
    assert mx.all_sum([1, 2]).dtype == np.int32
    assert mx.all_sum([[1.0], [2.0]]).dtype == np.float32
    assert np.array_equal(mx.all_sum([1, 2]), np.array([N, 2 * N]))
    assert mx.all_sum(np.float64(2.0)).dtype == np.float64
    assert mx.array([1, 2]).dtype == np.int32 and mx.ones(3).dtype == np.float32


def test_buffer_objects_and_results_keep_the_dtype():
    import array

    y = mx.all_sum(array.array("h", [1, 2, 3]))
    assert y.dtype == np.int16 and list(y) == [N, 2 * N, 3 * N]
    for dt in (np.uint64, np.int64, np.float16, np.float64, np.complex64, np.bool_):
        x = np.ones(5, dtype=dt)
        assert mx.all_max(x).dtype == x.dtype


def test_scalars_gather_to_shape_size():
    y = mx.all_gather(np.int32(R))
    assert y.shape == (N,) and list(y) == list(range(N))


def test_non_contiguous_and_byteswapped_inputs_are_copied():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    y = mx.all_sum(base[:, ::2])
    assert np.array_equal(y, base[:, ::2] * N) and y.flags.c_contiguous
    big = np.arange(5, dtype=">i4")
    assert np.array_equal(mx.all_sum(big), np.arange(5) * N)


def test_stream_is_accepted_and_send_returns_an_array():
    assert np.array_equal(mx.all_sum(np.ones(2), stream=None, group=W), np.full(2, N))
    if N > 1:
        if R == 0:
            out = mx.send([1, 2, 3], 1, stream="cpu")
            assert isinstance(out, np.ndarray) and out.dtype == np.int32
        elif R == 1:
            assert list(mx.recv_like(np.zeros(3, np.int32), 0)) == [1, 2, 3]


def test_bfloat16_from_float32_and_back():
    assert mx.from_bfloat16(mx.to_bfloat16([1.00390625, 1.01171875])).tolist() == [1.0, 1.015625]
    x = mx.to_bfloat16(np.array([1.0, 2.0, 3.0, -2.5], np.float32))
    assert x.dtype == mx.bfloat16 and x.itemsize == 2
    y = mx.all_sum(x)
    assert y.dtype == mx.bfloat16
    assert mx.from_bfloat16(y).tolist() == [1.0 * N, 2.0 * N, 3.0 * N, -2.5 * N]
    assert mx.from_bfloat16(mx.ones(2, dtype=mx.bfloat16)).tolist() == [1.0, 1.0]


def test_bad_arguments_raise_type_or_invalid_error():
    for call in (lambda: mx.all_sum(), lambda: mx.all_sum(1, group=3), lambda: mx.all_sum(1, bogus=1)):
        try:
            call()
        except TypeError:
            pass
        else:
            raise AssertionError("no TypeError")
    try:
        mx.all_sum(np.array(["a"]))
    except mx.InvalidError as e:
        assert isinstance(e, ValueError) and e.code == -1 and e.name == "MLXD_EINVAL"
    else:
        raise AssertionError("no InvalidError")
