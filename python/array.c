/* mlxd._core: numpy dtypes and arrays as libmlxd sees them. */
#include "core.h"

#include <string.h>

/* ---- dtypes and arrays ---- */

// The dtype of 1, 2, 4 or 8 bytes among four; -1 for another size.
static int by_size(int elsize, int t1, int t2, int t4, int t8) {
    switch (elsize) {
    case 1: return t1;
    case 2: return t2;
    case 4: return t4;
    case 8: return t8;
    }
    return -1;
}

// The mlxd dtype of a numpy dtype: -1 for none. bfloat16 is either
// mlxd's own representation (uint16 bit patterns, marked by the dtype's
// metadata {"mlxd": "bfloat16"}) or ml_dtypes' bfloat16 type.
static int dtype_of(PyArray_Descr *d) {
    if (d->metadata) {
        PyObject *v = PyDict_GetItemString(d->metadata, "mlxd");
        if (v && PyUnicode_Check(v) && PyUnicode_CompareWithASCIIString(v, "bfloat16") == 0 && d->elsize == 2)
            return MLXD_BFLOAT16;
    }
    switch (d->kind) {
    case 'b':
        return d->elsize == 1 ? MLXD_BOOL : -1;
    case 'u':
        return by_size(d->elsize, MLXD_UINT8, MLXD_UINT16, MLXD_UINT32, MLXD_UINT64);
    case 'i':
        return by_size(d->elsize, MLXD_INT8, MLXD_INT16, MLXD_INT32, MLXD_INT64);
    case 'f':
        return by_size(d->elsize, -1, MLXD_FLOAT16, MLXD_FLOAT32, MLXD_FLOAT64);
    case 'c':
        return d->elsize == 8 ? MLXD_COMPLEX64 : -1;
    }
    const char *name = d->typeobj ? d->typeobj->tp_name : "";
    const char *dot = strrchr(name, '.');
    if (d->elsize == 2 && strcmp(dot ? dot + 1 : name, "bfloat16") == 0)
        return MLXD_BFLOAT16;
    return -1;
}

int core_check_dtype(PyArray_Descr *d, mlxd_dtype *ret) {
    int t = dtype_of(d);
    if (t < 0) {
        PyObject *s = PyObject_Str((PyObject *) d);
        core_invalid("dtype %s is not one of MLX's dtypes", s ? PyUnicode_AsUTF8(s) : "?");
        Py_XDECREF(s);
        return -1;
    }
    *ret = (mlxd_dtype) t;
    return 0;
}

// x as an array libmlxd can read in place (C-contiguous, aligned, native
// byte order), converted as MLX converts: Python ints become int32, floats
// float32, complex numbers complex64, in scalars and in (nested) lists.
PyArrayObject *core_as_array(PyObject *x) {
    PyArrayObject *a;
    if (PyArray_Check(x)) {
        Py_INCREF(x);
        a = (PyArrayObject *) x;
    } else if (PyArray_IsScalar(x, Generic)) {
        a = (PyArrayObject *) PyArray_FromScalar(x, NULL);
    } else {
        bool python = PyLong_Check(x) || PyFloat_Check(x) || PyComplex_Check(x) || PyList_Check(x) ||
                      PyTuple_Check(x);
        a = (PyArrayObject *) PyArray_FROM_O(x);
        if (a && python) {
            int to = NPY_NOTYPE;
            switch (PyArray_TYPE(a)) {
            case NPY_LONG: case NPY_LONGLONG: to = NPY_INT32; break;
            case NPY_DOUBLE: to = NPY_FLOAT32; break;
            case NPY_CDOUBLE: to = NPY_COMPLEX64; break;
            }
            if (to != NPY_NOTYPE) {
                PyArrayObject *c = (PyArrayObject *) PyArray_Cast(a, to);
                Py_DECREF(a);
                a = c;
            }
        }
    }
    if (!a)
        return NULL;
    if (PyArray_ISCARRAY_RO(a) && PyArray_ISNOTSWAPPED(a))
        return a;
    PyArray_Descr *native = PyArray_DescrNewByteorder(PyArray_DESCR(a), NPY_NATIVE);
    PyArrayObject *c = native ? (PyArrayObject *) PyArray_FromArray(a, native, NPY_ARRAY_CARRAY_RO) : NULL;
    Py_DECREF(a);
    return c;
}

// Describes the array a (from core_as_array()) for libmlxd.
int core_describe(PyArrayObject *a, mlxd_array *ret) {
    mlxd_dtype t = (mlxd_dtype) 0;      // set by core_check_dtype()
    if (core_check_dtype(PyArray_DESCR(a), &t) < 0)
        return -1;
    int nd = PyArray_NDIM(a);
    if (nd > MLXD_MAX_NDIM) {
        core_invalid("an array of %d dimensions has more than %d", nd, MLXD_MAX_NDIM);
        return -1;
    }
    ret->dtype = t;
    ret->ndim = nd;
    for (int i = 0; i < nd; i++)
        ret->shape[i] = PyArray_DIM(a, i);
    ret->data = PyArray_DATA(a);
    return 0;
}

// A new C-ordered array of descr (a reference is taken) and the shape.
PyArrayObject *core_new_array(PyArray_Descr *descr, int nd, const int64_t *shape, mlxd_array *ret) {
    npy_intp dims[MLXD_MAX_NDIM];
    for (int i = 0; i < nd; i++)
        dims[i] = (npy_intp) shape[i];
    Py_INCREF(descr);
    PyArrayObject *o = (PyArrayObject *) PyArray_NewFromDescr(&PyArray_Type, descr, nd, dims, NULL, NULL, 0, NULL);
    if (o && ret) {
        ret->ndim = nd;
        memcpy(ret->shape, shape, sizeof ret->shape[0] * (size_t) nd);
        ret->data = PyArray_DATA(o);
    }
    return o;
}

// A shape argument: an int, or a sequence of ints.
int core_shape_arg(PyObject *s, int *ret_nd, int64_t *ret_shape) {
    if (PyLong_Check(s)) {
        long v = PyLong_AsLong(s);
        if (v == -1 && PyErr_Occurred())
            return -1;
        *ret_nd = 1;
        ret_shape[0] = v;
    } else {
        PyObject *seq = PySequence_Fast(s, "shape must be an int or a sequence of ints");
        if (!seq)
            return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        if (n > MLXD_MAX_NDIM) {
            Py_DECREF(seq);
            core_invalid("a shape of %zd dimensions has more than %d", n, MLXD_MAX_NDIM);
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
            if (v == -1 && PyErr_Occurred()) {
                Py_DECREF(seq);
                return -1;
            }
            ret_shape[i] = v;
        }
        Py_DECREF(seq);
        *ret_nd = (int) n;
    }
    for (int i = 0; i < *ret_nd; i++)
        if (ret_shape[i] < 0) {
            core_invalid("shape[%d] is negative (%lld)", i, (long long) ret_shape[i]);
            return -1;
        }
    return 0;
}

