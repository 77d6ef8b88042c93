/* size.h - flat size of one object, as the allocator sees it: what
 * sys.getsizeof reports (its __sizeof__ plus the gc header of gc-tracked
 * types). Deep size walks live in size.c; the heap walk (heap.c) uses
 * ht_size_flat for every object it records. */
#ifndef HT_SIZE_H
#define HT_SIZE_H

#include "common.h"

/* Returns the flat size of op in bytes, or -1 with an exception set (only
 * possible for types whose own __sizeof__ fails). Never calls Python code for
 * builtin types; calls __sizeof__ only for types that override it. Must be
 * called with the GIL held. */
Py_ssize_t ht_size_flat(PyObject *op);

#endif
