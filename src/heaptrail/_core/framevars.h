/* framevars.h - the variables of a running frame, by name.
 *
 * A frame that is running (owned by its thread) does not visit its
 * variables in tp_traverse: the thread owns them. An object that only such
 * a variable holds (a str, an int, an untracked dict) is then found by no
 * edge and no gc list, and a heap snapshot would miss it. ht_fv_each gives
 * the walk those variables as (name, value) pairs.
 *
 * framevars.c reads the frame's slots through the interpreter's internal
 * headers, as gcvisit.c does, on every version: 3.11 has no public way
 * that does not materialize f_locals (a dict that keeps a reference to
 * every local, created by the walk in the program's frame), and no version
 * has one for a generator's frame (below); 3.12+'s PyFrame_GetVar read the
 * same slots, one name lookup each. A release keeps this layout for its
 * whole life. Only the variable slots are read, never the value stack,
 * whose top is not kept up to date while a frame runs.
 *
 * ht_fv_gen_each names the variables of a generator's or coroutine's
 * frame, which its tp_traverse does visit, without names: a path through
 * a coroutine then says which local holds what. */
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

/* The same for a finished frame (a traceback's: the frame object owns its
 * slots and its tp_traverse visits them, without names), with each slot as
 * it is (a cell variable's is its cell, what tp_traverse visits); 0 calls
 * for a running or a generator's frame. */
Py_ssize_t ht_fv_owned_each(PyFrameObject *f, ht_fv_visitor visit, void *arg);

/* The references a running frame holds, for ht_fv_each's frames: its
 * function, code and locals namespace (name NULL), then each variable slot
 * as it is (a cell or free variable's is its cell), free variables
 * included; never the value stack. own.c subtracts them from refcounts:
 * the frame holds the cell, not what is in it. Reads the frame through the
 * internal headers on every version. */
Py_ssize_t ht_fv_slot_each(PyFrameObject *f, ht_fv_visitor visit, void *arg);

/* The strong references of running frame f besides its variables (borrowed,
 * each may be NULL): refs[0] the function it runs, refs[1] its code,
 * refs[2] its locals namespace (a class body's, exec's; NULL when they are
 * its globals, as in a module's body). 0 (refs untouched)
 * for a frame that is not running on its thread. */
int ht_fv_frame_refs(PyFrameObject *f, PyObject *refs[3]);

/* The same for generator, coroutine or async generator gen (exact types;
 * 0 calls for anything else), while its frame is not finished, with each
 * slot as it is: a cell variable's value is its cell, which is what the
 * generator's tp_traverse visits. The frame lives inside the generator,
 * and no public API reads it without making a frame object, which would
 * change the program: framevars.c reads it through the internal headers on
 * every version. */
Py_ssize_t ht_fv_gen_each(PyObject *gen, ht_fv_visitor visit, void *arg);

#endif
