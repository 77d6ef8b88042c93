/* framevars.c - the variables of a running or finished frame or a generator, by name (see framevars.h). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* The interpreter frame's layout (_PyInterpreterFrame, the variable kinds),
 * for running frames and generators on every version. Only this file and
 * gcvisit.c read internal headers; each release keeps its layout for its
 * whole life. */
#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#endif
#include "internal/pycore_code.h"
#include "internal/pycore_frame.h"

#include "framevars.h"

#if PY_VERSION_HEX >= 0x030D0000
#define HT_FV_CODE(fr) _PyFrame_GetCode(fr)
#define HT_FV_EXECUTABLE(fr) ((fr)->f_executable)
#else
#define HT_FV_CODE(fr) ((fr)->f_code)
#define HT_FV_EXECUTABLE(fr) ((PyObject *)(fr)->f_code)
#endif
#if PY_VERSION_HEX >= 0x030C0000
#define HT_FV_FUNC(fr) ((fr)->f_funcobj)
#else
#define HT_FV_FUNC(fr) ((PyObject *)(fr)->f_func)
#endif

/* Visits the variable slots of frame fr that hold an object; deref: a
 * cell variable's value is the cell's contents (as PyFrame_GetVar gives
 * it), else the cell itself (what tp_traverse visits). */
static Py_ssize_t
ht_fv_slots(_PyInterpreterFrame *fr, int deref, ht_fv_visitor visit, void *arg)
{
    PyCodeObject *co = HT_FV_CODE(fr);
    PyObject *names = co->co_localsplusnames, *kinds = co->co_localspluskinds;
    if (!PyTuple_Check(names) || !PyBytes_Check(kinds))
        return 0;
    Py_ssize_t n = co->co_nlocalsplus, calls = 0;
    if (n > PyTuple_GET_SIZE(names) || n > PyBytes_GET_SIZE(kinds))
        return 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *v = fr->localsplus[k];
        if (v == NULL)
            continue; /* unbound */
        _PyLocals_Kind kind = _PyLocals_GetKind(kinds, (int)k);
        /* a cell or free variable's slot holds its cell once the frame's
         * first instructions made it one; its value is what is inside */
        if (deref && (kind & (CO_FAST_CELL | CO_FAST_FREE)) && PyCell_Check(v)) {
            v = PyCell_GET(v);
            if (v == NULL)
                continue;
        }
        visit(PyTuple_GET_ITEM(names, k), v, arg);
        calls++;
    }
    return calls;
}

Py_ssize_t
ht_fv_gen_each(PyObject *gen, ht_fv_visitor visit, void *arg)
{
    if (!PyGen_CheckExact(gen) && !PyCoro_CheckExact(gen) && !PyAsyncGen_CheckExact(gen))
        return 0;
    PyGenObject *g = (PyGenObject *)gen; /* coroutines and async generators share its head */
    /* created, suspended or running: a finished one's frame is cleared */
    if (g->gi_frame_state >= FRAME_COMPLETED)
        return 0;
    return ht_fv_slots((_PyInterpreterFrame *)g->gi_iframe, 0, visit, arg);
}

int
ht_fv_frame_refs(PyFrameObject *f, PyObject *refs[3])
{
    _PyInterpreterFrame *fr = f->f_frame;
    /* a generator's frame (its tp_traverse visits the slots), or a
     * finished one whose slots the frame object owns (its does) */
    if (fr == NULL || fr->owner != FRAME_OWNED_BY_THREAD)
        return 0;
    /* its globals and builtins are borrowed; a module body's locals are
     * its globals (its module's dict, which the module explains) */
    refs[0] = HT_FV_FUNC(fr);
    refs[1] = HT_FV_EXECUTABLE(fr);
    refs[2] = fr->f_locals != fr->f_globals ? fr->f_locals : NULL;
    return 1;
}

Py_ssize_t
ht_fv_slot_each(PyFrameObject *f, ht_fv_visitor visit, void *arg)
{
    PyObject *refs[3];
    if (!ht_fv_frame_refs(f, refs))
        return 0;
    Py_ssize_t calls = 0;
    for (int k = 0; k < 3; k++)
        if (refs[k] != NULL) {
            visit(NULL, refs[k], arg);
            calls++;
        }
    return calls + ht_fv_slots(f->f_frame, 0, visit, arg);
}

Py_ssize_t
ht_fv_each(PyFrameObject *f, ht_fv_visitor visit, void *arg)
{
    PyObject *refs[3];
    if (!ht_fv_frame_refs(f, refs)) /* not running on its thread */
        return 0;
    return ht_fv_slots(f->f_frame, 1, visit, arg);
}

Py_ssize_t
ht_fv_owned_each(PyFrameObject *f, ht_fv_visitor visit, void *arg)
{
    _PyInterpreterFrame *fr = f->f_frame;
    /* only a frame whose object owns its slots (it finished: a
     * traceback's) visits them in its tp_traverse */
    if (fr == NULL || fr->owner != FRAME_OWNED_BY_FRAME_OBJECT)
        return 0;
    return ht_fv_slots(fr, 0, visit, arg);
}
