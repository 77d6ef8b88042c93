/* gcvisit.h - every gc-tracked object, visited in place.
 *
 * ht_gc_visit calls visit(op, arg) for each object in the collector's
 * generations, young to old (gc.get_objects() order), until visit returns
 * 0. No list is built and no reference is taken: the caller must keep the
 * collector off and run no code that tracks or frees objects while it runs.
 * 3.12+: PyUnstable_GC_VisitObjects. 3.11 has no public way, and building
 * the gc.get_objects() list (and freeing it: a decref of every object) was
 * a sixth of a heap snapshot, so gcvisit.c reads the generation lists
 * through the interpreter's own (internal, 3.11-only) headers. Like
 * gc.get_objects(), neither sees objects gc.freeze() moved aside. The
 * same headers give 3.11's frame slots (ht_gc_frame_locals). */
#ifndef HT_GCVISIT_H
#define HT_GCVISIT_H

#include "common.h"

typedef int (*ht_gc_visitor)(PyObject *op, void *arg);

void ht_gc_visit(ht_gc_visitor visit, void *arg);

/* 3.11 only (3.12+ has PyFrame_GetVar; there this does nothing): calls
 * fn(name, value, arg) for each bound variable of frame f (arguments,
 * locals, cells, free variables: the objects the frame's slots hold),
 * unless f is a generator's or coroutine's frame (the generator's
 * tp_traverse visits those). Borrowed references; nothing is created, no
 * f_locals dict: the slots are read through the internal headers. */
typedef void (*ht_gc_local_fn)(PyObject *name, PyObject *value, void *arg);

void ht_gc_frame_locals(PyFrameObject *f, ht_gc_local_fn fn, void *arg);

#endif
