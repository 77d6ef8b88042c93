/* stacks.h - the tracer's Python stack capture and interning: a trie of
 * stack nodes, node = (caller node, code object, instruction offset).
 *
 * Every function here is called with the GIL held, and the GIL is what
 * protects these tables: stacks are only captured by a thread that holds
 * it (MEM and OBJ hooks always do; RAW hooks check PyGILState_Check() and
 * record no stack without it). Nothing here allocates through Python's
 * allocators except the frame objects CPython materializes on demand.
 *
 * Nodes: node n is "code[n] at offset lasti[n], called from parent[n]"
 * (HT_NONE for the outermost captured frame). The line number is not
 * computed in the hot path: PyCode_Addr2Line turns (code, lasti) into a
 * line at snapshot time. A node names the canonical code object of its
 * content (file, qualified name, first line, line table: the first one
 * seen), and holds a strong reference to it, so a code pointer is never
 * reused while a node names it; the copies a program compiles again (exec,
 * eval) are not kept alive and add no nodes. The number of nodes is bounded
 * only by the number of distinct (stack, instruction) pairs seen while
 * tracing (at most `frames` deep each); they are released by
 * ht_stk_reset() (tracer stop).
 *
 * Frame cache: frame object -> caller node. A running frame's callers never
 * change, so once a frame has been seen the next allocation in it costs one
 * lookup and one intern, whatever the depth. An entry is dropped when the
 * frame object's memory is freed (the tracer's OBJ free hook calls
 * ht_stk_block_freed), so a reused address never inherits a stale caller.
 * Generator and coroutine frames are never cached: they resume under
 * different callers.
 */
#ifndef HT_STACKS_H
#define HT_STACKS_H

#include "common.h"
#include "hashtable.h"

#ifndef HT_NONE
#define HT_NONE UINT32_MAX
#endif

/* Prepares empty tables. 0, or -1 when out of memory (no exception). */
int ht_stk_start(void);

/* Releases every node (dropping code references when `decref`, i.e. when the
 * interpreter is still alive) and the frame cache. */
void ht_stk_reset(int decref);

/* The innermost node of the calling thread's Python stack, keeping the
 * innermost `limit` frames; HT_NONE when there is no Python frame or memory
 * ran out. `use_cache` = 0 walks every frame (sampling: rare captures, and
 * no frame-cache upkeep on frees). Caller holds the GIL and has set its
 * re-entrancy guard (frame objects may be allocated here). */
static inline uint32_t ht_stk_capture(unsigned limit, int use_cache);
/* Its slow half: the memo missed (or use_cache = 0) for top at lasti. */
uint32_t ht_stk_capture_walk(PyFrameObject *top, int32_t lasti, unsigned limit, int use_cache);

/* Empties the frame cache (the depth limit changed). */
void ht_stk_forget_frames(void);

/* The OBJ-domain block at `block` is being freed: forget it if it was a
 * cached frame object. Cheap when it was not (one probe). */
static inline void ht_stk_block_freed(void *block);

/* Node accessors (n < ht_stk_count()). */
uint32_t ht_stk_count(void);
uint32_t ht_stk_parent(uint32_t n);
PyObject *ht_stk_code(uint32_t n);  /* borrowed */
int ht_stk_lasti(uint32_t n);

/* Bytes held by the node arrays and tables. */
size_t ht_stk_memory(void);

/* ---- inline part (the free hook's fast path) ---------------------------- */

/* Frame cache, keyed by the frame object's block address (object address
 * minus the GC header), so a freed block is looked up as it comes. */
extern ht_table ht_stk_frames;

/* The capture memo: (frame, instruction) -> node for the instructions that
 * allocate, a few per frame (a loop body allocates at several), in a small
 * table indexed by the frame's block. A memoized frame is always in the
 * frame cache too, so the free hook looks at the memo only when the
 * frame-cache filter says the block may be a cached frame. */
#define HT_STK_MEMO_BITS 8
#define HT_STK_MEMO_WAYS 4
typedef struct ht_stk_memo_t {
    uint64_t block;   /* frame block, 0 = empty */
    unsigned limit;   /* depth limit the nodes were captured under */
    int32_t lasti[HT_STK_MEMO_WAYS];  /* way (lasti / 2) % WAYS; INT32_MIN = empty */
    uint32_t node[HT_STK_MEMO_WAYS];
} ht_stk_memo_t;

/* The way of instruction offset lasti: direct-mapped, one compare (a loop
 * over the ways cost ~10 instructions a capture); consecutive instructions
 * (2-byte code units) land in different ways. */
static inline unsigned
ht_stk_memo_way(int32_t lasti)
{
    return ((uint32_t)lasti >> 1) % HT_STK_MEMO_WAYS;
}
extern ht_stk_memo_t ht_stk_memo[1u << HT_STK_MEMO_BITS];

static inline uint32_t
ht_stk_memo_index(uint64_t block)
{
    return (uint32_t)(((block >> 4) * 0x9E3779B97F4A7C15ULL) >> (64 - HT_STK_MEMO_BITS));
}

/* A counting filter over the frame cache's keys: most OBJ frees are not
 * cached frames, and a counter of zero says so without a probe of the table
 * (a probe was ~30 instructions on every OBJ free). Counters are kept equal
 * to the number of keys in their bucket; saturated ones stay (a false
 * positive only costs the probe). */
#define HT_STK_FILTER_BITS 12  /* 4 KiB: stays in L1 (16K uint16 did not: ~20% of a free) */
extern uint8_t ht_stk_filter[1u << HT_STK_FILTER_BITS];

static inline uint32_t
ht_stk_filter_index(uint64_t block)
{
    return (uint32_t)(((block >> 4) * 0x9E3779B97F4A7C15ULL) >> (64 - HT_STK_FILTER_BITS));
}

static inline void
ht_stk_block_freed(void *block)
{
    uint64_t b = (uint64_t)(uintptr_t)block;
    uint8_t *c = &ht_stk_filter[ht_stk_filter_index(b)];
    if (HT_LIKELY(*c == 0))
        return;
    if (ht_table_remove(&ht_stk_frames, b, NULL) && *c != UINT8_MAX)
        (*c)--;
    ht_stk_memo_t *m = &ht_stk_memo[ht_stk_memo_index(b)];
    if (m->block == b)
        m->block = 0;
}

/* The memoized node of (block, lasti) under `limit`: 1 and *node, or 0. */
static inline int
ht_stk_memo_get(uint64_t block, int32_t lasti, unsigned limit, uint32_t *node)
{
    const ht_stk_memo_t *m = &ht_stk_memo[ht_stk_memo_index(block)];
    unsigned w = ht_stk_memo_way(lasti);
    if (m->block == block && m->lasti[w] == lasti && m->limit == limit) {
        *node = m->node[w];
        return 1;
    }
    return 0;
}

/* Inline: most captures are a memo hit (same frame, same instruction as
 * before: a dict and its keys, every object json.loads builds), which then
 * costs two calls into CPython and one probe, no call of ours. */
static inline uint32_t
ht_stk_capture(unsigned limit, int use_cache)
{
    PyFrameObject *top = PyEval_GetFrame();
    if (top == NULL)
        return HT_NONE;
    int32_t lasti = PyFrame_GetLasti(top);
    uint32_t node;
    /* frame objects sit after a GC header of two words (see stacks.c) */
    if (use_cache && ht_stk_memo_get((uint64_t)(uintptr_t)top - 2 * sizeof(void *), lasti, limit, &node))
        return node;
    return ht_stk_capture_walk(top, lasti, limit, use_cache);
}

#endif
