/* leaks.c - the leak hunter's C primitives: a cheap per-type count of the
 * live objects, sampled once per iteration; the set of objects at the start;
 * the list of objects that are new at the end, grouped by kind; emptying the
 * free lists for the check.
 *
 * Counting (ht_leaks_counter, `_core._leaks_counter()`): a full snapshot per
 * iteration would cost a walk with edges, labels and values every time; the
 * growth test only needs, per type, how many objects there are and their
 * bytes. One pass over gc.get_objects() (live.h's counting pass) counts
 * every gc-tracked object by type (flat size from ht_size_flat), letting go
 * of the list as it goes. A pass that walks (walk=True, HT_LIVE_UNTRACKED)
 * also counts, apart, each object's untracked referents (str, int, float,
 * bytes, untracked tuples and dicts ...), which are found only through a
 * container: those are counted once per reference, not once per object
 * (deduplicating them would need an address set as big as the heap's, which
 * is the snapshot's cost). A container that keeps one more reference to an
 * untracked object per iteration is growing, so the count still says what
 * grows; whether anything NEW grew is decided afterwards from the start set
 * and the end snapshot (an interned string or a small int is never new).
 * Exact dicts are read with PyDict_Next so their str keys (which dict's
 * tp_traverse leaves out) count too. The walk reads the header of every
 * referent and costs about twice the rest of the pass: leaks.py asks for it
 * at a few steps only.
 *
 * Counts live in C (malloc): one row per type seen, one column per sample,
 * so measuring creates no Python object that could itself look like a leak.
 * A row is keyed by the type's address and keeps its name from the first
 * sighting (a type that dies and whose address is reused keeps the first
 * name; it would have to die and be reborn during the check).
 *
 * The start (sample(record=True)): the (address, type slot) of every object
 * the pass counts, appended to two arrays, then radix-sorted by address
 * with repeats dropped. New objects (`_core._leaks_new(snapshot, counter,
 * max_samples)`): the snapshot's addresses are radix-sorted too and merged
 * with the start: an object is new unless the start held an object at the
 * same address with the same type (the rule of Snapshot.diff). Sorting and
 * merging are sequential passes, where a hash table of a million addresses
 * missed the cache on every insert and every lookup. New objects are
 * grouped by owner kind ("Session", "dict of Session", "dict of module
 * app", as summary(by="owner") names them), with their count, bytes and the
 * first max_samples indexes; unreachable ones (garbage: the end snapshot is
 * taken without a collection) are left out.
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
    int64_t *count;    /* [cap_samples] gc-tracked objects */
    int64_t *bytes;    /* [cap_samples] their flat bytes */
    int64_t *ucount;   /* [cap_samples] references to untracked objects, -1 in the
                          samples that did not walk them */
    int64_t *ubytes;   /* [cap_samples] their flat bytes (per reference), or -1 */
} ht_leaks_row;

#define HT_LEAKS_ROW_ARRAYS 4
static int64_t **
ht_leaks_row_array(ht_leaks_row *r, int k)
{
    return k == 0 ? &r->count : k == 1 ? &r->bytes : k == 2 ? &r->ucount : &r->ubytes;
}

typedef struct {
    PyObject_HEAD
    ht_live_types types;     /* the counting pass (live.h): type -> slot, and the
                                counts of the sample being taken */
    ht_leaks_row *rows;      /* [nrows] row j keeps the columns of slot j */
    size_t nrows, cap_rows;
    size_t nsamples, cap_samples;
    ht_live_rec known;       /* (address, type slot) of every object counted by
                                the sample(record=True), sorted by address, each
                                address once: "the objects at the start" */
    PyObject **held;         /* drain(): objects taken from the free lists */
    size_t nheld, cap_held;
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
    memset(r, 0, sizeof *r);
    r->name = ht_leaks_type_name(tp);
    int ok = r->name != NULL;
    for (int k = 0; k < HT_LEAKS_ROW_ARRAYS; k++) {
        int64_t **a = ht_leaks_row_array(r, k);
        *a = ok ? calloc(c->cap_samples ? c->cap_samples : 1, sizeof(int64_t)) : NULL;
        ok = ok && *a != NULL;
    }
    if (!ok) {
        free(r->name);
        for (int k = 0; k < HT_LEAKS_ROW_ARRAYS; k++)
            free(*ht_leaks_row_array(r, k));
        return -1;
    }
    /* untracked referents: not walked in the earlier samples that did not walk
     * (a type first seen now had none in those that did) */
    for (size_t s = 0; s < c->nsamples; s++)
        if (c->rows[0].ucount[s] < 0)
            r->ucount[s] = r->ubytes[s] = -1;
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
        ht_leaks_row *r = &c->rows[j];
        r->count[c->nsamples] = (int64_t)t->counts[j];
        r->bytes[c->nsamples] = (int64_t)t->bytes[j];
        r->ucount[c->nsamples] = t->walk ? (int64_t)t->ucounts[j] : -1;
        r->ubytes[c->nsamples] = t->walk ? (int64_t)t->ubytes[j] : -1;
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
        for (int k = 0; k < HT_LEAKS_ROW_ARRAYS; k++) {
            int64_t **p = ht_leaks_row_array(&c->rows[j], k);
            int64_t *a = realloc(*p, cap * sizeof(int64_t));
            if (a == NULL)
                return -1;
            *p = a;
            memset(a + c->cap_samples, 0, (cap - c->cap_samples) * sizeof(int64_t));
        }
    }
    c->cap_samples = cap;
    return 0;
}

/* ======================================================================
 * sorting addresses: the start set and the end snapshot are compared by
 * merging two address-sorted arrays, sequential passes where a hash table
 * of a million addresses missed the cache on every insert and lookup
 * ====================================================================== */

#define HT_LEAKS_DIGIT 12
#define HT_LEAKS_BUCKETS (1u << HT_LEAKS_DIGIT)
#define HT_LEAKS_DIGITS ((64 + HT_LEAKS_DIGIT - 1) / HT_LEAKS_DIGIT)
#define HT_LEAKS_DIGIT_OF(k, d) ((uint32_t)((k) >> ((d) * HT_LEAKS_DIGIT)) & (HT_LEAKS_BUCKETS - 1))

/* Sorts key[0..n) ascending, carrying val[] along: least significant digit
 * first radix sort, 12 bits a digit, skipping the digits every key shares
 * (the top bits of addresses: 4 passes for a 48-bit address space). Stable.
 * 0, or -1 when out of memory (the arrays are then unchanged). */
static int
ht_leaks_radix_sort(uint64_t *key, uint32_t *val, size_t n)
{
    if (n < 2)
        return 0;
    uint32_t (*hist)[HT_LEAKS_BUCKETS] = calloc(HT_LEAKS_DIGITS, sizeof *hist);
    uint64_t *tk = malloc(n * sizeof(uint64_t));
    uint32_t *tv = malloc(n * sizeof(uint32_t));
    if (hist == NULL || tk == NULL || tv == NULL) {
        free(hist);
        free(tk);
        free(tv);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t k = key[i];
        for (int d = 0; d < HT_LEAKS_DIGITS; d++)
            hist[d][HT_LEAKS_DIGIT_OF(k, d)]++;
    }
    uint64_t *sk = key, *dk = tk;
    uint32_t *sv = val, *dv = tv;
    for (int d = 0; d < HT_LEAKS_DIGITS; d++) {
        uint32_t *h = hist[d];
        if (h[HT_LEAKS_DIGIT_OF(sk[0], d)] == n)
            continue; /* every key has this digit */
        uint32_t sum = 0;
        for (uint32_t b = 0; b < HT_LEAKS_BUCKETS; b++) {
            uint32_t c = h[b];
            h[b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) {
            uint32_t p = h[HT_LEAKS_DIGIT_OF(sk[i], d)]++;
            dk[p] = sk[i];
            dv[p] = sv[i];
        }
        uint64_t *t = sk;
        sk = dk;
        dk = t;
        uint32_t *u = sv;
        sv = dv;
        dv = u;
    }
    if (sk != key) {
        memcpy(key, sk, n * sizeof(uint64_t));
        memcpy(val, sv, n * sizeof(uint32_t));
    }
    free(hist);
    free(tk);
    free(tv);
    return 0;
}

/* Sorts a record by address and keeps each address once (an untracked
 * object is recorded once per reference to it). 0 or -1 (MemoryError set). */
static int
ht_leaks_sort_unique(ht_live_rec *r)
{
    if (r->n >= UINT32_MAX) {
        PyErr_SetString(PyExc_MemoryError, "too many objects to record");
        return -1;
    }
    if (ht_leaks_radix_sort(r->addr, r->slot, r->n) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (k > 0 && r->addr[k - 1] == r->addr[i])
            continue;
        r->addr[k] = r->addr[i];
        r->slot[k] = r->slot[i];
        k++;
    }
    r->n = k;
    return 0;
}

/* sample(record=False, walk=True, replace=False): one counting pass,
 * appended as a new column (replace: stored over the last column instead,
 * the same moment measured again). walk: the untracked objects are counted
 * too. With record=True it also remembers every object it counts (address
 * and type), replacing what an earlier record=True remembered. */
static int ht_leaks_hold(ht_leaks_counter *c, PyObject *o);

/* sample's arguments, without the tuple METH_VARARGS would make: that tuple,
 * freed to the tuple free list, was the block the next iteration's first
 * 2-tuple took, which then had heaptrail's step() as its allocation site. */
static int
ht_leaks_sample_args(PyObject *const *args, Py_ssize_t nargs, int *out[3])
{
    if (nargs > 3) {
        PyErr_Format(PyExc_TypeError, "sample() takes at most 3 arguments (%zd given)", nargs);
        return -1;
    }
    for (Py_ssize_t k = 0; k < nargs; k++) {
        int v = PyObject_IsTrue(args[k]);
        if (v < 0)
            return -1;
        *out[k] = v;
    }
    return 0;
}

static PyObject *
ht_leaks_sample(ht_leaks_counter *c, PyObject *const *args, Py_ssize_t nargs)
{
    int record = 0, walk = 1, replace = 0;
    int *flags[3] = {&record, &walk, &replace};
    if (ht_leaks_sample_args(args, nargs, flags) < 0)
        return NULL;
    if (record && !walk)
        return ht_error("sample: a recorded sample walks the untracked objects too");
    if (replace && c->nsamples == 0)
        return ht_error("sample: no sample to replace");
    if (ht_leaks_grow_samples(c) < 0)
        return PyErr_NoMemory();
    if (replace)
        c->nsamples--; /* counted again below */

    PyObject *list = ht_gc_objects();
    if (list == NULL)
        return NULL;
    ht_live_rec rec;
    memset(&rec, 0, sizeof rec);
    /* no collection may run while we read raw referents; the list holds a
     * reference to every tracked object not counted yet, so no __sizeof__
     * can free one */
    ht_live_types_zero(&c->types);
    c->types.walk = walk;
    int was_enabled = PyGC_Disable();
    /* a list only we hold is let go of as it is counted (one walk, not two) */
    int rc = Py_REFCNT(list) == 1
                 ? ht_live_types_count_owned(&c->types, list, record ? &rec : NULL)
                 : ht_live_types_count(&c->types, list, NULL, record ? &rec : NULL);
    if (was_enabled)
        PyGC_Enable();
    if (rc == 0 && ht_leaks_store_column(c) < 0)
        rc = -1;
    Py_DECREF(list);
    /* the list object just went to the list free list (LIFO): take it back
     * and hold it, or the program's next list would reuse it and be shown
     * as allocated by heaptrail's step() */
    if (rc == 0 && ht_leaks_hold(c, PyList_New(0)) < 0)
        rc = -1;
    if (rc == 0 && record) {
        if (ht_leaks_sort_unique(&rec) < 0) {
            rc = -1;
        } else {
            ht_live_rec_free(&c->known);
            c->known = rec;
            memset(&rec, 0, sizeof rec);
        }
    }
    ht_live_rec_free(&rec);
    if (rc == 0 || replace)
        c->nsamples++; /* a replaced column stays, even if partly rewritten */
    if (rc < 0) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return NULL;
    }
    return PyLong_FromSize_t(c->nsamples);
}

/* One row array as a tuple, None for the -1 entries. */
static PyObject *
ht_leaks_column_tuple(const int64_t *a, size_t n)
{
    PyObject *t = PyTuple_New((Py_ssize_t)n);
    for (size_t s = 0; t != NULL && s < n; s++) {
        PyObject *v = a[s] < 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(a[s]);
        if (v == NULL)
            Py_CLEAR(t);
        else
            PyTuple_SET_ITEM(t, (Py_ssize_t)s, v);
    }
    return t;
}

/* ======================================================================
 * emptying the interpreter's free lists
 *
 * A tuple, list, dict or float the measured iterations make may reuse a
 * block from its type's free list, allocated before the tracer started: it
 * would have no allocation site. A full collection empties the free lists,
 * but walks the whole heap to do it. drain() takes every block they can
 * hold instead (CPython keeps at most 2000 tuples of each size 1..19, 80
 * lists, 80 dicts and 100 floats), and holds them, untracked and reachable
 * from nothing, until release(): new objects then get blocks of their own.
 * ====================================================================== */

#define HT_LEAKS_TUPLE_SIZES 19
#define HT_LEAKS_TUPLES 2000
#define HT_LEAKS_LISTS 80
#define HT_LEAKS_DICTS 80
#define HT_LEAKS_FLOATS 100

/* Holds o (a new reference, or NULL on failure). 0 or -1. */
static int
ht_leaks_hold(ht_leaks_counter *c, PyObject *o)
{
    if (o == NULL)
        return -1;
    if (c->nheld == c->cap_held) {
        size_t cap = c->cap_held ? c->cap_held * 2 : 4096;
        PyObject **h = realloc(c->held, cap * sizeof(PyObject *));
        if (h == NULL) {
            Py_DECREF(o);
            PyErr_NoMemory();
            return -1;
        }
        c->held = h;
        c->cap_held = cap;
    }
    if (PyObject_IS_GC(o) && PyObject_GC_IsTracked(o))
        PyObject_GC_UnTrack(o); /* seen by no count and no snapshot */
    c->held[c->nheld++] = o;
    return 0;
}

static void
ht_leaks_release_held(ht_leaks_counter *c)
{
    size_t n = c->nheld;
    PyObject **held = c->held;
    c->held = NULL;
    c->nheld = c->cap_held = 0;
    for (size_t k = 0; k < n; k++)
        Py_DECREF(held[k]); /* back to the free lists */
    free(held);
}

/* drain(): empties the free lists (see above); release() gives the blocks back. */
static PyObject *
ht_leaks_drain(ht_leaks_counter *c, PyObject *unused)
{
    if (c->nheld > 0)
        Py_RETURN_NONE;
    for (Py_ssize_t size = 1; size <= HT_LEAKS_TUPLE_SIZES; size++)
        for (int k = 0; k < HT_LEAKS_TUPLES; k++)
            if (ht_leaks_hold(c, PyTuple_New(size)) < 0)
                goto fail;
    for (int k = 0; k < HT_LEAKS_LISTS; k++)
        if (ht_leaks_hold(c, PyList_New(0)) < 0)
            goto fail;
    for (int k = 0; k < HT_LEAKS_DICTS; k++)
        if (ht_leaks_hold(c, PyDict_New()) < 0)
            goto fail;
    for (int k = 0; k < HT_LEAKS_FLOATS; k++)
        if (ht_leaks_hold(c, PyFloat_FromDouble(0.5)) < 0)
            goto fail;
    Py_RETURN_NONE;
fail:
    ht_leaks_release_held(c);
    return NULL;
}

static PyObject *
ht_leaks_release(ht_leaks_counter *c, PyObject *unused)
{
    ht_leaks_release_held(c);
    Py_RETURN_NONE;
}

/* rows(): [(type name, counts, bytes, ucounts, ubytes)] for every type seen,
 * one entry per sample in each tuple (None in ucounts and ubytes for the
 * samples that did not walk the untracked objects). */
static PyObject *
ht_leaks_rows(ht_leaks_counter *c, PyObject *unused)
{
    PyObject *out = PyList_New((Py_ssize_t)c->nrows);
    for (size_t j = 0; out && j < c->nrows; j++) {
        ht_leaks_row *r = &c->rows[j];
        PyObject *row = Py_BuildValue("(sNNNN)", r->name,
                                      ht_leaks_column_tuple(r->count, c->nsamples),
                                      ht_leaks_column_tuple(r->bytes, c->nsamples),
                                      ht_leaks_column_tuple(r->ucount, c->nsamples),
                                      ht_leaks_column_tuple(r->ubytes, c->nsamples));
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
        for (int k = 0; k < HT_LEAKS_ROW_ARRAYS; k++)
            free(*ht_leaks_row_array(&c->rows[j], k));
    }
    free(c->rows);
    ht_live_types_free(&c->types);
    ht_live_rec_free(&c->known);
    ht_leaks_release_held(c);
    PyObject_Free(c);
}

static PyMethodDef ht_leaks_counter_methods[] = {
    {"sample", (PyCFunction)(void (*)(void))ht_leaks_sample, METH_FASTCALL,
     "sample(record=False, walk=True) -> number of samples: counts the live objects by type "
     "(walk: also the untracked objects they refer to); record=True also remembers them "
     "(address, type) for _leaks_new"},
    {"drain", (PyCFunction)ht_leaks_drain, METH_NOARGS,
     "drain(): takes (and holds) every block of the tuple, list, dict and float free lists"},
    {"release", (PyCFunction)ht_leaks_release, METH_NOARGS,
     "release(): gives back what drain() took"},
    {"rows", (PyCFunction)ht_leaks_rows, METH_NOARGS,
     "rows() -> [(type name, counts, bytes, ucounts, ubytes)], one entry per sample"},
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
    if (ht_live_types_init(&c->types, HT_LIVE_BYTES | HT_LIVE_UNTRACKED) < 0) {
        Py_DECREF(c);
        return NULL;
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

/* known[i] = 1 when object i of h was there at the start: the counter's
 * recorded sample saw an object at the same address with the same type
 * (Snapshot.diff's rule: a reused address with another type is a new
 * object). The snapshot's addresses are sorted (with their indexes) and
 * merged with the sorted start set. A fresh malloc'd array of n bytes, or
 * NULL with MemoryError set. */
static uint8_t *
ht_leaks_known(const ht_leaks_counter *c, const ht_heap *h)
{
    size_t n = h->n;
    uint8_t *known = calloc(n + 1, 1);
    uint64_t *addr = malloc((n + 1) * sizeof(uint64_t));
    uint32_t *idx = malloc((n + 1) * sizeof(uint32_t));
    if (known == NULL || addr == NULL || idx == NULL)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        addr[i] = h->addr[i];
        idx[i] = (uint32_t)i;
    }
    if (ht_leaks_radix_sort(addr, idx, n) < 0)
        goto nomem;
    const ht_live_rec *k = &c->known;
    uint32_t last_type = HT_NONE;
    uint64_t last_slot = 0;  /* slot + 1 of last_type in the counter, 0: none */
    size_t j = 0;
    for (size_t i = 0; i < n && j < k->n; i++) {
        while (j < k->n && k->addr[j] < addr[i])
            j++;
        if (j == k->n || k->addr[j] != addr[i])
            continue;
        uint32_t ti = h->type[idx[i]];
        if (ti == HT_NONE || ti >= h->n)
            continue;
        if (ti != last_type) { /* the type's slot in the counter, by its address */
            const uint64_t *v = ht_table_find(&c->types.index, h->addr[ti]);
            last_type = ti;
            last_slot = v ? *v : 0;
        }
        known[idx[i]] = last_slot != 0 && k->slot[j] == last_slot - 1;
    }
    free(addr);
    free(idx);
    return known;
nomem:
    free(known);
    free(addr);
    free(idx);
    PyErr_NoMemory();
    return NULL;
}

/* Held only by the running code: a frame, an object that only frames refer
 * to (a local variable: locals are edges, framevars.h), or a root that
 * nothing in the graph refers to (an argument tuple of a call in
 * progress). Such an object is the current iteration's work, not growth: a
 * watch() or a script's step() ends its snapshot with the loop's locals
 * alive. What such a root holds is still looked at. rc: referrer counts; fr: referrers that
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
    if (ks->nk > 1) /* ks->k is NULL when empty: qsort's pointer must not be */
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

/* _leaks_new(snapshot, counter, max_samples, ignore=()) ->
 * [(kind, count, bytes, [indexes])], most bytes first: the snapshot's
 * objects that the counter's sample(record=True) did not see; objects at the
 * addresses in `ignore` are left out. (The snapshot call's own argument
 * tuple, new since the sample, is never in a snapshot: own.h.) */
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
    if (o->known.n == 0)
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
    uint8_t *known = NULL;
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
    known = ht_leaks_known(o, h);
    if (known == NULL)
        goto done;
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
        /* known first: most objects were there at the start */
        if (known[i] || (h->flags[i] & HT_OBJ_UNREACHABLE))
            continue;
        if (skip.count && ht_table_contains(&skip, h->addr[i]))
            continue;
        if (ht_leaks_transient(h, i, rc, fr))
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
    free(known);
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
    list = f.found ? ht_gc_objects() : NULL;
    if (list == NULL)
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
    /* in the module, as every type of ours: a snapshot finds heaptrail's own
     * types through its modules (own.h) */
    Py_INCREF(&ht_leaks_counter_type);
    if (PyModule_AddObject(m, "LeakCounter", (PyObject *)&ht_leaks_counter_type) < 0) {
        Py_DECREF(&ht_leaks_counter_type);
        return -1;
    }
    return PyModule_AddFunctions(m, ht_leaks_methods);
}
