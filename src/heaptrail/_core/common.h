/* common.h - what every heaptrail C file includes: Python.h, fixed-width
 * integers, and the one error-reporting helper.
 *
 * Conventions (see docs/HACKING.md):
 *   - one concept per .c file, its exported names prefixed ht_<concept>_;
 *   - each concept adds its Python-visible functions to the module from its
 *     own ht_<concept>_init(), called by module.c;
 *   - the engines' own memory comes from libc malloc/free, which PEP 445
 *     hooks never see, so heaptrail's bookkeeping is never traced;
 *   - functions returning int return 0 on success and -1 with a Python
 *     exception set on failure, unless their comment says otherwise.
 */
#ifndef HT_COMMON_H
#define HT_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>

#define HT_UNUSED(x) ((void)(x))
#define HT_LIKELY(x) __builtin_expect(!!(x), 1)
#define HT_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* A small growable list (libc realloc, doubled from 256 elements) with room
 * for one more: arr (n elements of `size` bytes, room for *cap) itself, or
 * a bigger copy (*cap updated); NULL when out of memory, arr untouched.
 * For the walks' side lists; big arrays go through bigmem.h. */
static inline void *
ht_grow(void *arr, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return arr;
    size_t c = *cap ? *cap * 2 : 256;
    void *p = realloc(arr, c * size);
    if (p != NULL)
        *cap = c;
    return p;
}

/* heaptrail._core.Error, exposed as heaptrail.HeaptrailError: every error of
 * ours that is the user's to fix (bad file, bad pid, bad query ...). */
extern PyObject *ht_Error;

/* Sets heaptrail's error with a printf-style message; always returns NULL so
 * callers can write `return ht_error("...")`. */
PyObject *ht_error(const char *fmt, ...);

/* Sets an OSError from errno with the file name; returns NULL. */
PyObject *ht_error_os(const char *path);

/* gc.<name>(): a new reference, or NULL with an exception set. */
PyObject *ht_gc_call(const char *name);

/* gc.get_objects() as a new reference to a list, or NULL with an exception
 * set (TypeError if what came back is not a list). */
PyObject *ht_gc_objects(void);

/* The concepts' init functions, called once by module.c. Each returns 0 or
 * -1 with an exception set. */
int ht_proc_init(PyObject *m);
int ht_size_init(PyObject *m);
int ht_heap_init(PyObject *m);
int ht_graph_init(PyObject *m);
int ht_tracer_init(PyObject *m);
int ht_capture_init(PyObject *m);
int ht_report_init(PyObject *m);
int ht_runcap_init(PyObject *m);
int ht_tracesnap_init(PyObject *m);
int ht_lines_init(PyObject *m);
int ht_selftest_init(PyObject *m);
int ht_live_init(PyObject *m);
int ht_pym_init(PyObject *m);
int ht_leaks_init(PyObject *m);

#endif
