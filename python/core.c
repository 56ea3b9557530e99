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
#define CORE_IMPORTS_NUMPY                  // this file fills numpy's API table
#include "core.h"

#include <string.h>

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
// message; "" gives the code's own text). Returns NULL for `return core_raise_code(...)`.
PyObject *core_raise_code(int code, const char *detail) {
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

PyObject *core_invalid(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    PyOS_vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return core_raise_code(MLXD_EINVAL, buf);
}

/* ---- waiting with the GIL released ---- */

unsigned long core_main_thread;

// The interrupt check of a wait on the main thread: runs Python's pending
// signal handlers; true when one raised (its exception stays set).
static bool check_signals(void *arg) {
    (void) arg;
    PyGILState_STATE st = PyGILState_Ensure();
    bool stop = PyErr_CheckSignals() < 0;
    PyGILState_Release(st);
    return stop;
}

void core_blocking_begin_as(struct blocking *b, PyThread_type_lock lock, bool interruptible) {
    b->lock = lock;
    b->interruptible = interruptible;
    b->ts = PyEval_SaveThread();
    if (lock)
        PyThread_acquire_lock(lock, WAIT_LOCK);
    if (b->interruptible)
        mlxd_set_interrupt(check_signals, NULL);
}

void core_blocking_begin(struct blocking *b, PyThread_type_lock lock) {
    core_blocking_begin_as(b, lock, PyThread_get_thread_ident() == core_main_thread);
}

void core_blocking_end(struct blocking *b) {
    if (b->interruptible)
        mlxd_set_interrupt(NULL, NULL);
    if (b->lock)
        PyThread_release_lock(b->lock);
    PyEval_RestoreThread(b->ts);
}

/* ---- Group ---- */


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
int core_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int nreq,
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
GroupObject *core_group_arg(PyObject *g) {
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

int core_int_arg(const char *what, PyObject *o, int *ret) {
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < INT_MIN || v > INT_MAX) {
        core_invalid("%s %ld is out of range", what, v);
        return -1;
    }
    *ret = (int) v;
    return 0;
}

// The wait= argument of an op: true when not given.
int core_wait_arg(PyObject *o, bool *ret) {
    int v = o ? PyObject_IsTrue(o) : 1;
    if (v < 0)
        return -1;
    *ret = v;
    return 0;
}

/* ---- init, is_available ---- */

static PyObject *init_world(bool strict) {
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    mlxd_group *g = NULL;
    struct blocking b;
    int r;
    o.strict = strict;
    core_blocking_begin(&b, NULL);
    r = mlxd_init(&o, &g);
    core_blocking_end(&b);
    if (r < 0)
        return core_raise_code(r, mlxd_init_error());
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
    core_invalid("backend %s is not one of 'any', 'mlxd', 'mpi', 'ring', 'nccl', 'jaccl' (mlxd serves them all)",
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
    if (core_parse_args("init", args, nargs, kwnames, 0, 2, names, 2, a) < 0 || backend_arg(a[1]) < 0)
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
    if (core_parse_args("is_available", args, nargs, kwnames, 0, 1, names, 1, a) < 0 || backend_arg(a[0]) < 0)
        return NULL;
    core_blocking_begin(&b, NULL);
    bool ok = mlxd_is_available();
    core_blocking_end(&b);
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
    if (core_parse_args("split", args, nargs, kwnames, 1, 2, names, 2, a) < 0 || core_int_arg("color", a[0], &color) < 0 ||
        (a[1] && core_int_arg("key", a[1], &key) < 0))
        return NULL;
    core_blocking_begin(&b, o->lock);
    r = mlxd_group_split(o->g, color, key, &n);
    core_blocking_end(&b);
    if (r < 0)
        return core_raise_code(r, mlxd_last_error(o->g));
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

/* ---- the module ---- */

static PyMethodDef module_methods[] = {
    CORE_FASTCALL(is_available),
    CORE_FASTCALL(init),
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
    if (PyType_Ready(&GroupType) < 0 || PyType_Ready(&core_request_type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    if (PyModule_AddFunctions(m, core_op_methods) < 0)
        goto fail;
    // Signal handlers run on the main thread only: waits there are the ones
    // to make interruptible.
    PyObject *threading = PyImport_ImportModule("threading");
    PyObject *mt = threading ? PyObject_CallMethod(threading, "main_thread", NULL) : NULL;
    PyObject *ident = mt ? PyObject_GetAttrString(mt, "ident") : NULL;
    Py_XDECREF(threading);
    Py_XDECREF(mt);
    if (!ident)
        goto fail;
    core_main_thread = PyLong_AsUnsignedLong(ident);
    Py_DECREF(ident);
    if (PyErr_Occurred() || PyModule_AddObjectRef(m, "Group", (PyObject *) &GroupType) < 0 ||
        PyModule_AddObjectRef(m, "Request", (PyObject *) &core_request_type) < 0 || add_errors(m) < 0 ||
        PyModule_AddIntConstant(m, "INTERRUPT_SLICE_MS", MLXD_INTERRUPT_SLICE_MS) < 0 ||
        PyModule_AddStringConstant(m, "__version__", MLXD_VERSION_STRING) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
