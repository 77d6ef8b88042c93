/* own.c - heaptrail's own objects (see own.h). */
#include "own.h"

#include <stdlib.h>
#include <string.h>

#include "framevars.h"
#include "hashtable.h"

typedef struct {
    ht_own *o;
    ht_table seen;     /* addresses met: seeds, held objects, barriers */
    uint64_t *stack;   /* objects to traverse */
    size_t sp, stackcap;
    uint64_t from;     /* the object being traversed */
    int oom;
} ht_own_walk;

/* Appends v to the growable list (*arr, *n, *cap); 0 or -1. */
static int
ht_own_push(uint64_t **arr, size_t *n, size_t *cap, uint64_t v)
{
    uint64_t *p = ht_grow(*arr, *n, cap, sizeof(uint64_t));
    if (p == NULL)
        return -1;
    *arr = p;
    p[(*n)++] = v;
    return 0;
}

/* Marks op met; 1 when it was new, 0 when met before, -1 (w->oom). */
static int
ht_own_meet(ht_own_walk *w, PyObject *op)
{
    int added = ht_table_add(&w->seen, (uint64_t)(uintptr_t)op);
    if (added < 0)
        w->oom = 1;
    return added;
}

/* The program's objects the walk does not enter: every frame that is not
 * a seed (PyFrame_Check, at ht_own_ref), the modules in sys.modules and
 * their __dict__s, sys.modules and builtins. Called after the seeds and
 * the held modules are met, so that a seed's dict stays a seed's and a
 * held module's is entered. A module that is in no
 * sys.modules (heaptrail's __main__ once the program runs as __main__) is
 * entered. */
static void
ht_own_barriers(ht_own_walk *w)
{
    PyObject *modules = PySys_GetObject("modules"); /* borrowed */
    if (modules && PyDict_Check(modules)) {
        ht_own_meet(w, modules);
        Py_ssize_t it = 0;
        PyObject *k, *v;
        while (PyDict_Next(modules, &it, &k, &v))
            if (PyModule_Check(v) && ht_own_meet(w, v) == 1) /* not a seed, not held */
                ht_own_meet(w, PyModule_GetDict(v));
    }
    PyObject *b = PyEval_GetBuiltins();
    if (b)
        ht_own_meet(w, b);
}

static int ht_own_ref(PyObject *r, void *arg);

/* A static type of heaptrail's own (_core's): no gc object, so nothing
 * traverses it, but the collector lists its __dict__, __mro__ and
 * __bases__. The interpreter's and other extensions' are the program's. */
static void
ht_own_static_type(ht_own_walk *w, PyTypeObject *tp)
{
    if (strncmp(tp->tp_name, "heaptrail.", 10) != 0 || ht_own_meet(w, (PyObject *)tp) != 1)
        return;
    uint64_t from = w->from;
    w->from = (uint64_t)(uintptr_t)tp;
    ht_own_ref(tp->tp_dict, w);
    ht_own_ref(tp->tp_mro, w);
    ht_own_ref(tp->tp_bases, w);
    w->from = from;
}

/* A code object of heaptrail's (a function's): no gc object, so nothing
 * traverses it, but the collector lists its constants tuple and the tuples
 * in it while they hold a gc object (3.13: until it untracks them). A
 * nested function's code is in the constants even when their tuple is
 * untracked, which the traversal does not enter. */
static void
ht_own_code(ht_own_walk *w, PyCodeObject *co)
{
    if (ht_own_meet(w, (PyObject *)co) != 1)
        return;
    uint64_t from = w->from;
    PyObject *consts = co->co_consts;
    w->from = (uint64_t)(uintptr_t)co;
    ht_own_ref(consts, w);
    if (consts != NULL && PyTuple_Check(consts) && !PyObject_GC_IsTracked(consts)) {
        w->from = (uint64_t)(uintptr_t)consts;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(consts); k++)
            if (PyCode_Check(PyTuple_GET_ITEM(consts, k)))
                ht_own_ref(PyTuple_GET_ITEM(consts, k), w);
    }
    w->from = from;
}

/* One reference of the object being traversed (a tp_traverse visitor). */
static int
ht_own_ref(PyObject *r, void *arg)
{
    ht_own_walk *w = arg;
    ht_own *o = w->o;
    if (r == NULL || w->oom)
        return 0;
    if (ht_own_push(&o->refs, &o->nrefs, &o->refcap, w->from) < 0 ||
        ht_own_push(&o->refs, &o->nrefs, &o->refcap, (uint64_t)(uintptr_t)r) < 0) {
        w->oom = 1;
        return 0;
    }
    if (PyType_Check(r) && !(((PyTypeObject *)r)->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        ht_own_static_type(w, (PyTypeObject *)r);
        return 0;
    }
    if (PyCode_Check(r)) {
        ht_own_code(w, (PyCodeObject *)r);
        return 0;
    }
    /* only gc-tracked objects are ever listed by the collector (the walk
     * finds untracked ones through edges alone) */
    if (PyFrame_Check(r) || !PyObject_IS_GC(r) || !PyObject_GC_IsTracked(r))
        return 0;
    if (ht_own_meet(w, r) == 1 &&
        (ht_own_push(&o->held, &o->nheld, &o->heldcap, (uint64_t)(uintptr_t)r) < 0 ||
         ht_own_push(&w->stack, &w->sp, &w->stackcap, (uint64_t)(uintptr_t)r) < 0))
        w->oom = 1;
    return 0;
}

/* A seed frame's variable: a reference its tp_traverse does not visit. */
static void
ht_own_var(PyObject *name, PyObject *value, void *arg)
{
    HT_UNUSED(name);
    ht_own_ref(value, arg);
}

/* A seed: left out, and traversed (a module's __dict__ with it). */
static void
ht_own_seed(ht_own_walk *w, PyObject *op)
{
    /* the empty tuple is one object that everyone shares */
    if (op == NULL || (PyTuple_Check(op) && PyTuple_GET_SIZE(op) == 0) || ht_own_meet(w, op) != 1)
        return;
    if (ht_own_push(&w->o->seeds, &w->o->nseeds, &w->o->seedcap, (uint64_t)(uintptr_t)op) < 0 ||
        ht_own_push(&w->stack, &w->sp, &w->stackcap, (uint64_t)(uintptr_t)op) < 0) {
        w->oom = 1;
        return;
    }
    if (!PyModule_Check(op))
        return;
    ht_own_seed(w, PyModule_GetDict(op));
    /* an extension module's dict as imported, which the interpreter keeps
     * (a copy, for another import of it) */
    PyModuleDef *def = PyModule_GetDef(op);
    if (def == NULL)
        PyErr_Clear(); /* not an extension module */
    else if (def->m_base.m_copy != NULL)
        ht_own_seed(w, def->m_base.m_copy);
}

/* A module heaptrail imported for itself: held (not a seed), so that the
 * program's own references to it record it. */
static void
ht_own_held(ht_own_walk *w, PyObject *op)
{
    if (!PyModule_Check(op) || ht_own_meet(w, op) != 1)
        return;
    if (ht_own_push(&w->o->held, &w->o->nheld, &w->o->heldcap, (uint64_t)(uintptr_t)op) < 0 ||
        ht_own_push(&w->stack, &w->sp, &w->stackcap, (uint64_t)(uintptr_t)op) < 0)
        w->oom = 1;
}

static void
ht_own_traverse(ht_own_walk *w)
{
    while (w->sp && !w->oom) {
        PyObject *op = (PyObject *)(uintptr_t)w->stack[--w->sp];
        w->from = (uint64_t)(uintptr_t)op;
        traverseproc tr = Py_TYPE(op)->tp_traverse;
        if (tr != NULL && PyObject_IS_GC(op))
            tr(op, ht_own_ref, w);
        /* the slots, not ht_fv_each's values: a cell variable's
         * reference is to its cell (a closure's, which a program function
         * may share), and free variables count too */
        if (PyFrame_Check(op))
            ht_fv_slot_each((PyFrameObject *)op, ht_own_var, w);
    }
}

int
ht_own_find(ht_own *o, PyObject *seeds, PyObject *extra, PyObject *imports)
{
    ht_own_walk w = {o, {0}, NULL, 0, 0, 0, 0};
    if (ht_table_init(&w.seen, 1024, 0) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    ht_own_seed(&w, seeds);
    ht_own_seed(&w, extra);
    for (Py_ssize_t k = 0; seeds && PyTuple_Check(seeds) && k < PyTuple_GET_SIZE(seeds); k++)
        ht_own_seed(&w, PyTuple_GET_ITEM(seeds, k));
    for (Py_ssize_t k = 0; imports && PyTuple_Check(imports) && k < PyTuple_GET_SIZE(imports); k++)
        ht_own_held(&w, PyTuple_GET_ITEM(imports, k));
    ht_own_barriers(&w);
    ht_own_traverse(&w);
    ht_table_free(&w.seen);
    free(w.stack);
    if (w.oom) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

void
ht_own_free(ht_own *o)
{
    free(o->seeds);
    free(o->held);
    free(o->refs);
    o->seeds = o->held = o->refs = NULL;
    o->nseeds = o->nheld = o->nrefs = 0;
}
