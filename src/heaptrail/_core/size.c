/* size.c - flat size (to be made fast) and deep size (to be written). */
#include "size.h"

Py_ssize_t
ht_size_flat(PyObject *op)
{
    /* First, correct version: what sys.getsizeof computes. The fast one
     * computes builtin types' sizes in C without a method call. */
    PyObject *r = PyObject_CallMethod(op, "__sizeof__", NULL);
    if (r == NULL)
        return -1;
    Py_ssize_t n = PyLong_AsSsize_t(r);
    Py_DECREF(r);
    if (n == -1 && PyErr_Occurred())
        return -1;
    if (PyObject_IS_GC(op))
        n += (Py_ssize_t)(2 * sizeof(void *)); /* PyGC_Head on 3.11-3.13 */
    return n;
}

int
ht_size_init(PyObject *m)
{
    return 0;
}
