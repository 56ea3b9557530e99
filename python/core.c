/* mlxd._core: the CPython extension under `import mlxd`, over libmlxd.
 *
 * What lives here: the Group type (a libmlxd group, a lock that serializes
 * the calls made on it from several threads), the collectives as module
 * functions with MLX's signatures, mlxd.alloc, and the exception classes.
 * Tensors are numpy arrays: an input is read in place when it is a dense,
 * aligned, native-order array (anything else is converted once), and every
 * result is a new array that the library writes straight into. Every wait
 * runs with the GIL released; on the main thread it is interruptible
 * (mlxd_set_interrupt): Python's signal handlers run about every
 * MLXD_INTERRUPT_SLICE_MS, and one that raises (Ctrl-C's KeyboardInterrupt)
 * ends the wait, after which the process has left that group.
 *
 * The Python side (mlxd/__init__.py) adds the dtypes, the bfloat16
 * conversions and the few numpy-backed helpers MLX programs use. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <stdbool.h>
#include <string.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <mlxd/mlxd.h>

/* ---- errors ---- */

// Indexed by -code: the class, its name and its docstring.
#define N_CODES 11
static PyObject *error_base;
static PyObject *error_class[N_CODES];

static const struct {
    const char *cls, *code_name, *doc;
} error_info[N_CODES] = {
    { NULL, "MLXD_OK", NULL },
    { "InvalidError", "MLXD_EINVAL", "A bad argument or request (MLXD_EINVAL); also a ValueError." },
    { "UnavailableError", "MLXD_EUNAVAILABLE",
      "No daemon answers, it is shutting down, or the connection to it was lost (MLXD_EUNAVAILABLE)." },
    { "MismatchError", "MLXD_EMISMATCH",
      "The members of the group disagree on an op: op, dtype, shape or peer (MLXD_EMISMATCH)." },
    { "PeerError", "MLXD_EPEER", "A member of the group died or left (MLXD_EPEER)." },
    { "TimeoutError", "MLXD_ETIMEDOUT",
      "A member did not arrive before the deadline; the message names it (MLXD_ETIMEDOUT); "
      "also the builtin TimeoutError." },
    { "LimitError", "MLXD_ENOMEM", "Out of memory, or over a limit of the daemon (MLXD_ENOMEM); also a MemoryError." },
    { "ProtocolError", "MLXD_EPROTO", "The library and the daemon do not understand each other (MLXD_EPROTO)." },
    { "DeniedError", "MLXD_EDENIED",
      "Not allowed: credentials, another user's daemon or job (MLXD_EDENIED); also a PermissionError." },
    { "InternalError", "MLXD_EINTERNAL", "A bug or an MPI failure in the daemon (MLXD_EINTERNAL)." },
    { NULL, "MLXD_EINTR", NULL },
};

// Raises the exception of code with detail (the library's or the daemon's
// message; "" gives the code's own text). Returns NULL for `return raise_code(...)`.
static PyObject *raise_code(int code, const char *detail) {
    // An interrupted wait: the signal handler's exception (KeyboardInterrupt)
    // is already set, and is the one to see.
    if (code == MLXD_EINTR) {
        if (!PyErr_Occurred())
            PyErr_SetNone(PyExc_KeyboardInterrupt);
        return NULL;
    }
    int i = code < 0 && code > -N_CODES ? -code : 0;
    PyObject *cls = i && error_class[i] ? error_class[i] : error_base;
    const char *name = i ? error_info[i].code_name : "MLXD_EUNKNOWN";
    PyObject *msg = detail && *detail ? PyUnicode_FromFormat("%s: %s", name, detail)
                                      : PyUnicode_FromString(mlxd_strerror(code));
    if (!msg)
        return NULL;
    PyObject *exc = PyObject_CallOneArg(cls, msg);
    Py_DECREF(msg);
    if (!exc)
        return NULL;
    PyObject *c = PyLong_FromLong(code), *n = PyUnicode_FromString(name);
    if (c && n && PyObject_SetAttrString(exc, "code", c) == 0 && PyObject_SetAttrString(exc, "name", n) == 0)
        PyErr_SetObject(cls, exc);
    Py_XDECREF(c);
    Py_XDECREF(n);
    Py_DECREF(exc);
    return NULL;
}

static PyObject *invalid(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    PyOS_vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return raise_code(MLXD_EINVAL, buf);
}

/* ---- waiting with the GIL released ---- */

static unsigned long main_thread;

// The interrupt check of a wait on the main thread: runs Python's pending
// signal handlers; true when one raised (its exception stays set).
static bool check_signals(void *arg) {
    (void) arg;
    PyGILState_STATE st = PyGILState_Ensure();
    bool stop = PyErr_CheckSignals() < 0;
    PyGILState_Release(st);
    return stop;
}

// Brackets a blocking libmlxd call: the GIL is released, the group's lock
// (if any) held, and on the main thread the wait is interruptible.
struct blocking {
    PyThreadState *ts;
    PyThread_type_lock lock;
    bool interruptible;
};

static void blocking_begin_as(struct blocking *b, PyThread_type_lock lock, bool interruptible) {
    b->lock = lock;
    b->interruptible = interruptible;
    b->ts = PyEval_SaveThread();
    if (lock)
        PyThread_acquire_lock(lock, WAIT_LOCK);
    if (b->interruptible)
        mlxd_set_interrupt(check_signals, NULL);
}

static void blocking_begin(struct blocking *b, PyThread_type_lock lock) {
    blocking_begin_as(b, lock, PyThread_get_thread_ident() == main_thread);
}

static void blocking_end(struct blocking *b) {
    if (b->interruptible)
        mlxd_set_interrupt(NULL, NULL);
    if (b->lock)
        PyThread_release_lock(b->lock);
    PyEval_RestoreThread(b->ts);
}

/* ---- Group ---- */

typedef struct {
    PyObject_HEAD
    mlxd_group *g;
    PyThread_type_lock lock;            // one call on g at a time
    int rank, size;
} GroupObject;

static PyTypeObject GroupType;
static PyObject *world;                 // init()'s group, made once

static PyObject *group_wrap(mlxd_group *g) {
    GroupObject *o = PyObject_New(GroupObject, &GroupType);
    if (!o) {
        mlxd_group_free(g);
        return NULL;
    }
    o->g = g;
    o->rank = mlxd_group_rank(g);
    o->size = mlxd_group_size(g);
    o->lock = PyThread_allocate_lock();
    if (!o->lock) {
        Py_DECREF(o);
        return PyErr_NoMemory();
    }
    return (PyObject *) o;
}

static void group_dealloc(GroupObject *o) {
    if (o->g) {
        // Saying Goodbye may take the daemon a moment: let other threads run.
        mlxd_group *g = o->g;
        o->g = NULL;
        Py_BEGIN_ALLOW_THREADS
        mlxd_group_free(g);
        Py_END_ALLOW_THREADS
    }
    if (o->lock)
        PyThread_free_lock(o->lock);
    PyObject_Free(o);
}

static PyObject *group_rank(GroupObject *o, PyObject *unused) {
    return PyLong_FromLong(o->rank);
}

static PyObject *group_size(GroupObject *o, PyObject *unused) {
    return PyLong_FromLong(o->size);
}

static PyObject *group_repr(GroupObject *o) {
    return PyUnicode_FromFormat("<mlxd.Group rank %d of %d>", o->rank, o->size);
}

/* ---- arguments ---- */

// Fastcall argument parsing: names lists every parameter, the first npos of
// which may be given by position; those before nreq are required. ret[i]
// gets a borrowed reference or NULL.
static int parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int nreq,
                      int npos, const char *const *names, int nnames, PyObject **ret) {
    for (int i = 0; i < nnames; i++)
        ret[i] = NULL;
    if (nargs > npos) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d positional arguments (%zd given)", fname, npos, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        ret[i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        int j = 0;
        while (j < nnames && PyUnicode_CompareWithASCIIString(key, names[j]) != 0)
            j++;
        if (j == nnames) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, key);
            return -1;
        }
        if (ret[j]) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname, names[j]);
            return -1;
        }
        ret[j] = args[nargs + k];
    }
    for (int i = 0; i < nreq; i++)
        if (!ret[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return -1;
        }
    return 0;
}

static PyObject *init_world(bool strict);

// The group an op runs on: the one given, or init()'s for None.
static GroupObject *group_arg(PyObject *g) {
    if (!g || g == Py_None) {
        if (!world && !init_world(false))
            return NULL;
        return (GroupObject *) world;
    }
    if (!PyObject_TypeCheck(g, &GroupType)) {
        PyErr_Format(PyExc_TypeError, "group must be an mlxd.Group or None, not %s", Py_TYPE(g)->tp_name);
        return NULL;
    }
    return (GroupObject *) g;
}

static int int_arg(const char *what, PyObject *o, int *ret) {
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < INT_MIN || v > INT_MAX) {
        invalid("%s %ld is out of range", what, v);
        return -1;
    }
    *ret = (int) v;
    return 0;
}

// The wait= argument of an op: true when not given.
static int wait_arg(PyObject *o, bool *ret) {
    int v = o ? PyObject_IsTrue(o) : 1;
    if (v < 0)
        return -1;
    *ret = v;
    return 0;
}

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

static int check_dtype(PyArray_Descr *d, mlxd_dtype *ret) {
    int t = dtype_of(d);
    if (t < 0) {
        PyObject *s = PyObject_Str((PyObject *) d);
        invalid("dtype %s is not one of MLX's dtypes", s ? PyUnicode_AsUTF8(s) : "?");
        Py_XDECREF(s);
        return -1;
    }
    *ret = (mlxd_dtype) t;
    return 0;
}

// x as an array libmlxd can read in place (C-contiguous, aligned, native
// byte order), converted as MLX converts: Python ints become int32, floats
// float32, complex numbers complex64, in scalars and in (nested) lists.
static PyArrayObject *as_array(PyObject *x) {
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

// Describes the array a (from as_array()) for libmlxd.
static int describe(PyArrayObject *a, mlxd_array *ret) {
    mlxd_dtype t;
    if (check_dtype(PyArray_DESCR(a), &t) < 0)
        return -1;
    int nd = PyArray_NDIM(a);
    if (nd > MLXD_MAX_NDIM) {
        invalid("an array of %d dimensions has more than %d", nd, MLXD_MAX_NDIM);
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
static PyArrayObject *new_array(PyArray_Descr *descr, int nd, const int64_t *shape, mlxd_array *ret) {
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
static int shape_arg(PyObject *s, int *ret_nd, int64_t *ret_shape) {
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
            invalid("a shape of %zd dimensions has more than %d", n, MLXD_MAX_NDIM);
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
            invalid("shape[%d] is negative (%lld)", i, (long long) ret_shape[i]);
            return -1;
        }
    return 0;
}

/* ---- init, is_available ---- */

static PyObject *init_world(bool strict) {
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    mlxd_group *g = NULL;
    struct blocking b;
    int r;
    o.strict = strict;
    blocking_begin(&b, NULL);
    r = mlxd_init(&o, &g);
    blocking_end(&b);
    if (r < 0)
        return raise_code(r, mlxd_init_error());
    // Another thread may have made it while this one waited: keep one
    // (libmlxd's second handle on the same member just goes).
    if (world) {
        Py_BEGIN_ALLOW_THREADS
        mlxd_group_free(g);
        Py_END_ALLOW_THREADS
        return world;
    }
    world = group_wrap(g);
    return world;
}

static const char *const backends[] = { "any", "mlxd", "mpi", "ring", "nccl", "jaccl", NULL };

static int backend_arg(PyObject *o) {
    if (!o)
        return 0;
    if (PyUnicode_Check(o))
        for (int i = 0; backends[i]; i++)
            if (PyUnicode_CompareWithASCIIString(o, backends[i]) == 0)
                return 0;
    PyObject *s = PyObject_Repr(o);
    invalid("backend %s is not one of 'any', 'mlxd', 'mpi', 'ring', 'nccl', 'jaccl' (mlxd serves them all)",
            s ? PyUnicode_AsUTF8(s) : "?");
    Py_XDECREF(s);
    return -1;
}

PyDoc_STRVAR(init_doc,
"init(strict=False, backend='any')\n--\n\n"
"Initialize the communication backend and create the global communication group.\n\n"
"Joins the job that the launcher (``mlxctl launch``) describes in the\n"
"environment (``MLXD_JOB``, ``MLXD_RANK``, ``MLXD_SIZE``, ``MLXD_SOCKET``) once\n"
"all its ranks have joined. Without a job, or when no daemon answers, the\n"
"group is a singleton (rank 0 of 1), unless ``strict`` is set.\n\n"
"The group is made once per process: every later call returns the same\n"
"object, as MLX's ``init()`` does.\n\n"
"Args:\n"
"    strict (bool, optional): Raise ``UnavailableError`` instead of running\n"
"      alone when no daemon answers. Default: ``False``.\n"
"    backend (str, optional): Accepted for MLX's sake: ``'any'``, ``'mlxd'``,\n"
"      ``'mpi'``, ``'ring'``, ``'nccl'`` or ``'jaccl'``; mlxd serves them all.\n\n"
"Returns:\n"
"    Group: The group of all the processes of the job.");

static PyObject *py_init(PyObject *m, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = { "strict", "backend" };
    PyObject *a[2];
    if (parse_args("init", args, nargs, kwnames, 0, 2, names, 2, a) < 0 || backend_arg(a[1]) < 0)
        return NULL;
    int strict = a[0] ? PyObject_IsTrue(a[0]) : 0;
    if (strict < 0)
        return NULL;
    if (!world && !init_world(strict))
        return NULL;
    Py_INCREF(world);
    return world;
}

PyDoc_STRVAR(is_available_doc,
"is_available(backend='any')\n--\n\n"
"Check if a communication backend is available.\n\n"
"True when an mlxd daemon answers at the endpoint this process would use\n"
"(``$MLXD_SOCKET``, else the per-user default) within a second.");

static PyObject *py_is_available(PyObject *m, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = { "backend" };
    PyObject *a[1];
    struct blocking b;
    if (parse_args("is_available", args, nargs, kwnames, 0, 1, names, 1, a) < 0 || backend_arg(a[0]) < 0)
        return NULL;
    blocking_begin(&b, NULL);
    bool ok = mlxd_is_available();
    blocking_end(&b);
    if (PyErr_Occurred())
        return NULL;
    return PyBool_FromLong(ok);
}

/* ---- split ---- */

PyDoc_STRVAR(split_doc,
"split(color, key=-1)\n--\n\n"
"Split the group to subgroups based on the provided color.\n\n"
"Processes that use the same color go to the same group. The ``key``\n"
"argument defines the rank in the new group: the smaller the key the\n"
"smaller the rank; a negative key keeps the order of this group.\n\n"
"Args:\n"
"    color (int): A value to group processes into subgroups.\n"
"    key (int, optional): A key to optionally change the rank ordering\n"
"      of the processes.\n\n"
"Returns:\n"
"    Group: The new group, which supports every op.");

static PyObject *group_split(GroupObject *o, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = { "color", "key" };
    PyObject *a[2];
    int color, key = -1, r;
    mlxd_group *n = NULL;
    struct blocking b;
    if (parse_args("split", args, nargs, kwnames, 1, 2, names, 2, a) < 0 || int_arg("color", a[0], &color) < 0 ||
        (a[1] && int_arg("key", a[1], &key) < 0))
        return NULL;
    blocking_begin(&b, o->lock);
    r = mlxd_group_split(o->g, color, key, &n);
    blocking_end(&b);
    if (r < 0)
        return raise_code(r, mlxd_last_error(o->g));
    return group_wrap(n);
}

static PyMethodDef group_methods[] = {
    { "rank", (PyCFunction) group_rank, METH_NOARGS,
      "rank()\n--\n\nGet the rank of this process in the group." },
    { "size", (PyCFunction) group_size, METH_NOARGS,
      "size()\n--\n\nGet the size of the group." },
    { "split", (PyCFunction) (void (*)(void)) group_split, METH_FASTCALL | METH_KEYWORDS, split_doc },
    { NULL, NULL, 0, NULL },
};

static PyTypeObject GroupType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mlxd.Group",
    .tp_basicsize = sizeof(GroupObject),
    .tp_dealloc = (destructor) group_dealloc,
    .tp_repr = (reprfunc) group_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An :class:`mlxd.Group` represents a group of independent processes that can\n"
              "communicate, served by the host's mlxd daemon. Made by :func:`init` and\n"
              ":meth:`split`; calls on one group from several threads take turns.",
    .tp_methods = group_methods,
};

/* ---- Request: an op issued with wait=False ---- */

// What a nonblocking op returns. It holds the group, the input array and
// the result (the memory libmlxd reads and writes until mlxd_wait()), and
// calls mlxd_wait() exactly once: in the first wait(), or when it goes.
typedef struct {
    PyObject_HEAD
    mlxd_request *r;                    // NULL once mlxd_wait() was called
    const char *name;                   // the op, for repr
    GroupObject *g;                     // the group it was issued on
    PyObject *input;                    // kept until the op ended
    PyObject *result;                   // what wait() returns
    PyObject *error;                    // or the exception it raised
    PyThread_type_lock lock;            // one wait() at a time
} RequestObject;

static PyTypeObject RequestType;

// mlxd_wait(r) as a blocking call on g (interruptible: may a signal handler
// end it, on the main thread only). A failure's detail goes to err.
static int wait_on(GroupObject *g, mlxd_request *r, bool interruptible, char *err, size_t size) {
    struct blocking b;
    blocking_begin_as(&b, g->lock, interruptible && PyThread_get_thread_ident() == main_thread);
    int rc = mlxd_wait(r);
    PyOS_snprintf(err, size, "%s", rc < 0 ? mlxd_last_error(g->g) : "");
    blocking_end(&b);
    return rc;
}

// A Request for r, issued on g; takes the references to input and result
// (either may be NULL: result NULL returns None). On failure r is waited
// for here.
static PyObject *request_new(GroupObject *g, const char *name, mlxd_request *r, PyObject *input, PyObject *result) {
    RequestObject *o = PyObject_New(RequestObject, &RequestType);
    PyThread_type_lock lock = o ? PyThread_allocate_lock() : NULL;
    if (!lock) {
        char err[8];
        wait_on(g, r, false, err, sizeof err);
        Py_XDECREF(input);
        Py_XDECREF(result);
        if (o)
            PyObject_Free(o);
        return PyErr_NoMemory();
    }
    Py_INCREF(g);
    o->r = r;
    o->name = name;
    o->g = g;
    o->input = input;
    o->result = result ? result : Py_NewRef(Py_None);
    o->error = NULL;
    o->lock = lock;
    return (PyObject *) o;
}

// Ends o's op: mlxd_wait() with the GIL released and the group's lock held,
// interruptible on the main thread (not when the Request goes: nothing could
// see the exception there). Keeps the result or the exception.
static void request_finish(RequestObject *o, bool interruptible) {
    mlxd_request *r = o->r;
    char err[512];
    o->r = NULL;
    int rc = wait_on(o->g, r, interruptible, err, sizeof err);
    Py_CLEAR(o->input);
    if (rc < 0 && interruptible) {
        PyObject *t, *v, *tb;
        Py_CLEAR(o->result);
        raise_code(rc, err);
        PyErr_Fetch(&t, &v, &tb);
        PyErr_NormalizeException(&t, &v, &tb);
        if (v && tb)
            PyException_SetTraceback(v, tb);
        o->error = Py_XNewRef(v);
        PyErr_Restore(t, v, tb);
    } else if (rc < 0) {
        Py_CLEAR(o->result);
    }
}

PyDoc_STRVAR(request_wait_doc,
"wait()\n--\n\n"
"Wait until the op ended and return its result: the new array (collectives,\n"
"recv, recv_like), ``x`` as an array (send).\n\n"
"Raises what the blocking op would raise. The GIL is released while it\n"
"waits, and on the main thread Ctrl-C interrupts it (KeyboardInterrupt;\n"
"the process has then left the group), as a blocking op. Every later call\n"
"returns the same array, or raises the same exception, at once.");

static PyObject *request_wait(RequestObject *o, PyObject *unused) {
    // Another thread in wait() holds the lock until it kept the outcome.
    if (!PyThread_acquire_lock(o->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(o->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
    if (o->r) {
        request_finish(o, true);
    } else if (o->error) {
        PyErr_SetObject((PyObject *) Py_TYPE(o->error), o->error);
    }
    PyThread_release_lock(o->lock);
    if (o->error)
        return NULL;
    return o->result ? Py_NewRef(o->result) : NULL;
}

PyDoc_STRVAR(request_test_doc,
"test()\n--\n\n"
"Whether the op ended (then ``wait()`` returns at once). Never blocks: while\n"
"another thread's call on the group is under way, or another thread is in\n"
"this request's ``wait()``, it returns False.");

static PyObject *request_test(RequestObject *o, PyObject *unused) {
    bool done = true;
    if (!PyThread_acquire_lock(o->lock, NOWAIT_LOCK))
        Py_RETURN_FALSE;
    if (o->r) {
        if (!PyThread_acquire_lock(o->g->lock, NOWAIT_LOCK)) {
            done = false;
        } else {
            mlxd_request *r = o->r;
            Py_BEGIN_ALLOW_THREADS
            mlxd_test(r, &done);
            Py_END_ALLOW_THREADS
            PyThread_release_lock(o->g->lock);
        }
    }
    PyThread_release_lock(o->lock);
    return PyBool_FromLong(done);
}

static void request_dealloc(RequestObject *o) {
    // Never waited for: the op's memory must stay until it ended.
    if (o->r)
        request_finish(o, false);
    Py_XDECREF(o->input);
    Py_XDECREF(o->result);
    Py_XDECREF(o->error);
    Py_XDECREF(o->g);
    if (o->lock)
        PyThread_free_lock(o->lock);
    PyObject_Free(o);
}

static PyObject *request_repr(RequestObject *o) {
    return PyUnicode_FromFormat("<mlxd.Request %s%s>", o->name, o->r ? "" : ", waited");
}

static PyMethodDef request_methods[] = {
    { "wait", (PyCFunction) request_wait, METH_NOARGS, request_wait_doc },
    { "test", (PyCFunction) request_test, METH_NOARGS, request_test_doc },
    { NULL, NULL, 0, NULL },
};

static PyTypeObject RequestType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mlxd.Request",
    .tp_basicsize = sizeof(RequestObject),
    .tp_dealloc = (destructor) request_dealloc,
    .tp_repr = (reprfunc) request_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An op issued with ``wait=False``: it runs while the program computes.\n\n"
              "``wait()`` returns its result (or raises its error), ``test()`` says\n"
              "whether it ended without blocking. Until it ended the Request keeps the\n"
              "input array and the result alive; neither may be written (nor the\n"
              "result read) before ``wait()`` returned. One that goes without\n"
              "``wait()`` is waited for then (its error is lost).\n\n"
              "Several requests may be in flight on one group; every member's ops,\n"
              "with or without wait, are matched in the order it issued them.\n"
              "Issuing takes the group's turn only for the issue, but ``wait()``\n"
              "takes it for the whole wait, as a blocking op: while one thread\n"
              "waits, other threads' calls on that group wait for it. Do not have a\n"
              "thread wait for an op whose peer needs another thread's later op on\n"
              "the same group; issue that op first.",
    .tp_methods = request_methods,
};

/* ---- the arguments of an op on one array ---- */

// Parses (x, [peer,] *, group=None, stream=None, wait=True): the group, x
// as an array libmlxd reads (a new reference, the return value) with its
// description, wait, and, when peer_name is given, the peer's rank. NULL with an exception set
// on failure.
static PyArrayObject *array_op_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                                    const char *peer_name, GroupObject **ret_g, int *ret_peer, mlxd_array *ret_x,
                                    bool *ret_wait) {
    const char *names[5] = { "x" };
    int npos = 1;
    if (peer_name)
        names[npos++] = peer_name;
    names[npos] = "group";
    names[npos + 1] = "stream";
    names[npos + 2] = "wait";
    PyObject *a[5];
    if (parse_args(fname, args, nargs, kwnames, npos, npos, (const char *const *) names, npos + 3, a) < 0 ||
        (peer_name && int_arg(peer_name, a[1], ret_peer) < 0) || wait_arg(a[npos + 2], ret_wait) < 0)
        return NULL;
    GroupObject *g = group_arg(a[npos]);
    if (!g)
        return NULL;
    PyArrayObject *x = as_array(a[0]);
    if (x && describe(x, ret_x) < 0) {
        Py_DECREF(x);
        return NULL;
    }
    *ret_g = g;
    return x;
}

/* ---- the collectives ---- */

enum coll { COLL_SUM, COLL_MAX, COLL_MIN, COLL_GATHER, COLL_SCATTER };

static int (*const coll_fn[])(mlxd_group *, const mlxd_array *, mlxd_array *) = {
    [COLL_SUM] = mlxd_all_sum, [COLL_MAX] = mlxd_all_max, [COLL_MIN] = mlxd_all_min,
    [COLL_GATHER] = mlxd_all_gather, [COLL_SCATTER] = mlxd_sum_scatter,
};
static int (*const icoll_fn[])(mlxd_group *, const mlxd_array *, mlxd_array *, mlxd_request **) = {
    [COLL_SUM] = mlxd_iall_sum, [COLL_MAX] = mlxd_iall_max, [COLL_MIN] = mlxd_iall_min,
    [COLL_GATHER] = mlxd_iall_gather, [COLL_SCATTER] = mlxd_isum_scatter,
};
static const char *const coll_name[] = {
    [COLL_SUM] = "all_sum", [COLL_MAX] = "all_max", [COLL_MIN] = "all_min",
    [COLL_GATHER] = "all_gather", [COLL_SCATTER] = "sum_scatter",
};

static PyObject *collective(enum coll op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    GroupObject *g;
    mlxd_array in, out;
    mlxd_request *req = NULL;
    bool wait;
    PyArrayObject *x = array_op_args(coll_name[op], args, nargs, kwnames, NULL, &g, NULL, &in, &wait);
    if (!x)
        return NULL;
    // The result's shape, as the library will give it; a shape the op
    // refuses gets a placeholder and the library's error.
    int64_t shape[MLXD_MAX_NDIM];
    int nd = in.ndim;
    memcpy(shape, in.shape, sizeof shape[0] * (size_t) nd);
    if (op == COLL_GATHER) {
        if (nd == 0)
            shape[nd++] = g->size;
        else
            shape[0] *= g->size;
    } else if (op == COLL_SCATTER && nd > 0) {
        shape[0] /= g->size;
    }
    out.dtype = in.dtype;
    PyArrayObject *res = new_array(PyArray_DESCR(x), nd, shape, &out);
    if (!res) {
        Py_DECREF(x);
        return NULL;
    }
    struct blocking b;
    blocking_begin(&b, g->lock);
    int r = wait ? coll_fn[op](g->g, &in, &out) : icoll_fn[op](g->g, &in, &out, &req);
    blocking_end(&b);
    if (r < 0) {
        Py_DECREF(x);
        Py_DECREF(res);
        return raise_code(r, mlxd_last_error(g->g));
    }
    if (!wait)
        return request_new(g, coll_name[op], req, (PyObject *) x, (PyObject *) res);
    Py_DECREF(x);
    return (PyObject *) res;
}

#define COLLECTIVE(name, op)                                                                            \
    static PyObject *py_##name(PyObject *m, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) { \
        return collective(op, args, nargs, kwnames);                                                    \
    }
COLLECTIVE(all_sum, COLL_SUM)
COLLECTIVE(all_max, COLL_MAX)
COLLECTIVE(all_min, COLL_MIN)
COLLECTIVE(all_gather, COLL_GATHER)
COLLECTIVE(sum_scatter, COLL_SCATTER)

#define OP_ARGS                                                                             \
    "    group (Group): The group of processes that will participate in the\n"                \
    "      operation. If set to ``None`` the global group (``init()``) is used.\n"            \
    "      Default: ``None``.\n"                                                              \
    "    stream (Stream, optional): Accepted and ignored, for MLX's sake.\n"                  \
    "    wait (bool, optional): ``False``: issue the op and return an\n"                      \
    "      :class:`Request` at once, whose ``wait()`` returns what is described\n"            \
    "      below. Default: ``True``.\n\n"

#define X_ARG "    x (array): Input array: anything numpy reads as an array.\n"

PyDoc_STRVAR(all_sum_doc,
"all_sum(x, *, group=None, stream=None, wait=True)\n--\n\n"
"All reduce sum.\n\nSum the ``x`` arrays from all processes in the group.\n\n"
"Args:\n" X_ARG OP_ARGS "Returns:\n    array: The sum of all ``x`` arrays (a new numpy array of x's dtype).");
PyDoc_STRVAR(all_max_doc,
"all_max(x, *, group=None, stream=None, wait=True)\n--\n\n"
"All reduce max.\n\nFind the maximum of the ``x`` arrays from all processes in the group.\n\n"
"Args:\n" X_ARG OP_ARGS "Returns:\n    array: The maximum of all ``x`` arrays.");
PyDoc_STRVAR(all_min_doc,
"all_min(x, *, group=None, stream=None, wait=True)\n--\n\n"
"All reduce min.\n\nFind the minimum of the ``x`` arrays from all processes in the group.\n\n"
"Args:\n" X_ARG OP_ARGS "Returns:\n    array: The minimum of all ``x`` arrays.");
PyDoc_STRVAR(all_gather_doc,
"all_gather(x, *, group=None, stream=None, wait=True)\n--\n\n"
"Gather arrays from all processes.\n\n"
"Gather the ``x`` arrays from all processes in the group and concatenate\n"
"them along the first axis. The arrays should all have the same shape; a\n"
"scalar gives shape ``(size,)``.\n\n"
"Args:\n" X_ARG OP_ARGS "Returns:\n    array: The concatenation of all ``x`` arrays.");
PyDoc_STRVAR(sum_scatter_doc,
"sum_scatter(x, *, group=None, stream=None, wait=True)\n--\n\n"
"Sum ``x`` across all processes in the group and shard the result along the\n"
"first axis across ranks. ``x.shape[0]`` must be divisible by the group size.\n\n"
"The result is ``all_sum(x)[rank * chunk:(rank + 1) * chunk]`` with\n"
"``chunk = x.shape[0] // group.size()``.\n\n"
"Args:\n" X_ARG OP_ARGS "Returns:\n    array: The output array with shape ``[x.shape[0] // group.size(), *x.shape[1:]]``.");

/* ---- send, recv, barrier ---- */

PyDoc_STRVAR(send_doc,
"send(x, dst, *, group=None, stream=None, wait=True)\n--\n\n"
"Send an array from the current process to the process that has rank\n"
"``dst`` in the group.\n\n"
"Returns once the daemon holds the data: the receiver need not be waiting,\n"
"so a ring in which every rank sends first and then receives does not\n"
"deadlock. Messages between two ranks arrive in the order they were sent.\n\n"
"Args:\n" X_ARG
"    dst (int): Rank of the destination process in the group.\n" OP_ARGS
"Returns:\n    array: ``x`` as an array (MLX returns an array to schedule on).");

static PyObject *py_send(PyObject *m, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    GroupObject *g;
    mlxd_array in;
    int dst;
    mlxd_request *req = NULL;
    bool wait;
    PyArrayObject *x = array_op_args("send", args, nargs, kwnames, "dst", &g, &dst, &in, &wait);
    if (!x)
        return NULL;
    struct blocking b;
    blocking_begin(&b, g->lock);
    int r = wait ? mlxd_send(g->g, &in, dst) : mlxd_isend(g->g, &in, dst, &req);
    blocking_end(&b);
    if (r < 0) {
        Py_DECREF(x);
        return raise_code(r, mlxd_last_error(g->g));
    }
    if (!wait)
        return request_new(g, "send", req, NULL, (PyObject *) x);
    return (PyObject *) x;
}

// recv and recv_like: receives an array of descr and shape from src.
static PyObject *recv_into(GroupObject *g, PyArray_Descr *descr, int nd, const int64_t *shape, int src,
                           bool wait, const char *name) {
    mlxd_array out;
    mlxd_request *req = NULL;
    mlxd_dtype t;
    if (check_dtype(descr, &t) < 0)
        return NULL;
    PyArrayObject *res = new_array(descr, nd, shape, &out);
    if (!res)
        return NULL;
    out.dtype = t;
    struct blocking b;
    blocking_begin(&b, g->lock);
    int r = wait ? mlxd_recv(g->g, &out, src) : mlxd_irecv(g->g, &out, src, &req);
    blocking_end(&b);
    if (r < 0) {
        Py_DECREF(res);
        return raise_code(r, mlxd_last_error(g->g));
    }
    if (!wait)
        return request_new(g, name, req, NULL, (PyObject *) res);
    return (PyObject *) res;
}

PyDoc_STRVAR(recv_doc,
"recv(shape, dtype, src, *, group=None, stream=None, wait=True)\n--\n\n"
"Recv an array with shape ``shape`` and dtype ``dtype`` from process with\n"
"rank ``src``.\n\n"
"Args:\n"
"    shape (Tuple[int]): The shape of the array we are receiving.\n"
"    dtype (Dtype): The data type of the array we are receiving.\n"
"    src (int): Rank of the source process in the group.\n" OP_ARGS
"Returns:\n    array: The array that was received. A message of another dtype or\n"
"    shape raises ``MismatchError``.");

static PyObject *py_recv(PyObject *m, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = { "shape", "dtype", "src", "group", "stream", "wait" };
    PyObject *a[6];
    int src, nd;
    int64_t shape[MLXD_MAX_NDIM];
    PyArray_Descr *descr = NULL;
    bool wait;
    if (parse_args("recv", args, nargs, kwnames, 3, 3, names, 6, a) < 0 || shape_arg(a[0], &nd, shape) < 0 ||
        int_arg("src", a[2], &src) < 0 || wait_arg(a[5], &wait) < 0)
        return NULL;
    GroupObject *g = group_arg(a[3]);
    if (!g || !PyArray_DescrConverter(a[1], &descr))
        return NULL;
    PyObject *r = recv_into(g, descr, nd, shape, src, wait, "recv");
    Py_DECREF(descr);
    return r;
}

PyDoc_STRVAR(recv_like_doc,
"recv_like(x, src, *, group=None, stream=None, wait=True)\n--\n\n"
"Recv an array with shape and type like ``x`` from process with rank ``src``.\n\n"
"It is equivalent to calling ``recv(x.shape, x.dtype, src)``.\n\n"
"Args:\n"
"    x (array): An array defining the shape and dtype of the array we are\n"
"      receiving.\n"
"    src (int): Rank of the source process in the group.\n" OP_ARGS
"Returns:\n    array: The array that was received.");

static PyObject *py_recv_like(PyObject *m, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    GroupObject *g;
    mlxd_array like;
    int src;
    bool wait;
    PyArrayObject *x = array_op_args("recv_like", args, nargs, kwnames, "src", &g, &src, &like, &wait);
    if (!x)
        return NULL;
    PyObject *r = recv_into(g, PyArray_DESCR(x), like.ndim, like.shape, src, wait, "recv_like");
    Py_DECREF(x);
    return r;
}

PyDoc_STRVAR(barrier_doc,
"barrier(group=None, *, wait=True)\n--\n\n"
"Wait until every process of the group has called ``barrier``.\n\n"
"Args:\n"
"    group (Group): The group; ``None``: the global group (``init()``).\n"
"    wait (bool, optional): Only ``True``: libmlxd has no nonblocking barrier,\n"
"      and ``False`` raises ``InvalidError``.");

static PyObject *py_barrier(PyObject *m, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = { "group", "stream", "wait" };
    PyObject *a[3];
    bool wait;
    if (parse_args("barrier", args, nargs, kwnames, 0, 1, names, 3, a) < 0 || wait_arg(a[2], &wait) < 0)
        return NULL;
    if (!wait)
        return invalid("barrier has no nonblocking form (libmlxd has no mlxd_ibarrier)");
    GroupObject *g = group_arg(a[0]);
    if (!g)
        return NULL;
    struct blocking b;
    blocking_begin(&b, g->lock);
    int r = mlxd_barrier(g->g);
    blocking_end(&b);
    if (r < 0)
        return raise_code(r, mlxd_last_error(g->g));
    Py_RETURN_NONE;
}

/* ---- alloc ---- */

static void alloc_release(PyObject *capsule) {
    mlxd_free(NULL, PyCapsule_GetPointer(capsule, "mlxd.alloc"));
}

PyDoc_STRVAR(alloc_doc,
"alloc(shape, dtype, *, group=None)\n--\n\n"
"A zero-filled array in memory the daemon reads and writes in place.\n\n"
"Ops on arrays (or views of them) in this memory move no bytes through\n"
"the socket: use it for large tensors that are reduced again and again.\n"
"The memory is shared with this process's daemon only; it stays valid\n"
"after ``group`` is gone, for every group of the process, and is freed with\n"
"the last reference to the array (and to views of it). On a singleton\n"
"group it is ordinary memory.\n\n"
"Args:\n"
"    shape (Tuple[int]): The shape of the array.\n"
"    dtype (Dtype): Its data type.\n"
"    group (Group): The group whose daemon shares the memory; ``None``:\n"
"      the global group.\n\n"
"Returns:\n    array: A numpy array over the shared memory.");

static PyObject *py_alloc(PyObject *m, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = { "shape", "dtype", "group" };
    PyObject *a[3];
    int nd;
    int64_t shape[MLXD_MAX_NDIM];
    npy_intp dims[MLXD_MAX_NDIM];
    PyArray_Descr *descr = NULL;
    mlxd_dtype t;
    if (parse_args("alloc", args, nargs, kwnames, 2, 2, names, 3, a) < 0 || shape_arg(a[0], &nd, shape) < 0)
        return NULL;
    GroupObject *g = group_arg(a[2]);
    if (!g || !PyArray_DescrConverter(a[1], &descr))
        return NULL;
    if (check_dtype(descr, &t) < 0) {
        Py_DECREF(descr);
        return NULL;
    }
    size_t nbytes = mlxd_dtype_size(t);
    for (int i = 0; i < nd; i++) {
        dims[i] = (npy_intp) shape[i];
        if (shape[i] && __builtin_mul_overflow(nbytes, (size_t) shape[i], &nbytes)) {
            Py_DECREF(descr);
            return invalid("an array of that shape does not fit in memory");
        }
    }
    struct blocking b;
    blocking_begin(&b, g->lock);
    void *p = mlxd_alloc(g->g, nbytes);
    blocking_end(&b);
    if (!p) {
        Py_DECREF(descr);
        return raise_code(MLXD_ENOMEM, mlxd_last_error(g->g));
    }
    memset(p, 0, nbytes);
    PyObject *cap = PyCapsule_New(p, "mlxd.alloc", alloc_release);
    if (!cap) {
        mlxd_free(NULL, p);
        Py_DECREF(descr);
        return NULL;
    }
    PyObject *arr = PyArray_NewFromDescr(&PyArray_Type, descr, nd, dims, NULL, p, NPY_ARRAY_CARRAY, NULL);
    if (!arr) {
        Py_DECREF(cap);
        return NULL;
    }
    if (PyArray_SetBaseObject((PyArrayObject *) arr, cap) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

/* ---- the module ---- */

#define FASTCALL(name) \
    { #name, (PyCFunction) (void (*)(void)) py_##name, METH_FASTCALL | METH_KEYWORDS, name##_doc }

static PyMethodDef module_methods[] = {
    FASTCALL(is_available),
    FASTCALL(init),
    FASTCALL(all_sum),
    FASTCALL(all_max),
    FASTCALL(all_min),
    FASTCALL(all_gather),
    FASTCALL(sum_scatter),
    FASTCALL(send),
    FASTCALL(recv),
    FASTCALL(recv_like),
    FASTCALL(barrier),
    FASTCALL(alloc),
    { NULL, NULL, 0, NULL },
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mlxd._core",
    .m_doc = "The C extension under mlxd: see help(mlxd).",
    .m_size = -1,
    .m_methods = module_methods,
};

static int add_errors(PyObject *m) {
    error_base = PyErr_NewExceptionWithDoc(
        "mlxd.Error",
        "An operation of mlxd failed (a RuntimeError).\n\n"
        "Attributes:\n"
        "    code (int): The negative MLXD_E* code of libmlxd.\n"
        "    name (str): Its name, such as ``'MLXD_EPEER'``.\n\n"
        "str(e) is the name and the daemon's (or the library's) own message.",
        PyExc_RuntimeError, NULL);
    if (!error_base || PyModule_AddObjectRef(m, "Error", error_base) < 0)
        return -1;
    PyObject *extra[N_CODES] = { 0 };
    extra[-MLXD_EINVAL] = PyExc_ValueError;
    extra[-MLXD_ETIMEDOUT] = PyExc_TimeoutError;
    extra[-MLXD_ENOMEM] = PyExc_MemoryError;
    extra[-MLXD_EDENIED] = PyExc_PermissionError;
    for (int i = 1; i < N_CODES; i++) {
        if (!error_info[i].cls)
            continue;
        char qual[64];
        PyOS_snprintf(qual, sizeof qual, "mlxd.%s", error_info[i].cls);
        PyObject *bases = extra[i] ? PyTuple_Pack(2, error_base, extra[i]) : PyTuple_Pack(1, error_base);
        if (!bases)
            return -1;
        error_class[i] = PyErr_NewExceptionWithDoc(qual, error_info[i].doc, bases, NULL);
        Py_DECREF(bases);
        if (!error_class[i] || PyModule_AddObjectRef(m, error_info[i].cls, error_class[i]) < 0)
            return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__core(void);

PyMODINIT_FUNC PyInit__core(void) {
    import_array();
    if (PyType_Ready(&GroupType) < 0 || PyType_Ready(&RequestType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    // Signal handlers run on the main thread only: waits there are the ones
    // to make interruptible.
    PyObject *threading = PyImport_ImportModule("threading");
    PyObject *mt = threading ? PyObject_CallMethod(threading, "main_thread", NULL) : NULL;
    PyObject *ident = mt ? PyObject_GetAttrString(mt, "ident") : NULL;
    Py_XDECREF(threading);
    Py_XDECREF(mt);
    if (!ident)
        goto fail;
    main_thread = PyLong_AsUnsignedLong(ident);
    Py_DECREF(ident);
    if (PyErr_Occurred() || PyModule_AddObjectRef(m, "Group", (PyObject *) &GroupType) < 0 ||
        PyModule_AddObjectRef(m, "Request", (PyObject *) &RequestType) < 0 || add_errors(m) < 0 ||
        PyModule_AddIntConstant(m, "INTERRUPT_SLICE_MS", MLXD_INTERRUPT_SLICE_MS) < 0 ||
        PyModule_AddStringConstant(m, "__version__", MLXD_VERSION_STRING) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
