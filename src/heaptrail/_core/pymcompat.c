/* pymcompat.c - the loops behind heaptrail.pympler (muppy, summary,
 * refbrowser, asizeof.refs): object lists sized, filtered, sorted and
 * grouped by type in C, referents collected level by level.
 *
 * Every function here takes or returns plain Python lists of live objects
 * (that is pympler's API); sizes are ht_size_flat (= sys.getsizeof), sets of
 * seen objects are ht_table address sets (libc memory, never traced). */
#include "common.h"
#include "hashtable.h"
#include "size.h"

#include <stdlib.h>

/* ================================================================ helpers */

/* Appends op to list unless `seen` (when not NULL) already holds it.
 * Returns 0, or -1 with an exception set. */
static int
ht_pym_append_new(PyObject *list, ht_table *seen, PyObject *op)
{
    if (seen != NULL) {
        int r = ht_table_add(seen, (uint64_t)(uintptr_t)op);
        if (r < 0) {
            PyErr_NoMemory();
            return -1;
        }
        if (r == 0)
            return 0;
    }
    return PyList_Append(list, op);
}

/* What a tp_traverse visit callback collects into. */
typedef struct ht_pym_visit_ctx {
    PyObject *out;       /* list appended to */
    ht_table *seen;      /* NULL: keep duplicates */
    int untracked_only;  /* muppy: only objects the gc does not track */
    int failed;
} ht_pym_visit_ctx;

static int
ht_pym_visit(PyObject *op, void *arg)
{
    ht_pym_visit_ctx *c = arg;
    if (op == NULL || c->failed)
        return 0;
    if (c->untracked_only && PyObject_IS_GC(op) && PyObject_GC_IsTracked(op))
        return 0;
    if (ht_pym_append_new(c->out, c->seen, op) < 0) {
        c->failed = 1;
        return -1;
    }
    return 0;
}

/* Visits op's referents as gc.get_referents does (tp_traverse of gc
 * objects; nothing for others). dict_keys adds a dict's keys, which its
 * tp_traverse leaves out when they are all str. 0 or -1. */
static int
ht_pym_traverse(PyObject *op, ht_pym_visit_ctx *c, int dict_keys)
{
    if (PyObject_IS_GC(op)) {
        traverseproc tr = Py_TYPE(op)->tp_traverse;
        /* the visitor stops the traversal (non-zero) only after a failure */
        if (tr != NULL)
            tr(op, ht_pym_visit, c);
        if (c->failed)
            return -1;
    }
    if (dict_keys && PyDict_Check(op)) {
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (PyDict_Next(op, &pos, &k, &v))
            if (ht_pym_visit(k, c) < 0)
                return -1;
    }
    return 0;
}

/* ================================================================ muppy */

/* pym_objects(gc_objects, remove_dups, exclude) -> list: what
 * muppy.get_objects returns. gc_objects is gc.get_objects() (taken by the
 * caller); frames are left out, then every object the gc does not track
 * that a listed object refers to is added, then the listed objects. exclude
 * is a tuple of objects (heaptrail's own: the caller's lists) left out. */
static PyObject *
ht_pym_objects(PyObject *self, PyObject *args)
{
    PyObject *objs, *exclude;
    int remove_dups;
    if (!PyArg_ParseTuple(args, "O!pO!:pym_objects", &PyList_Type, &objs, &remove_dups,
                          &PyTuple_Type, &exclude))
        return NULL;
    PyObject *out = NULL, *result = NULL;
    ht_table seen = {0}, skip = {0};
    Py_ssize_t n = PyList_GET_SIZE(objs);
    if (ht_table_init(&seen, remove_dups ? (size_t)n * 2 : 16, 0) < 0
        || ht_table_init(&skip, 16, 0) < 0) {
        PyErr_NoMemory();
        goto cleanup;
    }
    if ((out = PyList_New(0)) == NULL)
        goto cleanup;
    /* never list our own containers */
    if (ht_table_add(&skip, (uint64_t)(uintptr_t)objs) < 0
        || ht_table_add(&skip, (uint64_t)(uintptr_t)out) < 0
        || ht_table_add(&skip, (uint64_t)(uintptr_t)exclude) < 0) {
        PyErr_NoMemory();
        goto cleanup;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(exclude); i++)
        if (ht_table_add(&skip, (uint64_t)(uintptr_t)PyTuple_GET_ITEM(exclude, i)) < 0) {
            PyErr_NoMemory();
            goto cleanup;
        }
    ht_pym_visit_ctx c = {out, remove_dups ? &seen : NULL, 1, 0};
    /* referents first (pympler's order), then the gc objects */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(objs); i++) {
        PyObject *op = PyList_GET_ITEM(objs, i);
        if (PyFrame_Check(op) || ht_table_contains(&skip, (uint64_t)(uintptr_t)op))
            continue;
        Py_INCREF(op); /* a __del__ run by a list append cannot free it */
        int r = ht_pym_traverse(op, &c, 0);
        Py_DECREF(op);
        if (r < 0)
            goto cleanup;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(objs); i++) {
        PyObject *op = PyList_GET_ITEM(objs, i);
        if (PyFrame_Check(op) || ht_table_contains(&skip, (uint64_t)(uintptr_t)op))
            continue;
        if (ht_pym_append_new(out, remove_dups ? &seen : NULL, op) < 0)
            goto cleanup;
    }
    result = out;
    out = NULL;
cleanup:
    Py_XDECREF(out);
    ht_table_free(&seen);
    ht_table_free(&skip);
    return result;
}

/* Flat size of op as a non-negative value, or -1 with an exception set. */
static Py_ssize_t
ht_pym_size(PyObject *op)
{
    Py_INCREF(op); /* a Python __sizeof__ may change the list holding op */
    Py_ssize_t s = ht_size_flat(op);
    Py_DECREF(op);
    return s;
}

/* A snapshot of a sequence's items (a new list), so Python code run by a
 * __sizeof__ or __instancecheck__ cannot change what we iterate. */
static PyObject *
ht_pym_items(PyObject *seq)
{
    return PySequence_List(seq);
}

/* pym_get_size(objects) -> sum of the flat sizes. */
static PyObject *
ht_pym_get_size(PyObject *self, PyObject *seq)
{
    PyObject *items = ht_pym_items(seq);
    if (items == NULL)
        return NULL;
    long long total = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        Py_ssize_t s = ht_pym_size(PyList_GET_ITEM(items, i));
        if (s < 0) {
            Py_DECREF(items);
            return NULL;
        }
        total += s;
    }
    Py_DECREF(items);
    return PyLong_FromLongLong(total);
}

/* pym_filter(objects, Type or None, min, max) -> list of the objects that
 * are instances of Type and whose flat size is within [min, max] (a bound
 * below 0 is no bound). */
static PyObject *
ht_pym_filter(PyObject *self, PyObject *args)
{
    PyObject *seq, *cls;
    Py_ssize_t lo, hi;
    if (!PyArg_ParseTuple(args, "OOnn:pym_filter", &seq, &cls, &lo, &hi))
        return NULL;
    PyObject *items = ht_pym_items(seq);
    if (items == NULL)
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *op = PyList_GET_ITEM(items, i);
        if (cls != Py_None) {
            int r = PyObject_IsInstance(op, cls);
            if (r < 0)
                goto fail;
            if (r == 0)
                continue;
        }
        if (lo >= 0 || hi >= 0) {
            Py_ssize_t s = ht_pym_size(op);
            if (s < 0)
                goto fail;
            if ((lo >= 0 && s < lo) || (hi >= 0 && s > hi))
                continue;
        }
        if (PyList_Append(out, op) < 0)
            goto fail;
    }
    Py_DECREF(items);
    return out;
fail:
    Py_XDECREF(out);
    Py_DECREF(items);
    return NULL;
}

/* Appends to out the items of `items` whose address is not in `other`
 * (each listed once). 0 or -1. */
static int
ht_pym_missing(PyObject *items, const ht_table *other, PyObject *out)
{
    ht_table done = {0};
    int rc = -1;
    if (ht_table_init(&done, (size_t)PyList_GET_SIZE(items), 0) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *op = PyList_GET_ITEM(items, i);
        if (ht_table_contains(other, (uint64_t)(uintptr_t)op))
            continue;
        if (ht_pym_append_new(out, &done, op) < 0)
            goto cleanup;
    }
    rc = 0;
cleanup:
    ht_table_free(&done);
    return rc;
}

/* Address set of a list's items; 0 or -1 with MemoryError. */
static int
ht_pym_id_set(PyObject *items, ht_table *t)
{
    if (ht_table_init(t, (size_t)PyList_GET_SIZE(items), 0) < 0)
        goto nomem;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++)
        if (ht_table_add(t, (uint64_t)(uintptr_t)PyList_GET_ITEM(items, i)) < 0)
            goto nomem;
    return 0;
nomem:
    PyErr_NoMemory();
    return -1;
}

/* pym_diff(left, right) -> (objects only in right, objects only in left),
 * by identity, each once, in list order. */
static PyObject *
ht_pym_diff(PyObject *self, PyObject *args)
{
    PyObject *lseq, *rseq, *left = NULL, *right = NULL, *plus = NULL, *minus = NULL;
    PyObject *result = NULL;
    ht_table lset = {0}, rset = {0};
    if (!PyArg_ParseTuple(args, "OO:pym_diff", &lseq, &rseq))
        return NULL;
    if ((left = ht_pym_items(lseq)) == NULL || (right = ht_pym_items(rseq)) == NULL)
        goto cleanup;
    if (ht_pym_id_set(left, &lset) < 0 || ht_pym_id_set(right, &rset) < 0)
        goto cleanup;
    if ((plus = PyList_New(0)) == NULL || (minus = PyList_New(0)) == NULL)
        goto cleanup;
    if (ht_pym_missing(right, &lset, plus) < 0 || ht_pym_missing(left, &rset, minus) < 0)
        goto cleanup;
    result = PyTuple_Pack(2, plus, minus);
cleanup:
    Py_XDECREF(left);
    Py_XDECREF(right);
    Py_XDECREF(plus);
    Py_XDECREF(minus);
    ht_table_free(&lset);
    ht_table_free(&rset);
    return result;
}

typedef struct ht_pym_keyed {
    Py_ssize_t size;
    Py_ssize_t pos;  /* original position: equal sizes keep their order */
} ht_pym_keyed;

static int
ht_pym_cmp(const void *a, const void *b)
{
    const ht_pym_keyed *x = a, *y = b;
    if (x->size != y->size)
        return x->size < y->size ? -1 : 1;
    return x->pos < y->pos ? -1 : (x->pos > y->pos);
}

/* pym_sort(objects) -> new list, smallest flat size first (stable). */
static PyObject *
ht_pym_sort(PyObject *self, PyObject *seq)
{
    PyObject *items = ht_pym_items(seq), *out = NULL;
    ht_pym_keyed *keys = NULL;
    if (items == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    keys = malloc(sizeof(*keys) * (size_t)(n ? n : 1));
    if (keys == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        keys[i].size = ht_pym_size(PyList_GET_ITEM(items, i));
        keys[i].pos = i;
        if (keys[i].size < 0)
            goto cleanup;
    }
    qsort(keys, (size_t)n, sizeof(*keys), ht_pym_cmp);
    if ((out = PyList_New(n)) == NULL)
        goto cleanup;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *op = PyList_GET_ITEM(items, keys[i].pos);
        Py_INCREF(op);
        PyList_SET_ITEM(out, i, op);
    }
cleanup:
    free(keys);
    Py_DECREF(items);
    return out;
}

/* ================================================================ summary */

/* One row of a summary: a type, or (for functions, modules and frames,
 * which pympler tells apart by name) a type and a name. */
typedef struct ht_pym_row {
    PyObject *type;  /* borrowed from the objects (they outlive the call) */
    PyObject *name;  /* strong reference, or NULL */
    long long count, size;
} ht_pym_row;

typedef struct ht_pym_rows {
    ht_pym_row *rows;
    size_t n, cap;
    ht_table by_type;  /* type address -> row index (unnamed rows) */
    PyObject *by_name; /* dict (type, name) -> row index (named rows) */
} ht_pym_rows;

/* The name pympler groups op under, as a new reference; Py_None when op's
 * rows go by type alone; NULL with an exception set. */
static PyObject *
ht_pym_row_name(PyObject *op)
{
    if (PyFunction_Check(op)) {
        PyObject *n = PyObject_GetAttrString(op, "__name__");
        if (n == NULL)
            PyErr_Clear();
        return n ? n : Py_NewRef(Py_None);
    }
    if (PyModule_Check(op)) {
        PyObject *n = PyModule_GetNameObject(op);
        if (n == NULL) {
            PyErr_Clear();
            return PyUnicode_FromFormat("nameless, id: %zd", (Py_ssize_t)(uintptr_t)op);
        }
        return n;
    }
    if (PyFrame_Check(op)) {
        PyCodeObject *code = PyFrame_GetCode((PyFrameObject *)op);
        PyObject *n = PyObject_GetAttrString((PyObject *)code, "co_name");
        Py_DECREF(code);
        return n;
    }
    return Py_NewRef(Py_None);
}

/* Index of the row for (type, name), made when new; -1 with an exception. */
static Py_ssize_t
ht_pym_row_of(ht_pym_rows *t, PyObject *type, PyObject *name)
{
    PyObject *key = NULL;
    if (name == Py_None) {
        uint64_t *v = ht_table_find(&t->by_type, (uint64_t)(uintptr_t)type);
        if (v != NULL)
            return (Py_ssize_t)*v;
    } else {
        if ((key = PyTuple_Pack(2, type, name)) == NULL)
            return -1;
        PyObject *v = PyDict_GetItemWithError(t->by_name, key);
        if (v != NULL) {
            Py_DECREF(key);
            return PyLong_AsSsize_t(v);
        }
        if (PyErr_Occurred())
            goto fail;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        ht_pym_row *r = realloc(t->rows, cap * sizeof(*r));
        if (r == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        t->rows = r;
        t->cap = cap;
    }
    Py_ssize_t idx = (Py_ssize_t)t->n;
    if (key == NULL) {
        if (ht_table_put(&t->by_type, (uint64_t)(uintptr_t)type, (uint64_t)idx) < 0) {
            PyErr_NoMemory();
            goto fail;
        }
    } else {
        PyObject *iv = PyLong_FromSsize_t(idx);
        int r = iv ? PyDict_SetItem(t->by_name, key, iv) : -1;
        Py_XDECREF(iv);
        if (r < 0)
            goto fail;
    }
    t->rows[idx] = (ht_pym_row){type, name == Py_None ? NULL : Py_NewRef(name), 0, 0};
    t->n++;
    Py_XDECREF(key);
    return idx;
fail:
    Py_XDECREF(key);
    return -1;
}

static void
ht_pym_rows_free(ht_pym_rows *t)
{
    for (size_t i = 0; i < t->n; i++)
        Py_XDECREF(t->rows[i].name);
    free(t->rows);
    ht_table_free(&t->by_type);
    Py_XDECREF(t->by_name);
}

/* pym_summarize(objects) -> [(type, name or None, count, total flat size)]
 * in order of first appearance. */
static PyObject *
ht_pym_summarize(PyObject *self, PyObject *seq)
{
    ht_pym_rows t = {0};
    PyObject *out = NULL, *items = ht_pym_items(seq);
    if (items == NULL)
        return NULL;
    if (ht_table_init(&t.by_type, 64, 1) < 0) {
        PyErr_NoMemory();
        goto cleanup;
    }
    if ((t.by_name = PyDict_New()) == NULL)
        goto cleanup;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *op = PyList_GET_ITEM(items, i);
        Py_ssize_t s = ht_pym_size(op);
        if (s < 0)
            goto cleanup;
        PyObject *name = ht_pym_row_name(op);
        if (name == NULL)
            goto cleanup;
        Py_ssize_t r = ht_pym_row_of(&t, (PyObject *)Py_TYPE(op), name);
        Py_DECREF(name);
        if (r < 0)
            goto cleanup;
        t.rows[r].count++;
        t.rows[r].size += s;
    }
    PyObject *list = PyList_New((Py_ssize_t)t.n);
    if (list == NULL)
        goto cleanup;
    for (size_t i = 0; i < t.n; i++) {
        ht_pym_row *r = &t.rows[i];
        PyObject *row = Py_BuildValue("(OOLL)", r->type, r->name ? r->name : Py_None,
                                      r->count, r->size);
        if (row == NULL) {
            Py_DECREF(list);
            goto cleanup;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, row);
    }
    out = list;
cleanup:
    ht_pym_rows_free(&t);
    Py_DECREF(items);
    return out;
}

/* ================================================================ referents */

/* pym_referents(obj, level, dict_keys, unique=True) -> list: obj's
 * referents (level 1), then theirs (level 2) ... in the order found, as
 * gc.get_referents sees them (dict_keys: a dict's keys too); each object once
 * unless unique is false (then every reference is listed, as gc does). */
static PyObject *
ht_pym_referents(PyObject *self, PyObject *args)
{
    PyObject *root;
    int level, dict_keys, unique = 1;
    if (!PyArg_ParseTuple(args, "Oip|p:pym_referents", &root, &level, &dict_keys, &unique))
        return NULL;
    PyObject *out = PyList_New(0), *result = NULL;
    ht_table seen = {0};
    if (out == NULL)
        return NULL;
    if (ht_table_init(&seen, 64, 0) < 0) {
        PyErr_NoMemory();
        goto cleanup;
    }
    ht_pym_visit_ctx c = {out, unique ? &seen : NULL, 0, 0};
    if (ht_pym_traverse(root, &c, dict_keys) < 0)
        goto cleanup;
    /* breadth first: [begin, end) is the level just found */
    Py_ssize_t begin = 0;
    for (int l = 1; l < level; l++) {
        Py_ssize_t end = PyList_GET_SIZE(out);
        if (begin == end)
            break;
        for (Py_ssize_t i = begin; i < end; i++) {
            PyObject *op = PyList_GET_ITEM(out, i);
            if (ht_pym_traverse(op, &c, dict_keys) < 0)
                goto cleanup;
        }
        begin = end;
    }
    result = out;
    out = NULL;
cleanup:
    Py_XDECREF(out);
    ht_table_free(&seen);
    return result;
}

static PyMethodDef ht_pym_methods[] = {
    {"pym_objects", ht_pym_objects, METH_VARARGS,
     "pym_objects(gc_objects, remove_dups, exclude) -> muppy.get_objects' list"},
    {"pym_get_size", ht_pym_get_size, METH_O, "pym_get_size(objects) -> sum of flat sizes"},
    {"pym_filter", ht_pym_filter, METH_VARARGS,
     "pym_filter(objects, Type, min, max) -> objects of Type within the size bounds"},
    {"pym_diff", ht_pym_diff, METH_VARARGS,
     "pym_diff(left, right) -> (only in right, only in left), by identity"},
    {"pym_sort", ht_pym_sort, METH_O, "pym_sort(objects) -> by flat size, smallest first"},
    {"pym_summarize", ht_pym_summarize, METH_O,
     "pym_summarize(objects) -> [(type, name, count, size)]"},
    {"pym_referents", ht_pym_referents, METH_VARARGS,
     "pym_referents(obj, level, dict_keys, unique=True) -> referents up to level"},
    {NULL, NULL, 0, NULL},
};

int
ht_pym_init(PyObject *m)
{
    return PyModule_AddFunctions(m, ht_pym_methods);
}
