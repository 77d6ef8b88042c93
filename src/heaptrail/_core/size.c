/* size.c - flat size of any object (per-type rules, builtin sizes computed in
 * C) and the deep-size walk behind heaptrail.deepsize / deepsize_detail. */
#include "size.h"
#include "hashtable.h"

#include <stdlib.h>
#include <string.h>

#define HT_SIZE_PTR ((Py_ssize_t)sizeof(void *))

/* ================================================================ rules
 *
 * One rule per type says how to size its objects. Rules are cached in a
 * table keyed by the type's address; an entry is trusted only while the
 * type's tp_version_tag is what it was when the rule was made, so a type
 * whose __sizeof__ is changed, or a new type allocated where a dead one was,
 * is decided again. The cache is protected by the GIL. */


/* A program that keeps creating classes would grow the cache without end:
 * past this many rules it is emptied and refilled. */
#define HT_SIZE_MAX_RULES 65536

static ht_table ht_size_index;   /* type address -> index in ht_size_rules */
static ht_size_rule *ht_size_rules;
static size_t ht_size_nrules, ht_size_rules_cap;
static PyObject *ht_size_name;   /* interned "__sizeof__" */
static PyObject *ht_size_object_sizeof; /* object.__sizeof__ (a method descriptor) */

static inline unsigned int
ht_size__version(PyTypeObject *tp)
{
#if PY_VERSION_HEX < 0x030C0000
    if (!PyType_HasFeature(tp, Py_TPFLAGS_VALID_VERSION_TAG))
        return 0;
#endif
    return tp->tp_version_tag;
}

/* The cached rule of tp, or NULL when there is none that can be trusted. No
 * Python code runs. The pointer is valid until the next rule is stored. */
static inline const ht_size_rule *
ht_size__cached(PyTypeObject *tp)
{
    uint64_t *v = ht_table_find(&ht_size_index, (uint64_t)(uintptr_t)tp);
    if (v == NULL)
        return NULL;
    const ht_size_rule *r = &ht_size_rules[*v];
    unsigned int version = ht_size__version(tp);
    if (version == 0 || r->version != version)
        return NULL;
    return r;
}

static int
ht_size__is_shared_type(PyTypeObject *tp)
{
    return PyType_FastSubclass(tp, Py_TPFLAGS_TYPE_SUBCLASS)
        || PyType_IsSubtype(tp, &PyModule_Type)
        || PyType_IsSubtype(tp, &PyCFunction_Type)
        || tp == &PyFunction_Type || tp == &PyCode_Type
        || tp == &PyMethodDescr_Type || tp == &PyClassMethodDescr_Type
        || tp == &PyWrapperDescr_Type || tp == &PyGetSetDescr_Type
        || tp == &PyMemberDescr_Type;
}

/* The C function of a METH_NOARGS __sizeof__ method descriptor that applies
 * to tp's objects, or NULL. */
static PyCFunction
ht_size__c_method(PyObject *descr, PyTypeObject *tp)
{
    if (!Py_IS_TYPE(descr, &PyMethodDescr_Type))
        return NULL;
    PyMethodDescrObject *md = (PyMethodDescrObject *)descr;
    int flags = md->d_method->ml_flags & ~METH_COEXIST;
    if (flags != METH_NOARGS || !PyType_IsSubtype(tp, md->d_common.d_type))
        return NULL;
    return md->d_method->ml_meth;
}

/* Decides tp's rule into *r. May run Python code (attribute lookup on the
 * type). Returns 0, or -1 with an exception set. */
static int
ht_size__decide(PyTypeObject *tp, ht_size_rule *r)
{
    memset(r, 0, sizeof(*r));
    r->tp = tp;
    /* type's own getattro, as sys.getsizeof looks __sizeof__ up on the type's MRO: through
     * PyObject_GetAttr a metaclass's __getattribute__ ran (Python code, after a walk) */
    PyObject *descr = PyType_Type.tp_getattro((PyObject *)tp, ht_size_name);
    if (descr == NULL)
        return -1;
    /* the lookup above gives the type a version tag if it can have one */
    r->version = ht_size__version(tp);
    r->fn = ht_size__c_method(descr, tp);
    if (tp == &PyUnicode_Type && r->fn)
        r->kind = HT_SZ_STR;
    else if (tp == &PyLong_Type && r->fn)
        r->kind = HT_SZ_INT;
    else if (tp == &PyList_Type && r->fn)
        r->kind = HT_SZ_LIST;
    else if (descr == ht_size_object_sizeof) {
#ifdef Py_TPFLAGS_INLINE_VALUES
        /* 3.13: attribute values stored in the object, sized by object's C
         * __sizeof__ from private layout */
        r->kind = PyType_HasFeature(tp, Py_TPFLAGS_INLINE_VALUES) ? HT_SZ_CFUNC : HT_SZ_BASIC;
#else
        r->kind = HT_SZ_BASIC;
#endif
    } else
        r->kind = r->fn ? HT_SZ_CFUNC : HT_SZ_PYCALL;
    Py_DECREF(descr);

    /* what sys.getsizeof adds to __sizeof__ (_PyType_PreHeaderSize) */
    r->pre = PyType_IS_GC(tp) ? 2 * HT_SIZE_PTR : 0;
#if PY_VERSION_HEX >= 0x030C0000
    if (PyType_HasFeature(tp, Py_TPFLAGS_PREHEADER))
        r->pre += 2 * HT_SIZE_PTR;
#else
    if (PyType_HasFeature(tp, Py_TPFLAGS_MANAGED_DICT))
        r->pre += 2 * HT_SIZE_PTR;
#endif
#if PY_VERSION_HEX >= 0x030D0000
    r->pre_static0 = tp == &PyType_Type;
#endif
    r->shared = (uint8_t)ht_size__is_shared_type(tp);
    r->traverse = PyType_IS_GC(tp) && tp->tp_traverse != NULL && tp != &PyMemoryView_Type;
    r->gc_per_object = tp->tp_is_gc != NULL;
    return 0;
}

/* Stores r in the cache (best effort: a full or failing cache only costs
 * speed). */
static void
ht_size__store(const ht_size_rule *r)
{
    if (r->version == 0)
        return;
    uint64_t *v = ht_table_find(&ht_size_index, (uint64_t)(uintptr_t)r->tp);
    if (v != NULL) {
        ht_size_rules[*v] = *r;
        return;
    }
    if (ht_size_nrules >= HT_SIZE_MAX_RULES) {
        ht_table_clear(&ht_size_index);
        ht_size_nrules = 0;
    }
    if (ht_size_nrules == ht_size_rules_cap) {
        size_t cap = ht_size_rules_cap ? ht_size_rules_cap * 2 : 64;
        ht_size_rule *grown = realloc(ht_size_rules, cap * sizeof(*grown));
        if (grown == NULL)
            return;
        ht_size_rules = grown;
        ht_size_rules_cap = cap;
    }
    if (ht_table_put(&ht_size_index, (uint64_t)(uintptr_t)r->tp, ht_size_nrules) < 0)
        return;
    ht_size_rules[ht_size_nrules++] = *r;
}

/* Copies tp's rule into *r, deciding and caching it when needed. Returns 0 or
 * -1 with an exception set. */
int
ht_size_rule_of(PyTypeObject *tp, ht_size_rule *r)
{
    const ht_size_rule *c = ht_size__cached(tp);
    if (c != NULL) {
        *r = *c;
        return 0;
    }
    if (ht_size__decide(tp, r) < 0)
        return -1;
    ht_size__store(r);
    return 0;
}

/* ================================================================ flat size */

/* Turns a __sizeof__ result into a size, as sys.getsizeof does. Steals res. */
static Py_ssize_t
ht_size__from_result(PyObject *res)
{
    if (res == NULL)
        return -1;
    Py_ssize_t n = PyLong_AsSsize_t(res);
    Py_DECREF(res);
    if (n == -1 && PyErr_Occurred())
        return -1;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "__sizeof__() should return >= 0");
        return -1;
    }
    return n;
}

/* Calls op's __sizeof__ looked up on its type, as sys.getsizeof does (for a
 * class, its metaclass's method, not the one its instances use). */
static PyObject *
ht_size__call_sizeof(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject *attr = PyType_Type.tp_getattro((PyObject *)tp, ht_size_name); /* as in ht_size__decide */
    if (attr == NULL)
        return NULL;
    descrgetfunc get = Py_TYPE(attr)->tp_descr_get;
    if (get != NULL) {
        PyObject *bound = get(attr, op, (PyObject *)tp);
        Py_DECREF(attr);
        if (bound == NULL)
            return NULL;
        attr = bound;
    }
    PyObject *res = PyObject_CallNoArgs(attr);
    Py_DECREF(attr);
    return res;
}

/* Size of a str from its header, or -1 (no exception) when it carries memory
 * only the C __sizeof__ can see (cached UTF-8, wchar_t copy, legacy layout). */
static inline Py_ssize_t
ht_size__str(PyObject *op)
{
#if PY_VERSION_HEX < 0x030C0000
    if (((PyASCIIObject *)op)->wstr != NULL)
        return -1;
#endif
    if (PyUnicode_IS_COMPACT_ASCII(op))
        return (Py_ssize_t)sizeof(PyASCIIObject) + PyUnicode_GET_LENGTH(op) + 1;
    if (PyUnicode_IS_COMPACT(op) && ((PyCompactUnicodeObject *)op)->utf8 == NULL)
        return (Py_ssize_t)sizeof(PyCompactUnicodeObject)
            + (PyUnicode_GET_LENGTH(op) + 1) * (Py_ssize_t)PyUnicode_KIND(op);
    return -1;
}

/* Size of an exact int, or -1 (no exception) when the C __sizeof__ must say. */
static inline Py_ssize_t
ht_size__int(PyObject *op)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (PyUnstable_Long_IsCompact((PyLongObject *)op))
        return (Py_ssize_t)(offsetof(PyLongObject, long_value.ob_digit) + sizeof(digit));
    return -1;
#else
    Py_ssize_t ndigits = Py_SIZE(op) < 0 ? -Py_SIZE(op) : Py_SIZE(op);
    if (ndigits < 1)
        ndigits = 1;
    return (Py_ssize_t)offsetof(PyLongObject, ob_digit) + ndigits * (Py_ssize_t)sizeof(digit);
#endif
}

/* What op's __sizeof__ says under rule r (>= 0), or -1 with an exception
 * set. Runs Python code only for HT_SZ_PYCALL. */
static Py_ssize_t
ht_size__own(PyObject *op, const ht_size_rule *r)
{
    Py_ssize_t n = -1;
    switch (r->kind) {
    case HT_SZ_BASIC:
        n = r->tp->tp_basicsize;
        if (r->tp->tp_itemsize > 0)
            n += Py_SIZE(op) * r->tp->tp_itemsize;
        break;
    case HT_SZ_STR:
        n = ht_size__str(op);
        break;
    case HT_SZ_INT:
        n = ht_size__int(op);
        break;
    case HT_SZ_LIST:
        n = r->tp->tp_basicsize + ((PyListObject *)op)->allocated * HT_SIZE_PTR;
        break;
    case HT_SZ_PYCALL:
        return ht_size__from_result(ht_size__call_sizeof(op));
    default:
        break;
    }
    if (n < 0) /* CFUNC, and STR/INT cases their fast path leaves out */
        n = ht_size__from_result(r->fn(op, NULL));
    return n;
}

/* op's size as sys.getsizeof gives it: __sizeof__ plus the pre-header. A
 * __sizeof__ may say anything up to PY_SSIZE_T_MAX, and sys.getsizeof adds
 * the header to that as a size_t (a figure past PY_SSIZE_T_MAX): so the sum
 * is made unsigned, where it cannot overflow. 0, or -1 with an exception. */
static int
ht_size__flat_u64(PyObject *op, const ht_size_rule *r, uint64_t *size)
{
    Py_ssize_t n = ht_size__own(op, r);
    if (n < 0)
        return -1;
    *size = (uint64_t)n;
    if (!r->pre_static0 || PyType_HasFeature((PyTypeObject *)op, Py_TPFLAGS_HEAPTYPE))
        *size += (uint64_t)r->pre;
    return 0;
}

/* n as a Py_ssize_t, or -1 with OverflowError (a __sizeof__ so large that
 * adding the header passed PY_SSIZE_T_MAX). */
static Py_ssize_t
ht_size__ssize(PyObject *op, uint64_t n)
{
    if (n > (uint64_t)PY_SSIZE_T_MAX) {
        PyErr_Format(PyExc_OverflowError, "size of %.100s object (%llu bytes) does not fit a "
                     "Py_ssize_t", Py_TYPE(op)->tp_name, (unsigned long long)n);
        return -1;
    }
    return (Py_ssize_t)n;
}

/* The flat size of op under rule r, or -1 with an exception set. Runs Python
 * code only for HT_SZ_PYCALL. */
Py_ssize_t
ht_size_flat_with(PyObject *op, const ht_size_rule *r)
{
    uint64_t n;
    if (ht_size__flat_u64(op, r, &n) < 0)
        return -1;
    return ht_size__ssize(op, n);
}

/* op's flat size (unsigned, see ht_size__flat_u64). 0, or -1 with an
 * exception set. */
static int
ht_size__flat_any(PyObject *op, uint64_t *size)
{
    const ht_size_rule *c = ht_size__cached(Py_TYPE(op));
    if (c != NULL && c->kind != HT_SZ_PYCALL)
        return ht_size__flat_u64(op, c, size);
    /* a copy: Python code run by __sizeof__ may move the cache */
    ht_size_rule r;
    if (ht_size_rule_of(Py_TYPE(op), &r) < 0)
        return -1;
    Py_INCREF(op);
    int rc = ht_size__flat_u64(op, &r, size);
    Py_DECREF(op);
    return rc;
}

Py_ssize_t
ht_size_flat(PyObject *op)
{
    uint64_t n;
    if (ht_size__flat_any(op, &n) < 0)
        return -1;
    return ht_size__ssize(op, n);
}

/* ================================================================ the walk
 *
 * Depth-first with an explicit stack of strong references. The visit
 * callback given to tp_traverse runs inside the parent's traversal, so it
 * runs no Python code: an object whose type has a cached pure-C rule is
 * sized on the spot and pushed only when it has referents; any other object
 * is pushed "pending" and sized after the traversal returns, when calling
 * Python (a __sizeof__ override, a first look at a new type) is safe.
 *
 * deepsize_detail also keeps, per counted object, a record: the object (a
 * strong reference until the walk's result is built), its size, the record
 * index of the object it was reached from, and a label saying how: list or
 * tuple index, dict key (a held reference), set member, or some other
 * referent (named later by the Python side, for the few paths it prints). */

#define HT_W_PENDING ((uintptr_t)1) /* stack entry: not sized yet */
#define HT_W_ROOT ((uintptr_t)2)    /* stack entry: a root, never skipped as shared */
#define HT_W_NOREC UINT32_MAX
#define HT_W_BATCH 32
/* The plain walk expands a child right where it is found, inside its
 * parent's traversal, up to this depth (deeper ones go on the explicit
 * stack): its header and the seen-table slots of its children are still in
 * cache then, where a child taken from the stack later has gone cold. */
#define HT_W_NEST 8

enum { HT_LBL_ROOT, HT_LBL_REF, HT_LBL_INDEX, HT_LBL_KEY, HT_LBL_SET };
#define HT_LBL(kind, payload) (((uint64_t)(kind) << 56) | (uint64_t)(payload))
#define HT_LBL_KIND(l) ((int)((l) >> 56))
#define HT_LBL_PAYLOAD(l) ((l) & ((UINT64_C(1) << 56) - 1))

typedef struct ht_walk {
    int shared;             /* descend into shared objects too */
    int detail;             /* keep records (deepsize_detail) */
    int failed;             /* an exception is set; stop */
    ht_table seen;          /* plain: address set; detail: address -> record + 1 (0: none) */
    uintptr_t *stack;       /* tagged strong references */
    uint32_t *srec;         /* detail: own record, or parent record when pending */
    size_t sp, scap;
    uint64_t total;         /* sum of flat sizes (each may pass PY_SSIZE_T_MAX) */
    size_t count;
    /* detail only */
    uint32_t cur;           /* record being traversed */
    uint64_t child_label;   /* label given to children of cur at visit time */
    PyObject **r_obj;       /* strong references */
    uint64_t *r_size, *r_label;
    uint32_t *r_parent;
    size_t rn, rcap;
    ht_table types;         /* type address -> index in t_* */
    PyTypeObject **t_type;  /* strong references */
    uint64_t *t_count, *t_bytes;
    size_t tn, tcap;
    PyObject **keys;        /* dict keys named by labels, strong references */
    size_t kn, kcap;
    /* children reached by the current traversal, not yet looked at: taken in
     * batches so the cache misses of their seen-table slots and headers
     * overlap (prefetch) instead of coming one after another. The array is
     * local to the running ht_walk__expand. */
    PyObject **batch;
    int nbatch;
    int depth;              /* plain walk: expansions nested in a traversal */
    int in_dict;            /* the running traversal is a dict subclass's (ht_walk__see) */
    Py_ssize_t nvisit;      /* children the running traversal has shown */
} ht_walk;

static int
ht_walk__oom(ht_walk *w)
{
    PyErr_NoMemory();
    w->failed = 1;
    return -1;
}

/* Grows *arr (of elem-sized items) to hold at least need; 0 or -1. */
static int
ht_walk__grow(void **arr, size_t elem, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    void *p = realloc(*arr, n * elem);
    if (p == NULL)
        return -1;
    *arr = p;
    *cap = n;
    return 0;
}

/* Pushes a strong reference to op (taken here). */
static int
ht_walk__push(ht_walk *w, PyObject *op, uintptr_t tags, uint32_t rec)
{
    if (w->sp == w->scap) {
        size_t cap = w->scap;
        if (ht_walk__grow((void **)&w->stack, sizeof(uintptr_t), &cap, w->sp + 1) < 0)
            return ht_walk__oom(w);
        if (w->detail) {
            size_t cap2 = w->scap;
            if (ht_walk__grow((void **)&w->srec, sizeof(uint32_t), &cap2, w->sp + 1) < 0)
                return ht_walk__oom(w);
        }
        w->scap = cap;
    }
    Py_INCREF(op);
    w->stack[w->sp] = (uintptr_t)op | tags;
    if (w->detail)
        w->srec[w->sp] = rec;
    w->sp++;
    return 0;
}

/* detail: adds op's record and its type's line. Returns the record index or
 * HT_W_NOREC with w->failed set. */
static uint32_t
ht_walk__record(ht_walk *w, PyObject *op, uint64_t size, uint32_t parent, uint64_t label)
{
    size_t i = w->rn;
    if (i >= HT_W_NOREC) {
        PyErr_SetString(PyExc_OverflowError, "deepsize_detail: more than 2**32 objects");
        w->failed = 1;
        return HT_W_NOREC;
    }
    if (i == w->rcap) {
        size_t c1 = w->rcap, c2 = w->rcap, c3 = w->rcap, c4 = w->rcap;
        if (ht_walk__grow((void **)&w->r_obj, sizeof(PyObject *), &c1, i + 1) < 0
            || ht_walk__grow((void **)&w->r_size, sizeof(uint64_t), &c2, i + 1) < 0
            || ht_walk__grow((void **)&w->r_label, sizeof(uint64_t), &c3, i + 1) < 0
            || ht_walk__grow((void **)&w->r_parent, sizeof(uint32_t), &c4, i + 1) < 0) {
            ht_walk__oom(w);
            return HT_W_NOREC;
        }
        w->rcap = c1;
    }
    PyTypeObject *tp = Py_TYPE(op);
    int added;
    uint64_t *t = ht_table_upsert(&w->types, (uint64_t)(uintptr_t)tp, w->tn, &added);
    if (t == NULL) {
        ht_walk__oom(w);
        return HT_W_NOREC;
    }
    if (added) {
        size_t c1 = w->tcap, c2 = w->tcap, c3 = w->tcap;
        if (ht_walk__grow((void **)&w->t_type, sizeof(PyTypeObject *), &c1, w->tn + 1) < 0
            || ht_walk__grow((void **)&w->t_count, sizeof(uint64_t), &c2, w->tn + 1) < 0
            || ht_walk__grow((void **)&w->t_bytes, sizeof(uint64_t), &c3, w->tn + 1) < 0) {
            ht_table_remove(&w->types, (uint64_t)(uintptr_t)tp, NULL);
            ht_walk__oom(w);
            return HT_W_NOREC;
        }
        w->tcap = c1;
        Py_INCREF(tp);
        w->t_type[w->tn] = tp;
        w->t_count[w->tn] = 0;
        w->t_bytes[w->tn] = 0;
        w->tn++;
    }
    w->t_count[*t] += 1;
    w->t_bytes[*t] += size;
    uint64_t *s = ht_table_find(&w->seen, (uint64_t)(uintptr_t)op);
    if (s != NULL)
        *s = i + 1;
    Py_INCREF(op);
    w->r_obj[i] = op;
    w->r_size[i] = size;
    w->r_parent[i] = parent;
    w->r_label[i] = label;
    w->rn++;
    return (uint32_t)i;
}

static inline int
ht_walk__traversable(PyObject *op, const ht_size_rule *r)
{
    return r->traverse && (!r->gc_per_object || PyObject_IS_GC(op));
}

static int ht_walk__expand(ht_walk *w, PyObject *op, uint32_t rec);

/* Sizes op by rule r into *n and adds it to the walk's total. 0, or -1 with
 * an exception set (a failing __sizeof__; a total past 2**64, which only
 * __sizeof__ methods that give absurd figures can reach). */
static int
ht_walk__count(ht_walk *w, PyObject *op, const ht_size_rule *r, uint64_t *n)
{
    if (ht_size__flat_u64(op, r, n) < 0) {
        w->failed = 1;
        return -1;
    }
    if (*n > UINT64_MAX - w->total) {
        PyErr_SetString(PyExc_OverflowError, "deepsize: the total size passes 2**64 bytes");
        w->failed = 1;
        return -1;
    }
    w->total += *n;
    w->count++;
    return 0;
}

/* Counts op (newly seen, reached from w->cur) under a cached pure-C rule;
 * pushes it when it has referents. 0 or -1. */
static inline int
ht_walk__take(ht_walk *w, PyObject *op, const ht_size_rule *r)
{
    if (r->shared && !w->shared)
        return 0;
    uint64_t n;
    if (ht_walk__count(w, op, r, &n) < 0)
        return -1;
    uint32_t rec = 0;
    if (w->detail) {
        rec = ht_walk__record(w, op, n, w->cur, w->child_label);
        if (rec == HT_W_NOREC)
            return -1;
    }
    if (!ht_walk__traversable(op, r))
        return 0;
    if (!w->detail && w->depth < HT_W_NEST) {
        /* op is held by the parent being traversed, and no Python code runs
         * until this returns: no reference of ours is needed */
        w->depth++;
        int rc = ht_walk__expand(w, op, 0);
        w->depth--;
        return rc;
    }
    return ht_walk__push(w, op, 0, rec);
}

/* Adds op to the seen table (no record yet): 1 added, 0 already there, -1
 * out of memory (no exception set). */
static int
ht_walk__mark(ht_walk *w, PyObject *op)
{
    if (!w->detail)
        return ht_table_add(&w->seen, (uint64_t)(uintptr_t)op);
    int added = 0;
    if (ht_table_upsert(&w->seen, (uint64_t)(uintptr_t)op, 0, &added) == NULL)
        return -1;
    return added;
}

/* Looks at one child of the current traversal. Runs no Python code. */
static int
ht_walk__see(ht_walk *w, PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    const ht_size_rule *r = ht_size__cached(tp);
    if (r == NULL && !PyType_HasFeature(tp, Py_TPFLAGS_HEAPTYPE)) {
        /* a static type has no Python-level attributes: deciding its rule
         * here runs no Python code, and keeps the walk's order the same
         * whether the cache was warm or not */
        ht_size_rule tmp;
        if (ht_size_rule_of(tp, &tmp) < 0) {
            w->failed = 1;
            return -1;
        }
        r = ht_size__cached(tp);
    }
    /* a shared object (an instance's class ...) is dropped before it costs
     * a probe of the seen table */
    if (r != NULL && r->shared && !w->shared)
        return 0;
    /* An object with one reference can only be reached through it, that is
     * from the object being traversed now, which is traversed once: it
     * needs no entry in the seen table. (Roots and excluded objects are
     * held by our argument tuples, so never have one reference. detail
     * mode keeps every entry: the labels find records through it.) A
     * dict subclass is the exception: ht_walk__dict_keys visits its exact
     * str keys a second time, after a traversal that may have shown them
     * (see ht_walk__keys_shown), so inside its traversal they are marked
     * whatever their count. */
    if (w->detail || Py_REFCNT(op) != 1 || (w->in_dict && PyUnicode_CheckExact(op))) {
        int added = ht_walk__mark(w, op);
        if (added <= 0)
            return added < 0 ? ht_walk__oom(w) : 0;
    }
    if (r != NULL && r->kind != HT_SZ_PYCALL)
        return ht_walk__take(w, op, r);
    return ht_walk__push(w, op, HT_W_PENDING, w->cur);
}

/* Looks at the batched children: first starts loading each one's header,
 * then the seen-table slot of those that need one, then handles them in
 * order. 0 or -1. */
static int
ht_walk__flush(ht_walk *w)
{
    PyObject **b = w->batch; /* a nested expansion swaps w->batch and back */
    int n = w->nbatch;
    w->nbatch = 0;
    for (int i = 0; i < n; i++)
        __builtin_prefetch(b[i], 0); /* refcount and type */
    for (int i = 0; i < n; i++)
        if (w->detail || Py_REFCNT(b[i]) != 1)
            ht_table_prefetch(&w->seen, (uint64_t)(uintptr_t)b[i]);
    for (int i = 0; i < n; i++)
        if (ht_walk__see(w, b[i]) < 0)
            return -1;
    return 0;
}

/* The visitproc given to tp_traverse: batches the child. */
static int
ht_walk__visit(PyObject *op, void *arg)
{
    ht_walk *w = arg;
    w->nvisit++;
    w->batch[w->nbatch++] = op;
    if (w->nbatch == HT_W_BATCH)
        return ht_walk__flush(w);
    return 0;
}

/* detail: labels a child of record p found by the parent's own structure
 * (index, key) if it was first reached from p and has no better label. */
static inline uint64_t *
ht_walk__child_label(ht_walk *w, uint32_t p, PyObject *child)
{
    uint64_t *v = ht_table_find(&w->seen, (uint64_t)(uintptr_t)child);
    if (v == NULL || *v == 0)
        return NULL;
    size_t c = (size_t)(*v - 1);
    if (w->r_parent[c] != p || HT_LBL_KIND(w->r_label[c]) != HT_LBL_REF)
        return NULL;
    return &w->r_label[c];
}

/* detail: after traversing record p (object op), names its children by list
 * or tuple index and by dict key, and visits a dict's keys (see
 * ht_walk__dict_keys). No Python code runs. 0 or -1. */
static int
ht_walk__label_children(ht_walk *w, uint32_t p, PyObject *op)
{
    uint64_t *l;
    if (PyList_Check(op) || PyTuple_Check(op)) {
        int is_list = PyList_Check(op);
        Py_ssize_t n = is_list ? PyList_GET_SIZE(op) : PyTuple_GET_SIZE(op);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item = is_list ? PyList_GET_ITEM(op, i) : PyTuple_GET_ITEM(op, i);
            if (item != NULL && (l = ht_walk__child_label(w, p, item)) != NULL)
                *l = HT_LBL(HT_LBL_INDEX, (uint64_t)i);
        }
    } else if (PyDict_Check(op)) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(op, &pos, &k, &v)) {
            if (PyUnicode_CheckExact(k) && ht_walk__visit(k, w) < 0)
                return -1;
            if ((l = ht_walk__child_label(w, p, v)) == NULL)
                continue;
            size_t cap = w->kcap;
            if (ht_walk__grow((void **)&w->keys, sizeof(PyObject *), &cap, w->kn + 1) < 0)
                return ht_walk__oom(w);
            w->kcap = cap;
            Py_INCREF(k);
            w->keys[w->kn] = k;
            *l = HT_LBL(HT_LBL_KEY, w->kn);
            w->kn++;
        }
        return ht_walk__flush(w);
    }
    return 0;
}

/* Sizes a popped pending entry (may run Python code). Returns 1 when it is
 * to be traversed, 0 when not, -1 on error. *rec gets its record index. */
static int
ht_walk__settle(ht_walk *w, PyObject *op, uintptr_t tags, uint32_t *rec)
{
    ht_size_rule r;
    if (ht_size_rule_of(Py_TYPE(op), &r) < 0)
        return -1;
    if (r.shared && !w->shared && !(tags & HT_W_ROOT))
        return 0;
    uint64_t n;
    if (ht_walk__count(w, op, &r, &n) < 0)
        return -1;
    if (w->detail) {
        uint32_t parent = *rec;
        uint64_t label = HT_LBL(HT_LBL_ROOT, 0);
        if (parent != HT_W_NOREC)
            label = HT_LBL(PyAnySet_Check(w->r_obj[parent]) ? HT_LBL_SET : HT_LBL_REF, 0);
        *rec = ht_walk__record(w, op, n, parent, label);
        if (*rec == HT_W_NOREC)
            return -1;
    }
    return ht_walk__traversable(op, &r);
}

/* Visits a dict's str keys: its tp_traverse leaves out the keys of a
 * table whose keys are all exact str (they cannot be part of a cycle), but
 * they are memory the dict holds. Other keys are visited by tp_traverse. */
static int
ht_walk__dict_keys(ht_walk *w, PyObject *op)
{
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(op, &pos, &k, &v))
        if (PyUnicode_CheckExact(k) && ht_walk__visit(k, w) < 0)
            return -1;
    return ht_walk__flush(w);
}

/* True when the traversal of dict op that just ran showed its keys, str
 * ones too: a table that holds keys other than exact str shows a key and a
 * value per item, one of exact str keys (or split) its values alone. Only an
 * exact dict can tell by the count; a subclass's traversal shows more
 * (its class, its __dict__ ...), and its exact str keys are marked instead
 * (ht_walk__see), so that the second visit finds them. */
static int
ht_walk__keys_shown(const ht_walk *w, PyObject *op)
{
    Py_ssize_t n = PyDict_GET_SIZE(op);
    return PyDict_CheckExact(op) && n > 0 && w->nvisit == 2 * n;
}

/* Traverses op's referents (op is a strong reference held by the caller). */
static int
ht_walk__expand_in(ht_walk *w, PyObject *op, uint32_t rec)
{
    if (w->detail) {
        w->cur = rec;
        w->child_label = HT_LBL(PyAnySet_Check(op) ? HT_LBL_SET : HT_LBL_REF, 0);
    }
    traverseproc trav = Py_TYPE(op)->tp_traverse;
    if (trav(op, ht_walk__visit, w) != 0 || w->failed || ht_walk__flush(w) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "deepsize: a tp_traverse failed");
        w->failed = 1;
        return -1;
    }
    if (w->detail)
        return ht_walk__label_children(w, rec, op);
    if (PyDict_Check(op) && !ht_walk__keys_shown(w, op))
        return ht_walk__dict_keys(w, op);
    return 0;
}

/* Traverses op's referents with a batch array of its own, restoring the
 * caller's (a nested expansion runs inside the caller's flush). */
static int
ht_walk__expand(ht_walk *w, PyObject *op, uint32_t rec)
{
    PyObject *local[HT_W_BATCH];
    PyObject **saved = w->batch;
    int saved_n = w->nbatch, saved_in_dict = w->in_dict;
    Py_ssize_t saved_nvisit = w->nvisit;
    w->batch = local;
    w->nbatch = 0;
    w->nvisit = 0;
    w->in_dict = PyDict_Check(op) && !PyDict_CheckExact(op);
    int rc = ht_walk__expand_in(w, op, rec);
    if (rc == 0 && w->nbatch > 0)
        rc = ht_walk__flush(w);
    w->batch = saved;
    w->nbatch = saved_n;
    w->in_dict = saved_in_dict;
    w->nvisit = saved_nvisit;
    return rc;
}

/* Runs the walk until the stack is empty. 0 or -1 with an exception set. */
static int
ht_walk__run(ht_walk *w)
{
    while (w->sp > 0) {
        w->sp--;
        uintptr_t e = w->stack[w->sp];
        uint32_t rec = w->detail ? w->srec[w->sp] : 0;
        PyObject *op = (PyObject *)(e & ~(HT_W_PENDING | HT_W_ROOT));
        int go = 1;
        if (e & HT_W_PENDING)
            go = ht_walk__settle(w, op, e, &rec);
        if (go > 0)
            go = ht_walk__expand(w, op, rec);
        Py_DECREF(op);
        if (go < 0) {
            w->failed = 1;
            return -1;
        }
    }
    return 0;
}

static int
ht_walk__init(ht_walk *w, int shared, int detail)
{
    memset(w, 0, sizeof(*w));
    w->shared = shared;
    w->detail = detail;
    w->cur = HT_W_NOREC;
    if (ht_table_init(&w->seen, 1024, detail) < 0
        || (detail && ht_table_init(&w->types, 64, 1) < 0)) {
        ht_table_free(&w->seen);
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void
ht_walk__free(ht_walk *w)
{
    for (size_t i = 0; i < w->sp; i++)
        Py_DECREF((PyObject *)(w->stack[i] & ~(HT_W_PENDING | HT_W_ROOT)));
    for (size_t i = 0; i < w->rn; i++)
        Py_DECREF(w->r_obj[i]);
    for (size_t i = 0; i < w->tn; i++)
        Py_DECREF(w->t_type[i]);
    for (size_t i = 0; i < w->kn; i++)
        Py_DECREF(w->keys[i]);
    free(w->stack);
    free(w->srec);
    free(w->r_obj);
    free(w->r_size);
    free(w->r_label);
    free(w->r_parent);
    free(w->t_type);
    free(w->t_count);
    free(w->t_bytes);
    free(w->keys);
    ht_table_free(&w->seen);
    ht_table_free(&w->types);
    memset(w, 0, sizeof(*w));
}

/* Marks every object of the sequence `exclude` as seen (never counted nor
 * traversed), then pushes the roots. 0 or -1. */
static int
ht_walk__start(ht_walk *w, PyObject *roots, PyObject *exclude)
{
    Py_ssize_t n = PyTuple_GET_SIZE(exclude);
    for (Py_ssize_t i = 0; i < n; i++)
        if (ht_walk__mark(w, PyTuple_GET_ITEM(exclude, i)) < 0)
            return ht_walk__oom(w);
    /* pushed in reverse so the first root is walked first */
    for (Py_ssize_t i = PyTuple_GET_SIZE(roots); i-- > 0;) {
        PyObject *op = PyTuple_GET_ITEM(roots, i);
        int added = ht_walk__mark(w, op);
        if (added < 0)
            return ht_walk__oom(w);
        if (added && ht_walk__push(w, op, HT_W_PENDING | HT_W_ROOT, HT_W_NOREC) < 0)
            return -1;
    }
    return 0;
}

/* ================================================================ Python */

/* _core.size_flat(obj) -> int */
static PyObject *
ht_size_py_flat(PyObject *self, PyObject *obj)
{
    uint64_t n; /* as sys.getsizeof: may pass PY_SSIZE_T_MAX */
    if (ht_size__flat_any(obj, &n) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong((unsigned long long)n);
}

/* _core.size_deep(roots: tuple, exclude: tuple, shared: bool) -> (bytes, objects) */
static PyObject *
ht_size_py_deep(PyObject *self, PyObject *args)
{
    PyObject *roots, *exclude;
    int shared;
    if (!PyArg_ParseTuple(args, "O!O!p:size_deep", &PyTuple_Type, &roots, &PyTuple_Type,
                          &exclude, &shared))
        return NULL;
    ht_walk w;
    if (ht_walk__init(&w, shared, 0) < 0)
        return NULL;
    PyObject *res = NULL;
    if (ht_walk__start(&w, roots, exclude) < 0 || ht_walk__run(&w) < 0)
        goto cleanup;
    res = Py_BuildValue("Kn", (unsigned long long)w.total, (Py_ssize_t)w.count);
cleanup:
    ht_walk__free(&w);
    return res;
}

/* Sorts type lines by bytes, largest first (ties: more objects first). */
static const ht_walk *ht_walk__sorting;

static int
ht_walk__cmp_types(const void *a, const void *b)
{
    const ht_walk *w = ht_walk__sorting;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    if (w->t_bytes[i] != w->t_bytes[j])
        return w->t_bytes[i] < w->t_bytes[j] ? 1 : -1;
    if (w->t_count[i] != w->t_count[j])
        return w->t_count[i] < w->t_count[j] ? 1 : -1;
    return i < j ? -1 : (i > j);
}

/* [(type, count, bytes)] sorted by bytes. */
static PyObject *
ht_walk__types_list(ht_walk *w)
{
    size_t *order = malloc((w->tn ? w->tn : 1) * sizeof(size_t));
    if (order == NULL)
        return PyErr_NoMemory();
    for (size_t i = 0; i < w->tn; i++)
        order[i] = i;
    ht_walk__sorting = w;
    qsort(order, w->tn, sizeof(size_t), ht_walk__cmp_types);
    ht_walk__sorting = NULL;
    PyObject *list = PyList_New((Py_ssize_t)w->tn);
    for (size_t k = 0; list != NULL && k < w->tn; k++) {
        size_t i = order[k];
        PyObject *row = Py_BuildValue("(OKK)", (PyObject *)w->t_type[i],
                                      (unsigned long long)w->t_count[i],
                                      (unsigned long long)w->t_bytes[i]);
        if (row == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)k, row);
    }
    free(order);
    return list;
}

/* Indexes of the `top` largest non-root records, largest first (ties: the
 * one found first). A min-heap of `top` entries: O(n log top). */
static size_t
ht_walk__top(const ht_walk *w, size_t top, size_t *out)
{
    size_t h = 0;
#define HT_LESS(a, b) (w->r_size[a] < w->r_size[b] || (w->r_size[a] == w->r_size[b] && (a) > (b)))
    for (size_t i = 0; i < w->rn && top > 0; i++) {
        if (w->r_parent[i] == HT_W_NOREC)
            continue;
        if (h == top && !HT_LESS(out[0], i))
            continue;
        size_t pos;
        if (h < top) { /* sift up */
            pos = h++;
            while (pos > 0 && HT_LESS(i, out[(pos - 1) / 2])) {
                out[pos] = out[(pos - 1) / 2];
                pos = (pos - 1) / 2;
            }
        } else { /* replace the smallest, sift down */
            pos = 0;
            for (;;) {
                size_t c = 2 * pos + 1;
                if (c >= h)
                    break;
                if (c + 1 < h && HT_LESS(out[c + 1], out[c]))
                    c++;
                if (!HT_LESS(out[c], i))
                    break;
                out[pos] = out[c];
                pos = c;
            }
        }
        out[pos] = i;
    }
    /* heap -> sorted, largest first (insertion sort: top is small) */
    for (size_t a = 1; a < h; a++) {
        size_t x = out[a], b = a;
        while (b > 0 && HT_LESS(out[b - 1], x)) {
            out[b] = out[b - 1];
            b--;
        }
        out[b] = x;
    }
#undef HT_LESS
    return h;
}

#define HT_PATH_MAX_STEPS 100

/* The path of record i as (omitted, [(parent, kind, payload, child), ...])
 * from the root down; only the last HT_PATH_MAX_STEPS steps are given. */
static PyObject *
ht_walk__path(const ht_walk *w, size_t i)
{
    size_t depth = 0;
    for (size_t c = i; w->r_parent[c] != HT_W_NOREC; c = w->r_parent[c])
        depth++;
    size_t keep = depth < HT_PATH_MAX_STEPS ? depth : HT_PATH_MAX_STEPS;
    PyObject *steps = PyList_New((Py_ssize_t)keep);
    if (steps == NULL)
        return NULL;
    size_t c = i;
    for (size_t k = keep; k-- > 0; c = w->r_parent[c]) {
        uint64_t l = w->r_label[c];
        PyObject *payload;
        switch (HT_LBL_KIND(l)) {
        case HT_LBL_INDEX:
            payload = PyLong_FromUnsignedLongLong(HT_LBL_PAYLOAD(l));
            break;
        case HT_LBL_KEY:
            payload = Py_NewRef(w->keys[HT_LBL_PAYLOAD(l)]);
            break;
        default:
            payload = Py_NewRef(Py_None);
        }
        PyObject *step = payload == NULL ? NULL
            : Py_BuildValue("(OiNO)", w->r_obj[w->r_parent[c]], HT_LBL_KIND(l), payload, w->r_obj[c]);
        if (step == NULL) {
            Py_DECREF(steps);
            return NULL;
        }
        PyList_SET_ITEM(steps, (Py_ssize_t)k, step);
    }
    return Py_BuildValue("(nN)", (Py_ssize_t)(depth - keep), steps);
}

/* _core.size_detail(root, exclude: tuple, shared: bool, top: int)
 *   -> (bytes, objects, [(type, count, bytes)], [(obj, size, omitted, steps)]) */
static PyObject *
ht_size_py_detail(PyObject *self, PyObject *args)
{
    PyObject *root, *exclude, *roots = NULL, *types = NULL, *tops = NULL, *res = NULL;
    int shared;
    Py_ssize_t top;
    size_t *order = NULL;
    if (!PyArg_ParseTuple(args, "OO!pn:size_detail", &root, &PyTuple_Type, &exclude, &shared, &top))
        return NULL;
    if (top < 0) {
        PyErr_SetString(PyExc_ValueError, "top must be >= 0");
        return NULL;
    }
    ht_walk w;
    if (ht_walk__init(&w, shared, 1) < 0)
        return NULL;
    roots = PyTuple_Pack(1, root);
    if (roots == NULL || ht_walk__start(&w, roots, exclude) < 0 || ht_walk__run(&w) < 0)
        goto cleanup;
    types = ht_walk__types_list(&w);
    if (types == NULL)
        goto cleanup;
    size_t want = (size_t)top < w.rn ? (size_t)top : w.rn;
    order = malloc((want ? want : 1) * sizeof(size_t));
    if (order == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    size_t got = ht_walk__top(&w, want, order);
    tops = PyList_New((Py_ssize_t)got);
    for (size_t k = 0; tops != NULL && k < got; k++) {
        PyObject *path = ht_walk__path(&w, order[k]);
        PyObject *row = path == NULL ? NULL
            : Py_BuildValue("(OKN)", w.r_obj[order[k]], (unsigned long long)w.r_size[order[k]], path);
        if (row == NULL)
            goto cleanup;
        PyList_SET_ITEM(tops, (Py_ssize_t)k, row);
    }
    if (tops == NULL)
        goto cleanup;
    res = Py_BuildValue("(KnOO)", (unsigned long long)w.total, (Py_ssize_t)w.count, types, tops);
cleanup:
    free(order);
    Py_XDECREF(roots);
    Py_XDECREF(types);
    Py_XDECREF(tops);
    ht_walk__free(&w);
    return res;
}

static PyMethodDef ht_size_methods[] = {
    {"size_flat", ht_size_py_flat, METH_O,
     "size_flat(obj) -> int: flat size, equal to sys.getsizeof(obj)."},
    {"size_deep", ht_size_py_deep, METH_VARARGS,
     "size_deep(roots, exclude, shared) -> (bytes, objects): the deep-size walk."},
    {"size_detail", ht_size_py_detail, METH_VARARGS,
     "size_detail(root, exclude, shared, top) -> (bytes, objects, types, largest)."},
    {NULL, NULL, 0, NULL},
};

int
ht_size_init(PyObject *m)
{
    if (ht_size_name == NULL) {
        ht_size_name = PyUnicode_InternFromString("__sizeof__");
        if (ht_size_name == NULL)
            return -1;
    }
    if (ht_size_object_sizeof == NULL) {
        ht_size_object_sizeof = PyObject_GetAttr((PyObject *)&PyBaseObject_Type, ht_size_name);
        if (ht_size_object_sizeof == NULL)
            return -1;
    }
    if (ht_size_index.keys == NULL && ht_table_init(&ht_size_index, 256, 1) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return PyModule_AddFunctions(m, ht_size_methods);
}
