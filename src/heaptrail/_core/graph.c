/* graph.c - (to be written) */
#include "common.h"

int
ht_graph_init(PyObject *m)
{
    return 0;
}
