/* gcvisit.c - every gc-tracked object, visited in place (see gcvisit.h). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX < 0x030C0000
/* 3.11 only, and only this file: the generation lists' heads live in the
 * interpreter state, whose layout the internal headers give. 3.11 takes
 * security fixes only, so that layout no longer changes. */
#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#endif
#undef _PyGC_FINALIZED /* objimpl.h's, which pycore_gc.h defines again */
#include "internal/pycore_gc.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_frame.h"
#endif

#include "gcvisit.h"

void
ht_gc_visit(ht_gc_visitor visit, void *arg)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyUnstable_GC_VisitObjects(visit, arg);
#else
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (int g = 0; g < NUM_GENERATIONS; g++) {
        PyGC_Head *head = &interp->gc.generations[g].head;
        /* outside a collection _gc_next is a plain pointer (no flag bits) */
        for (PyGC_Head *gc = (PyGC_Head *)head->_gc_next; gc != head;) {
            PyGC_Head *next = (PyGC_Head *)gc->_gc_next;
            /* the next node's line comes in while op is visited: a list
             * walk is otherwise one cache miss after another */
            __builtin_prefetch(next);
            if (!visit((PyObject *)(gc + 1), arg))
                return;
            gc = next;
        }
    }
#endif
}

void
ht_gc_frame_locals(PyFrameObject *f, ht_gc_local_fn fn, void *arg)
{
#if PY_VERSION_HEX < 0x030C0000
    _PyInterpreterFrame *fr = f->f_frame;
    if (fr == NULL || fr->owner == FRAME_OWNED_BY_GENERATOR || fr->f_code == NULL)
        return;
    PyObject *names = fr->f_code->co_localsplusnames;
    int n = fr->f_code->co_nlocalsplus;
    if (names == NULL || !PyTuple_Check(names) || PyTuple_GET_SIZE(names) < n)
        return;
    /* a frame that is not running has its stack top saved, and slots past
     * it are not in use (a cleared frame's is 0); a running one's is -1,
     * and its variables' slots are always in use (each NULL or bound) */
    if (fr->stacktop >= 0 && fr->stacktop < n)
        n = fr->stacktop;
    for (int k = 0; k < n; k++)
        if (fr->localsplus[k] != NULL)
            fn(PyTuple_GET_ITEM(names, k), fr->localsplus[k], arg);
#else
    (void)f;
    (void)fn;
    (void)arg;
#endif
}
