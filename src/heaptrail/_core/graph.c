/* graph.c - graph algorithms over a heap snapshot: reverse edges, shortest
 * paths to roots, dominators and retained sizes, strongly connected
 * components, Graphviz text. See graph.h for the virtual root and the cache.
 *
 * Every walk here is iterative with explicit arrays (a 10-million-long chain
 * must not overflow the C stack), and every index array is uint32 (HT_NONE =
 * none), allocated with libc malloc so it is never traced. All functions run
 * with the GIL held: the cache is filled once and then only read.
 */
#include "graph.h"
#include "codec.h"
#include "hashtable.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================
 * The cache hanging off ht_heap.graph_cache
 * ====================================================================== */

enum {
    HT_GRAPH_COMP_FINALIZER = 1u << 0,     /* a member's type has __del__/tp_finalize */
    HT_GRAPH_COMP_UNCOLLECTABLE = 1u << 1, /* a member has a legacy tp_del */
    HT_GRAPH_COMP_GARBAGE = 1u << 2,       /* every member is HT_OBJ_UNREACHABLE */
};

typedef struct ht_graph_cache {
    int checked;           /* the CSR arrays were validated once */
    /* Referrers in CSR form: the referrers of i are rev_src[rev_start[i] ..
     * rev_start[i+1]-1], in forward-edge order, each with the edge's label. */
    uint32_t *rev_start;   /* [n + 2] (the last slot is scratch for the build) */
    uint32_t *rev_src;     /* [m] */
    uint32_t *rev_label;   /* [m] */
    /* Dominator tree (node n is the virtual root). */
    uint32_t *idom;        /* [n] immediate dominator, HT_NONE = virtual root */
    uint64_t *retained;    /* [n] flat sizes of everything dominated, self included */
    uint32_t *dom_start;   /* [n + 2] children of node v: dom_child[dom_start[v]..] */
    uint32_t *dom_child;   /* [n] */
    /* Strongly connected components that form cycles, biggest first. */
    int have_comps;
    uint32_t ncomp;
    uint32_t *comp_start;  /* [ncomp + 1] */
    uint32_t *comp_member; /* [comp_start[ncomp]] */
    uint64_t *comp_total;  /* [ncomp] */
    uint8_t *comp_flags;   /* [ncomp] HT_GRAPH_COMP_* */
} ht_graph_cache;

static void
ht_graph_cache_release(void *p)
{
    ht_graph_cache *c = p;
    if (c == NULL)
        return;
    free(c->rev_start);
    free(c->rev_src);
    free(c->rev_label);
    free(c->idom);
    free(c->retained);
    free(c->dom_start);
    free(c->dom_child);
    free(c->comp_start);
    free(c->comp_member);
    free(c->comp_total);
    free(c->comp_flags);
    free(c);
}

void
ht_graph_cache_free(ht_heap *h)
{
    if (h == NULL)
        return;
    ht_graph_cache_release(h->graph_cache);
    h->graph_cache = NULL;
}

/* malloc of count items of `size` bytes, with overflow check; sets
 * MemoryError on failure. count 0 still returns a valid pointer. */
static void *
ht_graph_alloc(size_t count, size_t size)
{
    if (count == 0)
        count = 1;
    if (count > SIZE_MAX / size) {
        PyErr_NoMemory();
        return NULL;
    }
    void *p = malloc(count * size);
    if (p == NULL)
        PyErr_NoMemory();
    return p;
}

/* Validates the CSR arrays once (a snapshot read from a damaged file must
 * give an error here, never an out-of-bounds read later). */
static int
ht_graph_check(ht_heap *h, ht_graph_cache *c)
{
    if (c->checked)
        return 0;
    if (h->n >= HT_NONE)
        return ht_error("snapshot has too many objects (%u)", h->n), -1;
    if (h->n > 0 && (h->edge_start == NULL || h->size == NULL || h->flags == NULL))
        return ht_error("snapshot has no edge table"), -1;
    if (h->n == 0) {
        c->checked = 1;
        return 0;
    }
    if (h->edge_start[0] != 0 || h->edge_start[h->n] != h->m)
        return ht_error("corrupt snapshot: edge table does not cover the %u edges", h->m), -1;
    for (uint32_t i = 0; i < h->n; i++)
        if (h->edge_start[i + 1] < h->edge_start[i])
            return ht_error("corrupt snapshot: edges of object %u out of order", i), -1;
    for (uint32_t e = 0; e < h->m; e++)
        if (h->edge_dst[e] >= h->n)
            return ht_error("corrupt snapshot: edge %u points outside the snapshot", e), -1;
    c->checked = 1;
    return 0;
}

/* The heap's cache, created (and the heap validated) on first use; NULL with
 * an exception set on failure. */
static ht_graph_cache *
ht_graph_cache_get(ht_heap *h)
{
    ht_graph_cache *c = h->graph_cache;
    if (c == NULL) {
        c = calloc(1, sizeof(*c));
        if (c == NULL)
            return PyErr_NoMemory(), NULL;
        h->graph_cache = c;
    }
    if (ht_graph_check(h, c) < 0)
        return NULL;
    return c;
}

static const char *
ht_graph_str(const ht_heap *h, uint32_t id, size_t *len)
{
    return ht_heap_string(h, id, len);
}

static const char *
ht_graph_type_name(const ht_heap *h, uint32_t i, size_t *len)
{
    return ht_heap_type_name(h, i, len);
}

/* ======================================================================
 * Reverse edges: counting sort of the edges by target, O(n + m)
 * ====================================================================== */

static int
ht_graph_reverse(ht_heap *h, ht_graph_cache *c)
{
    if (c->rev_start != NULL)
        return 0;
    uint32_t n = h->n, m = h->m;
    uint32_t *start = calloc((size_t)n + 2, sizeof(uint32_t));
    uint32_t *src = ht_graph_alloc(m, sizeof(uint32_t));
    uint32_t *lab = ht_graph_alloc(m, sizeof(uint32_t));
    if (start == NULL || src == NULL || lab == NULL) {
        if (start == NULL)
            PyErr_NoMemory();
        free(start);
        free(src);
        free(lab);
        return -1;
    }
    /* count at d+2, prefix-sum, then use start[d+1] as d's write cursor:
     * after the fill start[d+1] is the end of d's run = the start of d+1 */
    for (uint32_t e = 0; e < m; e++)
        start[h->edge_dst[e] + 2]++;
    for (uint32_t i = 2; i < n + 2; i++)
        start[i] += start[i - 1];
    for (uint32_t i = 0; i < n; i++) {
        for (uint32_t e = h->edge_start[i]; e < h->edge_start[i + 1]; e++) {
            uint32_t pos = start[h->edge_dst[e] + 1]++;
            src[pos] = i;
            lab[pos] = h->edge_label ? h->edge_label[e] : HT_NONE;
        }
    }
    c->rev_start = start;
    c->rev_src = src;
    c->rev_label = lab;
    return 0;
}

/* ======================================================================
 * Dominators: Lengauer-Tarjan (path compression, simple linking:
 * O(m log n)) over a virtual root joining every root, in DFS-number space
 * ====================================================================== */

typedef struct ht_graph_lt {
    uint32_t *dfn;     /* [N] node -> DFS number, HT_NONE unvisited */
    uint32_t *vert;    /* [N] DFS number -> node */
    uint32_t *parent;  /* [N] DFS number -> parent's DFS number */
    uint32_t *semi;    /* [N] semidominator (DFS number) */
    uint32_t *anc;     /* [N] forest ancestor, HT_NONE = tree root */
    uint32_t *label;   /* [N] best semidominator on the compressed path */
    uint32_t *idom;    /* [N] immediate dominator (DFS number) */
    uint32_t *bhead;   /* [N] bucket of vertices whose semidominator is d */
    uint32_t *stack;   /* [N] DFS stack of nodes, later the compress stack */
    uint32_t *pos;     /* [N] DFS edge cursors, later the bucket links */
    uint8_t *vchild;   /* [n] 1 when the virtual root has an edge to it */
    uint32_t live;     /* DFS numbers below this are reachable from the roots */
} ht_graph_lt;

static void
ht_graph_lt_free(ht_graph_lt *lt)
{
    free(lt->dfn);
    free(lt->vert);
    free(lt->parent);
    free(lt->semi);
    free(lt->anc);
    free(lt->label);
    free(lt->idom);
    free(lt->bhead);
    free(lt->stack);
    free(lt->pos);
    free(lt->vchild);
}

static int
ht_graph_lt_alloc(ht_graph_lt *lt, uint32_t n)
{
    size_t N = (size_t)n + 1;
    memset(lt, 0, sizeof(*lt));
    uint32_t **arrays[] = {&lt->dfn, &lt->vert, &lt->parent, &lt->semi, &lt->anc,
                           &lt->label, &lt->idom, &lt->bhead, &lt->stack, &lt->pos};
    for (size_t k = 0; k < sizeof(arrays) / sizeof(arrays[0]); k++)
        if ((*arrays[k] = ht_graph_alloc(N, sizeof(uint32_t))) == NULL)
            goto fail;
    lt->vchild = calloc(N, 1);
    if (lt->vchild == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    return 0;
fail:
    ht_graph_lt_free(lt);
    return -1;
}

/* Depth-first numbering from s (entered from the node numbered pdfn);
 * returns the next free number. */
static uint32_t
ht_graph_lt_dfs(const ht_heap *h, ht_graph_lt *lt, uint32_t s, uint32_t pdfn, uint32_t next)
{
    uint32_t top = 0;
    lt->dfn[s] = next;
    lt->vert[next] = s;
    lt->parent[next] = pdfn;
    next++;
    lt->stack[0] = s;
    lt->pos[0] = h->edge_start[s];
    for (;;) {
        uint32_t v = lt->stack[top], p = lt->pos[top];
        if (p < h->edge_start[v + 1]) {
            uint32_t w = h->edge_dst[p];
            lt->pos[top] = p + 1;
            if (lt->dfn[w] == HT_NONE) {
                lt->dfn[w] = next;
                lt->vert[next] = w;
                lt->parent[next] = lt->dfn[v];
                next++;
                top++;
                lt->stack[top] = w;
                lt->pos[top] = h->edge_start[w];
            }
        } else if (top-- == 0) {
            return next;
        }
    }
}

/* Numbers every node: the virtual root (node n) is 0; its children are the
 * roots, then the unvisited objects nobody refers to, then the lowest
 * unvisited object of each remaining piece (unreachable cycles). The objects
 * reachable from the roots are numbered first: below lt->live. */
static void
ht_graph_lt_number(const ht_heap *h, const ht_graph_cache *c, ht_graph_lt *lt)
{
    uint32_t n = h->n, next = 1;
    memset(lt->dfn, 0xff, ((size_t)n + 1) * sizeof(uint32_t));
    lt->dfn[n] = 0;
    lt->vert[0] = n;
    lt->parent[0] = HT_NONE;
    for (uint32_t i = 0; i < n; i++)
        lt->vchild[i] = (h->flags[i] & HT_OBJ_ROOT) != 0;
    for (int phase = 0; phase < 3; phase++) {
        for (uint32_t i = 0; i < n; i++) {
            if (lt->dfn[i] != HT_NONE)
                continue;
            if (phase == 0 && !lt->vchild[i])
                continue;
            if (phase == 1 && c->rev_start[i + 1] != c->rev_start[i])
                continue;
            lt->vchild[i] = 1;
            next = ht_graph_lt_dfs(h, lt, i, 0, next);
        }
        if (phase == 0)
            lt->live = next;
    }
}

/* Path compression, iteratively: first collect the path up to the node
 * whose ancestor is a tree root, then fold labels down from the top. */
static void
ht_graph_lt_compress(ht_graph_lt *lt, uint32_t v)
{
    uint32_t top = 0, x = v;
    while (lt->anc[lt->anc[x]] != HT_NONE) {
        lt->stack[top++] = x;
        x = lt->anc[x];
    }
    while (top > 0) {
        x = lt->stack[--top];
        uint32_t a = lt->anc[x];
        if (lt->semi[lt->label[a]] < lt->semi[lt->label[x]])
            lt->label[x] = lt->label[a];
        lt->anc[x] = lt->anc[a];
    }
}

static inline uint32_t
ht_graph_lt_eval(ht_graph_lt *lt, uint32_t v)
{
    if (lt->anc[v] == HT_NONE)
        return v;
    ht_graph_lt_compress(lt, v);
    return lt->label[v];
}

/* Semidominators and immediate dominators, all in DFS numbers. */
static void
ht_graph_lt_solve(const ht_heap *h, const ht_graph_cache *c, ht_graph_lt *lt)
{
    uint32_t N = h->n + 1;
    uint32_t *bnext = lt->pos; /* the DFS cursors are free now */
    for (uint32_t d = 0; d < N; d++) {
        lt->semi[d] = d;
        lt->label[d] = d;
        lt->anc[d] = HT_NONE;
        lt->bhead[d] = HT_NONE;
    }
    for (uint32_t w = N - 1; w >= 1; w--) {
        uint32_t node = lt->vert[w];
        /* garbage referring to a live object does not keep it alive: for a
         * live w, references from unreachable objects are left out */
        uint32_t pred_limit = w < lt->live ? lt->live : N;
        for (uint32_t r = c->rev_start[node]; r < c->rev_start[node + 1]; r++) {
            uint32_t v = lt->dfn[c->rev_src[r]];
            if (v >= pred_limit)
                continue;
            uint32_t u = ht_graph_lt_eval(lt, v);
            if (lt->semi[u] < lt->semi[w])
                lt->semi[w] = lt->semi[u];
        }
        if (lt->vchild[node])
            lt->semi[w] = 0; /* the virtual root is numbered 0, below all */
        bnext[w] = lt->bhead[lt->semi[w]];
        lt->bhead[lt->semi[w]] = w;
        uint32_t p = lt->parent[w];
        lt->anc[w] = p;
        for (uint32_t v = lt->bhead[p]; v != HT_NONE; v = bnext[v]) {
            uint32_t u = ht_graph_lt_eval(lt, v);
            lt->idom[v] = lt->semi[u] < lt->semi[v] ? u : p;
        }
        lt->bhead[p] = HT_NONE;
    }
    lt->idom[0] = HT_NONE;
    for (uint32_t w = 1; w < N; w++)
        if (lt->idom[w] != lt->semi[w])
            lt->idom[w] = lt->idom[lt->idom[w]];
}

/* Children lists of the dominator tree by counting sort on the parent. */
static int
ht_graph_dom_children(uint32_t n, const uint32_t *idom, ht_graph_cache *c)
{
    uint32_t *start = calloc((size_t)n + 3, sizeof(uint32_t));
    uint32_t *child = ht_graph_alloc(n, sizeof(uint32_t));
    if (start == NULL || child == NULL) {
        free(start);
        free(child);
        return PyErr_NoMemory(), -1;
    }
    for (uint32_t i = 0; i < n; i++)
        start[(idom[i] == HT_NONE ? n : idom[i]) + 2]++;
    for (uint32_t v = 2; v < n + 3; v++)
        start[v] += start[v - 1];
    for (uint32_t i = 0; i < n; i++)
        child[start[(idom[i] == HT_NONE ? n : idom[i]) + 1]++] = i;
    c->dom_start = start;
    c->dom_child = child;
    return 0;
}

static int
ht_graph_dominators(ht_heap *h, ht_graph_cache *c)
{
    if (c->idom != NULL)
        return 0;
    if (ht_graph_reverse(h, c) < 0)
        return -1;
    uint32_t n = h->n;
    ht_graph_lt lt;
    if (ht_graph_lt_alloc(&lt, n) < 0)
        return -1;
    uint32_t *idom = ht_graph_alloc(n, sizeof(uint32_t));
    uint64_t *ret = ht_graph_alloc(n, sizeof(uint64_t));
    if (idom == NULL || ret == NULL)
        goto fail;
    ht_graph_lt_number(h, c, &lt);
    ht_graph_lt_solve(h, c, &lt);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t d = lt.idom[lt.dfn[i]];
        idom[i] = d == 0 ? HT_NONE : lt.vert[d];
        ret[i] = h->size[i];
    }
    /* a dominator has a smaller DFS number than what it dominates: summing
     * in decreasing DFS order completes each subtree before its parent */
    for (uint32_t d = n; d >= 1; d--) {
        uint32_t v = lt.vert[d];
        if (idom[v] != HT_NONE)
            ret[idom[v]] += ret[v];
    }
    if (ht_graph_dom_children(n, idom, c) < 0)
        goto fail;
    ht_graph_lt_free(&lt);
    c->idom = idom;
    c->retained = ret;
    return 0;
fail:
    ht_graph_lt_free(&lt);
    free(idom);
    free(ret);
    return -1;
}

int
ht_graph_retained(ht_heap *h, uint32_t i, uint64_t *out)
{
    ht_graph_cache *c = ht_graph_cache_get(h);
    if (c == NULL || ht_graph_dominators(h, c) < 0)
        return -1;
    if (i >= h->n) {
        ht_error("object index %u out of range", i);
        return -1;
    }
    *out = c->retained[i];
    return 0;
}

/* ======================================================================
 * Strongly connected components: Tarjan's algorithm with an explicit call
 * stack; only the components that are cycles are kept
 * ====================================================================== */

/* Tarjan's working state over one CSR graph. */
typedef struct {
    const uint32_t *start, *dst;
    uint32_t *index, *low, *stack, *cnode, *cpos;
    uint8_t *onstack;
    uint32_t sp, counter;  /* Tarjan stack size, next DFS number */
    uint32_t *comp, *order;
    uint32_t ncomp, norder;
} ht_graph_tarjan;

/* Pops the component rooted at v off the Tarjan stack into order[] and
 * comp[] (either may be NULL). */
static void
ht_graph_tarjan_pop(ht_graph_tarjan *t, uint32_t v)
{
    uint32_t w;
    do {
        w = t->stack[--t->sp];
        t->onstack[w] = 0;
        if (t->comp != NULL)
            t->comp[w] = t->ncomp;
        if (t->order != NULL)
            t->order[t->norder] = w;
        t->norder++;
    } while (w != v);
    t->ncomp++;
}

static void
ht_graph_tarjan_from(ht_graph_tarjan *t, uint32_t root)
{
    uint32_t top = 0;
    t->index[root] = t->low[root] = t->counter++;
    t->stack[t->sp++] = root;
    t->onstack[root] = 1;
    t->cnode[0] = root;
    t->cpos[0] = t->start[root];
    for (;;) {
        uint32_t v = t->cnode[top], p = t->cpos[top];
        if (p < t->start[v + 1]) {
            uint32_t w = t->dst[p];
            t->cpos[top] = p + 1;
            if (t->index[w] == HT_NONE) {
                t->index[w] = t->low[w] = t->counter++;
                t->stack[t->sp++] = w;
                t->onstack[w] = 1;
                top++;
                t->cnode[top] = w;
                t->cpos[top] = t->start[w];
            } else if (t->onstack[w] && t->index[w] < t->low[v]) {
                t->low[v] = t->index[w];
            }
            continue;
        }
        if (t->low[v] == t->index[v])
            ht_graph_tarjan_pop(t, v);
        if (top == 0)
            return;
        top--;
        uint32_t u = t->cnode[top];
        if (t->low[v] < t->low[u])
            t->low[u] = t->low[v];
    }
}

int
ht_graph_scc(uint32_t n, const uint32_t *edge_start, const uint32_t *edge_dst,
             uint32_t *out_comp, uint32_t *out_order, uint32_t *out_ncomp)
{
    ht_graph_tarjan t;
    memset(&t, 0, sizeof(t));
    t.start = edge_start;
    t.dst = edge_dst;
    t.comp = out_comp;
    t.order = out_order;
    t.index = ht_graph_alloc(n, sizeof(uint32_t));
    t.low = ht_graph_alloc(n, sizeof(uint32_t));
    t.stack = ht_graph_alloc(n, sizeof(uint32_t));
    t.cnode = ht_graph_alloc(n, sizeof(uint32_t));
    t.cpos = ht_graph_alloc(n, sizeof(uint32_t));
    t.onstack = calloc((size_t)n + 1, 1);
    int rc = -1;
    if (!t.index || !t.low || !t.stack || !t.cnode || !t.cpos || !t.onstack) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }
    memset(t.index, 0xff, (size_t)(n ? n : 1) * sizeof(uint32_t));
    for (uint32_t i = 0; i < n; i++)
        if (t.index[i] == HT_NONE)
            ht_graph_tarjan_from(&t, i);
    *out_ncomp = t.ncomp;
    rc = 0;
done:
    free(t.index);
    free(t.low);
    free(t.stack);
    free(t.cnode);
    free(t.cpos);
    free(t.onstack);
    return rc;
}

static int
ht_graph_has_self_loop(const ht_heap *h, uint32_t v)
{
    for (uint32_t e = h->edge_start[v]; e < h->edge_start[v + 1]; e++)
        if (h->edge_dst[e] == v)
            return 1;
    return 0;
}

/* The snapshot's components that are cycles (more than one member, or one
 * with an edge to itself), members concatenated in members[], component j
 * at members[starts[j] .. starts[j + 1]). */
typedef struct {
    uint32_t *members;    /* [n] */
    uint32_t nmembers;
    uint32_t *starts;     /* [n + 1] */
    uint32_t ncomp;
} ht_graph_scc_kept;

typedef struct {
    uint64_t total;
    uint32_t id;
} ht_graph_comp_key;

static int
ht_graph_comp_cmp(const void *a, const void *b)
{
    const ht_graph_comp_key *x = a, *y = b;
    if (x->total != y->total)
        return x->total < y->total ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static uint8_t
ht_graph_comp_flags(const ht_heap *h, const uint32_t *mem, uint32_t k)
{
    uint8_t f = HT_GRAPH_COMP_GARBAGE;
    for (uint32_t j = 0; j < k; j++) {
        uint32_t fl = h->flags[mem[j]];
        if (fl & HT_OBJ_FINALIZER)
            f |= HT_GRAPH_COMP_FINALIZER;
        if (fl & HT_OBJ_LEGACY_DEL) /* an enum: the #ifdef it had never saw it */
            f |= HT_GRAPH_COMP_UNCOLLECTABLE;
        if (!(fl & HT_OBJ_UNREACHABLE))
            f &= (uint8_t)~HT_GRAPH_COMP_GARBAGE;
    }
    return f;
}

/* Copies the kept components into the cache, biggest total size first. */
static int
ht_graph_scc_store(const ht_heap *h, ht_graph_scc_kept *s, ht_graph_cache *c)
{
    uint32_t k = s->ncomp;
    ht_graph_comp_key *keys = ht_graph_alloc(k, sizeof(*keys));
    uint32_t *start = ht_graph_alloc((size_t)k + 1, sizeof(uint32_t));
    uint32_t *mem = ht_graph_alloc(s->nmembers, sizeof(uint32_t));
    uint64_t *total = ht_graph_alloc(k, sizeof(uint64_t));
    uint8_t *flags = ht_graph_alloc(k, 1);
    if (!keys || !start || !mem || !total || !flags) {
        free(keys);
        free(start);
        free(mem);
        free(total);
        free(flags);
        return -1;
    }
    for (uint32_t j = 0; j < k; j++) {
        keys[j].id = j;
        keys[j].total = 0;
        for (uint32_t q = s->starts[j]; q < s->starts[j + 1]; q++)
            keys[j].total += h->size[s->members[q]];
    }
    qsort(keys, k, sizeof(*keys), ht_graph_comp_cmp);
    uint32_t at = 0;
    for (uint32_t j = 0; j < k; j++) {
        uint32_t a = s->starts[keys[j].id], b = s->starts[keys[j].id + 1];
        start[j] = at;
        memcpy(mem + at, s->members + a, (size_t)(b - a) * sizeof(uint32_t));
        total[j] = keys[j].total;
        flags[j] = ht_graph_comp_flags(h, mem + at, b - a);
        at += b - a;
    }
    start[k] = at;
    free(keys);
    c->ncomp = k;
    c->comp_start = start;
    c->comp_member = mem;
    c->comp_total = total;
    c->comp_flags = flags;
    c->have_comps = 1;
    return 0;
}

static int
ht_graph_components(ht_heap *h, ht_graph_cache *c)
{
    if (c->have_comps)
        return 0;
    uint32_t n = h->n, nscc = 0;
    ht_graph_scc_kept s;
    memset(&s, 0, sizeof(s));
    uint32_t *comp = ht_graph_alloc(n, sizeof(uint32_t));
    s.members = ht_graph_alloc(n, sizeof(uint32_t));
    s.starts = ht_graph_alloc((size_t)n + 1, sizeof(uint32_t));
    int rc = -1;
    if (!comp || !s.members || !s.starts)
        goto done;
    if (ht_graph_scc(n, h->edge_start, h->edge_dst, comp, s.members, &nscc) < 0)
        goto done;
    /* members[] holds each component contiguously: keep the cycles, moved
     * down in place (the write position never passes the read position). */
    s.starts[0] = 0;
    for (uint32_t a = 0, b; a < n; a = b) {
        for (b = a + 1; b < n && comp[s.members[b]] == comp[s.members[a]]; b++)
            ;
        if (b - a == 1 && !ht_graph_has_self_loop(h, s.members[a]))
            continue;
        memmove(s.members + s.nmembers, s.members + a, (size_t)(b - a) * sizeof(uint32_t));
        s.nmembers += b - a;
        s.starts[++s.ncomp] = s.nmembers;
    }
    rc = ht_graph_scc_store(h, &s, c);
done:
    free(comp);
    free(s.members);
    free(s.starts);
    return rc;
}

/* ======================================================================
 * Shortest path from a root: breadth-first backward from x over the
 * referrers, stopping at the first level that holds a root
 * ====================================================================== */

/* Lower is preferred when several roots are equally near: module globals,
 * then thread frames, then any other root. */
static int
ht_graph_root_rank(const ht_heap *h, uint32_t r)
{
    if (h->flags[r] & HT_OBJ_MODULE)
        return 0;
    if (h->flags[r] & HT_OBJ_FRAME)
        return 1;
    return 2;
}

/* The search's state: visited objects map (index + 1) -> (next toward x) <<
 * 32 | label of the edge to it, in the shared hash table, so that a query
 * costs what it explores rather than O(n); the queue grows on demand. */
typedef struct {
    ht_table seen;
    uint32_t *queue;
    size_t len, cap;
} ht_graph_bfs;

static int
ht_graph_bfs_push(ht_graph_bfs *b, uint32_t v, uint32_t next, uint32_t label)
{
    if (b->len == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        uint32_t *q = realloc(b->queue, cap * sizeof(uint32_t));
        if (q == NULL)
            return -1;
        b->queue = q;
        b->cap = cap;
    }
    if (ht_table_put(&b->seen, (uint64_t)v + 1, ((uint64_t)next << 32) | label) < 0)
        return -1;
    b->queue[b->len++] = v;
    return 0;
}

/* Breadth-first backward from x, level by level, stopping after the first
 * level that holds a root; *root receives the preferred one, or HT_NONE when
 * no root reaches x. Returns 0, or -1 with MemoryError set. */
static int
ht_graph_bfs_back(const ht_heap *h, const ht_graph_cache *c, uint32_t x, ht_graph_bfs *b,
                  uint32_t *root)
{
    size_t head = 0;
    *root = HT_NONE;
    if (ht_graph_bfs_push(b, x, x, HT_NONE) < 0)
        return PyErr_NoMemory(), -1;
    while (head < b->len) {
        size_t level_end = b->len;
        int best_rank = 3;
        for (; head < level_end; head++) {
            uint32_t u = b->queue[head];
            for (uint32_t r = c->rev_start[u]; r < c->rev_start[u + 1]; r++) {
                uint32_t v = c->rev_src[r];
                if (ht_table_contains(&b->seen, (uint64_t)v + 1))
                    continue;
                if (ht_graph_bfs_push(b, v, u, c->rev_label[r]) < 0)
                    return PyErr_NoMemory(), -1;
                if ((h->flags[v] & HT_OBJ_ROOT) && best_rank > 0) {
                    int rank = ht_graph_root_rank(h, v);
                    if (rank < best_rank) {
                        best_rank = rank;
                        *root = v;
                    }
                }
            }
        }
        if (*root != HT_NONE)
            return 0;
    }
    return 0;
}

/* ======================================================================
 * Python functions
 * ====================================================================== */

/* The heap behind a snapshot handle (heap.c's, also made by the test
 * constructors below); NULL with TypeError set for anything else. */
static ht_heap *
ht_graph_heap(PyObject *handle)
{
    return ht_heap_from_handle(handle);
}

/* Parses (handle, index) and returns the heap, its cache and the index;
 * NULL with an exception on failure. */
static ht_heap *
ht_graph_args(PyObject *args, const char *fmt_name, uint32_t *index, ht_graph_cache **cache)
{
    PyObject *handle;
    Py_ssize_t i;
    char fmt[64];
    snprintf(fmt, sizeof(fmt), "On:%s", fmt_name);
    if (!PyArg_ParseTuple(args, fmt, &handle, &i))
        return NULL;
    ht_heap *h = ht_graph_heap(handle);
    if (h == NULL)
        return NULL;
    if (i < 0 || (size_t)i >= h->n)
        return ht_error("object index %zd out of range (snapshot has %u objects)", i, h->n),
               NULL;
    *cache = ht_graph_cache_get(h);
    if (*cache == NULL)
        return NULL;
    *index = (uint32_t)i;
    return h;
}

/* An edge label as text: "['k']", ".attr", "[3]" ..., or None. */
static PyObject *
ht_graph_label_obj(const ht_heap *h, uint32_t label)
{
    if (label == HT_NONE)
        Py_RETURN_NONE;
    if (HT_LABEL_IS_INDEX(label))
        return PyUnicode_FromFormat("[%u]", (unsigned)HT_LABEL_INDEX_OF(label));
    size_t len;
    const char *s = ht_graph_str(h, label, &len);
    if (s == NULL)
        Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "replace");
}

/* Appends (label, index) to list; -1 on failure. */
static int
ht_graph_append_edge(PyObject *list, const ht_heap *h, uint32_t label, uint32_t index)
{
    PyObject *lab = ht_graph_label_obj(h, label);
    if (lab == NULL)
        return -1;
    PyObject *t = Py_BuildValue("(NI)", lab, (unsigned int)index);
    if (t == NULL)
        return -1;
    int rc = PyList_Append(list, t);
    Py_DECREF(t);
    return rc;
}

static PyObject *
ht_graph_py_referents(PyObject *mod, PyObject *args)
{
    uint32_t i;
    ht_graph_cache *c;
    ht_heap *h = ht_graph_args(args, "graph_referents", &i, &c);
    if (h == NULL)
        return NULL;
    PyObject *out = PyList_New(0);
    for (uint32_t e = h->edge_start[i]; out != NULL && e < h->edge_start[i + 1]; e++)
        if (ht_graph_append_edge(out, h, h->edge_label ? h->edge_label[e] : HT_NONE,
                                 h->edge_dst[e]) < 0)
            Py_CLEAR(out);
    return out;
}

static PyObject *
ht_graph_py_referrers(PyObject *mod, PyObject *args)
{
    uint32_t i;
    ht_graph_cache *c;
    ht_heap *h = ht_graph_args(args, "graph_referrers", &i, &c);
    if (h == NULL || ht_graph_reverse(h, c) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    for (uint32_t r = c->rev_start[i]; out != NULL && r < c->rev_start[i + 1]; r++)
        if (ht_graph_append_edge(out, h, c->rev_label[r], c->rev_src[r]) < 0)
            Py_CLEAR(out);
    return out;
}

/* The label of the first edge src -> dst, or HT_NONE. */
static uint32_t
ht_graph_edge_label(const ht_heap *h, uint32_t src, uint32_t dst)
{
    for (uint32_t e = h->edge_start[src]; e < h->edge_start[src + 1]; e++)
        if (h->edge_dst[e] == dst)
            return h->edge_label ? h->edge_label[e] : HT_NONE;
    return HT_NONE;
}

/* The owner of root dict d when a path may start there instead: d is the
 * __dict__ of a module (a module's namespace is read from the module, even
 * one not in sys.modules yet, whose code is still running), or of a class or
 * instance that is a root itself, and the owner refers to d; else HT_NONE. */
static uint32_t
ht_graph_root_owner(const ht_heap *h, uint32_t d)
{
    if (!(h->flags[d] & HT_OBJ_DICT) || h->owner == NULL)
        return HT_NONE;
    uint32_t o = h->owner[d];
    if (o == HT_NONE || o >= h->n || o == d || !(h->flags[o] & (HT_OBJ_ROOT | HT_OBJ_MODULE)))
        return HT_NONE;
    for (uint32_t e = h->edge_start[o]; e < h->edge_start[o + 1]; e++)
        if (h->edge_dst[e] == d)
            return o;
    return HT_NONE;
}

/* graph_path(h, i) -> [(None, root), (label, obj), ..., (label, i)], or None
 * when no root reaches i. */
static PyObject *
ht_graph_py_path(PyObject *mod, PyObject *args)
{
    uint32_t x;
    ht_graph_cache *c;
    ht_heap *h = ht_graph_args(args, "graph_path", &x, &c);
    if (h == NULL || ht_graph_reverse(h, c) < 0)
        return NULL;
    if (h->flags[x] & HT_OBJ_ROOT)
        return Py_BuildValue("[(OI)]", Py_None, (unsigned int)x);
    ht_graph_bfs b = {{0}};
    PyObject *out = NULL;
    uint32_t root;
    if (ht_table_init(&b.seen, 64, 1) < 0)
        return PyErr_NoMemory();
    if (ht_graph_bfs_back(h, c, x, &b, &root) < 0)
        goto done;
    if (root == HT_NONE) {
        out = Py_NewRef(Py_None);
        goto done;
    }
    /* a module's (or class's, instance's) __dict__ found as a root itself
     * (held from C: frames' globals, the interpreter) starts at its owner
     * when the owner is a root too: "module app -> .CACHE", not "dict of
     * module app -> ['CACHE']" */
    uint32_t own = ht_graph_root_owner(h, root);
    if (own != HT_NONE)
        out = Py_BuildValue("[(OI)(NI)]", Py_None, (unsigned int)own,
                            ht_graph_label_obj(h, ht_graph_edge_label(h, own, root)), (unsigned int)root);
    else
        out = Py_BuildValue("[(OI)]", Py_None, (unsigned int)root);
    for (uint32_t v = root; out != NULL && v != x;) {
        uint64_t step = *ht_table_find(&b.seen, (uint64_t)v + 1);
        v = (uint32_t)(step >> 32);
        if (ht_graph_append_edge(out, h, (uint32_t)step, v) < 0)
            Py_CLEAR(out);
    }
done:
    ht_table_free(&b.seen);
    free(b.queue);
    return out;
}

static PyObject *
ht_graph_py_retained(PyObject *mod, PyObject *args)
{
    uint32_t i;
    ht_graph_cache *c;
    ht_heap *h = ht_graph_args(args, "graph_retained", &i, &c);
    if (h == NULL || ht_graph_dominators(h, c) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(c->retained[i]);
}

static PyObject *
ht_graph_py_idom(PyObject *mod, PyObject *args)
{
    uint32_t i;
    ht_graph_cache *c;
    ht_heap *h = ht_graph_args(args, "graph_idom", &i, &c);
    if (h == NULL || ht_graph_dominators(h, c) < 0)
        return NULL;
    if (c->idom[i] == HT_NONE)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(c->idom[i]);
}

/* graph_dominated(h, i) -> [i, ...everything i dominates], breadth-first
 * over the dominator tree (the output list itself is the queue). */
static PyObject *
ht_graph_py_dominated(PyObject *mod, PyObject *args)
{
    uint32_t x;
    ht_graph_cache *c;
    ht_heap *h = ht_graph_args(args, "graph_dominated", &x, &c);
    if (h == NULL || ht_graph_dominators(h, c) < 0)
        return NULL;
    uint32_t *q = ht_graph_alloc(h->n, sizeof(uint32_t));
    if (q == NULL)
        return NULL;
    uint32_t head = 0, tail = 0;
    q[tail++] = x;
    while (head < tail) {
        uint32_t v = q[head++];
        for (uint32_t k = c->dom_start[v]; k < c->dom_start[v + 1]; k++)
            q[tail++] = c->dom_child[k];
    }
    PyObject *out = PyList_New(tail);
    for (uint32_t k = 0; out != NULL && k < tail; k++) {
        PyObject *o = PyLong_FromUnsignedLong(q[k]);
        if (o == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, k, o);
    }
    free(q);
    return out;
}

/* Marks, in a byte per object, the objects whose type is named `kind`:
 * its qualified name ("app.Session") or the last dotted part of it
 * ("Session"), as the query language's type == does. */
static int
ht_graph_kind_matches(const ht_heap *h, const char *kind, size_t klen, uint8_t *is_type)
{
    memset(is_type, 0, h->n);
    int any = 0;
    for (uint32_t i = 0; i < h->n; i++) {
        uint32_t t = h->type ? h->type[i] : HT_NONE;
        if (t >= h->n || is_type[t])
            continue;
        size_t len;
        const char *s = ht_graph_str(h, h->value ? h->value[t] : HT_NONE, &len);
        if (s == NULL)
            continue;
        size_t tail = len; /* start of the last dotted part */
        while (tail > 0 && s[tail - 1] != '.')
            tail--;
        if ((len == klen && memcmp(s, kind, klen) == 0) ||
            (tail > 0 && len - tail == klen && memcmp(s + tail, kind, klen) == 0)) {
            is_type[t] = 1;
            any = 1;
        }
    }
    return any;
}

/* Min-heap of (retained, index) holding the k best seen so far. */
static void
ht_graph_heap_sift(uint32_t *idx, const uint64_t *key, uint32_t len, uint32_t at)
{
    for (;;) {
        uint32_t l = 2 * at + 1, r = l + 1, m = at;
        if (l < len && key[idx[l]] < key[idx[m]])
            m = l;
        if (r < len && key[idx[r]] < key[idx[m]])
            m = r;
        if (m == at)
            return;
        uint32_t t = idx[at];
        idx[at] = idx[m];
        idx[m] = t;
        at = m;
    }
}

static int
ht_graph_by_retained_desc(const void *a, const void *b, const uint64_t *key)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    if (key[x] != key[y])
        return key[x] < key[y] ? 1 : -1;
    return x < y ? -1 : x > y;
}

static const uint64_t *ht_graph_sort_key; /* GIL-protected qsort context */

static int
ht_graph_sort_cmp(const void *a, const void *b)
{
    return ht_graph_by_retained_desc(a, b, ht_graph_sort_key);
}

static PyObject *
ht_graph_top_rows(const ht_heap *h, const ht_graph_cache *c, uint32_t *best, uint32_t k)
{
    ht_graph_sort_key = c->retained;
    qsort(best, k, sizeof(uint32_t), ht_graph_sort_cmp);
    PyObject *out = PyList_New(k);
    for (uint32_t j = 0; out != NULL && j < k; j++) {
        uint32_t i = best[j];
        size_t tlen;
        const char *tn = ht_graph_type_name(h, i, &tlen);
        /* a loaded file's names are bytes it holds: "replace" as every other name it shows,
         * where s# raised UnicodeDecodeError (`heaptrail retainers` of a damaged file) */
        PyObject *name = tn ? PyUnicode_DecodeUTF8(tn, (Py_ssize_t)tlen, "replace") : Py_None;
        if (tn == NULL)
            Py_INCREF(name);
        PyObject *row = name == NULL ? NULL
                      : Py_BuildValue("(IKNKK)", (unsigned int)i,
                                      (unsigned long long)(h->addr ? h->addr[i] : 0), name,
                                      (unsigned long long)c->retained[i],
                                      (unsigned long long)h->size[i]);
        if (row == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, j, row);
    }
    return out;
}

/* graph_top_retainers(h, n, kind=None) -> [(index, address, kind, retained,
 * size)], largest retained first. */
static PyObject *
ht_graph_py_top(PyObject *mod, PyObject *args)
{
    PyObject *handle;
    Py_ssize_t want;
    const char *kind = NULL;
    Py_ssize_t klen = 0;
    if (!PyArg_ParseTuple(args, "On|z#:graph_top_retainers", &handle, &want, &kind, &klen))
        return NULL;
    ht_heap *h = ht_graph_heap(handle);
    if (h == NULL)
        return NULL;
    if (want < 0)
        return ht_error("top_retainers: n must be >= 0, not %zd", want);
    ht_graph_cache *c = ht_graph_cache_get(h);
    if (c == NULL || ht_graph_dominators(h, c) < 0)
        return NULL;
    uint32_t k = (size_t)want < h->n ? (uint32_t)want : h->n, len = 0;
    uint8_t *is_type = NULL;
    uint32_t *best = ht_graph_alloc(k, sizeof(uint32_t));
    PyObject *out = NULL;
    if (best == NULL)
        return NULL;
    if (kind != NULL) {
        if ((is_type = ht_graph_alloc(h->n, 1)) == NULL)
            goto done;
        if (!ht_graph_kind_matches(h, kind, (size_t)klen, is_type))
            k = 0; /* no type of that name: empty list */
    }
    for (uint32_t i = 0; k > 0 && i < h->n; i++) {
        if (is_type != NULL && (h->type[i] >= h->n || !is_type[h->type[i]]))
            continue;
        /* a __dict__ dominated by its owner (module, class, instance) says
         * again what its owner's row says, a few bytes less: the owner
         * stands for both, unless dicts were asked for by kind */
        if (is_type == NULL && (h->flags[i] & HT_OBJ_DICT) && h->owner != NULL &&
            h->owner[i] != HT_NONE && c->idom[i] == h->owner[i])
            continue;
        if (len < k) {
            best[len++] = i;
            if (len == k)
                for (uint32_t a = k / 2 + 1; a-- > 0;)
                    ht_graph_heap_sift(best, c->retained, k, a);
        } else if (c->retained[i] > c->retained[best[0]]) {
            best[0] = i;
            ht_graph_heap_sift(best, c->retained, k, 0);
        }
    }
    out = ht_graph_top_rows(h, c, best, len);
done:
    free(best);
    free(is_type);
    return out;
}

/* graph_cycles(h) -> [(members, total size, has_finalizers, uncollectable,
 * garbage)], biggest first. */
static PyObject *
ht_graph_py_cycles(PyObject *mod, PyObject *args)
{
    PyObject *handle;
    if (!PyArg_ParseTuple(args, "O:graph_cycles", &handle))
        return NULL;
    ht_heap *h = ht_graph_heap(handle);
    ht_graph_cache *c = h ? ht_graph_cache_get(h) : NULL;
    if (c == NULL || ht_graph_components(h, c) < 0)
        return NULL;
    PyObject *out = PyList_New(c->ncomp);
    for (uint32_t j = 0; out != NULL && j < c->ncomp; j++) {
        uint32_t a = c->comp_start[j], b = c->comp_start[j + 1];
        PyObject *mem = PyList_New(b - a);
        for (uint32_t q = a; mem != NULL && q < b; q++) {
            PyObject *o = PyLong_FromUnsignedLong(c->comp_member[q]);
            if (o == NULL)
                Py_CLEAR(mem);
            else
                PyList_SET_ITEM(mem, q - a, o);
        }
        uint8_t f = c->comp_flags[j];
        PyObject *row = mem == NULL ? NULL
                      : Py_BuildValue("(NKNNN)", mem, (unsigned long long)c->comp_total[j],
                                      PyBool_FromLong(f & HT_GRAPH_COMP_FINALIZER),
                                      PyBool_FromLong(f & HT_GRAPH_COMP_UNCOLLECTABLE),
                                      PyBool_FromLong(f & HT_GRAPH_COMP_GARBAGE));
        if (row == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, j, row);
    }
    return out;
}

/* ---- Graphviz ---------------------------------------------------------- */

/* Writes s (len bytes) inside a DOT double-quoted string, escaping quotes
 * and backslashes, replacing control bytes, truncated to max bytes. */
static void
ht_graph_dot_text(ht_buf *b, const char *s, size_t len, size_t max)
{
    int cut = len > max;
    if (cut) { /* cut at a character boundary, not inside a UTF-8 sequence */
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    for (size_t k = 0; k < len; k++) {
        unsigned char ch = (unsigned char)s[k];
        if (ch == '"' || ch == '\\')
            ht_buf_u8(b, '\\');
        ht_buf_u8(b, ch < 0x20 || ch == 0x7f ? '?' : ch);
    }
    if (cut)
        ht_buf_put(b, "...", 3);
}

static void
ht_graph_dot_puts(ht_buf *b, const char *s)
{
    ht_buf_put(b, s, strlen(s));
}

static void
ht_graph_dot_size(ht_buf *b, uint64_t n)
{
    char tmp[48];
    if (n < 1024)
        snprintf(tmp, sizeof(tmp), "%llu B", (unsigned long long)n);
    else if (n < 1024 * 1024)
        snprintf(tmp, sizeof(tmp), "%.1f KiB", (double)n / 1024.0);
    else
        snprintf(tmp, sizeof(tmp), "%.1f MiB", (double)n / (1024.0 * 1024.0));
    ht_graph_dot_puts(b, tmp);
}

/* One node line: type, name or value, size and len, address. */
static void
ht_graph_dot_node(ht_buf *b, const ht_heap *h, uint32_t i, int is_target)
{
    char tmp[64];
    size_t len;
    const char *s = ht_graph_type_name(h, i, &len);
    snprintf(tmp, sizeof(tmp), "  o%u [label=\"", (unsigned)i);
    ht_graph_dot_puts(b, tmp);
    ht_graph_dot_text(b, s, len, 60);
    s = ht_graph_str(h, h->value ? h->value[i] : HT_NONE, &len);
    if (s != NULL) {
        ht_graph_dot_puts(b, "\\n");
        ht_graph_dot_text(b, s, len, 40);
    }
    uint32_t own = h->owner ? h->owner[i] : HT_NONE;
    if (own < h->n) { /* the __dict__ of a module, class or instance */
        int named = (h->flags[own] & (HT_OBJ_MODULE | HT_OBJ_TYPE)) != 0;
        s = named ? ht_graph_str(h, h->value[own], &len) : NULL;
        if (s == NULL)
            s = ht_graph_type_name(h, own, &len);
        ht_graph_dot_puts(b, (h->flags[own] & HT_OBJ_MODULE) ? "\\nof module " : "\\nof ");
        ht_graph_dot_text(b, s, len, 40);
    }
    ht_graph_dot_puts(b, "\\n");
    ht_graph_dot_size(b, h->size[i]);
    if (h->len != NULL && h->len[i] >= 0) {
        snprintf(tmp, sizeof(tmp), ", len %lld", (long long)h->len[i]);
        ht_graph_dot_puts(b, tmp);
    }
    snprintf(tmp, sizeof(tmp), "\\n0x%llx\"",
             (unsigned long long)(h->addr ? h->addr[i] : 0));
    ht_graph_dot_puts(b, tmp);
    if (is_target)
        ht_graph_dot_puts(b, ", fillcolor=\"#ffb347\", penwidth=2");
    else if (h->flags[i] & HT_OBJ_ROOT)
        ht_graph_dot_puts(b, ", fillcolor=\"#9ecae1\"");
    else if (h->flags[i] & HT_OBJ_UNREACHABLE)
        ht_graph_dot_puts(b, ", fillcolor=\"#d9d9d9\", style=\"filled,dashed\"");
    ht_graph_dot_puts(b, "];\n");
}

static void
ht_graph_dot_edge(ht_buf *b, const ht_heap *h, uint32_t from, uint32_t to, uint32_t label)
{
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "  o%u -> o%u", (unsigned)from, (unsigned)to);
    ht_graph_dot_puts(b, tmp);
    if (HT_LABEL_IS_INDEX(label)) {
        snprintf(tmp, sizeof(tmp), " [label=\"[%u]\"]", (unsigned)HT_LABEL_INDEX_OF(label));
        ht_graph_dot_puts(b, tmp);
    } else if (label != HT_NONE) {
        size_t len;
        const char *s = ht_graph_str(h, label, &len);
        if (s != NULL) {
            ht_graph_dot_puts(b, " [label=\"");
            ht_graph_dot_text(b, s, len, 40);
            ht_graph_dot_puts(b, "\"]");
        }
    }
    ht_graph_dot_puts(b, ";\n");
}

/* Breadth-first from x over referents (or referrers when back) to `depth`
 * levels and at most max_nodes nodes; every edge between two drawn nodes
 * that the walk crosses is drawn, pointing the way the reference goes. */
static int
ht_graph_dot(const ht_heap *h, const ht_graph_cache *c, uint32_t x, int back, uint32_t depth,
             uint32_t max_nodes, ht_buf *b)
{
    ht_table seen; /* index + 1 -> depth */
    uint32_t *queue = ht_graph_alloc(max_nodes, sizeof(uint32_t));
    if (queue == NULL)
        return -1;
    if (ht_table_init(&seen, max_nodes, 1) < 0) {
        free(queue);
        return PyErr_NoMemory(), -1;
    }
    /* a container holding one object a million times must not make a
     * million edges: at most 8 per node are drawn, the rest counted */
    uint64_t edges = 0, max_edges = (uint64_t)max_nodes * 8;
    uint32_t head = 0, tail = 0, truncated = 0;
    ht_graph_dot_puts(b, "digraph heaptrail {\n"
                         "  node [shape=box, style=filled, fillcolor=\"#f7f7f7\", "
                         "fontname=\"Helvetica\", fontsize=10];\n"
                         "  edge [fontname=\"Helvetica\", fontsize=9];\n");
    if (back)
        ht_graph_dot_puts(b, "  rankdir=BT;\n");
    queue[tail++] = x;
    if (ht_table_put(&seen, (uint64_t)x + 1, 0) < 0) /* its depth is read back below */
        goto nomem;
    ht_graph_dot_node(b, h, x, 1);
    while (head < tail) {
        uint32_t u = queue[head++];
        uint64_t d = *ht_table_find(&seen, (uint64_t)u + 1);
        if (d >= depth)
            continue;
        uint32_t a = back ? c->rev_start[u] : h->edge_start[u];
        uint32_t z = back ? c->rev_start[u + 1] : h->edge_start[u + 1];
        for (uint32_t e = a; e < z; e++) {
            uint32_t w = back ? c->rev_src[e] : h->edge_dst[e];
            uint32_t lab = back ? c->rev_label[e] : (h->edge_label ? h->edge_label[e] : HT_NONE);
            if (edges >= max_edges) {
                truncated++;
                continue;
            }
            if (!ht_table_contains(&seen, (uint64_t)w + 1)) {
                if (tail >= max_nodes) {
                    truncated++;
                    continue;
                }
                if (ht_table_put(&seen, (uint64_t)w + 1, d + 1) < 0)
                    goto nomem;
                queue[tail++] = w;
                ht_graph_dot_node(b, h, w, 0);
            }
            edges++;
            if (back)
                ht_graph_dot_edge(b, h, w, u, lab);
            else
                ht_graph_dot_edge(b, h, u, w, lab);
        }
    }
    if (truncated) {
        char tmp[96];
        snprintf(tmp, sizeof(tmp), "  // %u references left out (max_nodes=%u)\n", truncated,
                 max_nodes);
        ht_graph_dot_puts(b, tmp);
    }
    ht_graph_dot_puts(b, "}\n");
    ht_table_free(&seen);
    free(queue);
    if (b->error)
        return PyErr_NoMemory(), -1;
    return 0;
nomem:
    ht_table_free(&seen);
    free(queue);
    return PyErr_NoMemory(), -1;
}

/* graph_to_dot(h, i, backrefs, depth, max_nodes) -> str */
static PyObject *
ht_graph_py_to_dot(PyObject *mod, PyObject *args)
{
    PyObject *handle;
    Py_ssize_t i, depth, max_nodes;
    int back;
    if (!PyArg_ParseTuple(args, "Onpnn:graph_to_dot", &handle, &i, &back, &depth, &max_nodes))
        return NULL;
    ht_heap *h = ht_graph_heap(handle);
    if (h == NULL)
        return NULL;
    if (i < 0 || (size_t)i >= h->n)
        return ht_error("object index %zd out of range (snapshot has %u objects)", i, h->n);
    if (depth < 0 || depth > 1000)
        return ht_error("to_dot: depth must be between 0 and 1000, not %zd", depth);
    if (max_nodes < 1 || max_nodes > 100000)
        return ht_error("to_dot: max_nodes must be between 1 and 100000, not %zd", max_nodes);
    ht_graph_cache *c = ht_graph_cache_get(h);
    if (c == NULL || (back && ht_graph_reverse(h, c) < 0))
        return NULL;
    ht_buf b;
    ht_buf_init(&b);
    PyObject *out = NULL;
    if (ht_graph_dot(h, c, (uint32_t)i, back, (uint32_t)depth, (uint32_t)max_nodes, &b) == 0)
        out = PyUnicode_DecodeUTF8((const char *)b.data, (Py_ssize_t)b.len, "replace");
    ht_buf_free(&b);
    return out;
}

/* ---- the test constructor ----------------------------------------------- */

/* Appends a str to the heap's string table (no interning: tests are small). */
static int
ht_graph_test_str(ht_heap *h, PyObject *s, uint32_t *id)
{
    Py_ssize_t len;
    const char *p = PyUnicode_AsUTF8AndSize(s, &len);
    if (p == NULL)
        return -1;
    *id = ht_strtab_append(&h->strings, p, (size_t)len);
    if (*id == HT_NONE)
        return PyErr_NoMemory(), -1;
    return 0;
}

/* A label: None, an int (list index) or a str. */
static int
ht_graph_test_label(ht_heap *h, PyObject *o, uint32_t *label)
{
    if (o == Py_None) {
        *label = HT_NONE;
        return 0;
    }
    if (PyLong_Check(o)) {
        long v = PyLong_AsLong(o);
        if (v < 0 || v >= (long)HT_LABEL_INDEX) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "index label out of range: %ld", v);
            return -1;
        }
        *label = (uint32_t)v | HT_LABEL_INDEX;
        return 0;
    }
    if (PyUnicode_Check(o))
        return ht_graph_test_str(h, o, label);
    PyErr_SetString(PyExc_TypeError, "edge label must be None, int or str");
    return -1;
}

/* Reads an optional per-object sequence into dst through conv. */
static int
ht_graph_test_column(PyObject *seq, uint32_t n, const char *what, ht_heap *h,
                     int (*conv)(ht_heap *, PyObject *, uint32_t, void *), void *dst)
{
    if (seq == NULL || seq == Py_None)
        return 0;
    PyObject *fast = PySequence_Fast(seq, what);
    if (fast == NULL)
        return -1;
    int rc = 0;
    if ((size_t)PySequence_Fast_GET_SIZE(fast) != n) {
        PyErr_Format(PyExc_ValueError, "%s must have %u items", what, n);
        rc = -1;
    }
    for (uint32_t i = 0; rc == 0 && i < n; i++)
        rc = conv(h, PySequence_Fast_GET_ITEM(fast, i), i, dst);
    Py_DECREF(fast);
    return rc;
}

static int
ht_graph_conv_size(ht_heap *h, PyObject *o, uint32_t i, void *dst)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    ((uint64_t *)dst)[i] = v;
    return 0;
}

static int
ht_graph_conv_flags(ht_heap *h, PyObject *o, uint32_t i, void *dst)
{
    unsigned long v = PyLong_AsUnsignedLong(o);
    if (v == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    ((uint32_t *)dst)[i] |= (uint32_t)v;
    return 0;
}

static int
ht_graph_conv_type(ht_heap *h, PyObject *o, uint32_t i, void *dst)
{
    if (o == Py_None)
        return 0;
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0 || (unsigned long)v >= h->n)
        return PyErr_Format(PyExc_ValueError, "type index %ld out of range", v), -1;
    ((uint32_t *)dst)[i] = (uint32_t)v;
    return 0;
}

static int
ht_graph_conv_value(ht_heap *h, PyObject *o, uint32_t i, void *dst)
{
    if (o == Py_None)
        return 0;
    if (!PyUnicode_Check(o))
        return PyErr_SetString(PyExc_TypeError, "values must be str or None"), -1;
    return ht_graph_test_str(h, o, &((uint32_t *)dst)[i]);
}

/* A heap of n objects and m edges with neutral contents: made-up distinct
 * addresses, size 1, no type, no value, no edges yet. NULL on failure. */
static ht_heap *
ht_graph_test_heap(uint32_t n, uint32_t m)
{
    ht_heap *h = ht_heap_new();
    if (h == NULL)
        return NULL;
    if (ht_heap_alloc(h, n, m) < 0) {
        ht_heap_free(h);
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++) {
        h->addr[i] = 0x10000 + 16 * (uint64_t)i;
        h->type[i] = h->value[i] = h->owner[i] = h->module[i] = HT_NONE;
        h->size[i] = 1;
        h->len[i] = -1;
        h->flags[i] = 0;
    }
    memset(h->edge_start, 0, ((size_t)n + 1) * sizeof(uint32_t));
    return h;
}

/* Edges (src, dst[, label]) from a sequence into CSR form, stable. */
static int
ht_graph_test_edges(ht_heap *h, PyObject *fast)
{
    uint32_t m = h->m;
    uint32_t *src = ht_graph_alloc(m, sizeof(uint32_t));
    uint32_t *dst = ht_graph_alloc(m, sizeof(uint32_t));
    uint32_t *lab = ht_graph_alloc(m, sizeof(uint32_t));
    int rc = -1;
    if (src == NULL || dst == NULL || lab == NULL)
        goto done;
    for (uint32_t e = 0; e < m; e++) {
        PyObject *t = PySequence_Fast_GET_ITEM(fast, e), *lo = Py_None;
        unsigned int s, d;
        if (!PyArg_ParseTuple(t, "II|O", &s, &d, &lo))
            goto done;
        if (s >= h->n || d >= h->n) {
            PyErr_Format(PyExc_ValueError, "edge (%u, %u) outside the %u objects", s, d, h->n);
            goto done;
        }
        src[e] = s;
        dst[e] = d;
        if (ht_graph_test_label(h, lo, &lab[e]) < 0)
            goto done;
        h->edge_start[s + 1]++;
    }
    for (uint32_t i = 0; i < h->n; i++)
        h->edge_start[i + 1] += h->edge_start[i];
    /* stable fill: edge_start[i] is i's cursor, then restore the starts */
    for (uint32_t e = 0; e < m; e++) {
        uint32_t at = h->edge_start[src[e]]++;
        h->edge_dst[at] = dst[e];
        h->edge_label[at] = lab[e];
    }
    for (uint32_t i = h->n; i > 0; i--)
        h->edge_start[i] = h->edge_start[i - 1];
    h->edge_start[0] = 0;
    rc = 0;
done:
    free(src);
    free(dst);
    free(lab);
    return rc;
}

static int
ht_graph_test_roots(ht_heap *h, PyObject *roots)
{
    if (roots == NULL || roots == Py_None)
        return 0;
    PyObject *fast = PySequence_Fast(roots, "roots must be a sequence");
    if (fast == NULL)
        return -1;
    for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(fast); k++) {
        Py_ssize_t r = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(fast, k));
        if (r < 0 || (size_t)r >= h->n) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "root %zd out of range", r);
            Py_DECREF(fast);
            return -1;
        }
        h->flags[r] |= HT_OBJ_ROOT;
    }
    Py_DECREF(fast);
    return 0;
}

/* _graph_from_edges(n, edges, sizes=None, roots=(), flags=None, types=None,
 * values=None): a snapshot handle over n made-up objects, for tests of the
 * algorithms on graphs with known answers. edges: (src, dst[, label]) with
 * label None, int (shown "[k]") or str; sizes default to 1; types[i] is the
 * index of i's type object, whose values[] entry is the type's name. */
static PyObject *
ht_graph_py_from_edges(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *names[] = {"n", "edges", "sizes", "roots", "flags", "types", "values", NULL};
    Py_ssize_t n;
    PyObject *edges, *sizes = NULL, *roots = NULL, *flags = NULL, *types = NULL, *values = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "nO|OOOOO:_graph_from_edges", names, &n, &edges,
                                     &sizes, &roots, &flags, &types, &values))
        return NULL;
    if (n < 0 || n >= (Py_ssize_t)HT_NONE)
        return PyErr_Format(PyExc_ValueError, "n out of range: %zd", n);
    PyObject *fast = PySequence_Fast(edges, "edges must be a sequence");
    if (fast == NULL)
        return NULL;
    Py_ssize_t m = PySequence_Fast_GET_SIZE(fast);
    ht_heap *h = m < (Py_ssize_t)HT_NONE ? ht_graph_test_heap((uint32_t)n, (uint32_t)m) : NULL;
    if (h == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_ValueError, "too many edges: %zd", m);
        Py_DECREF(fast);
        return NULL;
    }
    int rc = ht_graph_test_edges(h, fast);
    Py_DECREF(fast);
    if (rc < 0 ||
        ht_graph_test_column(sizes, h->n, "sizes", h, ht_graph_conv_size, h->size) < 0 ||
        ht_graph_test_column(flags, h->n, "flags", h, ht_graph_conv_flags, h->flags) < 0 ||
        ht_graph_test_column(types, h->n, "types", h, ht_graph_conv_type, h->type) < 0 ||
        ht_graph_test_column(values, h->n, "values", h, ht_graph_conv_value, h->value) < 0 ||
        ht_graph_test_roots(h, roots) < 0) {
        ht_heap_free(h);
        return NULL;
    }
    for (uint32_t i = 0; i < h->n; i++)
        h->total_size += h->size[i];
    return ht_heap_wrap(h);
}

/* _graph_chain(n): a chain 0 -> 1 -> ... -> n-1 rooted at 0 (sizes 1, labels
 * "[0]"), built in C so tests of deep graphs spend no time in Python. */
static PyObject *
ht_graph_py_chain(PyObject *mod, PyObject *args)
{
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "n:_graph_chain", &n))
        return NULL;
    if (n < 1 || n >= (Py_ssize_t)HT_NONE)
        return PyErr_Format(PyExc_ValueError, "n out of range: %zd", n);
    ht_heap *h = ht_graph_test_heap((uint32_t)n, (uint32_t)n - 1);
    if (h == NULL)
        return NULL;
    for (uint32_t i = 0; i + 1 < h->n; i++) {
        h->edge_dst[i] = i + 1;
        h->edge_label[i] = HT_LABEL_INDEX | 0;
        h->edge_start[i + 1] = i + 1;
    }
    h->edge_start[h->n] = h->m;
    h->flags[0] |= HT_OBJ_ROOT;
    h->total_size = h->n;
    return ht_heap_wrap(h);
}

static PyMethodDef ht_graph_methods[] = {
    {"graph_referents", ht_graph_py_referents, METH_VARARGS,
     "graph_referents(h, i) -> [(label, index)]: what object i refers to."},
    {"graph_referrers", ht_graph_py_referrers, METH_VARARGS,
     "graph_referrers(h, i) -> [(label, index)]: what refers to object i."},
    {"graph_path", ht_graph_py_path, METH_VARARGS,
     "graph_path(h, i) -> [(None, root), (label, index)...] shortest chain from a root, or None."},
    {"graph_retained", ht_graph_py_retained, METH_VARARGS,
     "graph_retained(h, i) -> bytes freed if object i went away (dominator tree)."},
    {"graph_idom", ht_graph_py_idom, METH_VARARGS,
     "graph_idom(h, i) -> immediate dominator of i, or None (the virtual root)."},
    {"graph_dominated", ht_graph_py_dominated, METH_VARARGS,
     "graph_dominated(h, i) -> [i, ...]: every object i dominates, i first."},
    {"graph_top_retainers", ht_graph_py_top, METH_VARARGS,
     "graph_top_retainers(h, n, kind=None) -> [(index, address, kind, retained, size)]."},
    {"graph_cycles", ht_graph_py_cycles, METH_VARARGS,
     "graph_cycles(h) -> [(members, total, has_finalizers, uncollectable, garbage)]."},
    {"graph_to_dot", ht_graph_py_to_dot, METH_VARARGS,
     "graph_to_dot(h, i, backrefs, depth, max_nodes) -> Graphviz text."},
    {"_graph_from_edges", (PyCFunction)(void (*)(void))ht_graph_py_from_edges,
     METH_VARARGS | METH_KEYWORDS, "A heap from explicit edges (tests)."},
    {"_graph_chain", ht_graph_py_chain, METH_VARARGS, "A rooted chain of n objects (tests)."},
    {NULL, NULL, 0, NULL},
};

int
ht_graph_init(PyObject *m)
{
    if (PyModule_AddIntConstant(m, "OBJ_ROOT", HT_OBJ_ROOT) < 0 ||
        PyModule_AddIntConstant(m, "OBJ_UNREACHABLE", HT_OBJ_UNREACHABLE) < 0 ||
        PyModule_AddIntConstant(m, "OBJ_FINALIZER", HT_OBJ_FINALIZER) < 0 ||
        PyModule_AddIntConstant(m, "OBJ_LEGACY_DEL", HT_OBJ_LEGACY_DEL) < 0 ||
        PyModule_AddIntConstant(m, "OBJ_MODULE", HT_OBJ_MODULE) < 0 ||
        PyModule_AddIntConstant(m, "OBJ_FRAME", HT_OBJ_FRAME) < 0)
        return -1;
    return PyModule_AddFunctions(m, ht_graph_methods);
}
