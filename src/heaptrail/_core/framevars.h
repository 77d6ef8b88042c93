/* framevars.h - the variables of a running frame, by name.
 *
 * A frame that is running (owned by its thread) does not visit its
 * variables in tp_traverse: the thread owns them. An object that only such
 * a variable holds (a str, an int, an untracked dict) is then found by no
 * edge and no gc list, and a heap snapshot would miss it. ht_fv_each gives
 * the walk those variables as (name, value) pairs.
 *
 * 3.12+ reads them with PyFrame_GetVar. 3.11 has no public way that does
 * not materialize f_locals (a dict that keeps a reference to every local,
 * created by the walk in the program's frame), so framevars.c reads the
 * frame's slots through the interpreter's internal headers, as gcvisit.c
 * does: 3.11 takes security fixes only, its frame layout no longer
 * changes. Only the variable slots are read, never the value stack, whose
 * top is not kept up to date while a frame runs. */
#ifndef HT_FRAMEVARS_H
#define HT_FRAMEVARS_H

#include "common.h"

/* Called with borrowed references; a cell variable's value is the cell's
 * contents (as PyFrame_GetVar gives it), a free variable's too. */
typedef void (*ht_fv_visitor)(PyObject *name, PyObject *value, void *arg);

/* Calls visit for each variable of frame f that holds an object, when f is
 * a running frame owned by its thread: not a generator's or coroutine's
 * (the generator's tp_traverse visits them) and not a finished one (the
 * frame object's does). Runs no Python code and leaves no exception set.
 * Returns the number of calls. */
Py_ssize_t ht_fv_each(PyFrameObject *f, ht_fv_visitor visit, void *arg);

#endif
