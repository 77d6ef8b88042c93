/* format_trace.c - the trace snapshot file (to be written). */
#include "common.h"
#include "format_trace.h"

int
ht_ftrace_init(PyObject *m)
{
    return 0;
}
