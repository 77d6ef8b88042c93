/* leaks.c - the leak hunter's two C primitives: a cheap per-type count of
 * the live objects, sampled once per iteration, and the list of objects
 * that are new between two heap snapshots, grouped by kind.
 *
 * Counting (ht_leaks_counter, `_core._leaks_counter()`): a full snapshot per
 * iteration would cost a walk with edges, labels and values every time; the
 * growth test only needs, per type, how many objects there are and their
 * bytes. One pass over gc.get_objects() (live.h's counting pass, with
 * HT_LIVE_BYTES | HT_LIVE_UNTRACKED) counts every gc-tracked object by
 * type (flat size from ht_size_flat) and, for each, its untracked referents
 * (str, int, float, bytes, untracked tuples and dicts ...), which are found
 * only through a container: those are counted once per reference, not once
 * per object (deduplicating them would need an address set as big as the
 * heap's, which is the snapshot's cost). A container that keeps one more
 * reference to an untracked object per iteration is growing, so the count
 * still says what grows; whether anything NEW grew is decided afterwards
 * from the two snapshots (an interned string or a small int is never new).
 * Exact dicts are read with PyDict_Next so their str keys (which dict's
 * tp_traverse leaves out) count too.
 *
 * Counts live in C (malloc): one row per type seen, one column per sample,
 * so measuring creates no Python object that could itself look like a leak.
 * A row is keyed by the type's address and keeps its name from the first
 * sighting (a type that dies and whose address is reused keeps the first
 * name; it would have to die and be reborn during the check).
 *
 * New objects (`_core._leaks_new(new, old, max_samples)`): objects of the
 * newer snapshot that the older one does not hold at the same address with
 * the same type name (the rule of Snapshot.diff), grouped by owner kind
 * ("Session", "dict of Session", "dict of module app", as summary(by="owner")
 * names them), with their count, bytes and the first max_samples indexes.
 */
#include "common.h"

#include <stdlib.h>
#include <string.h>

#include "hashtable.h"
#include "heap.h"
#include "live.h"

/* ======================================================================
 * the per-iteration counter
 * ====================================================================== */

typedef struct {
    char *name;        /* qualified type name, malloc'd */
    int64_t *count;    /* [cap_samples] objects (references, for untracked ones) */
    int64_t *bytes;    /* [cap_samples] flat bytes */
} ht_leaks_row;

typedef struct {
    PyObject_HEAD
    ht_live_types types;     /* the counting pass (live.h): type -> slot, and the
                                counts of the sample being taken */
    ht_leaks_row *rows;      /* [nrows] row j keeps the columns of slot j */
    size_t nrows, cap_rows;
    size_t nsamples, cap_samples;
    ht_table known;          /* address -> type address of every object counted by
                                the sample(record=True): "the objects at the start" */
} ht_leaks_counter;

/* Qualified name as heap.c records it: "str", "app.Session" (the module is
 * left out for builtins). Returns a malloc'd string or NULL. */
static char *
ht_leaks_type_name(PyTypeObject *tp)
{
    const char *mod = NULL, *qual = tp->tp_name;
    PyObject *m = NULL;
    if (tp->tp_flags & Py_TPFLAGS_HEAPTYPE) {
        PyHeapTypeObject *ht = (PyHeapTypeObject *)tp;
        if (ht->ht_qualname && PyUnicode_Check(ht->ht_qualname))
            qual = PyUnicode_AsUTF8(ht->ht_qualname);
        m = tp->tp_dict ? PyDict_GetItemString(tp->tp_dict, "__module__") : NULL;
        if (m && PyUnicode_Check(m))
            mod = PyUnicode_AsUTF8(m);
        if (mod && strcmp(mod, "builtins") == 0)
            mod = NULL;
        PyErr_Clear(); /* a name that cannot be encoded is left out, not raised */
    }
    if (qual == NULL) {
        PyErr_Clear();
        qual = "?";
    }
    size_t a = mod ? strlen(mod) + 1 : 0, b = strlen(qual);
    char *s = malloc(a + b + 1);
    if (s == NULL)
        return NULL;
    if (mod) {
        memcpy(s, mod, a - 1);
        s[a - 1] = '.';
    }
    memcpy(s + a, qual, b + 1);
    return s;
}

/* Adds the row of slot nrows (zeros for earlier samples), named after tp,
 * which must still be alive. 0 or -1. */
static int
ht_leaks_row_add(ht_leaks_counter *c, PyTypeObject *tp)
{
    if (c->nrows == c->cap_rows) {
        size_t cap = c->cap_rows ? c->cap_rows * 2 : 256;
        ht_leaks_row *r = realloc(c->rows, cap * sizeof *r);
        if (r == NULL)
            return -1;
        c->rows = r;
        c->cap_rows = cap;
    }
    ht_leaks_row *r = &c->rows[c->nrows];
    r->name = ht_leaks_type_name(tp);
    r->count = calloc(c->cap_samples, sizeof(int64_t));
    r->bytes = calloc(c->cap_samples, sizeof(int64_t));
    if (r->name == NULL || r->count == NULL || r->bytes == NULL) {
        free(r->name);
        free(r->count);
        free(r->bytes);
        return -1;
    }
    c->nrows++;
    return 0;
}

/* Stores the pass's counts as column nsamples, adding a row for each type
 * first seen in it (while the objects counted, and so their types, are
 * still alive). 0 or -1. */
static int
ht_leaks_store_column(ht_leaks_counter *c)
{
    const ht_live_types *t = &c->types;
    while (c->nrows < t->n)
        if (ht_leaks_row_add(c, t->types[c->nrows]) < 0)
            return -1;
    for (size_t j = 0; j < t->n; j++) {
        c->rows[j].count[c->nsamples] = (int64_t)t->counts[j];
        c->rows[j].bytes[c->nsamples] = (int64_t)t->bytes[j];
    }
    return 0;
}

/* Makes room for one more sample column in every row. */
static int
ht_leaks_grow_samples(ht_leaks_counter *c)
{
    if (c->nsamples < c->cap_samples)
        return 0;
    size_t cap = c->cap_samples ? c->cap_samples * 2 : 16;
    for (size_t j = 0; j < c->nrows; j++) {
        int64_t *a = realloc(c->rows[j].count, cap * sizeof(int64_t));
        if (a == NULL)
            return -1;
        c->rows[j].count = a;
        int64_t *b = realloc(c->rows[j].bytes, cap * sizeof(int64_t));
        if (b == NULL)
            return -1;
        c->rows[j].bytes = b;
        memset(a + c->cap_samples, 0, (cap - c->cap_samples) * sizeof(int64_t));
        memset(b + c->cap_samples, 0, (cap - c->cap_samples) * sizeof(int64_t));
    }
    c->cap_samples = cap;
    return 0;
}

/* sample(record=False): one counting pass, appended as a new column; with
 * record=True it also remembers every object it counts (address and type),
 * replacing what an earlier record=True remembered. */
static PyObject *
ht_leaks_sample(ht_leaks_counter *c, PyObject *args)
{
    int record = 0;
    if (!PyArg_ParseTuple(args, "|p", &record))
        return NULL;
    if (ht_leaks_grow_samples(c) < 0)
        return PyErr_NoMemory();

    PyObject *gc = PyImport_ImportModule("gc");
    if (gc == NULL)
        return NULL;
    PyObject *list = PyObject_CallMethod(gc, "get_objects", NULL);
    Py_DECREF(gc);
    if (list == NULL)
        return NULL;
    if (!PyList_Check(list)) {
        Py_DECREF(list);
        PyErr_SetString(PyExc_TypeError, "gc.get_objects() did not return a list");
        return NULL;
    }
    if (record) {
        /* sized once: untracked objects are typically 1-1.5x the tracked ones */
        ht_table_free(&c->known);
        if (ht_table_init(&c->known, (size_t)PyList_GET_SIZE(list) * 5 / 2 + 1024, 1) < 0) {
            Py_DECREF(list);
            return PyErr_NoMemory();
        }
    }
    /* no collection may run while we read raw referents; the list holds a
     * reference to every tracked object, so no __sizeof__ can free one */
    ht_live_types_zero(&c->types);
    int was_enabled = PyGC_Disable();
    int rc = ht_live_types_count(&c->types, list, NULL, record ? &c->known : NULL);
    if (was_enabled)
        PyGC_Enable();
    if (rc == 0 && ht_leaks_store_column(c) < 0)
        rc = -1;
    Py_DECREF(list);
    if (rc < 0) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return NULL;
    }
    c->nsamples++;
    return PyLong_FromSize_t(c->nsamples);
}

/* rows(): [(type name, (counts...), (bytes...))] for every type seen. */
static PyObject *
ht_leaks_rows(ht_leaks_counter *c, PyObject *unused)
{
    PyObject *out = PyList_New((Py_ssize_t)c->nrows);
    for (size_t j = 0; out && j < c->nrows; j++) {
        ht_leaks_row *r = &c->rows[j];
        PyObject *cnt = PyTuple_New((Py_ssize_t)c->nsamples);
        PyObject *byt = PyTuple_New((Py_ssize_t)c->nsamples);
        PyObject *row = NULL;
        if (cnt && byt) {
            for (size_t s = 0; s < c->nsamples; s++) {
                PyTuple_SET_ITEM(cnt, (Py_ssize_t)s, PyLong_FromLongLong(r->count[s]));
                PyTuple_SET_ITEM(byt, (Py_ssize_t)s, PyLong_FromLongLong(r->bytes[s]));
            }
            if (!PyErr_Occurred())
                row = Py_BuildValue("(sOO)", r->name, cnt, byt);
        }
        Py_XDECREF(cnt);
        Py_XDECREF(byt);
        if (row == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)j, row);
    }
    return out;
}

static PyObject *
ht_leaks_get_samples(ht_leaks_counter *c, void *unused)
{
    return PyLong_FromSize_t(c->nsamples);
}

static void
ht_leaks_counter_dealloc(ht_leaks_counter *c)
{
    for (size_t j = 0; j < c->nrows; j++) {
        free(c->rows[j].name);
        free(c->rows[j].count);
        free(c->rows[j].bytes);
    }
    free(c->rows);
    ht_live_types_free(&c->types);
    ht_table_free(&c->known);
    PyObject_Free(c);
}

static PyMethodDef ht_leaks_counter_methods[] = {
    {"sample", (PyCFunction)ht_leaks_sample, METH_VARARGS,
     "sample(record=False) -> number of samples: counts the live objects by type; record=True "
     "also remembers them (address, type) for _leaks_new"},
    {"rows", (PyCFunction)ht_leaks_rows, METH_NOARGS,
     "rows() -> [(type name, counts, bytes)], one entry per sample"},
    {NULL},
};

static PyGetSetDef ht_leaks_counter_getset[] = {
    {"samples", (getter)ht_leaks_get_samples, NULL, "samples taken", NULL},
    {NULL},
};

/* not gc-tracked: it holds no Python object, and so it never shows in the
 * counts it takes */
static PyTypeObject ht_leaks_counter_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "heaptrail._core.LeakCounter",
    .tp_basicsize = sizeof(ht_leaks_counter),
    .tp_dealloc = (destructor)ht_leaks_counter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Per-type counts of the live objects, one column per sample().",
    .tp_methods = ht_leaks_counter_methods,
    .tp_getset = ht_leaks_counter_getset,
};

static PyObject *
ht_leaks_counter_new(PyObject *mod, PyObject *unused)
{
    ht_leaks_counter *c = PyObject_New(ht_leaks_counter, &ht_leaks_counter_type);
    if (c == NULL)
        return NULL;
    memset((char *)c + sizeof(PyObject), 0, sizeof *c - sizeof(PyObject));
    if (ht_live_types_init(&c->types, HT_LIVE_BYTES | HT_LIVE_UNTRACKED) < 0 ||
        ht_table_init(&c->known, 16, 1) < 0) {
        Py_DECREF(c);
        return PyErr_NoMemory();
    }
    return (PyObject *)c;
}

/* ======================================================================
 * new objects between two snapshots, by owner kind
 * ====================================================================== */

typedef struct {
    char *name;
    size_t len;
    int64_t count, bytes;
    uint32_t *samples;   /* first max_samples indexes */
    size_t nsamples;
} ht_leaks_kind;

typedef struct {
    ht_table by_name;    /* name hash -> kind index + 1 */
    ht_leaks_kind *k;
    size_t nk, cap;
    size_t max_samples;
} ht_leaks_kinds;

static uint64_t
ht_leaks_hash(const char *p, size_t n)
{
    uint64_t x = 0x9e3779b97f4a7c15ULL ^ n;
    for (size_t i = 0; i < n; i++)
        x = (x ^ (unsigned char)p[i]) * 0x100000001b3ULL;
    return ht_hash64(x) | 1;
}

static ht_leaks_kind *
ht_leaks_kind_get(ht_leaks_kinds *ks, const char *name, size_t len)
{
    uint64_t key = ht_leaks_hash(name, len);
    for (;;) {
        uint64_t *v = ht_table_find(&ks->by_name, key);
        if (v == NULL)
            break;
        ht_leaks_kind *k = &ks->k[*v - 1];
        if (k->len == len && memcmp(k->name, name, len) == 0)
            return k;
        key = ht_hash64(key) | 1;
    }
    if (ks->nk == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 64;
        ht_leaks_kind *k = realloc(ks->k, cap * sizeof *k);
        if (k == NULL)
            return NULL;
        ks->k = k;
        ks->cap = cap;
    }
    ht_leaks_kind *k = &ks->k[ks->nk];
    memset(k, 0, sizeof *k);
    k->name = malloc(len + 1);
    k->samples = malloc((ks->max_samples ? ks->max_samples : 1) * sizeof(uint32_t));
    if (k->name == NULL || k->samples == NULL) {
        free(k->name);
        free(k->samples);
        return NULL;
    }
    memcpy(k->name, name, len);
    k->name[len] = 0;
    k->len = len;
    if (ht_table_put(&ks->by_name, key, ks->nk + 1) < 0) {
        free(k->name);
        free(k->samples);
        return NULL;
    }
    ks->nk++;
    return k;
}

static void
ht_leaks_kinds_free(ht_leaks_kinds *ks)
{
    for (size_t j = 0; j < ks->nk; j++) {
        free(ks->k[j].name);
        free(ks->k[j].samples);
    }
    free(ks->k);
    ht_table_free(&ks->by_name);
}

/* Owner kind of object i, as summary(by="owner") names it, into buf. */
static size_t
ht_leaks_kind_name(const ht_heap *h, uint32_t i, char *buf, size_t cap)
{
    size_t tl;
    const char *tn = ht_heap_type_name(h, i, &tl);
    int n;
    if ((h->flags[i] & HT_OBJ_DICT) && h->owner[i] != HT_NONE) {
        uint32_t o = h->owner[i];
        size_t ol;
        const char *on;
        if (h->flags[o] & HT_OBJ_MODULE) {
            on = ht_heap_string(h, h->value[o], &ol);
            n = snprintf(buf, cap, "%.*s of module %.*s", (int)(tl > 200 ? 200 : tl), tn,
                         on ? (int)(ol > 300 ? 300 : ol) : 1, on ? on : "?");
        } else {
            on = ht_heap_type_name(h, o, &ol);
            n = snprintf(buf, cap, "%.*s of %.*s", (int)(tl > 200 ? 200 : tl), tn,
                         (int)(ol > 300 ? 300 : ol), on);
        }
    } else {
        n = snprintf(buf, cap, "%.*s", (int)(tl > 500 ? 500 : tl), tn);
    }
    if (n < 0)
        return 0;
    return (size_t)n >= cap ? cap - 1 : (size_t)n;
}

/* Object i of h was there at the start: the counter's recorded sample saw
 * an object at the same address with the same type (Snapshot.diff's rule:
 * a reused address with another type is a new object). */
static int
ht_leaks_known(const ht_leaks_counter *c, const ht_heap *h, uint32_t i)
{
    const uint64_t *t = ht_table_find(&c->known, h->addr[i]);
    if (t == NULL)
        return 0;
    uint32_t ti = h->type[i];
    return ti != HT_NONE && h->addr[ti] == *t;
}

/* Held only by the running code: a frame, an object that only frames refer
 * to (a local variable, on 3.12+ where locals are edges), or a root that
 * nothing in the graph refers to (a local on 3.11, where a running frame's
 * locals are not edges; an argument tuple of a call in progress). Such an
 * object is the current iteration's work, not growth: a watch() or a
 * script's step() ends its snapshot with the loop's locals alive. What such
 * a root holds is still looked at. rc: referrer counts; fr: referrers that
 * are frames. */
static int
ht_leaks_transient(const ht_heap *h, uint32_t i, const uint32_t *rc, const uint32_t *fr)
{
    uint32_t f = h->flags[i];
    if (f & HT_OBJ_FRAME)
        return 1;
    if (rc[i] == 0)
        return (f & HT_OBJ_ROOT) != 0;
    return rc[i] == fr[i];
}

static int
ht_leaks_by_bytes(const void *a, const void *b)
{
    const ht_leaks_kind *x = a, *y = b;
    if (x->bytes != y->bytes)
        return x->bytes > y->bytes ? -1 : 1;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return strcmp(x->name, y->name);
}

static PyObject *
ht_leaks_kinds_list(ht_leaks_kinds *ks)
{
    qsort(ks->k, ks->nk, sizeof(ht_leaks_kind), ht_leaks_by_bytes);
    PyObject *out = PyList_New((Py_ssize_t)ks->nk);
    for (size_t j = 0; out && j < ks->nk; j++) {
        ht_leaks_kind *k = &ks->k[j];
        PyObject *idx = PyList_New((Py_ssize_t)k->nsamples);
        for (size_t s = 0; idx && s < k->nsamples; s++) {
            PyObject *v = PyLong_FromUnsignedLong(k->samples[s]);
            if (v == NULL) {
                Py_CLEAR(idx);
                break;
            }
            PyList_SET_ITEM(idx, (Py_ssize_t)s, v);
        }
        PyObject *row = idx ? Py_BuildValue("(NLLN)",
                                            PyUnicode_DecodeUTF8(k->name, (Py_ssize_t)k->len, "replace"),
                                            (long long)k->count, (long long)k->bytes, idx)
                            : NULL;
        if (row == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)j, row);
    }
    return out;
}

/* _leaks_new(snapshot, counter, max_samples, ignore=()) -> [(kind, count,
 * bytes, [indexes])], most bytes first: the snapshot's objects that the
 * counter's sample(record=True) did not see; objects at the addresses in
 * `ignore` are left out (the snapshot call's own argument tuple). */
static PyObject *
ht_leaks_new(PyObject *mod, PyObject *args)
{
    PyObject *hn, *ho, *ignore = NULL;
    Py_ssize_t max_samples;
    if (!PyArg_ParseTuple(args, "OO!n|O", &hn, &ht_leaks_counter_type, &ho, &max_samples, &ignore))
        return NULL;
    if (max_samples < 0 || max_samples > 1000000)
        return ht_error("_leaks_new: max_samples must be in 0..1000000");
    ht_heap *h = ht_heap_from_handle(hn);
    ht_leaks_counter *o = (ht_leaks_counter *)ho;
    if (h == NULL)
        return NULL;
    if (o->known.count == 0)
        return ht_error("_leaks_new: the counter has no recorded sample (sample(record=True))");
    ht_leaks_kinds ks;
    memset(&ks, 0, sizeof ks);
    ks.max_samples = (size_t)max_samples;
    ht_table skip;
    memset(&skip, 0, sizeof skip);
    if (ht_table_init(&ks.by_name, 256, 1) < 0 || ht_table_init(&skip, 16, 0) < 0) {
        ht_table_free(&ks.by_name);
        return PyErr_NoMemory();
    }
    PyObject *out = NULL, *seq = NULL;
    uint32_t *rc = NULL, *fr = NULL;
    if (ignore) {
        seq = PySequence_Fast(ignore, "_leaks_new: ignore must be a sequence of addresses");
        if (seq == NULL)
            goto done;
        for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(seq); k++) {
            unsigned long long a = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, k));
            if (PyErr_Occurred())
                goto done;
            if (a != 0 && ht_table_add(&skip, a) < 0) {
                PyErr_NoMemory();
                goto done;
            }
        }
    }
    rc = ht_heap_referrer_counts(h);
    fr = calloc((size_t)h->n + 1, sizeof(uint32_t));
    if (rc == NULL || fr == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (uint32_t i = 0; i < h->n; i++)
        if (h->flags[i] & HT_OBJ_FRAME)
            for (uint32_t e = h->edge_start[i]; e < h->edge_start[i + 1]; e++)
                fr[h->edge_dst[e]]++;
    char buf[600];
    for (uint32_t i = 0; i < h->n; i++) {
        if (skip.count && ht_table_contains(&skip, h->addr[i]))
            continue;
        if (ht_leaks_transient(h, i, rc, fr))
            continue;
        if (ht_leaks_known(o, h, i))
            continue;
        size_t len = ht_leaks_kind_name(h, i, buf, sizeof buf);
        ht_leaks_kind *k = ht_leaks_kind_get(&ks, buf, len);
        if (k == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        k->count++;
        k->bytes += (int64_t)h->size[i];
        if (k->nsamples < ks.max_samples)
            k->samples[k->nsamples++] = i;
    }
    out = ht_leaks_kinds_list(&ks);
done:
    Py_XDECREF(seq);
    free(rc);
    free(fr);
    ht_table_free(&skip);
    ht_leaks_kinds_free(&ks);
    return out;
}

/* ======================================================================
 * live objects by address (for tracebacks and reprs of samples)
 * ====================================================================== */

typedef struct {
    ht_table want;      /* addresses asked for */
    PyObject *found;    /* dict address -> object */
    int err;
} ht_leaks_find;

static void
ht_leaks_find_one(PyObject *o, void *arg)
{
    ht_leaks_find *f = arg;
    uint64_t a = (uint64_t)(uintptr_t)o;
    if (f->err || !ht_table_contains(&f->want, a))
        return;
    PyObject *key = PyLong_FromUnsignedLongLong(a);
    if (key == NULL || PyDict_SetItem(f->found, key, o) < 0)
        f->err = 1;
    Py_XDECREF(key);
    ht_table_remove(&f->want, a, NULL);
}

/* _leaks_objects(addresses) -> {address: object} for the addresses that are
 * live objects now: the gc-tracked ones and the untracked objects they hold
 * (a dict's keys included), as the counter walks them (ht_live_untracked).
 * Never dereferences an address it was given: it only
 * compares them with objects it reaches. */
static PyObject *
ht_leaks_objects(PyObject *mod, PyObject *addrs)
{
    ht_leaks_find f;
    memset(&f, 0, sizeof f);
    PyObject *seq = PySequence_Fast(addrs, "_leaks_objects: addresses must be a sequence");
    if (seq == NULL)
        return NULL;
    PyObject *list = NULL;
    if (ht_table_init(&f.want, (size_t)PySequence_Fast_GET_SIZE(seq) + 1, 0) < 0) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(seq); k++) {
        unsigned long long a = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, k));
        if (PyErr_Occurred())
            goto fail;
        if (a != 0 && ht_table_add(&f.want, a) < 0) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    f.found = PyDict_New();
    PyObject *gc = f.found ? PyImport_ImportModule("gc") : NULL;
    if (gc == NULL)
        goto fail;
    list = PyObject_CallMethod(gc, "get_objects", NULL);
    Py_DECREF(gc);
    if (list == NULL || !PyList_Check(list))
        goto fail;
    int was_enabled = PyGC_Disable();
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(list) && !f.err && f.want.count; k++) {
        PyObject *op = PyList_GET_ITEM(list, k);
        ht_leaks_find_one(op, &f);
        ht_live_untracked(op, ht_leaks_find_one, &f); /* as the counter sees them */
    }
    if (was_enabled)
        PyGC_Enable();
    if (f.err)
        goto fail;
    Py_DECREF(list);
    Py_DECREF(seq);
    ht_table_free(&f.want);
    return f.found;
fail:
    if (list && !PyList_Check(list) && !PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "gc.get_objects() did not return a list");
    Py_XDECREF(list);
    Py_XDECREF(f.found);
    Py_DECREF(seq);
    ht_table_free(&f.want);
    return NULL;
}

static PyMethodDef ht_leaks_methods[] = {
    {"_leaks_counter", ht_leaks_counter_new, METH_NOARGS,
     "A LeakCounter: per-type counts of the live objects, one column per sample()."},
    {"_leaks_new", ht_leaks_new, METH_VARARGS,
     "_leaks_new(new, old, max_samples) -> [(kind, count, bytes, [indexes])]: objects of the "
     "newer snapshot not in the older one, by owner kind, most bytes first."},
    {"_leaks_objects", ht_leaks_objects, METH_O,
     "_leaks_objects(addresses) -> {address: object} for those that are live objects."},
    {NULL},
};

int
ht_leaks_init(PyObject *m)
{
    if (PyType_Ready(&ht_leaks_counter_type) < 0)
        return -1;
    return PyModule_AddFunctions(m, ht_leaks_methods);
}
