/* tracer.c - (to be written) */
#include "common.h"

int
ht_tracer_init(PyObject *m)
{
    return 0;
}
