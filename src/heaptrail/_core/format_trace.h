/* format_trace.h - the trace snapshot file: dump and load. */
#ifndef HT_FORMAT_TRACE_H
#define HT_FORMAT_TRACE_H
#include "tracesnap.h"
int ht_ftrace_init(PyObject *m);
#endif
