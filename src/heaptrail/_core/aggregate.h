/* aggregate.h - statistics over a trace snapshot: grouping traces by line,
 * file or traceback, compare_to between two snapshots, filters. */
#ifndef HT_AGGREGATE_H
#define HT_AGGREGATE_H
#include "tracesnap.h"
int ht_agg_init(PyObject *m);
#endif
