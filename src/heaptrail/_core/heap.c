/* heap.c - (to be written) */
#include "common.h"

int
ht_heap_init(PyObject *m)
{
    return 0;
}
