/* aggregate.c - statistics over a trace snapshot: traces grouped by line,
 * file or traceback (tracemalloc's Snapshot.statistics), the difference
 * between two snapshots (compare_to), and filter_traces.
 *
 * Keys are compared by content, never by id, so two snapshots with separate
 * string tables (one live, one loaded from a file) compare correctly. A key
 * is a traceback of (filename, lineno) frames; tracemalloc's rules:
 *   lineno     the most recent frame                     (filename, lineno)
 *   filename   the most recent frame's file              (filename, 0)
 *   traceback  every frame
 * A trace without a Python frame has the one frame ("<unknown>", 0).
 * Cumulative mode adds a trace to the key of every frame of its traceback,
 * once per frame as tracemalloc does (a recursive line counts once per
 * level). Work is linear in traces + stack nodes: per-stack and per-frame
 * results are memoized, cumulative sums are pushed up the stack trie once.
 * Sorting matches tracemalloc: by (size, count, traceback) descending.
 */
#include "common.h"
#include "aggregate.h"
#include "tracesnap_build.h"
#include "hashtable.h"

#include <stdlib.h>
#include <string.h>

enum { AGG_LINE, AGG_FILE, AGG_STACK };

static const char agg_unknown[] = "<unknown>";

/* ---- keys ----------------------------------------------------------------- */

typedef struct {
    const char *file;
    size_t flen;
    uint32_t lineno;
} agg_fview;

static agg_fview
agg_frame_view(const ht_tsnap *s, uint32_t f, int kind)
{
    agg_fview v = {agg_unknown, sizeof(agg_unknown) - 1, 0};
    if (f == HT_NONE || f >= s->nframes)
        return v;
    size_t n;
    const char *p = ht_tsnap_string(s, s->frames[f].filename, &n);
    if (p != NULL) {
        v.file = p;
        v.flen = n;
    }
    v.lineno = kind == AGG_FILE ? 0 : s->frames[f].lineno;
    return v;
}

static int
agg_fview_cmp(agg_fview a, agg_fview b)
{
    size_t n = a.flen < b.flen ? a.flen : b.flen;
    int c = n ? memcmp(a.file, b.file, n) : 0;
    if (c != 0)
        return c < 0 ? -1 : 1;
    if (a.flen != b.flen)
        return a.flen < b.flen ? -1 : 1;
    if (a.lineno != b.lineno)
        return a.lineno < b.lineno ? -1 : 1;
    return 0;
}

static uint32_t
agg_parent(const ht_tsnap *s, uint32_t node)
{
    return (node == HT_NONE || node >= s->nstacks) ? HT_NONE : s->stack_parent[node];
}

/* The frame of a node; HT_NONE (no Python frame) stands for <unknown>. */
static uint32_t
agg_node_frame(const ht_tsnap *s, uint32_t node)
{
    return (node == HT_NONE || node >= s->nstacks) ? HT_NONE : s->stack_frame[node];
}

/* Frames from node to the root, bounded so a malformed chain cannot loop. */
static uint32_t
agg_depth(const ht_tsnap *s, uint32_t node)
{
    if (node == HT_NONE || node >= s->nstacks)
        return 1;
    uint32_t d = 0;
    while (node != HT_NONE && node < s->nstacks && d <= s->nstacks) {
        d++;
        node = s->stack_parent[node];
    }
    return d;
}

/* Compares two tracebacks oldest frame first (Python's tuple order of
 * tracemalloc's Traceback): the first difference from the root decides,
 * else the shorter is smaller. Walks both chains up in step, no memory. */
static int
agg_stack_cmp(const ht_tsnap *sa, uint32_t a, const ht_tsnap *sb, uint32_t b)
{
    uint32_t da = agg_depth(sa, a), db = agg_depth(sb, b);
    uint32_t m = da < db ? da : db;
    for (uint32_t i = da; i > m; i--)
        a = agg_parent(sa, a);
    for (uint32_t i = db; i > m; i--)
        b = agg_parent(sb, b);
    int result = 0;
    for (uint32_t i = 0; i < m; i++) {
        uint32_t fa = agg_node_frame(sa, a), fb = agg_node_frame(sb, b);
        if (!(sa == sb && fa == fb)) {
            int c = agg_fview_cmp(agg_frame_view(sa, fa, AGG_LINE), agg_frame_view(sb, fb, AGG_LINE));
            if (c != 0)
                result = c; /* keep the one nearest the root */
        }
        a = agg_parent(sa, a);
        b = agg_parent(sb, b);
    }
    if (result != 0)
        return result;
    return da == db ? 0 : (da < db ? -1 : 1);
}

static int
agg_key_cmp(int kind, const ht_tsnap *sa, uint32_t a, const ht_tsnap *sb, uint32_t b)
{
    if (kind == AGG_STACK)
        return agg_stack_cmp(sa, a, sb, b);
    return agg_fview_cmp(agg_frame_view(sa, a, kind), agg_frame_view(sb, b, kind));
}

/* ---- per-snapshot grouping -------------------------------------------------- */

typedef struct {
    const ht_tsnap *s;
    int kind;
    uint64_t *fhash;    /* [nframes + 1] content hash of frame (last: unknown) */
    uint64_t *shash;    /* [nstacks + 1] content hash of stack (last: unknown), AGG_STACK only */
    uint32_t *order;    /* [nstacks] nodes sorted by depth, parents first */
    /* groups */
    ht_table index;     /* key hash -> group */
    uint32_t ngroups;
    uint32_t *rep;      /* [ngroups] representative frame or stack node */
    uint64_t *ghash;
    uint64_t *size;
    uint64_t *count;
} agg_groups;

static void
agg_groups_free(agg_groups *g)
{
    free(g->fhash);
    free(g->shash);
    free(g->order);
    free(g->rep);
    free(g->ghash);
    free(g->size);
    free(g->count);
    ht_table_free(&g->index);
    memset(g, 0, sizeof(*g));
}

static uint64_t
agg_mix(uint64_t h, uint64_t v)
{
    return ht_hash64(h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2)));
}

static uint64_t
agg_fview_hash(agg_fview v)
{
    return agg_mix(ht_hash_bytes(v.file, v.flen), v.lineno);
}

/* Nodes ordered by stack_depth (a counting sort), so every parent comes
 * before its children. -1 (with Error) when depths contradict parents. */
static int
agg_depth_order(agg_groups *g)
{
    const ht_tsnap *s = g->s;
    uint32_t maxd = 0;
    for (uint32_t n = 0; n < s->nstacks; n++) {
        uint32_t p = s->stack_parent[n];
        uint32_t want = (p == HT_NONE) ? 1 : (p < s->nstacks ? (uint32_t)s->stack_depth[p] + 1 : 0);
        if (s->stack_depth[n] != want) {
            ht_error("trace snapshot: stack node %u has an inconsistent parent or depth", n);
            return -1;
        }
        if (s->stack_depth[n] > maxd)
            maxd = s->stack_depth[n];
    }
    uint64_t *start = calloc((size_t)maxd + 2, sizeof(uint64_t));
    g->order = malloc(((size_t)s->nstacks + 1) * sizeof(uint32_t));
    if (start == NULL || g->order == NULL) {
        free(start);
        PyErr_NoMemory();
        return -1;
    }
    for (uint32_t n = 0; n < s->nstacks; n++)
        start[s->stack_depth[n] + 1]++;
    for (uint32_t d = 1; d <= maxd + 1; d++)
        start[d] += start[d - 1];
    for (uint32_t n = 0; n < s->nstacks; n++)
        g->order[start[s->stack_depth[n]]++] = n;
    free(start);
    return 0;
}

static int
agg_hashes(agg_groups *g)
{
    const ht_tsnap *s = g->s;
    int fkind = g->kind == AGG_FILE ? AGG_FILE : AGG_LINE;
    g->fhash = malloc(((size_t)s->nframes + 1) * sizeof(uint64_t));
    if (g->fhash == NULL)
        goto nomem;
    for (uint32_t f = 0; f <= s->nframes; f++)
        g->fhash[f] = agg_fview_hash(agg_frame_view(s, f == s->nframes ? HT_NONE : f, fkind));
    if (agg_depth_order(g) < 0)
        return -1;
    if (g->kind != AGG_STACK)
        return 0;
    g->shash = malloc(((size_t)s->nstacks + 1) * sizeof(uint64_t));
    if (g->shash == NULL)
        goto nomem;
    for (uint32_t i = 0; i < s->nstacks; i++) {
        uint32_t n = g->order[i], p = s->stack_parent[n], f = s->stack_frame[n];
        uint64_t fh = g->fhash[f < s->nframes ? f : s->nframes];
        g->shash[n] = agg_mix(p == HT_NONE ? 0x51ed270b27b2ULL : g->shash[p], fh);
    }
    g->shash[s->nstacks] = agg_mix(0x51ed270b27b2ULL, g->fhash[s->nframes]);
    return 0;
nomem:
    PyErr_NoMemory();
    return -1;
}

static uint64_t
agg_key_hash(const agg_groups *g, uint32_t rep)
{
    const ht_tsnap *s = g->s;
    if (g->kind == AGG_STACK)
        return g->shash[(rep == HT_NONE || rep >= s->nstacks) ? s->nstacks : rep];
    return g->fhash[(rep == HT_NONE || rep >= s->nframes) ? s->nframes : rep];
}

static uint64_t
agg_nonzero(uint64_t h)
{
    return h ? h : 1;
}

/* The group of key `rep` in g, looked up in `in` (which may belong to another
 * snapshot): its index, or UINT32_MAX when absent. */
static uint32_t
agg_find(const agg_groups *in, const agg_groups *g, uint32_t rep, uint64_t h)
{
    uint64_t key = agg_nonzero(h);
    for (;;) {
        uint64_t *v = ht_table_find(&in->index, key);
        if (v == NULL)
            return UINT32_MAX;
        if (agg_key_cmp(g->kind, in->s, in->rep[*v], g->s, rep) == 0)
            return (uint32_t)*v;
        key = agg_nonzero(key + 1);
    }
}

static uint32_t
agg_group_of(agg_groups *g, uint32_t rep, uint64_t *cap)
{
    uint64_t h = agg_key_hash(g, rep);
    uint32_t gi = agg_find(g, g, rep, h);
    if (gi != UINT32_MAX)
        return gi;
    uint64_t key = agg_nonzero(h);
    while (ht_table_contains(&g->index, key))
        key = agg_nonzero(key + 1);
    if (g->ngroups == *cap) {
        uint64_t c = *cap ? *cap * 2 : 64;
        uint32_t *r = realloc(g->rep, c * sizeof(uint32_t));
        if (r) g->rep = r;
        uint64_t *a = realloc(g->ghash, c * sizeof(uint64_t));
        if (a) g->ghash = a;
        uint64_t *b = realloc(g->size, c * sizeof(uint64_t));
        if (b) g->size = b;
        uint64_t *d = realloc(g->count, c * sizeof(uint64_t));
        if (d) g->count = d;
        if (!r || !a || !b || !d)
            goto nomem;
        *cap = c;
    }
    gi = g->ngroups;
    if (ht_table_put(&g->index, key, gi) < 0)
        goto nomem;
    g->rep[gi] = rep;
    g->ghash[gi] = h;
    g->size[gi] = 0;
    g->count[gi] = 0;
    g->ngroups++;
    return gi;
nomem:
    PyErr_NoMemory();
    return UINT32_MAX;
}

static uint64_t
agg_trace_count(const ht_tsnap *s, uint64_t i)
{
    return s->trace_count ? s->trace_count[i] : 1;
}

static uint32_t
agg_trace_stack(const ht_tsnap *s, uint64_t i)
{
    uint32_t st = s->trace_stack ? s->trace_stack[i] : HT_NONE;
    return st < s->nstacks ? st : HT_NONE;
}

/* Non-cumulative: each trace goes to the group of its stack (traceback key)
 * or of its most recent frame; the group of each stack is memoized. */
static int
agg_group_plain(agg_groups *g, uint64_t *cap)
{
    const ht_tsnap *s = g->s;
    uint32_t *memo = malloc(((size_t)s->nstacks + 1) * sizeof(uint32_t));
    if (memo == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(memo, 0xff, ((size_t)s->nstacks + 1) * sizeof(uint32_t));
    for (uint64_t i = 0; i < s->ntraces; i++) {
        uint32_t st = agg_trace_stack(s, i);
        uint32_t slot = st == HT_NONE ? s->nstacks : st;
        if (memo[slot] == UINT32_MAX) {
            uint32_t rep = g->kind == AGG_STACK ? st : agg_node_frame(s, st);
            memo[slot] = agg_group_of(g, rep, cap);
            if (memo[slot] == UINT32_MAX) {
                free(memo);
                return -1;
            }
        }
        g->size[memo[slot]] += s->trace_size[i];
        g->count[memo[slot]] += agg_trace_count(s, i);
    }
    free(memo);
    return 0;
}

/* Cumulative: sum the traces per stack node, push each node's subtree total
 * to its parent (children before parents), then every node adds its subtree
 * total to the group of its frame, which counts a trace once per frame. */
static int
agg_group_cumulative(agg_groups *g, uint64_t *cap)
{
    const ht_tsnap *s = g->s;
    size_t n = (size_t)s->nstacks + 1;
    uint64_t *sz = calloc(n, sizeof(uint64_t)), *ct = calloc(n, sizeof(uint64_t));
    if (sz == NULL || ct == NULL) {
        free(sz);
        free(ct);
        PyErr_NoMemory();
        return -1;
    }
    for (uint64_t i = 0; i < s->ntraces; i++) {
        uint32_t st = agg_trace_stack(s, i);
        uint32_t slot = st == HT_NONE ? s->nstacks : st;
        sz[slot] += s->trace_size[i];
        ct[slot] += agg_trace_count(s, i);
    }
    int rc = 0;
    for (uint32_t k = s->nstacks; k-- > 0;) {
        uint32_t node = g->order[k], p = s->stack_parent[node];
        if (p != HT_NONE) {
            sz[p] += sz[node];
            ct[p] += ct[node];
        }
    }
    for (uint32_t node = 0; node <= s->nstacks && rc == 0; node++) {
        if (sz[node] == 0 && ct[node] == 0)
            continue;
        uint32_t f = node == s->nstacks ? HT_NONE : s->stack_frame[node];
        uint32_t gi = agg_group_of(g, f, cap);
        if (gi == UINT32_MAX) {
            rc = -1;
            break;
        }
        g->size[gi] += sz[node];
        g->count[gi] += ct[node];
    }
    free(sz);
    free(ct);
    return rc;
}

static int
agg_group(agg_groups *g, const ht_tsnap *s, int kind, int cumulative)
{
    memset(g, 0, sizeof(*g));
    g->s = s;
    g->kind = kind;
    if (ht_table_init(&g->index, 64, 1) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    if (agg_hashes(g) < 0)
        goto fail;
    uint64_t cap = 0;
    if ((cumulative ? agg_group_cumulative(g, &cap) : agg_group_plain(g, &cap)) < 0)
        goto fail;
    return 0;
fail:
    agg_groups_free(g);
    return -1;
}

/* ---- sorting ----------------------------------------------------------------- */

typedef int (*agg_cmp_fn)(const void *ctx, uint32_t a, uint32_t b);

/* A stable merge sort of indices with a context (qsort has none portably). */
static void
agg_msort(uint32_t *v, uint32_t *tmp, size_t n, agg_cmp_fn cmp, const void *ctx)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    agg_msort(v, tmp, h, cmp, ctx);
    agg_msort(v + h, tmp, n - h, cmp, ctx);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = cmp(ctx, v[j], v[i]) < 0 ? v[j++] : v[i++];
    while (i < h)
        tmp[k++] = v[i++];
    while (j < n)
        tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof(uint32_t));
}

static int
agg_u64_cmp(uint64_t a, uint64_t b)
{
    return a == b ? 0 : (a < b ? -1 : 1);
}

/* descending (size, count, traceback) */
static int
agg_stat_cmp(const void *ctx, uint32_t a, uint32_t b)
{
    const agg_groups *g = ctx;
    int c = agg_u64_cmp(g->size[b], g->size[a]);
    if (c == 0)
        c = agg_u64_cmp(g->count[b], g->count[a]);
    if (c == 0)
        c = agg_key_cmp(g->kind, g->s, g->rep[b], g->s, g->rep[a]);
    return c;
}

static uint32_t *
agg_sorted(uint32_t n, agg_cmp_fn cmp, const void *ctx)
{
    uint32_t *v = malloc(((size_t)n + 1) * sizeof(uint32_t));
    uint32_t *tmp = malloc(((size_t)n + 1) * sizeof(uint32_t));
    if (v == NULL || tmp == NULL) {
        free(v);
        free(tmp);
        PyErr_NoMemory();
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++)
        v[i] = i;
    agg_msort(v, tmp, n, cmp, ctx);
    free(tmp);
    return v;
}

/* ---- Python rows ------------------------------------------------------------- */

static PyObject *
agg_key_frames(const agg_groups *g, uint32_t rep)
{
    const ht_tsnap *s = g->s;
    if (g->kind == AGG_STACK)
        return ht_tsnap_pystack(s, rep);
    PyObject *fr;
    if (g->kind == AGG_FILE) {
        fr = Py_BuildValue("(NIO)", ht_tsnap_pystring(s, rep < s->nframes ? s->frames[rep].filename : HT_NONE),
                           0u, Py_None);
    } else {
        fr = ht_tsnap_pyframe(s, rep);
    }
    if (fr == NULL)
        return NULL;
    return Py_BuildValue("(N)", fr);
}

static int
agg_parse_kind(const char *key, int cumulative)
{
    int kind;
    if (strcmp(key, "lineno") == 0)
        kind = AGG_LINE;
    else if (strcmp(key, "filename") == 0)
        kind = AGG_FILE;
    else if (strcmp(key, "traceback") == 0)
        kind = AGG_STACK;
    else {
        PyErr_Format(PyExc_ValueError, "unknown key_type: '%s'", key);
        return -1;
    }
    if (cumulative && kind == AGG_STACK) {
        PyErr_Format(PyExc_ValueError, "cumulative mode cannot by used with key type '%s'", key);
        return -1;
    }
    return kind;
}

/* _tsnap_statistics(handle, key_type, cumulative=False)
 *   -> [(frames, size, count), ...] sorted as tracemalloc sorts Statistic;
 * frames most recent first, each (filename, lineno, name). */
static PyObject *
agg_statistics(PyObject *self, PyObject *args)
{
    PyObject *h;
    const char *key;
    int cumulative = 0;
    if (!PyArg_ParseTuple(args, "Os|p:_tsnap_statistics", &h, &key, &cumulative))
        return NULL;
    const ht_tsnap *s = ht_tsnap_from_handle(h);
    int kind = s ? agg_parse_kind(key, cumulative) : -1;
    if (kind < 0)
        return NULL;
    agg_groups g;
    if (agg_group(&g, s, kind, cumulative) < 0)
        return NULL;
    PyObject *out = NULL;
    uint32_t *order = agg_sorted(g.ngroups, agg_stat_cmp, &g);
    if (order == NULL || (out = PyList_New(g.ngroups)) == NULL)
        goto done;
    for (uint32_t i = 0; i < g.ngroups; i++) {
        uint32_t gi = order[i];
        PyObject *fr = agg_key_frames(&g, g.rep[gi]);
        PyObject *row = fr ? Py_BuildValue("(NKK)", fr, (unsigned long long)g.size[gi],
                                           (unsigned long long)g.count[gi])
                           : NULL;
        if (row == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, row);
    }
done:
    free(order);
    agg_groups_free(&g);
    return out;
}

/* ---- compare_to ---------------------------------------------------------------- */

typedef struct {
    const agg_groups *new_, *old;
    uint32_t *new_group;   /* [rows] or UINT32_MAX */
    uint32_t *old_group;   /* [rows] or UINT32_MAX */
} agg_diff;

static void
agg_diff_row(const agg_diff *d, uint32_t r, int64_t *size, int64_t *sdiff, int64_t *count,
             int64_t *cdiff)
{
    uint32_t n = d->new_group[r], o = d->old_group[r];
    int64_t ns = n == UINT32_MAX ? 0 : (int64_t)d->new_->size[n];
    int64_t nc = n == UINT32_MAX ? 0 : (int64_t)d->new_->count[n];
    int64_t os = o == UINT32_MAX ? 0 : (int64_t)d->old->size[o];
    int64_t oc = o == UINT32_MAX ? 0 : (int64_t)d->old->count[o];
    *size = ns;
    *count = nc;
    *sdiff = ns - os;
    *cdiff = nc - oc;
}

static int
agg_i64_cmp(int64_t a, int64_t b)
{
    return a == b ? 0 : (a < b ? -1 : 1);
}

static int64_t
agg_abs(int64_t v)
{
    return v < 0 ? -v : v;
}

/* descending (|size_diff|, size, |count_diff|, count, traceback) */
static int
agg_diff_cmp(const void *ctx, uint32_t a, uint32_t b)
{
    const agg_diff *d = ctx;
    int64_t sa, sda, ca, cda, sb, sdb, cb, cdb;
    agg_diff_row(d, a, &sa, &sda, &ca, &cda);
    agg_diff_row(d, b, &sb, &sdb, &cb, &cdb);
    int c = agg_i64_cmp(agg_abs(sdb), agg_abs(sda));
    if (c == 0) c = agg_i64_cmp(sb, sa);
    if (c == 0) c = agg_i64_cmp(agg_abs(cdb), agg_abs(cda));
    if (c == 0) c = agg_i64_cmp(cb, ca);
    if (c == 0) {
        const agg_groups *ga = d->new_group[a] != UINT32_MAX ? d->new_ : d->old;
        const agg_groups *gb = d->new_group[b] != UINT32_MAX ? d->new_ : d->old;
        uint32_t ra = ga->rep[d->new_group[a] != UINT32_MAX ? d->new_group[a] : d->old_group[a]];
        uint32_t rb = gb->rep[d->new_group[b] != UINT32_MAX ? d->new_group[b] : d->old_group[b]];
        c = agg_key_cmp(ga->kind, gb->s, rb, ga->s, ra);
    }
    return c;
}

/* _tsnap_compare(new, old, key_type, cumulative=False)
 *   -> [(frames, size, size_diff, count, count_diff), ...] sorted as
 * tracemalloc sorts StatisticDiff. */
static PyObject *
agg_compare(PyObject *self, PyObject *args)
{
    PyObject *hn, *ho;
    const char *key;
    int cumulative = 0;
    if (!PyArg_ParseTuple(args, "OOs|p:_tsnap_compare", &hn, &ho, &key, &cumulative))
        return NULL;
    const ht_tsnap *sn = ht_tsnap_from_handle(hn);
    const ht_tsnap *so = sn ? ht_tsnap_from_handle(ho) : NULL;
    int kind = so ? agg_parse_kind(key, cumulative) : -1;
    if (kind < 0)
        return NULL;
    agg_groups gn, go;
    if (agg_group(&gn, sn, kind, cumulative) < 0)
        return NULL;
    if (agg_group(&go, so, kind, cumulative) < 0) {
        agg_groups_free(&gn);
        return NULL;
    }
    PyObject *out = NULL;
    uint32_t *order = NULL;
    size_t cap = (size_t)gn.ngroups + go.ngroups + 1;
    agg_diff d = {&gn, &go, malloc(cap * sizeof(uint32_t)), malloc(cap * sizeof(uint32_t))};
    uint8_t *matched = calloc((size_t)go.ngroups + 1, 1);
    if (d.new_group == NULL || d.old_group == NULL || matched == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    uint32_t rows = 0;
    for (uint32_t i = 0; i < gn.ngroups; i++) {
        uint32_t o = agg_find(&go, &gn, gn.rep[i], gn.ghash[i]);
        if (o != UINT32_MAX)
            matched[o] = 1;
        d.new_group[rows] = i;
        d.old_group[rows++] = o;
    }
    for (uint32_t o = 0; o < go.ngroups; o++) {
        if (matched[o])
            continue;
        d.new_group[rows] = UINT32_MAX;
        d.old_group[rows++] = o;
    }
    order = agg_sorted(rows, agg_diff_cmp, &d);
    if (order == NULL || (out = PyList_New(rows)) == NULL)
        goto done;
    for (uint32_t i = 0; i < rows; i++) {
        uint32_t r = order[i];
        int64_t size, sdiff, count, cdiff;
        agg_diff_row(&d, r, &size, &sdiff, &count, &cdiff);
        PyObject *fr = d.new_group[r] != UINT32_MAX ? agg_key_frames(&gn, gn.rep[d.new_group[r]])
                                                    : agg_key_frames(&go, go.rep[d.old_group[r]]);
        PyObject *row = fr ? Py_BuildValue("(NLLLL)", fr, (long long)size, (long long)sdiff,
                                           (long long)count, (long long)cdiff)
                           : NULL;
        if (row == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, row);
    }
done:
    free(order);
    free(matched);
    free(d.new_group);
    free(d.old_group);
    agg_groups_free(&gn);
    agg_groups_free(&go);
    return out;
}

/* ---- filter_traces ------------------------------------------------------------ */

typedef struct {
    int inclusive;
    int is_domain;          /* DomainFilter */
    int has_domain;
    uint32_t domain;
    int has_lineno;
    uint32_t lineno;
    int all_frames;
    int unknown_match;      /* does the pattern match "<unknown>"? */
    const uint8_t *bits;    /* filename string id -> pattern matches */
    Py_ssize_t nbits_bytes;
    uint8_t *frame_match;   /* [nframes + 1] (last: unknown frame) */
    uint8_t *any_match;     /* [nstacks + 1] some frame of the stack matches (all_frames) */
} agg_filter;

static int
agg_frame_match(const ht_tsnap *s, const agg_filter *f, uint32_t fr)
{
    uint32_t lineno = 0;
    int m;
    if (fr >= s->nframes) {
        m = f->unknown_match;
    } else {
        uint32_t id = s->frames[fr].filename;
        lineno = s->frames[fr].lineno;
        if (id >= s->strings.count)
            m = f->unknown_match;
        else
            m = (Py_ssize_t)(id / 8) < f->nbits_bytes && (f->bits[id / 8] >> (id % 8) & 1);
    }
    return m && (!f->has_lineno || lineno == f->lineno);
}

static int
agg_filter_prepare(const ht_tsnap *s, agg_filter *f, const uint32_t *order)
{
    if (f->is_domain)
        return 0;
    f->frame_match = malloc((size_t)s->nframes + 1);
    if (f->frame_match == NULL)
        goto nomem;
    for (uint32_t fr = 0; fr <= s->nframes; fr++)
        f->frame_match[fr] = (uint8_t)agg_frame_match(s, f, fr == s->nframes ? HT_NONE : fr);
    if (!f->all_frames)
        return 0;
    f->any_match = malloc((size_t)s->nstacks + 1);
    if (f->any_match == NULL)
        goto nomem;
    for (uint32_t i = 0; i < s->nstacks; i++) {
        uint32_t n = order[i], p = s->stack_parent[n], fr = s->stack_frame[n];
        uint8_t m = f->frame_match[fr < s->nframes ? fr : s->nframes];
        f->any_match[n] = m || (p != HT_NONE && f->any_match[p]);
    }
    f->any_match[s->nstacks] = f->frame_match[s->nframes];
    return 0;
nomem:
    PyErr_NoMemory();
    return -1;
}

/* tracemalloc's Filter._match / DomainFilter._match for trace i */
static int
agg_filter_match(const ht_tsnap *s, const agg_filter *f, uint64_t i)
{
    uint32_t dom = s->trace_domain ? s->trace_domain[i] : 0;
    int deq = f->has_domain == 1 && dom == f->domain;
    if (f->is_domain)
        return deq == f->inclusive;
    uint32_t st = agg_trace_stack(s, i);
    int m;
    if (f->all_frames) {
        m = f->any_match[st == HT_NONE ? s->nstacks : st];
    } else {
        uint32_t fr = agg_node_frame(s, st);
        m = f->frame_match[fr < s->nframes ? fr : s->nframes];
    }
    int res = m == f->inclusive;
    if (f->has_domain)
        res = f->inclusive ? (res && deq) : (res || !deq);
    return res;
}

static int
agg_parse_filter(PyObject *t, agg_filter *f)
{
    PyObject *dom, *lineno;
    const char *bits;
    Py_ssize_t nb;
    memset(f, 0, sizeof(*f));
    if (!PyArg_ParseTuple(t, "ppOOpy#p:filter", &f->inclusive, &f->is_domain, &dom, &lineno,
                          &f->all_frames, &bits, &nb, &f->unknown_match))
        return -1;
    f->bits = (const uint8_t *)bits;
    f->nbits_bytes = nb;
    if (dom != Py_None) {
        long long v = PyLong_AsLongLong(dom);
        if (v == -1 && PyErr_Occurred())
            return -1;
        f->has_domain = 1;
        f->domain = (uint32_t)v;
        if (v < 0 || v > (long long)UINT32_MAX)
            f->has_domain = 2; /* no trace has such a domain */
    }
    if (lineno != Py_None) {
        long v = PyLong_AsLong(lineno);
        if (v == -1 && PyErr_Occurred())
            return -1;
        f->has_lineno = 1;
        f->lineno = (v < 0 || v > (long)UINT32_MAX) ? UINT32_MAX : (uint32_t)v;
    }
    return 0;
}

static void *
agg_dup(const void *p, size_t n)
{
    void *q = malloc(n ? n : 1);
    if (q != NULL && n)
        memcpy(q, p, n);
    return q;
}

/* A copy of s with only the traces where keep[i] is set. */
static ht_tsnap *
agg_copy_kept(const ht_tsnap *s, const uint8_t *keep, uint64_t nkeep)
{
    ht_tsnap *t = ht_tsnap_new();
    if (t == NULL)
        return NULL;
    *t = *s;
    t->frames = NULL; t->stack_parent = NULL; t->stack_frame = NULL; t->stack_depth = NULL;
    t->trace_size = NULL; t->trace_stack = NULL; t->trace_domain = NULL; t->trace_thread = NULL;
    t->trace_seq = NULL; t->trace_count = NULL; t->trace_addr = NULL;
    t->strings.offset = NULL; t->strings.data = NULL;
    size_t ns = s->nstacks, nk = (size_t)nkeep;
    uint64_t slen = s->strings.offset ? s->strings.offset[s->strings.count] : 0;
    t->frames = agg_dup(s->frames, s->nframes * sizeof(ht_tframe));
    t->stack_parent = agg_dup(s->stack_parent, ns * sizeof(uint32_t));
    t->stack_frame = agg_dup(s->stack_frame, ns * sizeof(uint32_t));
    t->stack_depth = agg_dup(s->stack_depth, ns * sizeof(uint16_t));
    t->strings.offset = s->strings.offset ? agg_dup(s->strings.offset, ((size_t)s->strings.count + 1) * 8)
                                          : calloc(1, 8);
    t->strings.data = agg_dup(s->strings.data, (size_t)slen);
    t->trace_size = malloc(nk * 8 + 8);
    t->trace_stack = malloc(nk * 4 + 4);
    t->trace_domain = malloc(nk * 4 + 4);
    t->trace_thread = malloc(nk * 8 + 8);
    t->trace_seq = malloc(nk * 8 + 8);
    t->trace_count = malloc(nk * 8 + 8);
    t->trace_addr = malloc(nk * 8 + 8);
    if (!t->frames || !t->stack_parent || !t->stack_frame || !t->stack_depth || !t->strings.offset ||
        !t->strings.data || !t->trace_size || !t->trace_stack || !t->trace_domain ||
        !t->trace_thread || !t->trace_seq || !t->trace_count || !t->trace_addr) {
        ht_tsnap_free(t);
        PyErr_NoMemory();
        return NULL;
    }
    if (s->strings.offset == NULL)
        t->strings.count = 0;
    uint64_t k = 0;
    for (uint64_t i = 0; i < s->ntraces; i++) {
        if (!keep[i])
            continue;
        t->trace_size[k] = s->trace_size[i];
        t->trace_stack[k] = agg_trace_stack(s, i);
        t->trace_domain[k] = s->trace_domain ? s->trace_domain[i] : 0;
        t->trace_thread[k] = s->trace_thread ? s->trace_thread[i] : 0;
        t->trace_seq[k] = s->trace_seq ? s->trace_seq[i] : i;
        t->trace_count[k] = agg_trace_count(s, i);
        t->trace_addr[k] = s->trace_addr ? s->trace_addr[i] : 0;
        k++;
    }
    t->ntraces = k;
    return t;
}

/* _tsnap_filter(handle, filters) -> handle. Each filter is a tuple
 * (inclusive, is_domain_filter, domain|None, lineno|None, all_frames,
 *  bitmap: bytes, unknown_match) where bit i of bitmap says whether the
 * filename with string id i matches the pattern (fnmatch is evaluated in
 * Python once per distinct filename). tracemalloc's rule: a trace is kept
 * when some inclusive filter matches (or there is none) and every exclusive
 * filter matches. */
static PyObject *
agg_filter_traces(PyObject *self, PyObject *args)
{
    PyObject *h, *list;
    if (!PyArg_ParseTuple(args, "OO:_tsnap_filter", &h, &list))
        return NULL;
    const ht_tsnap *s = ht_tsnap_from_handle(h);
    if (s == NULL)
        return NULL;
    PyObject *seq = PySequence_Fast(list, "filters must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t nf = PySequence_Fast_GET_SIZE(seq);
    agg_filter *fs = calloc((size_t)nf + 1, sizeof(agg_filter));
    uint8_t *keep = malloc((size_t)s->ntraces + 1);
    agg_groups g = {0};
    PyObject *out = NULL;
    if (fs == NULL || keep == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    g.s = s;
    if (agg_depth_order(&g) < 0)
        goto done;
    int ninc = 0;
    for (Py_ssize_t k = 0; k < nf; k++) {
        if (agg_parse_filter(PySequence_Fast_GET_ITEM(seq, k), &fs[k]) < 0 ||
            agg_filter_prepare(s, &fs[k], g.order) < 0)
            goto done;
        ninc += fs[k].inclusive;
    }
    uint64_t nkeep = 0;
    for (uint64_t i = 0; i < s->ntraces; i++) {
        int inc = ninc == 0, exc = 1;
        for (Py_ssize_t k = 0; k < nf; k++) {
            if (fs[k].inclusive) {
                if (!inc && agg_filter_match(s, &fs[k], i))
                    inc = 1;
            } else if (exc && !agg_filter_match(s, &fs[k], i)) {
                exc = 0;
            }
        }
        keep[i] = (uint8_t)(inc && exc);
        nkeep += keep[i];
    }
    ht_tsnap *t = agg_copy_kept(s, keep, nkeep);
    if (t != NULL)
        out = ht_tsnap_wrap(t);
done:
    if (fs != NULL)
        for (Py_ssize_t k = 0; k < nf; k++) {
            free(fs[k].frame_match);
            free(fs[k].any_match);
        }
    free(fs);
    free(keep);
    agg_groups_free(&g);
    Py_DECREF(seq);
    return out;
}

static PyMethodDef agg_functions[] = {
    {"_tsnap_statistics", agg_statistics, METH_VARARGS,
     "_tsnap_statistics(handle, key_type, cumulative=False) -> [(frames, size, count)] sorted."},
    {"_tsnap_compare", agg_compare, METH_VARARGS,
     "_tsnap_compare(new, old, key_type, cumulative=False) -> [(frames, size, size_diff, count, count_diff)]."},
    {"_tsnap_filter", agg_filter_traces, METH_VARARGS,
     "_tsnap_filter(handle, filters) -> handle with the traces the filters keep."},
    {NULL},
};

int
ht_agg_init(PyObject *m)
{
    return PyModule_AddFunctions(m, agg_functions);
}
