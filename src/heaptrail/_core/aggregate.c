/* aggregate.c - statistics over a trace snapshot (to be written). */
#include "common.h"
#include "aggregate.h"

int
ht_agg_init(PyObject *m)
{
    return 0;
}
