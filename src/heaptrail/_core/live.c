/* live.c - queries over the LIVE heap that do not pay for a snapshot: type
 * counts, id sets, reference chains, leaking objects, graphs of neighbours,
 * cycles among collected garbage (heaptrail.objgraph, heaptrail.garbage).
 *
 * Every query enumerates the gc-tracked objects through gc.get_objects() (the
 * one public route on 3.11; the list does not contain itself) or works on a
 * sequence the caller gives. The engines' memory is libc malloc (ht_table,
 * plain arrays); the only Python objects made are the results, after the
 * pass, so a count never sees heaptrail's own objects.
 *
 * Referrers (find_backref_chain, show_backrefs) come from one pass over every
 * gc object recording (referent address, referrer number) pairs, grouped by a
 * hash of the address (one counting pass, one scatter): a lookup then scans
 * one bucket of about 8 pairs, where gc.get_referrers walks the whole heap
 * again for every object the search visits. A bucket keeps its pairs in
 * referrer order, so referrers come out in the order gc.get_referrers gives.
 * Memory: 12 bytes a reference while the call runs.
 */
#include "common.h"
#include "graph.h"
#include "hashtable.h"
#include "live.h"
#include "size.h"

#include <stdlib.h>
#include <string.h>

/* ---- enumerating objects ------------------------------------------------ */

/* objects (None: every gc object) as a new reference to a list or tuple. */
static PyObject *
ht_live_seq(PyObject *objects)
{
    if (objects == NULL || objects == Py_None)
        return ht_gc_objects();
    return PySequence_Fast(objects, "objects must be a sequence (or None for every gc object)");
}

/* ---- a growable array of pointers ---------------------------------------- */

typedef struct {
    void **items;
    size_t len, cap;
    int error;
} ht_live_vec;

static void
ht_live_vec_push(ht_live_vec *v, void *p)
{
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        void **n = realloc(v->items, cap * sizeof(void *));
        if (n == NULL) {
            v->error = 1;
            return;
        }
        v->items = n;
        v->cap = cap;
    }
    v->items[v->len++] = p;
}

/* tp_traverse visitor collecting referents (duplicates kept, as
 * gc.get_referents does). */
static int
ht_live_collect_visit(PyObject *o, void *arg)
{
    ht_live_vec_push((ht_live_vec *)arg, o);
    return 0;
}

/* Appends op's referents to v (none when op is not a gc object). */
static int
ht_live_referents(PyObject *op, ht_live_vec *v)
{
    v->len = 0;
    traverseproc tr = Py_TYPE(op)->tp_traverse;
    if (PyObject_IS_GC(op) && tr != NULL)
        tr(op, ht_live_collect_visit, v);
    if (v->error) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* ---- arguments ------------------------------------------------------------ */

/* The functions below are METH_FASTCALL: an argument tuple would be a gc
 * object made for the call, counted by a type count and seen as a referrer
 * of the objects it holds. */
static int
ht_live_nargs(const char *fn, Py_ssize_t nargs, Py_ssize_t want)
{
    if (nargs == want)
        return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", fn, want, nargs);
    return -1;
}

/* An int argument, -1 with an exception set on error (callers check). */
static int
ht_live_ssize(PyObject *o, Py_ssize_t *out)
{
    *out = PyLong_AsSsize_t(o);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* How many objects ahead a pass over a list prefetches: enough misses in
 * flight to hide the memory latency. */
#define HT_LIVE_AHEAD 16

/* ---- per-type counting (live.h) -------------------------------------------- */

#define HT_LIVE_CACHE_SLOT(tp) (((uintptr_t)(tp) >> 4) & 63)

int
ht_live_types_init(ht_live_types *t, int flags)
{
    memset(t, 0, sizeof(*t));
    t->flags = flags;
    t->walk = 1;
    if (ht_table_init(&t->index, 1024, 1) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

void
ht_live_types_free(ht_live_types *t)
{
    ht_table_free(&t->index);
    free(t->types);
    free(t->counts);
    free(t->bytes);
    free(t->ucounts);
    free(t->ubytes);
}

void
ht_live_types_zero(ht_live_types *t)
{
    if (t->n == 0)
        return;
    memset(t->counts, 0, t->n * sizeof(*t->counts));
    if (t->bytes != NULL)
        memset(t->bytes, 0, t->n * sizeof(*t->bytes));
    if (t->ucounts != NULL)
        memset(t->ucounts, 0, t->n * sizeof(*t->ucounts));
    if (t->ubytes != NULL)
        memset(t->ubytes, 0, t->n * sizeof(*t->ubytes));
}

/* Grows the per-slot arrays to cap. 0 or -1 (arrays left valid). */
static int
ht_live_types_grow(ht_live_types *t, size_t cap)
{
    PyTypeObject **nt = realloc(t->types, cap * sizeof(*nt));
    if (nt == NULL)
        return -1;
    t->types = nt;
    uint64_t *nc = realloc(t->counts, cap * sizeof(*nc));
    if (nc == NULL)
        return -1;
    t->counts = nc;
    if (t->flags & HT_LIVE_BYTES) {
        uint64_t *nb = realloc(t->bytes, cap * sizeof(*nb));
        if (nb == NULL)
            return -1;
        t->bytes = nb;
    }
    if (t->flags & HT_LIVE_UNTRACKED) {
        uint64_t *nu = realloc(t->ucounts, cap * sizeof(*nu));
        if (nu == NULL)
            return -1;
        t->ucounts = nu;
        if (t->flags & HT_LIVE_BYTES) {
            uint64_t *nub = realloc(t->ubytes, cap * sizeof(*nub));
            if (nub == NULL)
                return -1;
            t->ubytes = nub;
        }
    }
    t->cap = cap;
    return 0;
}

size_t
ht_live_types_slot(ht_live_types *t, PyTypeObject *tp)
{
    size_t c = HT_LIVE_CACHE_SLOT(tp);
    if (HT_LIKELY(t->cache[c].tp == tp))
        return t->cache[c].slot;
    int added;
    uint64_t *v = ht_table_upsert(&t->index, (uint64_t)(uintptr_t)tp, t->n + 1, &added);
    if (v == NULL)
        goto nomem;
    size_t slot = (size_t)*v - 1;
    if (added) {
        if (t->n == t->cap && ht_live_types_grow(t, t->cap ? t->cap * 2 : 256) < 0)
            goto undo;
        t->types[t->n] = tp;
        t->counts[t->n] = 0;
        if (t->bytes != NULL)
            t->bytes[t->n] = 0;
        if (t->ucounts != NULL)
            t->ucounts[t->n] = 0;
        if (t->ubytes != NULL)
            t->ubytes[t->n] = 0;
        t->n++;
    }
    t->cache[c].tp = tp;
    t->cache[c].slot = slot;
    return slot;
undo:
    ht_table_remove(&t->index, (uint64_t)(uintptr_t)tp, NULL);
nomem:
    PyErr_NoMemory();
    return (size_t)-1;
}

/* PyObject_IS_GC without the function call (the untracked walk asks it for
 * every referent): a gc type, and for types with tp_is_gc (type objects:
 * static ones have no gc header) what that says. */
static inline int
ht_live_is_gc(PyObject *o)
{
    PyTypeObject *tp = Py_TYPE(o);
    return PyType_IS_GC(tp) && (tp->tp_is_gc == NULL || tp->tp_is_gc(o));
}

/* Untracked containers (a tuple or dict of atomic values, untracked by the
 * collector) and code objects (not gc objects at all, but holders of
 * constants and names) are looked into too, so that what they hold is seen.
 * The walk does not deduplicate (a shared untracked object is seen once per
 * reference, and every pass sees the same way so that passes compare), so
 * its depth is bounded: untracked containers nest little, as they hold only
 * untracked objects. */
#define HT_LIVE_MAX_DEPTH 16

typedef struct {
    ht_live_untracked_fn fn;
    void *arg;
    int depth;
} ht_live_walk;

static void ht_live_walk_referents(ht_live_walk *w, PyObject *op);

/* tp_traverse visitor: hands over the untracked referents of an object. */
static int
ht_live_walk_visit(PyObject *o, void *arg)
{
    ht_live_walk *w = arg;
    if (o == NULL || (ht_live_is_gc(o) && PyObject_GC_IsTracked(o)))
        return 0; /* tracked objects are in gc.get_objects() themselves */
    w->fn(o, w->arg);
    if (w->depth < HT_LIVE_MAX_DEPTH && (ht_live_is_gc(o) || PyCode_Check(o))) {
        w->depth++;
        ht_live_walk_referents(w, o);
        w->depth--;
    }
    return 0;
}

/* Exact dicts are read with PyDict_Next so their str keys (which dict's
 * tp_traverse leaves out) count too; code objects through their parts. */
static void
ht_live_walk_referents(ht_live_walk *w, PyObject *op)
{
    if (PyDict_CheckExact(op)) {
        Py_ssize_t it = 0;
        PyObject *k, *v;
        while (PyDict_Next(op, &it, &k, &v)) {
            ht_live_walk_visit(k, w);
            ht_live_walk_visit(v, w);
        }
        return;
    }
    if (PyCode_Check(op)) {
        PyCodeObject *co = (PyCodeObject *)op;
        PyObject *parts[] = {co->co_consts, co->co_names, co->co_localsplusnames, co->co_filename,
                             co->co_name, co->co_qualname, co->co_linetable, co->co_exceptiontable};
        for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
            ht_live_walk_visit(parts[k], w);
        return;
    }
    traverseproc tr = Py_TYPE(op)->tp_traverse;
    if (tr)
        (void)tr(op, ht_live_walk_visit, w);
}

void
ht_live_untracked(PyObject *op, ht_live_untracked_fn fn, void *arg)
{
    ht_live_walk w = {fn, arg, 0};
    ht_live_walk_referents(&w, op);
}

void
ht_live_rec_free(ht_live_rec *r)
{
    free(r->addr);
    free(r->slot);
    memset(r, 0, sizeof(*r));
}

/* Appends (a, slot) to r. 0 or -1 (out of memory, r unchanged). */
static int
ht_live_rec_push(ht_live_rec *r, uint64_t a, size_t slot)
{
    uint64_t *seen = &r->recent[(a >> 4) & 1023];
    if (*seen == a)
        return 0;
    *seen = a;
    if (HT_UNLIKELY(r->n == r->cap)) {
        size_t cap = r->cap ? r->cap * 2 : 1 << 16;
        uint64_t *na = realloc(r->addr, cap * sizeof(uint64_t));
        if (na == NULL)
            return -1;
        r->addr = na;
        uint32_t *ns = realloc(r->slot, cap * sizeof(uint32_t));
        if (ns == NULL)
            return -1;
        r->slot = ns;
        r->cap = cap;
    }
    r->addr[r->n] = a;
    r->slot[r->n] = (uint32_t)slot;
    r->n++;
    return 0;
}

typedef struct {
    ht_live_types *t;
    ht_live_rec *record;
    int untracked;  /* o goes to t's ucounts, ubytes (else counts, bytes) */
    int error;      /* MemoryError set */
} ht_live_take_ctx;

/* Counts o (and its flat size with HT_LIVE_BYTES); records it when asked. */
static void
ht_live_take(PyObject *o, void *arg)
{
    ht_live_take_ctx *w = arg;
    if (w->error)
        return;
    size_t s = ht_live_types_slot(w->t, Py_TYPE(o));
    if (s == (size_t)-1) {
        w->error = 1;
        return;
    }
    if (w->record != NULL && ht_live_rec_push(w->record, (uint64_t)(uintptr_t)o, s) < 0) {
        PyErr_NoMemory();
        w->error = 1;
        return;
    }
    /* the arrays are read after the slot lookup: a new slot may move them */
    uint64_t *counts = w->untracked ? w->t->ucounts : w->t->counts;
    uint64_t *bytes = w->untracked ? w->t->ubytes : w->t->bytes;
    counts[s]++;
    if (bytes != NULL) {
        Py_ssize_t sz = ht_size_flat(o);
        if (sz < 0) {
            PyErr_Clear(); /* a failing __sizeof__: counted, with no bytes */
            sz = 0;
        }
        bytes[s] += (uint64_t)sz;
    }
}

/* Counts one object of the sequence. 0 or -1. */
static int
ht_live_types_one(ht_live_types *t, PyObject *o, ht_live_rec *record)
{
    if (HT_LIKELY(t->flags == 0 && record == NULL)) {
        size_t s = ht_live_types_slot(t, Py_TYPE(o));
        if (s == (size_t)-1)
            return -1;
        t->counts[s]++;
        return 0;
    }
    ht_live_take_ctx w = {t, record, 0, 0};
    ht_live_take(o, &w);
    if ((t->flags & HT_LIVE_UNTRACKED) && t->walk) {
        w.untracked = 1;
        ht_live_untracked(o, ht_live_take, &w);
    }
    return w.error ? -1 : 0;
}

int
ht_live_types_count(ht_live_types *t, PyObject *seq, PyObject *filter, ht_live_rec *record)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = items[i];
        if (i + HT_LIVE_AHEAD < n) /* the pass is bound by cache misses on the headers */
            __builtin_prefetch((char *)items[i + HT_LIVE_AHEAD] + sizeof(Py_ssize_t));
        if (filter != NULL) {
            PyObject *r = PyObject_CallOneArg(filter, o);
            int keep = r == NULL ? -1 : PyObject_IsTrue(r);
            Py_XDECREF(r);
            if (keep < 0)
                return -1;
            if (!keep)
                continue;
            /* the filter ran Python code: the list may have changed */
            n = PySequence_Fast_GET_SIZE(seq);
            items = PySequence_Fast_ITEMS(seq);
        }
        if (ht_live_types_one(t, o, record) < 0)
            return -1;
    }
    return 0;
}

int
ht_live_types_count_owned(ht_live_types *t, PyObject *all, ht_live_rec *record)
{
    Py_ssize_t n = PyList_GET_SIZE(all);
    int rc = 0;
    /* sizing may run a __sizeof__ written in Python: gc.get_referrers() or
     * gc.get_objects() there must not find this list half emptied */
    if (PyObject_GC_IsTracked(all))
        PyObject_GC_UnTrack(all);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + HT_LIVE_AHEAD < n) /* written: the reference is let go below */
            __builtin_prefetch((char *)PyList_GET_ITEM(all, i + HT_LIVE_AHEAD) + sizeof(Py_ssize_t), 1);
        PyObject *o = PyList_GET_ITEM(all, i);
        if (HT_LIKELY(rc == 0) && ht_live_types_one(t, o, record) < 0)
            rc = -1;
        PyList_SET_ITEM(all, i, NULL);
        Py_DECREF(o);
    }
    Py_SET_SIZE(all, 0);
    return rc;
}


#if PY_VERSION_HEX >= 0x030C0000
/* 3.12+: every gc object visited in place, no list made. The callback only
 * touches C memory (no Python object is made or freed), as
 * PyUnstable_GC_VisitObjects requires. */
typedef struct {
    ht_live_types *t;
    int error;
} ht_live_visit_ctx;

static int
ht_live_count_visit(PyObject *o, void *arg)
{
    ht_live_visit_ctx *ctx = arg;
    size_t s = ht_live_types_slot(ctx->t, Py_TYPE(o));
    if (s == (size_t)-1) {
        PyErr_Clear(); /* reported after the walk */
        ctx->error = 1;
        return 0;
    }
    ctx->t->counts[s]++;
    return 1;
}

static int
ht_live_types_count_all(ht_live_types *t)
{
    ht_live_visit_ctx ctx = {t, 0};
    PyUnstable_GC_VisitObjects(ht_live_count_visit, &ctx);
    if (ctx.error) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}
#endif

/* objgraph's type name: type(o).__name__, or "module.name" when the type has
 * a true __module__ (long names). New reference, or NULL. */
static PyObject *
ht_live_type_name(PyTypeObject *tp, int shortnames)
{
    PyObject *name = PyType_GetName(tp);
    if (name == NULL || shortnames)
        return name;
    PyObject *mod = PyObject_GetAttrString((PyObject *)tp, "__module__");
    if (mod == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            Py_DECREF(name);
            return NULL;
        }
        PyErr_Clear();
        return name;
    }
    int truth = PyObject_IsTrue(mod);
    PyObject *out = truth < 0 ? NULL : truth ? PyUnicode_FromFormat("%S.%S", mod, name) : Py_NewRef(name);
    Py_DECREF(mod);
    Py_DECREF(name);
    return out;
}

/* The counts as a dict name -> count (types sharing a name are summed). */
static PyObject *
ht_live_types_dict(const ht_live_types *t, int shortnames)
{
    PyObject *d = PyDict_New();
    for (size_t s = 0; d != NULL && s < t->n; s++) {
        if (t->counts[s] == 0)
            continue;
        PyObject *name = ht_live_type_name(t->types[s], shortnames);
        if (name == NULL)
            goto fail;
        PyObject *old = PyDict_GetItemWithError(d, name);
        unsigned long long c = t->counts[s];
        if (old != NULL)
            c += PyLong_AsUnsignedLongLong(old);
        PyObject *v = PyErr_Occurred() ? NULL : PyLong_FromUnsignedLongLong(c);
        int rc = v == NULL ? -1 : PyDict_SetItem(d, name, v);
        Py_XDECREF(v);
        Py_DECREF(name);
        if (rc < 0)
            goto fail;
    }
    return d;
fail:
    Py_XDECREF(d);
    return NULL;
}

/* live_typestats(objects, shortnames, filter) -> {name: count} */
static PyObject *
ht_live_py_typestats(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (ht_live_nargs("live_typestats", nargs, 3) < 0)
        return NULL;
    PyObject *objects = args[0], *filter = args[2];
    int shortnames = PyObject_IsTrue(args[1]);
    if (shortnames < 0)
        return NULL;
    ht_live_types t;
    PyObject *out = NULL;
#if PY_VERSION_HEX >= 0x030C0000
    if (objects == Py_None && filter == Py_None) {
        if (ht_live_types_init(&t, 0) < 0)
            return NULL;
        if (ht_live_types_count_all(&t) == 0)
            out = ht_live_types_dict(&t, shortnames);
        ht_live_types_free(&t);
        return out;
    }
#else
    if (objects == Py_None && filter == Py_None) {
        PyObject *all = ht_gc_objects();
        if (all == NULL)
            return NULL;
        if (ht_live_types_init(&t, 0) == 0) {
            if ((Py_REFCNT(all) == 1 ? ht_live_types_count_owned(&t, all, NULL)
                                     : ht_live_types_count(&t, all, NULL, NULL)) == 0)
                out = ht_live_types_dict(&t, shortnames);
            ht_live_types_free(&t);
        }
        Py_DECREF(all);
        return out;
    }
#endif
    PyObject *seq = ht_live_seq(objects);
    if (seq == NULL)
        return NULL;
    if (ht_live_types_init(&t, 0) == 0) {
        if (ht_live_types_count(&t, seq, filter == Py_None ? NULL : filter, NULL) == 0) {
            Py_CLEAR(seq); /* names are made after the objects are let go */
            out = ht_live_types_dict(&t, shortnames);
        }
        ht_live_types_free(&t);
    }
    Py_XDECREF(seq);
    return out;
}

/* live_by_type(typename, objects) -> [objects whose type has that name]
 * (long names when typename holds a dot, as objgraph decides). */
static PyObject *
ht_live_py_by_type(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (ht_live_nargs("live_by_type", nargs, 2) < 0)
        return NULL;
    PyObject *typename = args[0], *objects = args[1];
    if (!PyUnicode_Check(typename))
        return PyErr_Format(PyExc_TypeError, "typename must be a str");
    int shortnames = PyUnicode_FindChar(typename, '.', 0, PyUnicode_GET_LENGTH(typename), 1) < 0;
    PyObject *seq = ht_live_seq(objects), *out = NULL;
    if (seq == NULL)
        return NULL;
    ht_live_types t;
    uint8_t *match = NULL;
    if (ht_live_types_init(&t, 0) < 0 || ht_live_types_count(&t, seq, NULL, NULL) < 0)
        goto done;
    match = calloc(t.n + 1, 1);
    if (match == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t s = 0; s < t.n; s++) {
        PyObject *name = ht_live_type_name(t.types[s], shortnames);
        if (name == NULL)
            goto done;
        int eq = PyUnicode_Compare(name, typename) == 0;
        Py_DECREF(name);
        if (PyErr_Occurred())
            goto done;
        match[s] = (uint8_t)eq;
    }
    out = PyList_New(0);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        size_t s = ht_live_types_slot(&t, Py_TYPE(items[i]));
        if (s == (size_t)-1 || (match[s] && PyList_Append(out, items[i]) < 0))
            Py_CLEAR(out);
    }
done:
    free(match);
    ht_live_types_free(&t);
    Py_DECREF(seq);
    return out;
}

/* live_growth(stats, peak) -> [(name, count, delta)] for every name whose
 * count exceeds its peak, in stats' order; peak is raised to the count. */
static PyObject *
ht_live_py_growth(PyObject *mod, PyObject *args)
{
    PyObject *stats, *peak, *key, *value;
    if (!PyArg_ParseTuple(args, "O!O:live_growth", &PyDict_Type, &stats, &peak))
        return NULL;
    PyObject *out = PyList_New(0);
    Py_ssize_t pos = 0;
    while (out != NULL && PyDict_Next(stats, &pos, &key, &value)) {
        long long now = PyLong_AsLongLong(value), old = 0;
        PyObject *prev = PyObject_GetItem(peak, key);
        if (prev == NULL && PyErr_ExceptionMatches(PyExc_KeyError))
            PyErr_Clear();
        else if (prev != NULL)
            old = PyLong_AsLongLong(prev);
        Py_XDECREF(prev);
        if (PyErr_Occurred())
            goto fail;
        if (now <= old)
            continue;
        PyObject *row = Py_BuildValue("(OLL)", key, now, now - old);
        int rc = row == NULL ? -1 : PyList_Append(out, row);
        Py_XDECREF(row);
        if (rc < 0 || PyObject_SetItem(peak, key, value) < 0)
            goto fail;
    }
    return out;
fail:
    Py_XDECREF(out);
    return NULL;
}

/* ---- id sets (get_new_ids) ------------------------------------------------ */

/* State kept between get_new_ids calls: the ids seen last time, each mapped
 * to its class number + 1 (class numbers index the caller's names list). */
typedef struct {
    ht_table current;
} ht_live_ids;

static void
ht_live_ids_destroy(PyObject *cap)
{
    ht_live_ids *s = PyCapsule_GetPointer(cap, "heaptrail.live_ids");
    if (s != NULL) {
        ht_table_free(&s->current);
        free(s);
    }
}

/* live_ids_state() -> capsule */
static PyObject *
ht_live_py_ids_state(PyObject *mod, PyObject *noargs)
{
    ht_live_ids *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return PyErr_NoMemory();
    if (ht_table_init(&s->current, 1024, 1) < 0) {
        free(s);
        return PyErr_NoMemory();
    }
    PyObject *cap = PyCapsule_New(s, "heaptrail.live_ids", ht_live_ids_destroy);
    if (cap == NULL) {
        ht_table_free(&s->current);
        free(s);
    }
    return cap;
}

/* Class number of each type slot (names interned through classes/names). */
static uint32_t *
ht_live_class_numbers(const ht_live_types *t, int shortnames, PyObject *classes, PyObject *names)
{
    uint32_t *cls = malloc((t->n + 1) * sizeof(uint32_t));
    if (cls == NULL)
        return (uint32_t *)PyErr_NoMemory();
    for (size_t s = 0; s < t->n; s++) {
        PyObject *name = ht_live_type_name(t->types[s], shortnames);
        if (name == NULL)
            goto fail;
        PyObject *num = PyDict_GetItemWithError(classes, name);
        if (num == NULL && !PyErr_Occurred()) {
            num = PyLong_FromSsize_t(PyList_GET_SIZE(names));
            if (num == NULL || PyDict_SetItem(classes, name, num) < 0 ||
                PyList_Append(names, name) < 0) {
                Py_XDECREF(num);
                Py_DECREF(name);
                goto fail;
            }
            Py_DECREF(num);
            num = PyDict_GetItemWithError(classes, name);
        }
        Py_DECREF(name);
        if (num == NULL)
            goto fail;
        cls[s] = (uint32_t)PyLong_AsUnsignedLong(num);
    }
    return cls;
fail:
    free(cls);
    return NULL;
}

/* Adds id to the set stored at names-slot c of `sets` (a list, None = no set yet). */
static int
ht_live_add_id(PyObject *sets, uint32_t c, uint64_t id)
{
    PyObject *set = PyList_GET_ITEM(sets, c);
    if (set == Py_None) {
        set = PySet_New(NULL);
        if (set == NULL)
            return -1;
        PyList_SET_ITEM(sets, c, set); /* steals; drops the None below */
        Py_DECREF(Py_None);
    }
    PyObject *v = PyLong_FromUnsignedLongLong(id);
    int rc = v == NULL ? -1 : PySet_Add(set, v);
    Py_XDECREF(v);
    return rc;
}

/* live_new_ids(state, shortnames, classes, names) -> [(class, old, current,
 * new, new_ids set)]: every gc object's id recorded under its class, compared
 * with the previous call's ids. A row per class present then or now. */
static PyObject *
ht_live_py_new_ids(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (ht_live_nargs("live_new_ids", nargs, 4) < 0)
        return NULL;
    PyObject *cap = args[0], *classes = args[2], *names = args[3];
    int shortnames = PyObject_IsTrue(args[1]);
    if (shortnames < 0)
        return NULL;
    if (!PyDict_Check(classes) || !PyList_Check(names))
        return PyErr_Format(PyExc_TypeError, "live_new_ids needs a dict and a list");
    ht_live_ids *st = PyCapsule_GetPointer(cap, "heaptrail.live_ids");
    if (st == NULL)
        return NULL;
    PyObject *seq = ht_gc_objects(), *out = NULL, *sets = NULL;
    if (seq == NULL)
        return NULL;
    ht_live_types t;
    uint32_t *cls = NULL;
    uint64_t *cnt = NULL;
    ht_table now = {0};
    if (ht_live_types_init(&t, 0) < 0 || ht_live_types_count(&t, seq, NULL, NULL) < 0)
        goto done;
    cls = ht_live_class_numbers(&t, shortnames, classes, names);
    if (cls == NULL)
        goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), k = PyList_GET_SIZE(names);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    if (ht_table_init(&now, (size_t)n, 1) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    cnt = calloc((size_t)k * 3 + 1, sizeof(uint64_t)); /* old, current, new per class */
    sets = PyList_New(k);
    if (cnt == NULL || sets == NULL) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t c = 0; c < k; c++)
        PyList_SET_ITEM(sets, c, Py_NewRef(Py_None));
    for (Py_ssize_t i = 0; i < n; i++) {
        size_t s = ht_live_types_slot(&t, Py_TYPE(items[i]));
        if (s == (size_t)-1)
            goto done;
        if (ht_table_put(&now, (uint64_t)(uintptr_t)items[i], (uint64_t)cls[s] + 1) < 0) {
            PyErr_NoMemory();
            goto done;
        }
    }
    for (size_t j = 0; j <= st->current.mask && st->current.keys; j++) {
        uint64_t c = st->current.values[j] - 1;
        if (st->current.keys[j] && c < (uint64_t)k) /* k only grows: always true for our state */
            cnt[c * 3]++;
    }
    for (size_t j = 0; j <= now.mask; j++) {
        if (!now.keys[j])
            continue;
        uint32_t c = (uint32_t)(now.values[j] - 1);
        cnt[c * 3 + 1]++;
        uint64_t *was = ht_table_find(&st->current, now.keys[j]);
        if (was == NULL || *was != now.values[j]) {
            cnt[c * 3 + 2]++;
            if (ht_live_add_id(sets, c, now.keys[j]) < 0)
                goto done;
        }
    }
    out = PyList_New(0);
    for (Py_ssize_t c = 0; out != NULL && c < k; c++) {
        if (cnt[c * 3] == 0 && cnt[c * 3 + 1] == 0)
            continue;
        PyObject *set = PyList_GET_ITEM(sets, c);
        PyObject *row = Py_BuildValue("(OKKKN)", PyList_GET_ITEM(names, c),
                                      (unsigned long long)cnt[c * 3],
                                      (unsigned long long)cnt[c * 3 + 1],
                                      (unsigned long long)cnt[c * 3 + 2],
                                      set == Py_None ? PySet_New(NULL) : Py_NewRef(set));
        if (row == NULL || PyList_Append(out, row) < 0)
            Py_CLEAR(out);
        Py_XDECREF(row);
    }
    if (out != NULL) { /* commit: this call's ids are the next call's old ones */
        ht_table_free(&st->current);
        st->current = now;
        memset(&now, 0, sizeof(now));
    }
done:
    ht_table_free(&now);
    free(cnt);
    free(cls);
    Py_XDECREF(sets);
    ht_live_types_free(&t);
    Py_DECREF(seq);
    return out;
}

/* ---- at ------------------------------------------------------------------- */

/* live_at(addresses) -> [gc objects whose id is in addresses (a set)] */
static PyObject *
ht_live_py_at_addrs(PyObject *mod, PyObject *addrs)
{
    ht_table want;
    if (ht_table_init(&want, 16, 0) < 0)
        return PyErr_NoMemory();
    PyObject *it = PyObject_GetIter(addrs), *x, *seq = NULL, *out = NULL;
    while (it != NULL && (x = PyIter_Next(it)) != NULL) {
        unsigned long long a = PyLong_AsUnsignedLongLong(x);
        Py_DECREF(x);
        if (PyErr_Occurred())
            goto done;
        if (a != 0 && ht_table_add(&want, a) < 0) {
            PyErr_NoMemory();
            goto done;
        }
    }
    if (it == NULL || PyErr_Occurred())
        goto done;
    seq = ht_gc_objects();
    if (seq == NULL)
        goto done;
    out = PyList_New(0);
    Py_ssize_t n = PyList_GET_SIZE(seq);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *o = PyList_GET_ITEM(seq, i);
        if (ht_table_contains(&want, (uint64_t)(uintptr_t)o) && PyList_Append(out, o) < 0)
            Py_CLEAR(out);
    }
done:
    Py_XDECREF(it);
    Py_XDECREF(seq);
    ht_table_free(&want);
    return out;
}

/* ---- referrers: one pass, radix-sorted pairs ---------------------------- */

typedef struct {
    PyObject *all;   /* gc.get_objects(): keeps every referrer alive */
    uint64_t *key;   /* [m] referent address */
    uint32_t *src;   /* [m] referrer: index into all */
    size_t m, cap;
    size_t *bucket;  /* [mask + 2] pairs of bucket b: bucket[b] .. bucket[b+1]-1 */
    size_t mask;     /* buckets - 1 */
    uint32_t cur;    /* referrer being traversed */
    int error;
} ht_live_rev;

static void
ht_live_rev_free(ht_live_rev *r)
{
    Py_CLEAR(r->all);
    free(r->key);
    free(r->src);
    free(r->bucket);
    r->key = NULL;
    r->src = NULL;
    r->bucket = NULL;
}

static int
ht_live_rev_visit(PyObject *o, void *arg)
{
    ht_live_rev *r = arg;
    if (HT_UNLIKELY(r->m == r->cap)) {
        size_t cap = r->cap * 2;
        uint64_t *k = realloc(r->key, cap * sizeof(uint64_t));
        if (k == NULL)
            return r->error = 1;
        r->key = k;
        uint32_t *s = realloc(r->src, cap * sizeof(uint32_t));
        if (s == NULL)
            return r->error = 1;
        r->src = s;
        r->cap = cap;
    }
    r->key[r->m] = (uint64_t)(uintptr_t)o;
    r->src[r->m] = r->cur;
    r->m++;
    return 0;
}

/* Groups the pairs by a hash of their key into nbuckets buckets (a power of
 * two, about 8 pairs each): one counting pass and one stable scatter, so a
 * bucket keeps its pairs in referrer order. */
static int
ht_live_rev_partition(ht_live_rev *r)
{
    size_t nb = 1;
    while (nb < r->m / 8 + 1)
        nb <<= 1;
    uint64_t *k2 = malloc((r->m + 1) * sizeof(uint64_t));
    uint32_t *s2 = malloc((r->m + 1) * sizeof(uint32_t));
    size_t *start = calloc(nb + 1, sizeof(size_t));
    if (k2 == NULL || s2 == NULL || start == NULL) {
        free(k2);
        free(s2);
        free(start);
        PyErr_NoMemory();
        return -1;
    }
    size_t mask = nb - 1;
    for (size_t e = 0; e < r->m; e++)
        start[(ht_hash64(r->key[e]) & mask) + 1]++;
    for (size_t d = 0; d < nb; d++)
        start[d + 1] += start[d];
    for (size_t e = 0; e < r->m; e++) {
        size_t p = start[ht_hash64(r->key[e]) & mask]++;
        k2[p] = r->key[e];
        s2[p] = r->src[e];
    }
    /* the scatter advanced each start to its bucket's end: shift back */
    memmove(start + 1, start, nb * sizeof(size_t));
    start[0] = 0;
    free(r->key);
    free(r->src);
    r->key = k2;
    r->src = s2;
    r->bucket = start;
    r->mask = mask;
    return 0;
}

/* Builds the referrer index over every gc object. 0 or -1. */
static int
ht_live_rev_build(ht_live_rev *r)
{
    memset(r, 0, sizeof(*r));
    r->all = ht_gc_objects();
    if (r->all == NULL)
        return -1;
    Py_ssize_t n = PyList_GET_SIZE(r->all);
    if ((size_t)n >= UINT32_MAX) {
        ht_error("too many objects for a referrer index (%zd)", n);
        return -1;
    }
    r->cap = (size_t)n * 2 + 64;
    r->key = malloc(r->cap * sizeof(uint64_t));
    r->src = malloc(r->cap * sizeof(uint32_t));
    if (r->key == NULL || r->src == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(r->all);
    for (Py_ssize_t i = 0; i < n && !r->error; i++) {
        PyObject *o = items[i];
        if (i + 8 < n)
            __builtin_prefetch(items[i + 8]);
        traverseproc tr = Py_TYPE(o)->tp_traverse;
        r->cur = (uint32_t)i;
        if (tr != NULL)
            tr(o, ht_live_rev_visit, r);
    }
    if (r->error) {
        PyErr_NoMemory();
        return -1;
    }
    return ht_live_rev_partition(r);
}

/* Referrers of o into v (each once, in gc order). */
static void
ht_live_rev_referrers(const ht_live_rev *r, PyObject *o, ht_live_vec *v)
{
    uint64_t a = (uint64_t)(uintptr_t)o;
    size_t b = ht_hash64(a) & r->mask;
    v->len = 0;
    uint32_t prev = UINT32_MAX;
    for (size_t e = r->bucket[b]; e < r->bucket[b + 1]; e++) {
        if (r->key[e] != a || r->src[e] == prev)
            continue;
        prev = r->src[e];
        ht_live_vec_push(v, PyList_GET_ITEM(r->all, r->src[e]));
    }
}

/* Neighbours of o: referents, or referrers when r is not NULL. 0 or -1. */
static int
ht_live_neighbours(const ht_live_rev *r, PyObject *o, ht_live_vec *v)
{
    if (r == NULL)
        return ht_live_referents(o, v);
    ht_live_rev_referrers(r, o, v);
    if (v->error) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* A set of ids from an iterable of ints. 0 or -1. */
static int
ht_live_id_set(PyObject *ids, ht_table *t)
{
    if (ht_table_init(t, 64, 1) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    PyObject *it = PyObject_GetIter(ids), *x;
    if (it == NULL)
        return -1;
    while ((x = PyIter_Next(it)) != NULL) {
        unsigned long long a = PyLong_AsUnsignedLongLong(x);
        Py_DECREF(x);
        if (a == (unsigned long long)-1 && PyErr_Occurred())
            break;
        if (a != 0 && ht_table_put(t, a, 1) < 0) {
            PyErr_NoMemory();
            break;
        }
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

/* ---- breadth-first search ------------------------------------------------- */

/* The search's queue: every object reached, with a strong reference, its
 * parent's position and its depth; `seen` maps an id to position + 1. */
typedef struct {
    PyObject **obj;
    uint32_t *parent, *depth;
    size_t len, cap;
    ht_table seen;
} ht_live_bfs;

static int
ht_live_bfs_init(ht_live_bfs *b)
{
    memset(b, 0, sizeof(*b));
    if (ht_table_init(&b->seen, 256, 1) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void
ht_live_bfs_free(ht_live_bfs *b)
{
    for (size_t i = 0; i < b->len; i++)
        Py_DECREF(b->obj[i]);
    free(b->obj);
    free(b->parent);
    free(b->depth);
    ht_table_free(&b->seen);
}

/* Enqueues o (a new reference is taken) unless already seen. 1 added, 0
 * already there, -1 out of memory. */
static int
ht_live_bfs_push(ht_live_bfs *b, PyObject *o, uint32_t parent, uint32_t depth)
{
    uint64_t id = (uint64_t)(uintptr_t)o;
    if (ht_table_contains(&b->seen, id))
        return 0;
    if (b->len == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        PyObject **o2 = realloc(b->obj, cap * sizeof(PyObject *));
        if (o2 == NULL)
            goto nomem;
        b->obj = o2;
        uint32_t *p2 = realloc(b->parent, cap * sizeof(uint32_t));
        if (p2 == NULL)
            goto nomem;
        b->parent = p2;
        uint32_t *d2 = realloc(b->depth, cap * sizeof(uint32_t));
        if (d2 == NULL)
            goto nomem;
        b->depth = d2;
        b->cap = cap;
    }
    if (ht_table_put(&b->seen, id, b->len + 1) < 0)
        goto nomem;
    b->obj[b->len] = Py_NewRef(o);
    b->parent[b->len] = parent;
    b->depth[b->len] = depth;
    b->len++;
    return 1;
nomem:
    PyErr_NoMemory();
    return -1;
}

/* Calls pred(o): 1 true, 0 false, -1 error. */
static int
ht_live_call_pred(PyObject *pred, PyObject *o)
{
    PyObject *r = PyObject_CallOneArg(pred, o);
    if (r == NULL)
        return -1;
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

/* live_find_chain(obj, predicate, max_depth, ignore_ids, backrefs) -> list:
 * objgraph's _find_chain: the first object (breadth-first from obj over
 * referents, or referrers) that satisfies predicate, then its parents back
 * to obj; [obj] when none within max_depth. */
static PyObject *
ht_live_py_find_chain(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (ht_live_nargs("live_find_chain", nargs, 5) < 0)
        return NULL;
    PyObject *obj = args[0], *pred = args[1], *ignore_ids = args[3];
    Py_ssize_t max_depth;
    int back = PyObject_IsTrue(args[4]);
    if (back < 0 || ht_live_ssize(args[2], &max_depth) < 0)
        return NULL;
    ht_table ignore = {0};
    ht_live_rev rev;
    memset(&rev, 0, sizeof(rev));
    ht_live_vec nb = {0};
    ht_live_bfs b;
    PyObject *out = NULL;
    if (ht_live_bfs_init(&b) < 0)
        return NULL;
    if (ht_live_id_set(ignore_ids, &ignore) < 0 || (back && ht_live_rev_build(&rev) < 0))
        goto done;
    if (ht_live_bfs_push(&b, obj, UINT32_MAX, 0) < 0)
        goto done;
    for (size_t head = 0; head < b.len; head++) {
        PyObject *target = b.obj[head];
        int hit = ht_live_call_pred(pred, target);
        if (hit < 0)
            goto done;
        if (hit) {
            out = PyList_New(0);
            for (size_t p = head; out != NULL && p != UINT32_MAX; p = b.parent[p])
                if (PyList_Append(out, b.obj[p]) < 0)
                    Py_CLEAR(out);
            goto done;
        }
        uint32_t d = b.depth[head];
        if ((Py_ssize_t)d >= max_depth)
            continue;
        if (ht_live_neighbours(back ? &rev : NULL, target, &nb) < 0)
            goto done;
        for (size_t k = 0; k < nb.len; k++) {
            PyObject *src = nb.items[k];
            if (ht_table_contains(&ignore, (uint64_t)(uintptr_t)src))
                continue;
            if (ht_live_bfs_push(&b, src, (uint32_t)head, d + 1) < 0)
                goto done;
        }
    }
    out = PyList_New(1);
    if (out != NULL)
        PyList_SET_ITEM(out, 0, Py_NewRef(obj));
done:
    free(nb.items);
    ht_live_rev_free(&rev);
    ht_table_free(&ignore);
    ht_live_bfs_free(&b);
    return out;
}

/* live_graph(objs, backrefs, max_depth, too_many, ignore_ids, filter, cull)
 * -> [(obj, depth, [neighbours drawn], skipped)] in the order objgraph's
 * show_refs/show_backrefs visits them (breadth-first, cull stops at an
 * object, at most too_many neighbours drawn per object). */
static PyObject *
ht_live_py_graph(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (ht_live_nargs("live_graph", nargs, 7) < 0)
        return NULL;
    PyObject *objs = args[0], *ignore_ids = args[4], *filter = args[5], *cull = args[6];
    Py_ssize_t max_depth, too_many;
    int back = PyObject_IsTrue(args[1]);
    if (back < 0 || ht_live_ssize(args[2], &max_depth) < 0 || ht_live_ssize(args[3], &too_many) < 0)
        return NULL;
    ht_table ignore = {0};
    ht_live_rev rev;
    memset(&rev, 0, sizeof(rev));
    ht_live_vec nb = {0};
    ht_live_bfs b;
    PyObject *out = NULL, *seq = NULL, *row = NULL, *drawn = NULL;
    if (ht_live_bfs_init(&b) < 0)
        return NULL;
    seq = PySequence_Fast(objs, "objs must be a list or tuple");
    if (seq == NULL || ht_live_id_set(ignore_ids, &ignore) < 0 ||
        (back && ht_live_rev_build(&rev) < 0))
        goto fail;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++)
        if (ht_live_bfs_push(&b, PySequence_Fast_GET_ITEM(seq, i), UINT32_MAX, 0) < 0)
            goto fail;
    out = PyList_New(0);
    if (out == NULL)
        goto fail;
    for (size_t head = 0; head < b.len; head++) {
        PyObject *target = b.obj[head];
        uint32_t d = b.depth[head];
        Py_ssize_t skipped = 0, drawn_n = 0;
        drawn = PyList_New(0);
        if (drawn == NULL)
            goto fail;
        int stop = (Py_ssize_t)d >= max_depth;
        if (!stop && cull != Py_None && (stop = ht_live_call_pred(cull, target)) < 0)
            goto fail;
        if (!stop && ht_live_neighbours(back ? &rev : NULL, target, &nb) < 0)
            goto fail;
        for (size_t k = 0; !stop && k < nb.len; k++) {
            PyObject *src = nb.items[k];
            if (ht_table_contains(&ignore, (uint64_t)(uintptr_t)src))
                continue;
            if (filter != Py_None) {
                int keep = ht_live_call_pred(filter, src);
                if (keep < 0)
                    goto fail;
                if (!keep)
                    continue;
            }
            if (drawn_n >= too_many) {
                skipped++;
                continue;
            }
            if (PyList_Append(drawn, src) < 0 || ht_live_bfs_push(&b, src, (uint32_t)head, d + 1) < 0)
                goto fail;
            drawn_n++;
        }
        row = Py_BuildValue("(OINn)", target, (unsigned)d, drawn, skipped);
        drawn = NULL;
        if (row == NULL || PyList_Append(out, row) < 0)
            goto fail;
        Py_CLEAR(row);
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    Py_XDECREF(row);
    Py_XDECREF(drawn);
    Py_XDECREF(seq);
    free(nb.items);
    ht_live_rev_free(&rev);
    ht_table_free(&ignore);
    ht_live_bfs_free(&b);
    return out;
}

/* ---- leaking objects -------------------------------------------------------- */

static int
ht_live_unref_visit(PyObject *o, void *arg)
{
    ht_table_remove((ht_table *)arg, (uint64_t)(uintptr_t)o, NULL);
    return 0;
}

/* live_leaking(objects) -> objects (None: every gc object) that no gc object
 * refers to; the list `objects` itself is not counted as a referrer. */
static PyObject *
ht_live_py_leaking(PyObject *mod, PyObject *objects)
{
    PyObject *all = ht_gc_objects(), *seq = NULL, *out = NULL;
    if (all == NULL)
        return NULL;
    seq = objects == Py_None ? Py_NewRef(all) : PySequence_Fast(objects, "objects must be a sequence");
    if (seq == NULL) {
        Py_DECREF(all);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), na = PyList_GET_SIZE(all);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    ht_table ids;
    if (ht_table_init(&ids, (size_t)n, 0) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (ht_table_add(&ids, (uint64_t)(uintptr_t)items[i]) < 0) {
            PyErr_NoMemory();
            goto done;
        }
    for (Py_ssize_t i = 0; i < na; i++) {
        PyObject *o = PyList_GET_ITEM(all, i);
        traverseproc tr = Py_TYPE(o)->tp_traverse;
        if (i + 8 < na)
            __builtin_prefetch(PyList_GET_ITEM(all, i + 8));
        if (o != objects && o != seq && tr != NULL)
            tr(o, ht_live_unref_visit, &ids);
    }
    out = PyList_New(0);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++)
        if (ht_table_contains(&ids, (uint64_t)(uintptr_t)items[i]) &&
            PyList_Append(out, items[i]) < 0)
            Py_CLEAR(out);
done:
    ht_table_free(&ids);
    Py_DECREF(seq);
    Py_DECREF(all);
    return out;
}

/* ---- cycles among collected garbage ----------------------------------------- */

/* Edges among the members of a list, CSR, plus Tarjan's components. */
typedef struct {
    uint32_t n;
    uint32_t *start, *dst;  /* CSR over members */
    size_t m;
    uint32_t *comp;          /* [n] component number of each member */
    uint32_t ncomp;
} ht_live_gg;

static void
ht_live_gg_free(ht_live_gg *g)
{
    free(g->start);
    free(g->dst);
    free(g->comp);
}

/* Components of the CSR (graph.c's Tarjan): comp[v] for every member. 0 or -1. */
static int
ht_live_gg_scc(ht_live_gg *g)
{
    g->comp = malloc(((size_t)g->n + 1) * sizeof(uint32_t));
    if (g->comp == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return ht_graph_scc(g->n, g->start, g->dst, g->comp, NULL, &g->ncomp);
}

/* Builds the CSR of references between members. 0 or -1. */
static int
ht_live_gg_build(ht_live_gg *g, PyObject **items, uint32_t n, const ht_table *where)
{
    ht_live_vec v = {0};
    size_t cap = (size_t)n * 2 + 16;
    g->n = n;
    g->start = malloc(((size_t)n + 1) * sizeof(uint32_t));
    g->dst = malloc(cap * sizeof(uint32_t));
    if (g->start == NULL || g->dst == NULL)
        goto nomem;
    for (uint32_t i = 0; i < n; i++) {
        g->start[i] = (uint32_t)g->m;
        if (ht_live_referents(items[i], &v) < 0)
            goto fail;
        for (size_t k = 0; k < v.len; k++) {
            uint64_t *j = ht_table_find(where, (uint64_t)(uintptr_t)v.items[k]);
            if (j == NULL)
                continue;
            if (g->m == cap) {
                cap *= 2;
                uint32_t *d = realloc(g->dst, cap * sizeof(uint32_t));
                if (d == NULL)
                    goto nomem;
                g->dst = d;
            }
            g->dst[g->m++] = (uint32_t)(*j - 1);
        }
    }
    g->start[n] = (uint32_t)g->m;
    free(v.items);
    return 0;
nomem:
    PyErr_NoMemory();
fail:
    free(v.items);
    return -1;
}

/* Adds to each component's total the flat size of the objects the collector
 * does not track (bytes, str, numbers) that only that component refers to:
 * every one of their references comes from its members, so they go with it. */
static int
ht_live_gg_leaves(ht_live_gg *g, PyObject **items, const ht_table *where, uint64_t *total)
{
    ht_table leaves; /* address -> (component << 32) | references seen */
    ht_live_vec v = {0};
    if (ht_table_init(&leaves, 64, 1) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    for (uint32_t i = 0; i < g->n; i++) {
        if (ht_live_referents(items[i], &v) < 0)
            goto fail;
        for (size_t k = 0; k < v.len; k++) {
            PyObject *o = v.items[k];
            uint64_t a = (uint64_t)(uintptr_t)o;
            if (ht_table_contains(where, a) || (PyObject_IS_GC(o) && PyObject_GC_IsTracked(o)))
                continue;
            int added;
            uint64_t *slot = ht_table_upsert(&leaves, a, (uint64_t)g->comp[i] << 32, &added);
            if (slot == NULL) {
                PyErr_NoMemory();
                goto fail;
            }
            if ((*slot >> 32) != g->comp[i])
                *slot = (uint64_t)UINT32_MAX << 32; /* held from two components */
            *slot += 1;
        }
    }
    for (size_t j = 0; j <= leaves.mask; j++) {
        if (!leaves.keys[j])
            continue;
        PyObject *o = (PyObject *)(uintptr_t)leaves.keys[j];
        uint32_t c = (uint32_t)(leaves.values[j] >> 32), refs = (uint32_t)leaves.values[j];
        if (c == UINT32_MAX || (Py_ssize_t)refs != Py_REFCNT(o))
            continue;
        Py_ssize_t s = ht_size_flat(o);
        if (s < 0)
            goto fail;
        total[c] += (uint64_t)s;
    }
    free(v.items);
    ht_table_free(&leaves);
    return 0;
fail:
    free(v.items);
    ht_table_free(&leaves);
    return -1;
}

/* The rows of live_garbage, biggest total first. */
static PyObject *
ht_live_gg_rows(ht_live_gg *g, PyObject **items, const uint64_t *total)
{
    PyObject *members = PyList_New(g->ncomp), *out = NULL;
    uint8_t *fin = calloc(g->ncomp + 1, 1);
    if (members == NULL || fin == NULL)
        goto done;
    for (uint32_t c = 0; c < g->ncomp; c++) {
        PyObject *l = PyList_New(0);
        if (l == NULL)
            goto done;
        PyList_SET_ITEM(members, c, l);
    }
    for (uint32_t i = 0; i < g->n; i++) {
        PyTypeObject *tp = Py_TYPE(items[i]);
        if (tp->tp_finalize != NULL || tp->tp_del != NULL)
            fin[g->comp[i]] = 1;
        PyObject *ix = PyLong_FromUnsignedLong(i);
        int rc = ix == NULL ? -1 : PyList_Append(PyList_GET_ITEM(members, g->comp[i]), ix);
        Py_XDECREF(ix);
        if (rc < 0)
            goto done;
    }
    out = PyList_New(0);
    for (uint32_t c = 0; out != NULL && c < g->ncomp; c++) {
        PyObject *l = PyList_GET_ITEM(members, c);
        if (PyList_GET_SIZE(l) == 1) { /* a cycle only when it refers to itself */
            uint32_t v = (uint32_t)PyLong_AsUnsignedLong(PyList_GET_ITEM(l, 0)), self = 0;
            for (uint32_t e = g->start[v]; e < g->start[v + 1]; e++)
                self |= g->dst[e] == v;
            if (!self)
                continue;
        }
        PyObject *row = Py_BuildValue("(OKO)", l, (unsigned long long)total[c],
                                      fin[c] ? Py_True : Py_False);
        if (row == NULL || PyList_Append(out, row) < 0)
            Py_CLEAR(out);
        Py_XDECREF(row);
    }
done:
    free(fin);
    Py_XDECREF(members);
    return out;
}

/* live_garbage(objects) -> ([(member indexes, total size, has_finalizer)],
 * [(i, j) references between members]) for the cycles (strongly connected
 * components of more than one object, or referring to itself) among
 * objects (a list: what a DEBUG_SAVEALL collection saved). */
static PyObject *
ht_live_py_garbage(PyObject *mod, PyObject *list)
{
    if (!PyList_Check(list))
        return PyErr_Format(PyExc_TypeError, "live_garbage needs a list, not %.100s",
                            Py_TYPE(list)->tp_name);
    Py_ssize_t n = PyList_GET_SIZE(list);
    if ((size_t)n >= UINT32_MAX / 2)
        return ht_error("too many garbage objects (%zd)", n);
    PyObject *items_list = PyList_GetSlice(list, 0, n); /* a private copy: no one mutates it */
    if (items_list == NULL)
        return NULL;
    PyObject **items = PySequence_Fast_ITEMS(items_list), *rows = NULL, *edges = NULL, *out = NULL;
    ht_live_gg g;
    memset(&g, 0, sizeof(g));
    uint64_t *total = NULL;
    ht_table where;
    if (ht_table_init(&where, (size_t)n, 1) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (ht_table_put(&where, (uint64_t)(uintptr_t)items[i], (uint64_t)i + 1) < 0) {
            PyErr_NoMemory();
            goto done;
        }
    if (ht_live_gg_build(&g, items, (uint32_t)n, &where) < 0 || ht_live_gg_scc(&g) < 0)
        goto done;
    total = calloc((size_t)g.ncomp + 1, sizeof(uint64_t));
    if (total == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (uint32_t i = 0; i < g.n; i++) {
        Py_ssize_t s = ht_size_flat(items[i]);
        if (s < 0)
            goto done;
        total[g.comp[i]] += (uint64_t)s;
    }
    if (ht_live_gg_leaves(&g, items, &where, total) < 0)
        goto done;
    rows = ht_live_gg_rows(&g, items, total);
    edges = rows == NULL ? NULL : PyList_New(0);
    for (uint32_t i = 0; edges != NULL && i < g.n; i++)
        for (uint32_t e = g.start[i]; edges != NULL && e < g.start[i + 1]; e++) {
            PyObject *t = Py_BuildValue("(II)", (unsigned)i, (unsigned)g.dst[e]);
            if (t == NULL || PyList_Append(edges, t) < 0)
                Py_CLEAR(edges);
            Py_XDECREF(t);
        }
    if (edges != NULL)
        out = Py_BuildValue("(OO)", rows, edges);
done:
    Py_XDECREF(rows);
    Py_XDECREF(edges);
    free(total);
    ht_live_gg_free(&g);
    ht_table_free(&where);
    Py_DECREF(items_list);
    return out;
}

/* ---- module ----------------------------------------------------------------- */

static PyMethodDef ht_live_methods[] = {
    {"live_typestats", (PyCFunction)(void (*)(void))ht_live_py_typestats, METH_FASTCALL,
     "live_typestats(objects, shortnames, filter) -> {type name: count}"},
    {"live_by_type", (PyCFunction)(void (*)(void))ht_live_py_by_type, METH_FASTCALL,
     "live_by_type(typename, objects) -> [objects of that type name]"},
    {"live_growth", ht_live_py_growth, METH_VARARGS,
     "live_growth(stats, peak) -> [(name, count, delta)] above peak; raises peak"},
    {"live_ids_state", ht_live_py_ids_state, METH_NOARGS, "live_ids_state() -> id-set state"},
    {"live_new_ids", (PyCFunction)(void (*)(void))ht_live_py_new_ids, METH_FASTCALL,
     "live_new_ids(state, shortnames, classes, names) -> [(name, old, current, new, ids)]"},
    {"live_at_addrs", ht_live_py_at_addrs, METH_O,
     "live_at_addrs(addresses) -> [gc objects whose id is in addresses]"},
    {"live_find_chain", (PyCFunction)(void (*)(void))ht_live_py_find_chain, METH_FASTCALL,
     "live_find_chain(obj, predicate, max_depth, ignore_ids, backrefs) -> [found, ..., obj]"},
    {"live_graph", (PyCFunction)(void (*)(void))ht_live_py_graph, METH_FASTCALL,
     "live_graph(objs, backrefs, max_depth, too_many, ignore_ids, filter, cull) -> rows"},
    {"live_leaking", ht_live_py_leaking, METH_O,
     "live_leaking(objects) -> objects no gc object refers to"},
    {"live_garbage", ht_live_py_garbage, METH_O,
     "live_garbage(objects) -> (cycles [(members, total, has_finalizer)], edges [(i, j)])"},
    {NULL, NULL, 0, NULL},
};

int
ht_live_init(PyObject *m)
{
    return PyModule_AddFunctions(m, ht_live_methods);
}
