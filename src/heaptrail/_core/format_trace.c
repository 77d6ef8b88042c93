/* format_trace.c - the trace snapshot file: Snapshot.dump() writes it,
 * Snapshot.load() reads it back into an ht_tsnap. The format is specified
 * in format_trace.h. */
#include "common.h"
#include "format_trace.h"
#include "tracesnap_build.h"
#include "codec.h"
#include "hashtable.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FT_MAGIC "HTTRSNP\n"
#define FT_VERSION 1u

enum { FT_END = 0, FT_META = 1, FT_STRINGS = 2, FT_FRAMES = 3, FT_STACKS = 4, FT_TRACES = 5 };

/* ---- writing ------------------------------------------------------------ */

/* New ids for the stack nodes in depth order (parents first), as the file
 * requires. -1 with Error when the snapshot's depths contradict parents. */
static int
ft_stack_order(const ht_tsnap *s, uint32_t **order_out, uint32_t **newid_out)
{
    uint32_t n = s->nstacks, maxd = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t p = s->stack_parent[i];
        uint32_t want = p == HT_NONE ? 1 : (p < n ? (uint32_t)s->stack_depth[p] + 1 : 0);
        if (s->stack_depth[i] != want || s->stack_frame[i] >= s->nframes) {
            ht_error("trace snapshot: stack node %u is inconsistent", i);
            return -1;
        }
        if (s->stack_depth[i] > maxd)
            maxd = s->stack_depth[i];
    }
    uint64_t *start = calloc((size_t)maxd + 2, sizeof(uint64_t));
    uint32_t *order = malloc(((size_t)n + 1) * sizeof(uint32_t));
    uint32_t *newid = malloc(((size_t)n + 1) * sizeof(uint32_t));
    if (start == NULL || order == NULL || newid == NULL) {
        free(start);
        free(order);
        free(newid);
        PyErr_NoMemory();
        return -1;
    }
    for (uint32_t i = 0; i < n; i++)
        start[s->stack_depth[i] + 1]++;
    for (uint32_t d = 1; d <= maxd + 1; d++)
        start[d] += start[d - 1];
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = (uint32_t)start[s->stack_depth[i]]++;
        order[k] = i;
        newid[i] = k;
    }
    free(start);
    *order_out = order;
    *newid_out = newid;
    return 0;
}

static void
ft_section(ht_buf *out, uint8_t tag, ht_buf *payload)
{
    ht_buf_u8(out, tag);
    ht_buf_blob(out, payload->data, payload->len);
    if (payload->error)
        out->error = 1;
    payload->len = 0;
}

static uint64_t
ft_id1(uint32_t id, uint32_t limit)
{
    return (id == HT_NONE || id >= limit) ? 0 : (uint64_t)id + 1;
}

/* Encodes s into out; 0, or -1 with an exception set. */
static int
ft_encode(const ht_tsnap *s, ht_buf *out)
{
    uint32_t *order = NULL, *newid = NULL;
    if (ft_stack_order(s, &order, &newid) < 0)
        return -1;
    ht_buf p;
    ht_buf_init(&p);
    ht_buf_put(out, FT_MAGIC, 8);
    ht_buf_u32(out, FT_VERSION);

    ht_buf_varint(&p, s->traceback_limit);
    ht_buf_varint(&p, s->sample_interval);
    ht_buf_varint(&p, s->traced_current);
    ht_buf_varint(&p, s->traced_peak);
    ht_buf_varint(&p, s->is_peak ? 1 : 0);
    ft_section(out, FT_META, &p);

    ht_buf_varint(&p, s->strings.count);
    for (uint32_t i = 0; i < s->strings.count; i++) {
        size_t n;
        const char *str = ht_tsnap_string(s, i, &n);
        ht_buf_blob(&p, str, n);
    }
    ft_section(out, FT_STRINGS, &p);

    ht_buf_varint(&p, s->nframes);
    for (uint32_t i = 0; i < s->nframes; i++) {
        ht_buf_varint(&p, ft_id1(s->frames[i].filename, s->strings.count));
        ht_buf_varint(&p, ft_id1(s->frames[i].name, s->strings.count));
        ht_buf_varint(&p, s->frames[i].lineno);
    }
    ft_section(out, FT_FRAMES, &p);

    ht_buf_varint(&p, s->nstacks);
    for (uint32_t k = 0; k < s->nstacks; k++) {
        uint32_t node = order[k], parent = s->stack_parent[node];
        ht_buf_varint(&p, parent == HT_NONE ? 0 : (uint64_t)newid[parent] + 1);
        ht_buf_varint(&p, s->stack_frame[node]);
    }
    ft_section(out, FT_STACKS, &p);

    ht_buf_varint(&p, s->ntraces);
    uint64_t prev_thread = 0, prev_seq = 0;
    for (uint64_t i = 0; i < s->ntraces; i++) {
        uint32_t st = s->trace_stack ? s->trace_stack[i] : HT_NONE;
        uint64_t thread = s->trace_thread ? s->trace_thread[i] : 0;
        uint64_t seq = s->trace_seq ? s->trace_seq[i] : i;
        ht_buf_varint(&p, s->trace_size[i]);
        ht_buf_varint(&p, (st == HT_NONE || st >= s->nstacks) ? 0 : (uint64_t)newid[st] + 1);
        ht_buf_varint(&p, s->trace_domain ? s->trace_domain[i] : 0);
        ht_buf_svarint(&p, (int64_t)(thread - prev_thread));
        ht_buf_svarint(&p, (int64_t)(seq - prev_seq));
        ht_buf_varint(&p, s->trace_count ? s->trace_count[i] : 1);
        prev_thread = thread;
        prev_seq = seq;
    }
    ft_section(out, FT_TRACES, &p);

    uint64_t sum = out->error ? 0 : ht_fnv1a(out->data, out->len);
    ht_buf_u8(out, FT_END);
    ht_buf_varint(out, 8);
    ht_buf_u64(out, sum);
    ht_buf_free(&p);
    free(order);
    free(newid);
    if (out->error) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Encodes snapshot handle h into out (initialized here; freed on failure).
 * 0 or -1 with an exception set. */
static int
ft_encode_handle(PyObject *h, ht_buf *out)
{
    ht_buf_init(out);
    const ht_tsnap *s = ht_tsnap_from_handle(h);
    if (s == NULL)
        return -1;
    if (ft_encode(s, out) < 0) {
        ht_buf_free(out);
        return -1;
    }
    return 0;
}

/* _tsnap_dump(handle, path) */
static PyObject *
ft_dump(PyObject *self, PyObject *args)
{
    PyObject *h;
    const char *path;
    if (!PyArg_ParseTuple(args, "Oy:_tsnap_dump", &h, &path))
        return NULL;
    ht_buf out;
    if (ft_encode_handle(h, &out) < 0)
        return NULL;
    int rc = ht_buf_write_file(&out, path);
    ht_buf_free(&out);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- reading -------------------------------------------------------------- */

typedef struct {
    ht_tsnap *s;
    const char *why;     /* static: what is wrong, for the error message */
} ft_reader;

/* Reads a varint that must be <= max; sets the reader's error otherwise. */
static uint64_t
ft_rd_max(ht_rd *r, uint64_t max, const char *why)
{
    uint64_t v = ht_rd_varint(r);
    if (!r->error && v > max)
        ht_rd_fail(r, why);
    return r->error ? 0 : v;
}

static void *
ft_alloc(ht_rd *r, uint64_t n, size_t elem)
{
    if (r->error)
        return NULL;
    void *p = malloc((size_t)n * elem + 1);
    if (p == NULL)
        ht_rd_fail(r, "out of memory");
    return p;
}

static void
ft_read_meta(ht_rd *r, ht_tsnap *s)
{
    s->traceback_limit = (uint32_t)ft_rd_max(r, UINT32_MAX, "traceback limit out of range");
    s->sample_interval = ht_rd_varint(r);
    s->traced_current = ht_rd_varint(r);
    s->traced_peak = ht_rd_varint(r);
    s->is_peak = (int)ft_rd_max(r, 1, "bad peak flag");
}

static void
ft_read_strings(ht_rd *r, ht_tsnap *s)
{
    uint64_t n = ht_rd_count(r, 1);
    if (!r->error && n >= HT_NONE)
        ht_rd_fail(r, "too many strings");
    uint64_t *off = ft_alloc(r, n + 1, sizeof(uint64_t));
    char *data = ft_alloc(r, ht_rd_left(r), 1);   /* the strings fit in what is left */
    if (r->error) {
        free(off);
        free(data);
        return;
    }
    uint64_t len = 0;
    off[0] = 0;
    for (uint64_t i = 0; i < n && !r->error; i++) {
        size_t sl;
        const uint8_t *p = ht_rd_blob(r, &sl);
        if (p == NULL)
            break;
        memcpy(data + len, p, sl);
        len += sl;
        off[i + 1] = len;
    }
    s->strings.offset = off;
    s->strings.data = data;
    s->strings.count = r->error ? 0 : (uint32_t)n;
}

static void
ft_read_frames(ht_rd *r, ht_tsnap *s)
{
    uint64_t n = ht_rd_count(r, 3);
    if (!r->error && n >= HT_NONE)
        ht_rd_fail(r, "too many frames");
    s->frames = ft_alloc(r, n, sizeof(ht_tframe));
    for (uint64_t i = 0; i < n && !r->error; i++) {
        uint64_t f = ft_rd_max(r, s->strings.count, "frame names a missing string");
        uint64_t nm = ft_rd_max(r, s->strings.count, "frame names a missing string");
        uint64_t line = ft_rd_max(r, UINT32_MAX, "line number out of range");
        s->frames[i] = (ht_tframe){f ? (uint32_t)(f - 1) : HT_NONE, nm ? (uint32_t)(nm - 1) : HT_NONE,
                                   (uint32_t)line};
    }
    if (!r->error)
        s->nframes = (uint32_t)n;
}

static void
ft_read_stacks(ht_rd *r, ht_tsnap *s)
{
    uint64_t n = ht_rd_count(r, 2);
    if (!r->error && n >= HT_NONE)
        ht_rd_fail(r, "too many stack nodes");
    s->stack_parent = ft_alloc(r, n, sizeof(uint32_t));
    s->stack_frame = ft_alloc(r, n, sizeof(uint32_t));
    s->stack_depth = ft_alloc(r, n, sizeof(uint16_t));
    for (uint64_t i = 0; i < n && !r->error; i++) {
        uint64_t p = ft_rd_max(r, i, "stack node's parent comes after it");
        uint64_t f = ft_rd_max(r, s->nframes ? s->nframes - 1 : 0, "stack node names a missing frame");
        if (!r->error && s->nframes == 0)
            ht_rd_fail(r, "stack node names a missing frame");
        if (r->error)
            break;
        uint32_t depth = p ? (uint32_t)s->stack_depth[p - 1] + 1 : 1;
        if (depth > UINT16_MAX) {
            ht_rd_fail(r, "traceback too deep");
            break;
        }
        s->stack_parent[i] = p ? (uint32_t)(p - 1) : HT_NONE;
        s->stack_frame[i] = (uint32_t)f;
        s->stack_depth[i] = (uint16_t)depth;
    }
    if (!r->error)
        s->nstacks = (uint32_t)n;
}

static void
ft_read_traces(ht_rd *r, ht_tsnap *s)
{
    uint64_t n = ht_rd_count(r, 6);
    s->trace_size = ft_alloc(r, n, sizeof(uint64_t));
    s->trace_stack = ft_alloc(r, n, sizeof(uint32_t));
    s->trace_domain = ft_alloc(r, n, sizeof(uint32_t));
    s->trace_thread = ft_alloc(r, n, sizeof(uint64_t));
    s->trace_seq = ft_alloc(r, n, sizeof(uint64_t));
    s->trace_count = ft_alloc(r, n, sizeof(uint64_t));
    s->trace_addr = ft_alloc(r, n, sizeof(uint64_t));
    uint64_t thread = 0, seq = 0;
    for (uint64_t i = 0; i < n && !r->error; i++) {
        s->trace_size[i] = ht_rd_varint(r);
        uint64_t st = ft_rd_max(r, s->nstacks, "trace names a missing stack");
        s->trace_stack[i] = st ? (uint32_t)(st - 1) : HT_NONE;
        s->trace_domain[i] = (uint32_t)ft_rd_max(r, UINT32_MAX, "domain out of range");
        thread += (uint64_t)ht_rd_svarint(r);
        seq += (uint64_t)ht_rd_svarint(r);
        s->trace_thread[i] = thread;
        s->trace_seq[i] = seq;
        s->trace_count[i] = ht_rd_varint(r);
        s->trace_addr[i] = 0;
    }
    if (!r->error)
        s->ntraces = n;
}

/* Decodes a whole file image; the snapshot, or NULL with *why set. */
static ht_tsnap *
ft_decode(const uint8_t *data, size_t len, const char **why)
{
    ht_rd r;
    ht_rd_init(&r, data, len);
    const uint8_t *magic = ht_rd_bytes(&r, 8);
    if (magic == NULL || memcmp(magic, FT_MAGIC, 8) != 0) {
        *why = "not a heaptrail trace snapshot (bad magic)";
        return NULL;
    }
    uint32_t version = ht_rd_u32(&r);
    if (r.error) {
        *why = "truncated header";
        return NULL;
    }
    if (version != FT_VERSION) {
        *why = "unsupported trace snapshot version";
        return NULL;
    }
    /* the END section is the last 10 bytes: tag 0, length 8, checksum */
    if (len < 12 + 10 || data[len - 10] != FT_END || data[len - 9] != 8) {
        *why = "truncated (no end marker)";
        return NULL;
    }
    ht_rd sum;
    ht_rd_init(&sum, data + len - 8, 8);
    if (ht_rd_u64(&sum) != ht_fnv1a(data, len - 10)) {
        *why = "checksum mismatch";
        return NULL;
    }
    ht_tsnap *s = calloc(1, sizeof(ht_tsnap));
    if (s == NULL) {
        *why = "out of memory";
        return NULL;
    }
    int next = FT_META;   /* the known section expected next */
    for (;;) {
        uint8_t tag = ht_rd_u8(&r);
        size_t plen;
        const uint8_t *payload = ht_rd_blob(&r, &plen);
        if (r.error)
            break;
        if (tag == FT_END) {
            if (plen != 8 || next != FT_TRACES + 1)
                ht_rd_fail(&r, next != FT_TRACES + 1 ? "a section is missing" : "bad end marker");
            else if (ht_rd_left(&r) != 0)
                ht_rd_fail(&r, "data after the end marker");
            break;
        }
        if (tag > FT_TRACES)
            continue;  /* a section from a later minor version: skip it */
        if (tag != next) {
            ht_rd_fail(&r, "sections out of order");
            break;
        }
        ht_rd sec;
        ht_rd_init(&sec, payload, plen);
        switch (tag) {
        case FT_META: ft_read_meta(&sec, s); break;
        case FT_STRINGS: ft_read_strings(&sec, s); break;
        case FT_FRAMES: ft_read_frames(&sec, s); break;
        case FT_STACKS: ft_read_stacks(&sec, s); break;
        default: ft_read_traces(&sec, s); break;
        }
        if (!sec.error && ht_rd_left(&sec) != 0)
            ht_rd_fail(&sec, "section longer than its content");
        if (sec.error) {
            ht_rd_fail(&r, sec.error);
            break;
        }
        next++;
    }
    if (r.error) {
        *why = r.error;
        ht_tsnap_free(s);
        return NULL;
    }
    return s;
}

/* _tsnap_load(path) -> handle */
static PyObject *
ft_load(PyObject *self, PyObject *args)
{
    const char *path;
    if (!PyArg_ParseTuple(args, "y:_tsnap_load", &path))
        return NULL;
    size_t len = 0;
    uint8_t *data = ht_rd_file_magic(path, FT_MAGIC, 8, &len);
    if (data == NULL)
        return NULL;
    const char *why = NULL;
    ht_tsnap *s;
    Py_BEGIN_ALLOW_THREADS
    s = ft_decode(data, len, &why);
    Py_END_ALLOW_THREADS
    free(data);
    if (s == NULL)
        return ht_error("%s: damaged trace snapshot file: %s", path, why);
    return ht_tsnap_wrap(s);
}

/* _tsnap_loads(bytes) -> handle: the same reader over a bytes object. */
static PyObject *
ft_loads(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const char *why = NULL;
    ht_tsnap *s = ft_decode(view.buf, (size_t)view.len, &why);
    PyBuffer_Release(&view);
    if (s == NULL)
        return ht_error("damaged trace snapshot data: %s", why);
    return ht_tsnap_wrap(s);
}

/* _tsnap_dumps(handle) -> bytes */
static PyObject *
ft_dumps(PyObject *self, PyObject *h)
{
    ht_buf out;
    if (ft_encode_handle(h, &out) < 0)
        return NULL;
    PyObject *b = PyBytes_FromStringAndSize((const char *)out.data, (Py_ssize_t)out.len);
    ht_buf_free(&out);
    return b;
}

static PyMethodDef ft_functions[] = {
    {"_tsnap_dump", ft_dump, METH_VARARGS, "_tsnap_dump(handle, path: bytes): write a trace snapshot file."},
    {"_tsnap_load", ft_load, METH_VARARGS, "_tsnap_load(path: bytes) -> handle."},
    {"_tsnap_dumps", ft_dumps, METH_O, "_tsnap_dumps(handle) -> bytes of the file format."},
    {"_tsnap_loads", ft_loads, METH_O, "_tsnap_loads(bytes) -> handle."},
    {NULL},
};

int
ht_ftrace_init(PyObject *m)
{
    return PyModule_AddFunctions(m, ft_functions);
}
