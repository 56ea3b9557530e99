/* mlxd._core: the ops (collectives, send, recv, barrier, alloc) and the
 * Request a nonblocking one returns. */
#include "core.h"

#include <string.h>

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


// mlxd_wait(r) as a blocking call on g (interruptible: may a signal handler
// end it, on the main thread only). A failure's detail goes to err.
static int wait_on(GroupObject *g, mlxd_request *r, bool interruptible, char *err, size_t size) {
    struct blocking b;
    core_blocking_begin_as(&b, g->lock, interruptible && PyThread_get_thread_ident() == core_main_thread);
    int rc = mlxd_wait(r);
    PyOS_snprintf(err, size, "%s", rc < 0 ? mlxd_last_error(g->g) : "");
    core_blocking_end(&b);
    return rc;
}

// A Request for r, issued on g; takes the references to input and result
// (either may be NULL: result NULL returns None). On failure r is waited
// for here.
static PyObject *request_new(GroupObject *g, const char *name, mlxd_request *r, PyObject *input, PyObject *result) {
    RequestObject *o = PyObject_New(RequestObject, &core_request_type);
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
        core_raise_code(rc, err);
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

PyTypeObject core_request_type = {
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
    if (core_parse_args(fname, args, nargs, kwnames, npos, npos, (const char *const *) names, npos + 3, a) < 0 ||
        (peer_name && core_int_arg(peer_name, a[1], ret_peer) < 0) || core_wait_arg(a[npos + 2], ret_wait) < 0)
        return NULL;
    GroupObject *g = core_group_arg(a[npos]);
    if (!g)
        return NULL;
    PyArrayObject *x = core_as_array(a[0]);
    if (x && core_describe(x, ret_x) < 0) {
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
    PyArrayObject *res = core_new_array(PyArray_DESCR(x), nd, shape, &out);
    if (!res) {
        Py_DECREF(x);
        return NULL;
    }
    struct blocking b;
    core_blocking_begin(&b, g->lock);
    int r = wait ? coll_fn[op](g->g, &in, &out) : icoll_fn[op](g->g, &in, &out, &req);
    core_blocking_end(&b);
    if (r < 0) {
        Py_DECREF(x);
        Py_DECREF(res);
        return core_raise_code(r, mlxd_last_error(g->g));
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
    core_blocking_begin(&b, g->lock);
    int r = wait ? mlxd_send(g->g, &in, dst) : mlxd_isend(g->g, &in, dst, &req);
    core_blocking_end(&b);
    if (r < 0) {
        Py_DECREF(x);
        return core_raise_code(r, mlxd_last_error(g->g));
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
    if (core_check_dtype(descr, &t) < 0)
        return NULL;
    PyArrayObject *res = core_new_array(descr, nd, shape, &out);
    if (!res)
        return NULL;
    out.dtype = t;
    struct blocking b;
    core_blocking_begin(&b, g->lock);
    int r = wait ? mlxd_recv(g->g, &out, src) : mlxd_irecv(g->g, &out, src, &req);
    core_blocking_end(&b);
    if (r < 0) {
        Py_DECREF(res);
        return core_raise_code(r, mlxd_last_error(g->g));
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
    if (core_parse_args("recv", args, nargs, kwnames, 3, 3, names, 6, a) < 0 || core_shape_arg(a[0], &nd, shape) < 0 ||
        core_int_arg("src", a[2], &src) < 0 || core_wait_arg(a[5], &wait) < 0)
        return NULL;
    GroupObject *g = core_group_arg(a[3]);
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
    if (core_parse_args("barrier", args, nargs, kwnames, 0, 1, names, 3, a) < 0 || core_wait_arg(a[2], &wait) < 0)
        return NULL;
    if (!wait)
        return core_invalid("barrier has no nonblocking form (libmlxd has no mlxd_ibarrier)");
    GroupObject *g = core_group_arg(a[0]);
    if (!g)
        return NULL;
    struct blocking b;
    core_blocking_begin(&b, g->lock);
    int r = mlxd_barrier(g->g);
    core_blocking_end(&b);
    if (r < 0)
        return core_raise_code(r, mlxd_last_error(g->g));
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
    if (core_parse_args("alloc", args, nargs, kwnames, 2, 2, names, 3, a) < 0 || core_shape_arg(a[0], &nd, shape) < 0)
        return NULL;
    GroupObject *g = core_group_arg(a[2]);
    if (!g || !PyArray_DescrConverter(a[1], &descr))
        return NULL;
    if (core_check_dtype(descr, &t) < 0) {
        Py_DECREF(descr);
        return NULL;
    }
    size_t nbytes = mlxd_dtype_size(t);
    for (int i = 0; i < nd; i++) {
        dims[i] = (npy_intp) shape[i];
        if (shape[i] && __builtin_mul_overflow(nbytes, (size_t) shape[i], &nbytes)) {
            Py_DECREF(descr);
            return core_invalid("an array of that shape does not fit in memory");
        }
    }
    struct blocking b;
    core_blocking_begin(&b, g->lock);
    void *p = mlxd_alloc(g->g, nbytes);
    core_blocking_end(&b);
    if (!p) {
        Py_DECREF(descr);
        return core_raise_code(MLXD_ENOMEM, mlxd_last_error(g->g));
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

PyMethodDef core_op_methods[] = {
    CORE_FASTCALL(all_sum),
    CORE_FASTCALL(all_max),
    CORE_FASTCALL(all_min),
    CORE_FASTCALL(all_gather),
    CORE_FASTCALL(sum_scatter),
    CORE_FASTCALL(send),
    CORE_FASTCALL(recv),
    CORE_FASTCALL(recv_like),
    CORE_FASTCALL(barrier),
    CORE_FASTCALL(alloc),
    { NULL, NULL, 0, NULL },
};
