/* stacks.c - Python stack capture and the stack trie (see stacks.h). */
#include "stacks.h"

#include <stdlib.h>
#include <string.h>

#include "bigmem.h"

/* A node not yet asked for its "outermost frame dropped" twin. */
#define STK_UNKNOWN (UINT32_MAX - 1)
/* Size of the GC header that precedes a frame object in its block
 * (PyGC_Head: two words on every supported version; frames have no other
 * pre-header). */
#define STK_GC_HEAD (2 * sizeof(void *))

typedef struct stk_node {
    PyObject *code;   /* strong reference */
    uint32_t parent;  /* caller's node or HT_NONE */
    uint32_t trunc;   /* same stack without its outermost frame, STK_UNKNOWN until asked */
    int32_t lasti;    /* PyFrame_GetLasti: byte offset of the current instruction */
    uint32_t depth;   /* frames from here to the outermost, 1 for a root */
} stk_node;

typedef struct stk_walk {
    PyFrameObject *frame;  /* borrowed: frames on the running stack are kept alive by it */
    PyObject *code;        /* borrowed from the frame */
    int32_t lasti;
    int cached;            /* found in the frame cache (so not a generator's frame) */
} stk_walk;

/* All protected by the GIL (see stacks.h). */
static stk_node *stk_nodes;
static uint32_t stk_count, stk_cap;
static ht_table stk_index;  /* hash of (parent, code, lasti) -> node, checked on hit */
ht_table ht_stk_frames;     /* frame block address -> caller node */
ht_stk_memo_t ht_stk_memo[1u << HT_STK_MEMO_BITS];  /* (frame, lasti) -> node, see stacks.h */
uint8_t ht_stk_filter[1u << HT_STK_FILTER_BITS];  /* keys of ht_stk_frames per bucket */
/* A direct-mapped cache in front of stk_index: a hit costs a multiply and
 * three compares where the table costs a 64-bit mix, a probe and the same
 * compares (~80 instructions; a deep walk interns every frame). Cleared
 * with the nodes: a node's code reference keeps the code pointer unique. */
#define STK_ICACHE_BITS 10
typedef struct stk_icache_t {
    PyObject *code;  /* NULL = empty */
    uint32_t parent;
    int32_t lasti;
    uint32_t node;
} stk_icache_t;
static stk_icache_t stk_icache[1u << STK_ICACHE_BITS];
/* Canonical code objects (see stk_canon): one per content, strong
 * references, in stk_canon_arr; stk_canon_index maps a hash of the content
 * to an index there (checked on hit); stk_ccache remembers code -> canon. */
static PyObject **stk_canon_arr;
static size_t stk_ncanon, stk_canon_cap;
static ht_table stk_canon_index;
#define STK_CCACHE_BITS 10
typedef struct stk_ccache_t {
    PyObject *code;   /* borrowed, maybe dead since: see stk_canon */
    PyObject *canon;  /* in stk_canon_arr, alive */
} stk_ccache_t;
static stk_ccache_t stk_ccache[1u << STK_CCACHE_BITS];
static stk_walk *stk_buf;   /* frames of the walk in progress */
static size_t stk_buf_cap;
static uint32_t *stk_chain; /* nodes whose truncation is being computed */
static size_t stk_chain_cap;

static uint64_t
stk_nonzero(uint64_t h)
{
    return h ? h : 1;
}

static int
stk_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 256;
    while (c < need)
        c *= 2;
    void *q = ht_big_realloc(*p, c * elem, 0);
    if (q == NULL)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

int
ht_stk_start(void)
{
    if (stk_index.keys == NULL && ht_table_init(&stk_index, 1024, 1) < 0)
        return -1;
    if (ht_stk_frames.keys == NULL && ht_table_init(&ht_stk_frames, 256, 1) < 0)
        return -1;
    if (stk_canon_index.keys == NULL && ht_table_init(&stk_canon_index, 256, 1) < 0)
        return -1;
    return 0;
}

void
ht_stk_reset(int decref)
{
    if (decref)
        for (uint32_t i = 0; i < stk_count; i++)
            Py_DECREF(stk_nodes[i].code);
    if (decref)
        for (size_t i = 0; i < stk_ncanon; i++)
            Py_DECREF(stk_canon_arr[i]);
    ht_big_free(stk_canon_arr);
    stk_canon_arr = NULL;
    stk_ncanon = stk_canon_cap = 0;
    ht_table_free(&stk_canon_index);
    memset(stk_ccache, 0, sizeof(stk_ccache));  /* its canons were just released */
    ht_big_free(stk_nodes);
    stk_nodes = NULL;
    stk_count = stk_cap = 0;
    ht_table_free(&stk_index);
    memset(stk_icache, 0, sizeof(stk_icache));
    ht_table_free(&ht_stk_frames);
    memset(ht_stk_filter, 0, sizeof(ht_stk_filter));
    memset(ht_stk_memo, 0, sizeof(ht_stk_memo));
    ht_big_free(stk_buf);
    stk_buf = NULL;
    stk_buf_cap = 0;
    ht_big_free(stk_chain);
    stk_chain = NULL;
    stk_chain_cap = 0;
}

/* ---- canonical code objects ----------------------------------------------
 * A node names the first code object seen with its content: file name,
 * qualified name, first line and line table, all that rendering a frame
 * reads (co_filename, co_qualname, PyCode_Addr2Line). Without it, a program
 * that compiles the same source again and again (exec, eval, templates)
 * made new nodes for every copy, and their references kept every copy
 * alive: the trie grew without bound and the program's dead code objects
 * (with their constants) stayed in its heap, traced as live blocks. Now the
 * copies die as they would untraced, and share their first copy's nodes. */

static int
stk_same_str(PyObject *a, PyObject *b)
{
    /* code objects' names are exact str: the comparison cannot fail */
    return a == b || (PyUnicode_CheckExact(a) && PyUnicode_CheckExact(b) &&
                      PyUnicode_Compare(a, b) == 0);
}

/* 1 when a and b render the same frames for every instruction offset. */
static int
stk_same_code(PyCodeObject *a, PyCodeObject *b)
{
    if (a->co_firstlineno != b->co_firstlineno || !stk_same_str(a->co_filename, b->co_filename) ||
        !stk_same_str(a->co_qualname, b->co_qualname))
        return 0;
    PyObject *la = a->co_linetable, *lb = b->co_linetable;
    return la == lb || (PyBytes_GET_SIZE(la) == PyBytes_GET_SIZE(lb) &&
                        memcmp(PyBytes_AS_STRING(la), PyBytes_AS_STRING(lb),
                               (size_t)PyBytes_GET_SIZE(la)) == 0);
}

/* An exact str's hash (computed once, cached in it, cannot fail); 0 for a
 * str subclass (code.replace() accepts one), whose __hash__ is Python code
 * that must not run in an allocator hook: stk_same_str compares those by
 * identity. */
static uint64_t
stk_str_hash(PyObject *s)
{
    return PyUnicode_CheckExact(s) ? (uint64_t)PyObject_Hash(s) : 0;
}

static uint64_t
stk_code_hash(PyCodeObject *co)
{
    uint64_t h = ht_hash_bytes(PyBytes_AS_STRING(co->co_linetable),
                               (size_t)PyBytes_GET_SIZE(co->co_linetable));
    h ^= stk_str_hash(co->co_filename) * 0x9e3779b97f4a7c15ULL;
    h ^= (stk_str_hash(co->co_qualname) << 1) ^ (uint64_t)(uint32_t)co->co_firstlineno;
    return stk_nonzero(ht_hash64(h));
}

/* The canonical copy of code (a new one: code itself); NULL when out of
 * memory (nothing changed). */
static PyObject *
stk_canon_table(PyObject *code)
{
    uint64_t key = stk_code_hash((PyCodeObject *)code);
    for (;;) {
        uint64_t *v = ht_table_find(&stk_canon_index, key);
        if (v == NULL)
            break;
        PyObject *c = stk_canon_arr[*v];
        if (c == code || stk_same_code((PyCodeObject *)code, (PyCodeObject *)c))
            return c;
        key = stk_nonzero(key + 1);  /* a true 64-bit collision: next key */
    }
    if (stk_grow((void **)&stk_canon_arr, &stk_canon_cap, stk_ncanon + 1, sizeof(PyObject *)) < 0 ||
        ht_table_put(&stk_canon_index, key, stk_ncanon) < 0)
        return NULL;
    Py_INCREF(code);
    stk_canon_arr[stk_ncanon++] = code;
    return code;
}

static inline PyObject *
stk_canon(PyObject *code)
{
    stk_ccache_t *e = &stk_ccache[((uint64_t)(uintptr_t)code * 0x9E3779B97F4A7C15ULL) >>
                                  (64 - STK_CCACHE_BITS)];
    /* e->code may have died and its address gone to another code object:
     * a canon equal to code is alive (we hold it), so is code itself;
     * otherwise the contents must still match. */
    if (e->code == code &&
        (e->canon == code || stk_same_code((PyCodeObject *)code, (PyCodeObject *)e->canon)))
        return e->canon;
    PyObject *c = stk_canon_table(code);
    if (c != NULL)
        *e = (stk_ccache_t){code, c};
    return c;
}

/* The node (parent, code, lasti), created if new; HT_NONE when out of
 * memory (nothing changed). */
static uint32_t stk_intern_table(uint32_t parent, PyObject *code, int32_t lasti);

static inline uint32_t
stk_intern(uint32_t parent, PyObject *code, int32_t lasti)
{
    code = stk_canon(code);
    if (code == NULL)
        return HT_NONE;
    uint64_t h = ((uint64_t)(uintptr_t)code >> 4) ^ ((uint64_t)parent << 20) ^ (uint32_t)lasti;
    stk_icache_t *e = &stk_icache[(h * 0x9E3779B97F4A7C15ULL) >> (64 - STK_ICACHE_BITS)];
    if (e->code == code && e->parent == parent && e->lasti == lasti)
        return e->node;
    uint32_t n = stk_intern_table(parent, code, lasti);
    if (n != HT_NONE)
        *e = (stk_icache_t){code, parent, lasti, n};
    return n;
}

static uint32_t
stk_intern_table(uint32_t parent, PyObject *code, int32_t lasti)
{
    uint64_t key = stk_nonzero(ht_hash64(((uint64_t)parent << 32 | (uint32_t)lasti) ^
                                         ((uint64_t)(uintptr_t)code * 0x9e3779b97f4a7c15ULL)));
    for (;;) {
        uint64_t *v = ht_table_find(&stk_index, key);
        if (v == NULL)
            break;
        const stk_node *n = &stk_nodes[*v];
        if (n->parent == parent && n->code == code && n->lasti == lasti)
            return (uint32_t)*v;
        key = stk_nonzero(key + 1);  /* a true 64-bit collision: next key */
    }
    if (stk_count >= STK_UNKNOWN - 1)
        return HT_NONE;
    size_t cap = stk_cap;
    if (stk_grow((void **)&stk_nodes, &cap, (size_t)stk_count + 1, sizeof(stk_node)) < 0)
        return HT_NONE;
    stk_cap = (uint32_t)cap;
    uint32_t id = stk_count;
    if (ht_table_put(&stk_index, key, id) < 0)
        return HT_NONE;
    Py_INCREF(code);
    stk_nodes[id] = (stk_node){code, parent, STK_UNKNOWN, lasti,
                               parent == HT_NONE ? 1 : stk_nodes[parent].depth + 1};
    stk_count++;
    return id;
}

/* Node n without its outermost frame (HT_NONE for a root), memoized so a
 * recursion deeper than the limit costs one intern per new level. Returns
 * STK_UNKNOWN when out of memory. */
static uint32_t
stk_drop_outer(uint32_t n)
{
    size_t len = 0;
    uint32_t cur = n;
    while (stk_nodes[cur].trunc == STK_UNKNOWN && stk_nodes[cur].depth > 1) {
        if (stk_grow((void **)&stk_chain, &stk_chain_cap, len + 1, sizeof(uint32_t)) < 0)
            return STK_UNKNOWN;
        stk_chain[len++] = cur;
        cur = stk_nodes[cur].parent;
    }
    if (stk_nodes[cur].trunc == STK_UNKNOWN)  /* a root */
        stk_nodes[cur].trunc = HT_NONE;
    uint32_t base = stk_nodes[cur].trunc;
    while (len > 0) {
        uint32_t x = stk_chain[--len];
        uint32_t t = stk_intern(base, stk_nodes[x].code, stk_nodes[x].lasti);
        if (t == HT_NONE)
            return STK_UNKNOWN;
        stk_nodes[x].trunc = t;  /* index, not pointer: intern may move the array */
        base = t;
    }
    return base;
}

/* Caches block's caller node; a new key counts in the filter (stacks.h).
 * 0, or -1 out of memory (the frame is walked again next time). */
static int
stk_cache_frame(uint64_t block, uint32_t caller)
{
    int added;
    uint64_t *v = ht_table_upsert(&ht_stk_frames, block, caller, &added);
    if (v == NULL)
        return -1;
    *v = caller;
    uint8_t *c = &ht_stk_filter[ht_stk_filter_index(block)];
    if (added && *c != UINT8_MAX)
        (*c)++;
    return 0;
}

/* Remembers (block, lasti) -> node; block is in the frame cache. */
static void
stk_memo_put(uint64_t block, int32_t lasti, unsigned limit, uint32_t node)
{
    ht_stk_memo_t *m = &ht_stk_memo[ht_stk_memo_index(block)];
    if (m->block != block || m->limit != limit) {
        m->block = block;
        m->limit = limit;
        for (int w = 0; w < HT_STK_MEMO_WAYS; w++)
            m->lasti[w] = INT32_MIN;
    }
    unsigned w = ht_stk_memo_way(lasti);
    m->lasti[w] = lasti;
    m->node[w] = node;
}

/* `caller` cut so that one more frame fits in `limit`. */
static uint32_t
stk_cap_to(uint32_t caller, unsigned limit)
{
    if (caller == HT_NONE || stk_nodes[caller].depth < limit)
        return caller;
    return stk_drop_outer(caller);
}

static int
stk_is_generator(PyFrameObject *f)
{
    PyObject *gen = PyFrame_GetGenerator(f);
    if (gen == NULL)
        return 0;
    Py_DECREF(gen);  /* the frame keeps its generator alive */
    return 1;
}

/* Pushes f's code and instruction on the walk buffer; -1 when out of memory. */
static int
stk_push(size_t n, PyFrameObject *f)
{
    if (stk_grow((void **)&stk_buf, &stk_buf_cap, n + 1, sizeof(stk_walk)) < 0)
        return -1;
    PyCodeObject *code = PyFrame_GetCode(f);
    Py_DECREF(code);  /* the frame keeps it alive */
    stk_buf[n] = (stk_walk){f, (PyObject *)code, PyFrame_GetLasti(f), 0};
    return 0;
}

/* Walks from f outwards until a caller whose (frame, instruction) is
 * memoized (use_cache; not pushed, its node is the caller), a cached frame
 * (use_cache; pushed too, its caller read from the cache) or `limit` frames
 * (no cache) or the outermost frame. A new call of a function (a new frame
 * object) thus costs one frame, not two: its caller, at the same call
 * instruction, is memoized. Sets *caller to the node above the last frame
 * pushed; returns the number of frames pushed, or -1 out of memory. */
static Py_ssize_t
stk_walk_up(PyFrameObject *f, unsigned limit, int use_cache, uint32_t *caller)
{
    size_t n = 0;
    Py_INCREF(f);
    *caller = HT_NONE;
    while (f != NULL) {
        if (use_cache && n > 0 &&  /* the top frame's memo was looked up already */
            ht_stk_memo_get((uint64_t)(uintptr_t)f - STK_GC_HEAD, PyFrame_GetLasti(f), limit, caller)) {
            Py_DECREF(f);
            return (Py_ssize_t)n;
        }
        if (use_cache) {
            uint64_t *v = ht_table_find(&ht_stk_frames, (uint64_t)(uintptr_t)f - STK_GC_HEAD);
            if (v != NULL) {  /* f's callers are known: only f itself to intern */
                *caller = (uint32_t)*v;
                int rc = stk_push(n, f);
                Py_DECREF(f);
                if (rc < 0)
                    return -1;
                stk_buf[n].cached = 1;
                return (Py_ssize_t)n + 1;
            }
        }
        else if (n >= limit) {
            Py_DECREF(f);
            return (Py_ssize_t)n;
        }
        if (stk_push(n, f) < 0) {
            Py_DECREF(f);
            return -1;
        }
        n++;
        PyFrameObject *back = PyFrame_GetBack(f);  /* may materialize the caller's frame */
        Py_DECREF(f);  /* the running stack keeps it alive */
        f = back;
    }
    return (Py_ssize_t)n;
}

uint32_t
ht_stk_capture_walk(PyFrameObject *top, int32_t lasti, unsigned limit, int use_cache)
{
    if (stk_index.keys == NULL)
        return HT_NONE;
    uint32_t caller;
    Py_ssize_t n = stk_walk_up(top, limit, use_cache, &caller);
    if (n < 0)
        return HT_NONE;
    /* from the outermost walked frame inwards */
    for (Py_ssize_t i = n - 1; i >= 0; i--) {
        stk_walk w = stk_buf[i];
        uint32_t parent = stk_cap_to(caller, limit);
        if (parent == STK_UNKNOWN)
            return HT_NONE;
        uint32_t node = stk_intern(parent, w.code, w.lasti);
        if (node == HT_NONE)
            return HT_NONE;
        uint64_t b = (uint64_t)(uintptr_t)w.frame - STK_GC_HEAD;
        /* memoized only when in the frame cache: its free then clears it
         * (a frame found there is in it already, with this caller) */
        if (use_cache && (w.cached || (!stk_is_generator(w.frame) && stk_cache_frame(b, caller) == 0)))
            stk_memo_put(b, w.lasti, limit, node);
        caller = node;
    }
    return caller;
}

void
ht_stk_forget_frames(void)
{
    ht_table_clear(&ht_stk_frames);
    memset(ht_stk_filter, 0, sizeof(ht_stk_filter));
    memset(ht_stk_memo, 0, sizeof(ht_stk_memo));
}

uint32_t
ht_stk_count(void)
{
    return stk_count;
}

uint32_t
ht_stk_parent(uint32_t n)
{
    return stk_nodes[n].parent;
}

PyObject *
ht_stk_code(uint32_t n)
{
    return stk_nodes[n].code;
}

int
ht_stk_lasti(uint32_t n)
{
    return stk_nodes[n].lasti;
}

size_t
ht_stk_memory(void)
{
    return (size_t)stk_cap * sizeof(stk_node) + ht_table_memory(&stk_index) +
           stk_canon_cap * sizeof(PyObject *) + ht_table_memory(&stk_canon_index) +
           ht_table_memory(&ht_stk_frames) + stk_buf_cap * sizeof(stk_walk) +
           stk_chain_cap * sizeof(uint32_t);
}
