/* Private header of mlxd._core, the Python extension: core.c has the module,
 * its errors, the Group type and argument parsing; array.c the dtypes and
 * numpy arrays; ops.c the ops (the collectives, send, recv, barrier, alloc)
 * and the Request of a nonblocking one. */
#ifndef MLXD_PYTHON_CORE_H
#define MLXD_PYTHON_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <stdbool.h>
#include <stdint.h>

// numpy's C API table is the module's, filled by core.c's import_array().
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL mlxd_core_ARRAY_API
#ifndef CORE_IMPORTS_NUMPY
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include <mlxd/mlxd.h>

typedef struct {
    PyObject_HEAD
    mlxd_group *g;
    PyThread_type_lock lock;            // one call on g at a time
    int rank, size;
} GroupObject;

// Brackets a blocking libmlxd call: the GIL is released, the group's lock
// (if any) held, and on the main thread the wait is interruptible.
struct blocking {
    PyThreadState *ts;
    PyThread_type_lock lock;
    bool interruptible;
};

/* core.c */

// The main thread's ident: waits there are interruptible.
extern unsigned long core_main_thread;

// Raises the exception of an MLXD_E* code with detail (the library's or the
// daemon's message; "" gives the code's own text). Returns NULL.
PyObject *core_raise_code(int code, const char *detail);

// Raises MLXD_EINVAL's exception with a formatted message; returns NULL.
PyObject *core_invalid(const char *fmt, ...);

// A blocking call on lock's group (NULL: none) begins: the GIL is released;
// interruptible says whether a signal handler may end it (main thread only).
void core_blocking_begin_as(struct blocking *b, PyThread_type_lock lock, bool interruptible);

// As core_blocking_begin_as(), interruptible on the main thread.
void core_blocking_begin(struct blocking *b, PyThread_type_lock lock);

// The blocking call ended: the GIL is taken back.
void core_blocking_end(struct blocking *b);

// Fastcall argument parsing: names lists every parameter, the first npos of
// which may be given by position; those before nreq are required. ret[i]
// gets a borrowed reference or NULL.
int core_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int nreq,
                    int npos, const char *const *names, int nnames, PyObject **ret);

// The group an op runs on: the one given, or init()'s for None.
GroupObject *core_group_arg(PyObject *g);

// An int argument named what (for the message): 0, or -1 with an exception
// set when it is not an int or out of range.
int core_int_arg(const char *what, PyObject *o, int *ret);

// The wait= argument of an op: true when not given.
int core_wait_arg(PyObject *o, bool *ret);

/* array.c */

// The mlxd dtype of d: 0, or -1 with an exception set.
int core_check_dtype(PyArray_Descr *d, mlxd_dtype *ret);

// x as an array libmlxd can read in place (C-contiguous, aligned, native
// byte order; a new reference), converted as MLX converts, or NULL with an
// exception set.
PyArrayObject *core_as_array(PyObject *x);

// The mlxd_array that describes a: 0, or -1 with an exception set.
int core_describe(PyArrayObject *a, mlxd_array *ret);

// A new C-ordered array of descr (a reference is taken) and the shape; its
// ndim, shape and data go to *ret when ret is not NULL. NULL with an
// exception set on failure.
PyArrayObject *core_new_array(PyArray_Descr *descr, int nd, const int64_t *shape, mlxd_array *ret);

// A shape argument (an int, or a sequence of ints): 0, or -1 with an
// exception set.
int core_shape_arg(PyObject *s, int *ret_nd, int64_t *ret_shape);

/* ops.c */

// The Request type (a nonblocking op) and the module's op functions (added
// to the module beside core.c's own).
extern PyTypeObject core_request_type;
extern PyMethodDef core_op_methods[];

// A module function's entry in a PyMethodDef table: py_NAME, NAME_doc.
#define CORE_FASTCALL(name) \
    { #name, (PyCFunction) (void (*)(void)) py_##name, METH_FASTCALL | METH_KEYWORDS, name##_doc }

#endif
