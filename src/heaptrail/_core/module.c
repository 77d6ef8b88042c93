/* module.c - the heaptrail._core extension: module definition and the error
 * type only. Every concept registers its own functions from its init. */
#include "common.h"
#include <errno.h>
#include <string.h>

PyObject *ht_Error = NULL;

PyObject *
ht_error(const char *fmt, ...)
{
    va_list va;
    va_start(va, fmt);
    PyErr_FormatV(ht_Error, fmt, va);
    va_end(va);
    return NULL;
}

PyObject *
ht_error_os(const char *path)
{
    return PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
}

PyObject *
ht_gc_call(const char *name)
{
    PyObject *gc = PyImport_ImportModule("gc");
    if (gc == NULL)
        return NULL;
    PyObject *r = PyObject_CallMethod(gc, name, NULL);
    Py_DECREF(gc);
    return r;
}

PyObject *
ht_gc_objects(void)
{
    PyObject *list = ht_gc_call("get_objects");
    if (list && !PyList_Check(list)) {
        Py_DECREF(list);
        PyErr_SetString(PyExc_TypeError, "gc.get_objects() did not return a list");
        return NULL;
    }
    return list;
}

static struct PyModuleDef ht_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "heaptrail._core",
    .m_doc = "heaptrail's C engines: process, size, heap, graph, tracer.",
    .m_size = -1, /* engines hold process-wide state (allocator hooks) */
};

typedef int (*ht_init_fn)(PyObject *);

static const ht_init_fn ht_inits[] = {
    ht_proc_init, ht_size_init, ht_heap_init, ht_graph_init, ht_tracer_init, ht_tracesnap_init,
    ht_capture_init, ht_report_init, ht_selftest_init,
    ht_live_init,
    ht_pym_init, ht_leaks_init, ht_runcap_init, ht_lines_init,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    PyObject *m = PyModule_Create(&ht_module);
    if (m == NULL)
        return NULL;
    if (ht_Error == NULL) {
        ht_Error = PyErr_NewExceptionWithDoc(
            "heaptrail._core.Error",
            "An error of heaptrail's that the user can act on.", NULL, NULL);
        if (ht_Error == NULL)
            goto fail;
    }
    Py_INCREF(ht_Error);
    if (PyModule_AddObject(m, "Error", ht_Error) < 0) {
        Py_DECREF(ht_Error);
        goto fail;
    }
    for (size_t i = 0; i < sizeof(ht_inits) / sizeof(ht_inits[0]); i++)
        if (ht_inits[i](m) < 0)
            goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
