/* blockmap.h - the tracer's block map: block address -> record index, laid
 * out by address so that neighbouring blocks share cache lines.
 *
 * An address a (16-byte aligned, as pymalloc's and glibc's blocks are) lives
 * in page a >> 12, slot (a >> 4) & 255 of that page's array of 256 uint32
 * (record index + 1, 0 = empty). Pages are found through a two-level radix
 * directory (page number -> page index + 1: a top array of 2^21 pointers,
 * reserved with mmap and touched only where used, then arrays of 2^14
 * uint32, 64 KiB each covering 64 MiB of address space) for page numbers
 * below 2^35 (47-bit user space), else through the shared ht_table; a
 * one-entry cache of the last page sits in front. The radix costs a few
 * instructions where the hash probe cost ~40 on every miss of that cache
 * (alloc and free alternate between pages: it misses often).
 * Objects allocated together sit in the same pool, so their slots share a
 * cache line (16 slots = 256 bytes of address space per line), where a hash
 * table scatters them over random lines. Addresses that are not 16-byte
 * aligned (an unusual allocator under ours) go to an ht_table beside.
 *
 * Memory: 1 KiB per 4 KiB page that ever held a traced block, until
 * ht_bm_free (a page is kept when it empties: the same pages are reused).
 * No locking: the tracer protects it (with the GIL, see tracer.h).
 * Memory comes from libc malloc; functions returning int return 0 on success
 * and -1 when out of memory (no Python exception set).
 */
#ifndef HT_BLOCKMAP_H
#define HT_BLOCKMAP_H

#include <stdint.h>
#include <stddef.h>

#include "hashtable.h"

#define HT_BM_PAGE_SHIFT 12
#define HT_BM_GRAIN_SHIFT 4
#define HT_BM_SLOTS (1u << (HT_BM_PAGE_SHIFT - HT_BM_GRAIN_SHIFT))
#define HT_BM_LEAF_BITS 14
#define HT_BM_TOP_BITS 21  /* 12 + 21 + 14 = 47 bits of address */

typedef struct ht_bm {
    uint32_t **top;      /* [2^HT_BM_TOP_BITS] radix leaves (page index + 1), mmap'ed; NULL if unavailable */
    uint32_t nleaves;    /* leaves allocated */
    ht_table dir;        /* page number + 1 -> page index, for pages beyond the radix */
    uint32_t **pages;    /* [npages] arrays of HT_BM_SLOTS (record index + 1) */
    uint64_t *pageno;    /* [npages] page numbers */
    uint32_t npages, cappages;
    uint64_t last_key;   /* page number + 1 of the last page used, 0 = none */
    uint32_t *last;      /* its array */
    ht_table odd;        /* unaligned address -> record index */
    uint64_t count;      /* blocks in the map */
} ht_bm;

int ht_bm_init(ht_bm *m);
void ht_bm_free(ht_bm *m);
/* Empties the map, keeping its pages. */
void ht_bm_clear(ht_bm *m);

/* Maps addr -> idx. Returns 1 when added, 0 when addr was mapped already
 * (its previous index stored in *prev and replaced), -1 out of memory. */
static inline int ht_bm_put(ht_bm *m, uint64_t addr, uint32_t idx, uint32_t *prev);
/* Unmaps addr: 1 and its index in *idx, or 0 when absent. */
static inline int ht_bm_take(ht_bm *m, uint64_t addr, uint32_t *idx);
/* Their out-of-line halves: unaligned addresses, pages not mapped yet. The
 * inline versions (below) handle aligned addresses on existing pages. */
int ht_bm_put_slow(ht_bm *m, uint64_t addr, uint32_t idx, uint32_t *prev);
int ht_bm_take_slow(ht_bm *m, uint64_t addr, uint32_t *idx);
/* The index of addr, or UINT32_MAX when absent. */
uint32_t ht_bm_find(ht_bm *m, uint64_t addr);
/* Calls fn(addr, idx, arg) for every mapped block. */
void ht_bm_foreach(const ht_bm *m, void (*fn)(uint64_t addr, uint32_t idx, void *arg), void *arg);
size_t ht_bm_memory(const ht_bm *m);

/* ---- inline fast path (every traced allocation and free) ---------------- */

/* addr's slot when addr is aligned and its page exists, else NULL. */
static inline uint32_t *
ht_bm_slot(ht_bm *m, uint64_t addr)
{
    if (addr & ((1u << HT_BM_GRAIN_SHIFT) - 1))
        return NULL;
    uint64_t pn = addr >> HT_BM_PAGE_SHIFT;
    uint32_t *arr;
    if (pn + 1 == m->last_key)
        arr = m->last;
    else {
        if (m->top == NULL || pn >= (1ULL << (HT_BM_TOP_BITS + HT_BM_LEAF_BITS)))
            return NULL;
        const uint32_t *leaf = m->top[pn >> HT_BM_LEAF_BITS];
        uint32_t v = leaf == NULL ? 0 : leaf[pn & ((1u << HT_BM_LEAF_BITS) - 1)];
        if (v == 0)
            return NULL;
        arr = m->pages[v - 1];
        m->last_key = pn + 1;
        m->last = arr;
    }
    return &arr[(uint32_t)(addr >> HT_BM_GRAIN_SHIFT) & (HT_BM_SLOTS - 1)];
}

/* put and take on a slot found by ht_bm_slot (a slot stays valid until
 * ht_bm_clear or ht_bm_free: pages are never moved). */
static inline int
ht_bm_put_at(ht_bm *m, uint32_t *s, uint32_t idx, uint32_t *prev)
{
    int added = *s == 0;
    if (!added)
        *prev = *s - 1;
    *s = idx + 1;
    m->count += (uint64_t)added;
    return added;
}

static inline int
ht_bm_take_at(ht_bm *m, uint32_t *s, uint32_t *idx)
{
    if (*s == 0)
        return 0;
    *idx = *s - 1;
    *s = 0;
    m->count--;
    return 1;
}

static inline int
ht_bm_put(ht_bm *m, uint64_t addr, uint32_t idx, uint32_t *prev)
{
    uint32_t *s = ht_bm_slot(m, addr);
    if (s == NULL)
        return ht_bm_put_slow(m, addr, idx, prev);
    return ht_bm_put_at(m, s, idx, prev);
}

static inline int
ht_bm_take(ht_bm *m, uint64_t addr, uint32_t *idx)
{
    uint32_t *s = ht_bm_slot(m, addr);
    if (s == NULL)
        return ht_bm_take_slow(m, addr, idx);
    return ht_bm_take_at(m, s, idx);
}

#endif
