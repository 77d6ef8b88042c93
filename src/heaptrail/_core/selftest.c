/* selftest.c - C-level tests of the shared pieces (hash table, varint codec,
 * graph SCC), driven from tests/test_core.py. Underscore names: not public API. */
#include "common.h"
#include "codec.h"
#include "graph.h"
#include "hashtable.h"
#include "bigmem.h"
#include "prefault.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

/* _hashtable_check(n, with_values) -> int: inserts n pseudo-random keys,
 * removes every third, re-inserts some, and compares each step with a plain
 * array. Returns the number of disagreements found (0 when correct). */
static PyObject *
st_hashtable_check(PyObject *self, PyObject *args)
{
    Py_ssize_t n;
    int with_values;
    if (!PyArg_ParseTuple(args, "np:_hashtable_check", &n, &with_values))
        return NULL;
    if (n <= 0)
        return PyLong_FromLong(0);
    uint64_t *keys = malloc((size_t)n * sizeof(uint64_t));
    unsigned char *present = calloc((size_t)n, 1);
    ht_table t;
    if (keys == NULL || present == NULL || ht_table_init(&t, 4, with_values) < 0) {
        free(keys);
        free(present);
        return PyErr_NoMemory();
    }
    long bad = 0;
    /* distinct keys (an odd multiplier is a bijection mod 2^24), aligned like
     * addresses and clustered, to stress probing */
    if (n > (1 << 24))
        n = 1 << 24;
    for (Py_ssize_t i = 0; i < n; i++)
        keys[i] = ((((uint64_t)i * 0x9e3779b1ULL) & 0xffffff) << 4) | 0x10;
    for (Py_ssize_t i = 0; i < n; i++) {
        int r = with_values ? ht_table_put(&t, keys[i], (uint64_t)i) : ht_table_add(&t, keys[i]);
        if (r < 0) { bad = -1; goto done; }
        present[i] = 1;
    }
    for (Py_ssize_t i = 0; i < n; i += 3) {
        uint64_t old = 0;
        if (ht_table_remove(&t, keys[i], &old) != 1 || (with_values && old != (uint64_t)i))
            bad++;
        present[i] = 0;
        if (ht_table_remove(&t, keys[i], &old) != 0)
            bad++;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int in = ht_table_contains(&t, keys[i]);
        if (in != present[i])
            bad++;
        if (in && with_values) {
            uint64_t v = *ht_table_find(&t, keys[i]);
            if (v != (uint64_t)i)
                bad++;
        }
    }
    size_t count = 0;
    for (size_t i = 0; i <= t.mask; i++)
        count += t.keys[i] != 0;
    if (count != t.count)
        bad++;
done:
    ht_table_free(&t);
    free(keys);
    free(present);
    if (bad < 0)
        return PyErr_NoMemory();
    return PyLong_FromLong(bad);
}

/* _varint_encode(list of int, signed) -> bytes */
static PyObject *
st_varint_encode(PyObject *self, PyObject *args)
{
    PyObject *seq;
    int is_signed;
    if (!PyArg_ParseTuple(args, "Op:_varint_encode", &seq, &is_signed))
        return NULL;
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of ints");
    if (fast == NULL)
        return NULL;
    ht_buf b;
    ht_buf_init(&b);
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast); i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        if (is_signed) {
            long long v = PyLong_AsLongLong(item);
            if (v == -1 && PyErr_Occurred())
                goto fail;
            ht_buf_svarint(&b, v);
        } else {
            unsigned long long v = PyLong_AsUnsignedLongLong(item);
            if (v == (unsigned long long)-1 && PyErr_Occurred())
                goto fail;
            ht_buf_varint(&b, v);
        }
    }
    Py_DECREF(fast);
    if (b.error) {
        ht_buf_free(&b);
        return PyErr_NoMemory();
    }
    PyObject *out = PyBytes_FromStringAndSize((const char *)b.data, (Py_ssize_t)b.len);
    ht_buf_free(&b);
    return out;
fail:
    Py_DECREF(fast);
    ht_buf_free(&b);
    return NULL;
}

/* _varint_decode(bytes, signed) -> list of int; heaptrail.Error on bad input */
static PyObject *
st_varint_decode(PyObject *self, PyObject *args)
{
    Py_buffer view;
    int is_signed;
    if (!PyArg_ParseTuple(args, "y*p:_varint_decode", &view, &is_signed))
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        goto done;
    ht_rd r;
    ht_rd_init(&r, view.buf, (size_t)view.len);
    while (ht_rd_left(&r) > 0) {
        PyObject *v;
        if (is_signed) {
            int64_t x = ht_rd_svarint(&r);
            if (r.error)
                break;
            v = PyLong_FromLongLong(x);
        } else {
            uint64_t x = ht_rd_varint(&r);
            if (r.error)
                break;
            v = PyLong_FromUnsignedLongLong(x);
        }
        if (v == NULL || PyList_Append(out, v) < 0) {
            Py_XDECREF(v);
            Py_CLEAR(out);
            goto done;
        }
        Py_DECREF(v);
    }
    if (r.error) {
        Py_CLEAR(out);
        ht_error("bad varint data: %s", r.error);
    }
done:
    PyBuffer_Release(&view);
    return out;
}

/* _graph_scc(n, [(src, dst), ...]) -> (comp, order): ht_graph_scc over
 * the CSR of those edges (kept in the order given per source). */
static PyObject *
st_graph_scc(PyObject *self, PyObject *args)
{
    Py_ssize_t n;
    PyObject *edges, *out = NULL;
    if (!PyArg_ParseTuple(args, "nO!:_graph_scc", &n, &PyList_Type, &edges))
        return NULL;
    Py_ssize_t m = PyList_GET_SIZE(edges);
    if (n < 0 || n >= (Py_ssize_t)UINT32_MAX || m >= (Py_ssize_t)UINT32_MAX)
        return ht_error("_graph_scc: bad sizes");
    uint32_t *start = calloc((size_t)n + 2, sizeof(uint32_t));
    uint32_t *src = malloc(((size_t)m + 1) * sizeof(uint32_t));
    uint32_t *dst = malloc(((size_t)m + 1) * sizeof(uint32_t));
    uint32_t *comp = malloc(((size_t)n + 1) * sizeof(uint32_t));
    uint32_t *order = malloc(((size_t)n + 1) * sizeof(uint32_t));
    uint32_t *at = malloc(((size_t)n + 1) * sizeof(uint32_t));
    uint32_t ncomp = 0;
    if (!start || !src || !dst || !comp || !order || !at) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t e = 0; e < m; e++) {
        unsigned int a, b;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(edges, e), "II", &a, &b))
            goto done;
        if (a >= (size_t)n || b >= (size_t)n) {
            ht_error("_graph_scc: edge out of range");
            goto done;
        }
        src[e] = a;
        start[a + 1]++;
        dst[e] = b;
    }
    for (Py_ssize_t v = 0; v < n; v++)
        start[v + 1] += start[v];
    uint32_t *csr = malloc(((size_t)m + 1) * sizeof(uint32_t));
    if (csr == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(at, start, (size_t)n * sizeof(uint32_t));
    for (Py_ssize_t e = 0; e < m; e++)
        csr[at[src[e]]++] = dst[e];
    int rc = ht_graph_scc((uint32_t)n, start, csr, comp, order, &ncomp);
    free(csr);
    if (rc < 0)
        goto done;
    PyObject *c = PyList_New(n), *o = PyList_New(n);
    for (Py_ssize_t v = 0; c && o && v < n; v++) {
        PyList_SET_ITEM(c, v, PyLong_FromUnsignedLong(comp[v]));
        PyList_SET_ITEM(o, v, PyLong_FromUnsignedLong(order[v]));
    }
    if (c && o && !PyErr_Occurred())
        out = Py_BuildValue("(OOI)", c, o, (unsigned int)ncomp);
    Py_XDECREF(c);
    Py_XDECREF(o);
done:
    free(start);
    free(src);
    free(dst);
    free(comp);
    free(order);
    free(at);
    return out;
}

#if defined(__linux__)
/* Resident pages of [p, p + n), p page-aligned: -1 on failure. */
static long
st_resident(char *p, size_t n, size_t page)
{
    size_t pages = (n + page - 1) / page;
    unsigned char *vec = malloc(pages ? pages : 1);
    if (vec == NULL || mincore(p, n, vec) != 0) {
        free(vec);
        return -1;
    }
    long r = 0;
    for (size_t k = 0; k < pages; k++)
        r += vec[k] & 1;
    free(vec);
    return r;
}

/* Writes bytes [from, to) of p as the test's pattern. */
static void
st_pf_fill(unsigned char *p, size_t from, size_t to)
{
    for (size_t k = from; k < to; k++)
        p[k] = (unsigned char)(k * 7 + 1);
}
#endif

/* _prefault_check(mib) -> dict or None: a block reserved for mib MiB,
 * written front to back (as a walk writes) while a prefault.h helper
 * watches it, then moved past its reservation under the helper's lock and
 * written on. Returns the pages the helper faulted in ahead of the writer
 * (resident past the written part, once it had time), the pages resident
 * far past that (it should leave those alone), and the written bytes that
 * read back wrong (the helper must change none). None where the helper
 * cannot run (no mappings, as under ASan; not Linux). */
static PyObject *
st_prefault_check(PyObject *self, PyObject *args)
{
    Py_ssize_t mib;
    if (!PyArg_ParseTuple(args, "n:_prefault_check", &mib))
        return NULL;
#if defined(__linux__)
    if (mib < 8 || mib > 1024) {
        PyErr_SetString(PyExc_ValueError, "_prefault_check: mib must be 8..1024");
        return NULL;
    }
    size_t room = (size_t)mib << 20, page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *p = ht_big_reserve(room);
    if (p == NULL)
        Py_RETURN_NONE;
    {
        /* 4 KiB pages even where transparent huge pages are "always": one
         * touch would bring a whole huge page in, past the window */
        char *m;
        size_t ml = ht_big_mapping(p, &m);
#ifdef MADV_NOHUGEPAGE
        (void)madvise(m, ml, MADV_NOHUGEPAGE);
#endif
        (void)ml;
    }
    ht_pf *pf = ht_pf_start();
    if (pf == NULL) {
        ht_big_free(p);
        Py_RETURN_NONE;
    }
    PyObject *out = NULL;
    long ahead = -1, beyond = -1, bad = 0;
    size_t quarter = room / 4;
    /* a quarter written, in steps, as the helper is told */
    unsigned char *q = ht_big_realloc(p, room / 2, 0);
    if (q == NULL)
        goto done;
    p = q;
    ht_pf_lock(pf);
    ht_pf_set(pf, 0, p, 0, 1);
    ht_pf_unlock(pf);
    for (size_t at = 0; at < quarter; at += (size_t)64 << 10) {
        size_t to = at + ((size_t)64 << 10) < quarter ? at + ((size_t)64 << 10) : quarter;
        st_pf_fill(p, at, to);
        ht_pf_count(pf, 0, to);
    }
    /* the helper keeps an eighth plus 1 MiB ahead: give it time */
    char *map;
    size_t maplen = ht_big_mapping(p, &map);
    char *mark = (char *)p + quarter;
    char *mark_page = (char *)((uintptr_t)mark & ~(uintptr_t)(page - 1));
    size_t window = quarter / 8 + ((size_t)1 << 20) - ((size_t)1 << 16);
    for (int tries = 0; tries < 500; tries++) {
        ahead = st_resident(mark_page, window, page);
        if (ahead < 0 || (size_t)ahead >= window / page)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    /* past the window: an eighth plus 1 MiB, and a page for rounding */
    {
        size_t from = ((size_t)(mark - map) + quarter / 8 + ((size_t)1 << 20)) / page * page + page;
        beyond = from < maplen ? st_resident(map + from, maplen - from, page) : 0;
    }
    /* outgrow the reservation: the block moves, under the lock */
    ht_pf_lock(pf);
    q = ht_big_realloc(p, room * 2, 0);
    if (q != NULL) {
        p = q;
        ht_pf_set(pf, 0, p, 0, 1);
    }
    ht_pf_unlock(pf);
    if (q == NULL)
        goto done;
    for (size_t at = quarter; at < room * 2; at += (size_t)64 << 10) {
        size_t to = at + ((size_t)64 << 10);
        st_pf_fill(p, at, to);
        ht_pf_count(pf, 0, to);
    }
    ht_pf_stop(pf);
    pf = NULL;
    for (size_t k = 0; k < room * 2; k++)
        if (p[k] != (unsigned char)(k * 7 + 1))
            bad++;
    out = Py_BuildValue("{s:l,s:l,s:l,s:n,s:n}", "ahead", ahead, "beyond", beyond, "bad", bad,
                        "window_pages", (Py_ssize_t)(window / page), "page", (Py_ssize_t)page);
done:
    ht_pf_stop(pf);
    ht_big_free(p);
    if (out == NULL && !PyErr_Occurred())
        PyErr_NoMemory();
    return out;
#else
    Py_RETURN_NONE;
#endif
}

static PyMethodDef st_methods[] = {
    {"_prefault_check", st_prefault_check, METH_VARARGS, NULL},
    {"_graph_scc", st_graph_scc, METH_VARARGS, NULL},
    {"_hashtable_check", st_hashtable_check, METH_VARARGS, NULL},
    {"_varint_encode", st_varint_encode, METH_VARARGS, NULL},
    {"_varint_decode", st_varint_decode, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

int
ht_selftest_init(PyObject *m)
{
    return PyModule_AddFunctions(m, st_methods);
}
