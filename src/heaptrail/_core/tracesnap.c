/* tracesnap.c - the trace snapshot (ht_tsnap): lifecycle, its Python handle,
 * accessors that materialize single traces and stacks, and a builder that
 * interns plain Python lists into a snapshot (tests, stdlib-compatible
 * Snapshot(traces, limit)).
 *
 * Ownership: every array of an ht_tsnap comes from libc malloc and is freed
 * by ht_tsnap_free (NULL arrays are fine). A handle owns its snapshot; a
 * snapshot is never modified once wrapped, so handles need no lock.
 */
#include "common.h"
#include "tracesnap.h"
#include "tracesnap_build.h"
#include "aggregate.h"
#include "format_trace.h"
#include "hashtable.h"
#include "codec.h"

#include <stdlib.h>
#include <string.h>


/* ---- lifecycle ---------------------------------------------------------- */

ht_tsnap *
ht_tsnap_new(void)
{
    ht_tsnap *s = calloc(1, sizeof(ht_tsnap));
    if (s == NULL)
        PyErr_NoMemory();
    return s;
}

void
ht_tsnap_free(ht_tsnap *s)
{
    if (s == NULL)
        return;
    free(s->frames);
    free(s->stack_parent);
    free(s->stack_frame);
    free(s->stack_depth);
    free(s->trace_size);
    free(s->trace_stack);
    free(s->trace_domain);
    free(s->trace_thread);
    free(s->trace_seq);
    free(s->trace_count);
    free(s->trace_addr);
    free(s->strings.offset);
    free(s->strings.data);
    free(s);
}

const char *
ht_tsnap_string(const ht_tsnap *s, uint32_t id, size_t *len)
{
    if (id == HT_NONE || id >= s->strings.count || s->strings.offset == NULL) {
        *len = 0;
        return NULL;
    }
    uint64_t a = s->strings.offset[id], b = s->strings.offset[id + 1];
    *len = (size_t)(b - a);
    return s->strings.data + a;
}

/* ---- the handle --------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    ht_tsnap *snap;
} tsnap_handle;

static PyTypeObject *tsnap_type = NULL;

static void
tsnap_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    ht_tsnap_free(((tsnap_handle *)self)->snap);
    ((tsnap_handle *)self)->snap = NULL;
    tp->tp_free(self);
    Py_DECREF(tp);
}

PyObject *
ht_tsnap_wrap(ht_tsnap *s)
{
    if (tsnap_type == NULL) {
        ht_tsnap_free(s);
        PyErr_SetString(PyExc_RuntimeError, "heaptrail._core is not initialized");
        return NULL;
    }
    tsnap_handle *h = PyObject_New(tsnap_handle, tsnap_type);
    if (h == NULL) {
        ht_tsnap_free(s);
        return NULL;
    }
    h->snap = s;
    return (PyObject *)h;
}

ht_tsnap *
ht_tsnap_from_handle(PyObject *obj)
{
    if (tsnap_type == NULL || !PyObject_TypeCheck(obj, tsnap_type)) {
        PyErr_Format(PyExc_TypeError, "expected a trace snapshot handle, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return ((tsnap_handle *)obj)->snap;
}

static Py_ssize_t
tsnap_len(PyObject *self)
{
    return (Py_ssize_t)((tsnap_handle *)self)->snap->ntraces;
}

/* A string of the snapshot as str ("<unknown>" for a missing one); bytes
 * that are not UTF-8 (a foreign file) come back surrogate-escaped. */
PyObject *
ht_tsnap_pystring(const ht_tsnap *s, uint32_t id)
{
    size_t n;
    const char *p = ht_tsnap_string(s, id, &n);
    if (p == NULL)
        return PyUnicode_FromString("<unknown>");
    return PyUnicode_DecodeUTF8(p, (Py_ssize_t)n, "surrogateescape");
}

/* (filename, lineno, name) of frame f; name is None when unknown. */
PyObject *
ht_tsnap_pyframe(const ht_tsnap *s, uint32_t f)
{
    if (f >= s->nframes)
        return Py_BuildValue("(sIO)", "<unknown>", 0u, Py_None);
    const ht_tframe *fr = &s->frames[f];
    PyObject *file = ht_tsnap_pystring(s, fr->filename);
    PyObject *name = NULL;
    if (fr->name == HT_NONE || fr->name >= s->strings.count) {
        name = Py_NewRef(Py_None);
    } else {
        name = ht_tsnap_pystring(s, fr->name);
    }
    if (file == NULL || name == NULL) {
        Py_XDECREF(file);
        Py_XDECREF(name);
        return NULL;
    }
    PyObject *t = Py_BuildValue("(NIN)", file, fr->lineno, name);
    return t;
}

/* The frames of stack node `stack`, most recent first, as a tuple of
 * (filename, lineno, name); HT_NONE gives the one ("<unknown>", 0, None)
 * frame tracemalloc uses for a block allocated outside Python code. The walk
 * is bounded by nstacks so a malformed parent chain cannot loop. */
PyObject *
ht_tsnap_pystack(const ht_tsnap *s, uint32_t stack)
{
    if (stack == HT_NONE || stack >= s->nstacks) {
        PyObject *fr = ht_tsnap_pyframe(s, HT_NONE);
        return fr ? Py_BuildValue("(N)", fr) : NULL;
    }
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    uint32_t node = stack;
    for (uint32_t guard = 0; node != HT_NONE && node < s->nstacks && guard < s->nstacks; guard++) {
        PyObject *fr = ht_tsnap_pyframe(s, s->stack_frame[node]);
        if (fr == NULL || PyList_Append(list, fr) < 0) {
            Py_XDECREF(fr);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(fr);
        node = s->stack_parent[node];
    }
    PyObject *t = PyList_AsTuple(list);
    Py_DECREF(list);
    return t;
}

static PyObject *
tsnap_info(PyObject *self, PyObject *noargs)
{
    const ht_tsnap *s = ((tsnap_handle *)self)->snap;
    uint64_t total = 0, count = 0;
    for (uint64_t i = 0; i < s->ntraces; i++) {
        total += s->trace_size[i];
        count += s->trace_count ? s->trace_count[i] : 1;
    }
    return Py_BuildValue(
        "{s:K,s:I,s:I,s:I,s:I,s:K,s:K,s:K,s:O,s:K,s:K}",
        "ntraces", (unsigned long long)s->ntraces, "nframes", s->nframes,
        "nstacks", s->nstacks, "nstrings", s->strings.count,
        "traceback_limit", s->traceback_limit,
        "sample_interval", (unsigned long long)s->sample_interval,
        "traced_current", (unsigned long long)s->traced_current,
        "traced_peak", (unsigned long long)s->traced_peak,
        "is_peak", s->is_peak ? Py_True : Py_False,
        "total_size", (unsigned long long)total, "total_count", (unsigned long long)count);
}

/* trace(i) -> (domain, size, stack, count, thread, seq); stack is -1 for
 * "no Python frame". */
static PyObject *
tsnap_trace(PyObject *self, PyObject *arg)
{
    const ht_tsnap *s = ((tsnap_handle *)self)->snap;
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (i < 0 || (uint64_t)i >= s->ntraces) {
        PyErr_SetString(PyExc_IndexError, "trace index out of range");
        return NULL;
    }
    uint32_t st = s->trace_stack ? s->trace_stack[i] : HT_NONE;
    long long stack = (st == HT_NONE || st >= s->nstacks) ? -1 : (long long)st;
    return Py_BuildValue("(KKLKKK)",
                         (unsigned long long)(s->trace_domain ? s->trace_domain[i] : 0),
                         (unsigned long long)s->trace_size[i], stack,
                         (unsigned long long)(s->trace_count ? s->trace_count[i] : 1),
                         (unsigned long long)(s->trace_thread ? s->trace_thread[i] : 0),
                         (unsigned long long)(s->trace_seq ? s->trace_seq[i] : (uint64_t)i));
}

/* stack(id) -> ((filename, lineno, name), ...) most recent first, and the
 * depth; -1 is the unknown stack. */
static PyObject *
tsnap_stack(PyObject *self, PyObject *arg)
{
    const ht_tsnap *s = ((tsnap_handle *)self)->snap;
    long long id = PyLong_AsLongLong(arg);
    if (id == -1 && PyErr_Occurred())
        return NULL;
    if (id < -1 || id >= (long long)s->nstacks) {
        PyErr_SetString(PyExc_IndexError, "stack id out of range");
        return NULL;
    }
    return ht_tsnap_pystack(s, id < 0 ? HT_NONE : (uint32_t)id);
}

/* filenames() -> (ids, names): each distinct string id used as a frame's
 * filename, with its text; filters match the names once each. */
static PyObject *
tsnap_filenames(PyObject *self, PyObject *noargs)
{
    const ht_tsnap *s = ((tsnap_handle *)self)->snap;
    uint8_t *seen = calloc((size_t)s->strings.count + 1, 1);
    PyObject *ids = PyList_New(0), *names = PyList_New(0);
    if (seen == NULL || ids == NULL || names == NULL)
        goto fail;
    for (uint32_t f = 0; f < s->nframes; f++) {
        uint32_t id = s->frames[f].filename;
        if (id >= s->strings.count || seen[id])
            continue;
        seen[id] = 1;
        PyObject *i = PyLong_FromUnsignedLong(id);
        PyObject *n = ht_tsnap_pystring(s, id);
        int bad = i == NULL || n == NULL || PyList_Append(ids, i) < 0 || PyList_Append(names, n) < 0;
        Py_XDECREF(i);
        Py_XDECREF(n);
        if (bad)
            goto fail;
    }
    free(seen);
    return Py_BuildValue("(NN)", ids, names);
fail:
    if (seen == NULL)
        PyErr_NoMemory();
    free(seen);
    Py_XDECREF(ids);
    Py_XDECREF(names);
    return NULL;
}

static PyMethodDef tsnap_methods[] = {
    {"info", tsnap_info, METH_NOARGS, "Counts and the tracer's figures, as a dict."},
    {"trace", tsnap_trace, METH_O, "trace(i) -> (domain, size, stack, count, thread, seq)."},
    {"stack", tsnap_stack, METH_O, "stack(id) -> frames (filename, lineno, name), most recent first."},
    {"filenames", tsnap_filenames, METH_NOARGS, "(string ids, names) of the frames' filenames."},
    {NULL},
};

static PyType_Slot tsnap_slots[] = {
    {Py_tp_dealloc, tsnap_dealloc},
    {Py_tp_methods, tsnap_methods},
    {Py_sq_length, tsnap_len},
    {Py_mp_length, tsnap_len},
    {Py_tp_doc, "A trace snapshot held in C (heaptrail.tracesnap.Snapshot wraps it)."},
    {0, NULL},
};

static PyType_Spec tsnap_spec = {
    .name = "heaptrail._core.TraceSnapshotHandle",
    .basicsize = sizeof(tsnap_handle),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = tsnap_slots,
};

/* ---- builder: interning strings, frames and stacks ----------------------- */

static int
tsb_grow(void **p, uint64_t *cap, uint64_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    uint64_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    if (c > SIZE_MAX / elem / 2)
        return -1;
    void *q = realloc(*p, (size_t)c * elem);
    if (q == NULL)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* never 0: 0 is the hash table's empty key */
static uint64_t
tsb_nonzero(uint64_t h)
{
    return h ? h : 1;
}

int
ht_tsb_init(ht_tsb *b)
{
    memset(b, 0, sizeof(*b));
    b->s = ht_tsnap_new();
    if (b->s == NULL)
        return -1;
    ht_buf_init(&b->data);
    if (ht_table_init(&b->strs, 64, 1) < 0 || ht_table_init(&b->frames, 64, 1) < 0 ||
        ht_table_init(&b->stacks, 64, 1) < 0) {
        ht_tsb_discard(b);
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

void
ht_tsb_discard(ht_tsb *b)
{
    ht_tsnap_free(b->s);
    b->s = NULL;
    ht_buf_free(&b->data);
    ht_table_free(&b->strs);
    ht_table_free(&b->frames);
    ht_table_free(&b->stacks);
}

/* Interned id of the string p[0:n]; HT_NONE with MemoryError on failure.
 * Equal hashes are checked against the text; a true collision moves on to
 * the next key (the probe sequence stays deterministic). */
uint32_t
ht_tsb_string(ht_tsb *b, const char *p, size_t n)
{
    ht_tsnap *s = b->s;
    uint64_t key = tsb_nonzero(ht_hash_bytes(p, n));
    for (;;) {
        uint64_t *v = ht_table_find(&b->strs, key);
        if (v == NULL)
            break;
        size_t len;
        const char *q;
        uint32_t id = (uint32_t)*v;
        uint64_t a = s->strings.offset[id];
        len = (size_t)(s->strings.offset[id + 1] - a);
        q = (const char *)b->data.data + a;
        if (len == n && (n == 0 || memcmp(p, q, n) == 0))
            return id;
        key = tsb_nonzero(key + 1);
    }
    if (s->strings.count >= HT_NONE - 1 ||
        tsb_grow((void **)&s->strings.offset, &b->cap_str, (uint64_t)s->strings.count + 2,
                 sizeof(uint64_t)) < 0)
        goto nomem;
    uint32_t id = s->strings.count;
    s->strings.offset[id] = b->data.len;
    ht_buf_put(&b->data, p, n);
    if (b->data.error || ht_table_put(&b->strs, key, id) < 0)
        goto nomem;
    s->strings.count++;
    s->strings.offset[id + 1] = b->data.len;
    return id;
nomem:
    PyErr_NoMemory();
    return HT_NONE;
}

uint32_t
ht_tsb_frame(ht_tsb *b, uint32_t filename, uint32_t name, uint32_t lineno)
{
    ht_tsnap *s = b->s;
    uint64_t key = tsb_nonzero(ht_hash64(((uint64_t)filename << 32 | name) ^ ht_hash64(lineno + 1)));
    for (;;) {
        uint64_t *v = ht_table_find(&b->frames, key);
        if (v == NULL)
            break;
        const ht_tframe *f = &s->frames[*v];
        if (f->filename == filename && f->name == name && f->lineno == lineno)
            return (uint32_t)*v;
        key = tsb_nonzero(key + 1);
    }
    if (s->nframes >= HT_NONE - 1 ||
        tsb_grow((void **)&s->frames, &b->cap_frames, (uint64_t)s->nframes + 1, sizeof(ht_tframe)) < 0)
        goto nomem;
    uint32_t id = s->nframes;
    s->frames[id] = (ht_tframe){filename, name, lineno};
    if (ht_table_put(&b->frames, key, id) < 0)
        goto nomem;
    s->nframes++;
    return id;
nomem:
    PyErr_NoMemory();
    return HT_NONE;
}

uint32_t
ht_tsb_stack(ht_tsb *b, uint32_t parent, uint32_t frame)
{
    ht_tsnap *s = b->s;
    uint64_t key = tsb_nonzero(ht_hash64(((uint64_t)parent << 32 | frame) + 0x9e3779b97f4a7c15ULL));
    for (;;) {
        uint64_t *v = ht_table_find(&b->stacks, key);
        if (v == NULL)
            break;
        if (s->stack_parent[*v] == parent && s->stack_frame[*v] == frame)
            return (uint32_t)*v;
        key = tsb_nonzero(key + 1);
    }
    uint16_t depth = parent == HT_NONE ? 1 : s->stack_depth[parent];
    if (parent != HT_NONE) {
        if (depth == UINT16_MAX) {
            ht_error("a traceback deeper than %u frames", (unsigned)UINT16_MAX);
            return HT_NONE;
        }
        depth++;
    }
    uint64_t n = (uint64_t)s->nstacks + 1, c = b->cap_stacks;
    if (s->nstacks >= HT_NONE - 1 ||
        tsb_grow((void **)&s->stack_parent, &c, n, sizeof(uint32_t)) < 0)
        goto nomem;
    c = b->cap_stacks;
    if (tsb_grow((void **)&s->stack_frame, &c, n, sizeof(uint32_t)) < 0)
        goto nomem;
    c = b->cap_stacks;
    if (tsb_grow((void **)&s->stack_depth, &c, n, sizeof(uint16_t)) < 0)
        goto nomem;
    b->cap_stacks = c;
    uint32_t id = s->nstacks;
    s->stack_parent[id] = parent;
    s->stack_frame[id] = frame;
    s->stack_depth[id] = depth;
    if (ht_table_put(&b->stacks, key, id) < 0)
        goto nomem;
    s->nstacks++;
    return id;
nomem:
    PyErr_NoMemory();
    return HT_NONE;
}

int
ht_tsb_trace(ht_tsb *b, uint64_t size, uint32_t stack, uint32_t domain, uint64_t thread,
             uint64_t seq, uint64_t count, uint64_t addr)
{
    ht_tsnap *s = b->s;
    uint64_t n = s->ntraces + 1, c;
#define TSB_GROW(arr)                                                        \
    c = b->cap_traces;                                                       \
    if (tsb_grow((void **)&s->arr, &c, n, sizeof(*s->arr)) < 0)              \
        goto nomem;
    TSB_GROW(trace_size)
    TSB_GROW(trace_stack)
    TSB_GROW(trace_domain)
    TSB_GROW(trace_thread)
    TSB_GROW(trace_seq)
    TSB_GROW(trace_count)
    TSB_GROW(trace_addr)
#undef TSB_GROW
    b->cap_traces = c;
    uint64_t i = s->ntraces++;
    s->trace_size[i] = size;
    s->trace_stack[i] = stack;
    s->trace_domain[i] = domain;
    s->trace_thread[i] = thread;
    s->trace_seq[i] = seq;
    s->trace_count[i] = count;
    s->trace_addr[i] = addr;
    return 0;
nomem:
    PyErr_NoMemory();
    return -1;
}

/* Moves the string data into the snapshot and returns it; the builder is
 * left empty. Every array exists (possibly empty) so readers need no NULL
 * checks beyond the contract's. */
ht_tsnap *
ht_tsb_finish(ht_tsb *b)
{
    ht_tsnap *s = b->s;
    if (s->strings.offset == NULL) {
        s->strings.offset = calloc(1, sizeof(uint64_t));
        if (s->strings.offset == NULL) {
            PyErr_NoMemory();
            ht_tsb_discard(b);
            return NULL;
        }
    }
    s->strings.data = (char *)b->data.data;
    b->data.data = NULL;
    b->s = NULL;
    ht_tsb_discard(b);
    return s;
}

/* ---- _tsnap_build: Python lists in, snapshot out ------------------------ */

static int
tsb_u64(PyObject *o, uint64_t *out, const char *what)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        ht_error("%s must be a non-negative integer", what);
        return -1;
    }
    *out = v;
    return 0;
}

static uint32_t
tsb_pystring(ht_tsb *b, PyObject *str)
{
    if (!PyUnicode_Check(str)) {
        ht_error("a frame's filename and name must be str");
        return HT_NONE;
    }
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(str, &n);
    if (p == NULL)
        return HT_NONE;
    return ht_tsb_string(b, p, (size_t)n);
}

/* frames: most recent first, each (filename, lineno) or (filename, lineno,
 * name). Interns from the oldest frame down so the trie is shared. */
static uint32_t
tsb_pystack(ht_tsb *b, PyObject *frames)
{
    PyObject *seq = PySequence_Fast(frames, "a trace's frames must be a sequence");
    if (seq == NULL)
        return HT_NONE;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    uint32_t node = HT_NONE;
    for (Py_ssize_t i = n - 1; i >= 0; i--) {
        PyObject *fr = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *file, *lineno, *name = Py_None;
        if (!PyTuple_Check(fr) || !PyArg_ParseTuple(fr, "OO|O", &file, &lineno, &name)) {
            PyErr_Clear();
            ht_error("a frame must be a tuple (filename, lineno[, name])");
            goto fail;
        }
        uint64_t line;
        if (tsb_u64(lineno, &line, "lineno") < 0)
            goto fail;
        if (line > UINT32_MAX) {
            ht_error("lineno too large");
            goto fail;
        }
        uint32_t fid = tsb_pystring(b, file);
        if (fid == HT_NONE)
            goto fail;
        uint32_t nid = HT_NONE;
        if (name != Py_None && (nid = tsb_pystring(b, name)) == HT_NONE)
            goto fail;
        uint32_t f = ht_tsb_frame(b, fid, nid, (uint32_t)line);
        if (f == HT_NONE)
            goto fail;
        node = ht_tsb_stack(b, node, f);
        if (node == HT_NONE)
            goto fail;
    }
    Py_DECREF(seq);
    return node;
fail:
    Py_DECREF(seq);
    return HT_NONE;
}

/* _tsnap_build(traces, traceback_limit=1, sample_interval=0,
 *              traced_current=None, traced_peak=None, is_peak=False)
 * Each trace: (domain, size, frames[, count[, thread[, seq]]]) with frames
 * most recent first, as tracemalloc's raw traces are. An empty frames
 * sequence means "no Python frame". */
static PyObject *
tsb_build(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"traces", "traceback_limit", "sample_interval", "traced_current",
                             "traced_peak", "is_peak", NULL};
    PyObject *traces, *cur = Py_None, *peak = Py_None;
    unsigned int limit = 1;
    unsigned long long interval = 0;
    int is_peak = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|IKOOp:_tsnap_build", kwlist, &traces, &limit,
                                     &interval, &cur, &peak, &is_peak))
        return NULL;
    PyObject *seq = PySequence_Fast(traces, "traces must be a sequence");
    if (seq == NULL)
        return NULL;
    ht_tsb b;
    if (ht_tsb_init(&b) < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    uint64_t total = 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *dom, *size, *frames, *count = NULL, *thread = NULL, *sq = NULL;
        uint64_t d, sz, c = 1, th = 0, sn = (uint64_t)i;
        if (!PyTuple_Check(t) || !PyArg_ParseTuple(t, "OOO|OOO", &dom, &size, &frames, &count, &thread, &sq)) {
            PyErr_Clear();
            ht_error("a trace must be a tuple (domain, size, frames[, count, thread, seq])");
            goto fail;
        }
        if (tsb_u64(dom, &d, "domain") < 0 || tsb_u64(size, &sz, "size") < 0 ||
            (count && count != Py_None && tsb_u64(count, &c, "count") < 0) ||
            (thread && tsb_u64(thread, &th, "thread") < 0) || (sq && tsb_u64(sq, &sn, "seq") < 0))
            goto fail;
        if (d > UINT32_MAX) {
            ht_error("domain too large");
            goto fail;
        }
        uint32_t stack = tsb_pystack(&b, frames);
        if (stack == HT_NONE && PyErr_Occurred())
            goto fail;
        if (ht_tsb_trace(&b, sz, stack, (uint32_t)d, th, sn, c, 0) < 0)
            goto fail;
        total += sz;
    }
    Py_DECREF(seq);
    ht_tsnap *s = ht_tsb_finish(&b);
    if (s == NULL)
        return NULL;
    s->traceback_limit = limit;
    s->sample_interval = interval;
    s->is_peak = is_peak;
    s->traced_current = total;
    s->traced_peak = total;
    if ((cur != Py_None && tsb_u64(cur, &s->traced_current, "traced_current") < 0) ||
        (peak != Py_None && tsb_u64(peak, &s->traced_peak, "traced_peak") < 0)) {
        ht_tsnap_free(s);
        return NULL;
    }
    return ht_tsnap_wrap(s);
fail:
    Py_DECREF(seq);
    ht_tsb_discard(&b);
    return NULL;
}

static PyMethodDef tsnap_functions[] = {
    {"_tsnap_build", (PyCFunction)(void (*)(void))tsb_build, METH_VARARGS | METH_KEYWORDS,
     "_tsnap_build(traces, traceback_limit=1, ...) -> handle: a trace snapshot from raw traces."},
    {NULL},
};

int
ht_tracesnap_init(PyObject *m)
{
    if (tsnap_type == NULL) {
        tsnap_type = (PyTypeObject *)PyType_FromSpec(&tsnap_spec);
        if (tsnap_type == NULL)
            return -1;
    }
    Py_INCREF(tsnap_type);
    if (PyModule_AddObject(m, "TraceSnapshotHandle", (PyObject *)tsnap_type) < 0) {
        Py_DECREF(tsnap_type);
        return -1;
    }
    if (PyModule_AddFunctions(m, tsnap_functions) < 0)
        return -1;
    if (ht_agg_init(m) < 0 || ht_ftrace_init(m) < 0)
        return -1;
    return 0;
}
