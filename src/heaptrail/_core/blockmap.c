/* blockmap.c - address-ordered block map for the tracer (see blockmap.h). */
#define _DEFAULT_SOURCE 1  /* MAP_ANONYMOUS, MAP_NORESERVE under -std=c11 */
#include "blockmap.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define BM_TOP_BYTES (sizeof(uint32_t *) << HT_BM_TOP_BITS)
#define BM_LEAF_MASK ((1u << HT_BM_LEAF_BITS) - 1)
#define BM_IN_RADIX(pn) ((pn) < (1ULL << (HT_BM_TOP_BITS + HT_BM_LEAF_BITS)))

#define BM_ALIGNED(a) (((a) & ((1u << HT_BM_GRAIN_SHIFT) - 1)) == 0)
#define BM_SLOT(a) ((uint32_t)((a) >> HT_BM_GRAIN_SHIFT) & (HT_BM_SLOTS - 1))

int
ht_bm_init(ht_bm *m)
{
    memset(m, 0, sizeof(*m));
    if (ht_table_init(&m->dir, 1024, 1) < 0 || ht_table_init(&m->odd, 16, 1) < 0) {
        ht_bm_free(m);
        return -1;
    }
    /* reserved, not touched: only the lines of used entries become resident */
    void *top = mmap(NULL, BM_TOP_BYTES, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    m->top = top == MAP_FAILED ? NULL : top;  /* without it, every page goes to dir */
    return 0;
}

void
ht_bm_free(ht_bm *m)
{
    for (uint32_t i = 0; i < m->npages; i++)
        free(m->pages[i]);
    free(m->pages);
    if (m->top != NULL) {
        /* every leaf holds a page: free leaves through the pages' numbers
         * (a scan of the top array would touch all of it) */
        for (uint32_t i = 0; i < m->npages; i++) {
            uint64_t pn = m->pageno[i];
            if (BM_IN_RADIX(pn)) {
                free(m->top[pn >> HT_BM_LEAF_BITS]);
                m->top[pn >> HT_BM_LEAF_BITS] = NULL;
            }
        }
        munmap(m->top, BM_TOP_BYTES);
    }
    free(m->pageno);
    ht_table_free(&m->dir);
    ht_table_free(&m->odd);
    memset(m, 0, sizeof(*m));
}

void
ht_bm_clear(ht_bm *m)
{
    for (uint32_t i = 0; i < m->npages; i++)
        memset(m->pages[i], 0, HT_BM_SLOTS * sizeof(uint32_t));
    ht_table_clear(&m->odd);
    m->count = 0;
}

/* The slot array of addr's page, created when `create`; NULL when absent
 * (or out of memory while creating). */
/* Page number pn's entry in the radix (page index + 1, 0 = none), its leaf
 * created when `create`; NULL when pn is beyond the radix or out of memory. */
static uint32_t *
bm_radix_slot(ht_bm *m, uint64_t pn, int create)
{
    if (m->top == NULL || !BM_IN_RADIX(pn))
        return NULL;
    uint32_t **leaf = &m->top[pn >> HT_BM_LEAF_BITS];
    if (__builtin_expect(*leaf == NULL, 0)) {
        if (!create)
            return NULL;
        *leaf = calloc((size_t)1 << HT_BM_LEAF_BITS, sizeof(uint32_t));
        if (*leaf == NULL)
            return NULL;
        m->nleaves++;
    }
    return &(*leaf)[pn & BM_LEAF_MASK];
}

/* Page pn's existing index, or UINT32_MAX. */
static inline uint32_t
bm_lookup(ht_bm *m, uint64_t pn)
{
    if (m->top != NULL && BM_IN_RADIX(pn)) {
        uint32_t *leaf = m->top[pn >> HT_BM_LEAF_BITS];
        uint32_t v = leaf == NULL ? 0 : leaf[pn & BM_LEAF_MASK];
        return v - 1;  /* 0 -> UINT32_MAX */
    }
    uint64_t *v = ht_table_find(&m->dir, pn + 1);
    return v == NULL ? UINT32_MAX : (uint32_t)*v;
}

/* A new page array for page pn; NULL when out of memory. Out of line: the
 * callers' fast path then saves no registers (that was ~18 instructions of
 * the ~38 bm_page cost a call). */
static __attribute__((noinline, cold)) uint32_t *
bm_new_page(ht_bm *m, uint64_t pn)
{
    if (m->npages == m->cappages) {
        uint32_t cap = m->cappages ? m->cappages * 2 : 256;
        uint32_t **p = realloc(m->pages, cap * sizeof(uint32_t *));
        if (p == NULL)
            return NULL;
        m->pages = p;
        uint64_t *n = realloc(m->pageno, cap * sizeof(uint64_t));
        if (n == NULL)
            return NULL;
        m->pageno = n;
        m->cappages = cap;
    }
    uint32_t *arr = calloc(HT_BM_SLOTS, sizeof(uint32_t));
    if (arr == NULL)
        return NULL;
    uint32_t *rs = bm_radix_slot(m, pn, 1);
    if (rs != NULL)
        *rs = m->npages + 1;
    else if ((m->top != NULL && BM_IN_RADIX(pn)) || ht_table_put(&m->dir, pn + 1, m->npages) < 0) {
        free(arr);  /* out of memory for the radix leaf or the table */
        return NULL;
    }
    m->pages[m->npages] = arr;
    m->pageno[m->npages] = pn;
    m->npages++;
    return arr;
}

/* The slot array of addr's page, created when `create`; NULL when absent
 * (or out of memory while creating). */
static inline uint32_t *
bm_page(ht_bm *m, uint64_t addr, int create)
{
    uint64_t key = (addr >> HT_BM_PAGE_SHIFT) + 1;
    if (key == m->last_key)
        return m->last;
    uint32_t i = bm_lookup(m, key - 1);
    uint32_t *arr;
    if (i != UINT32_MAX)
        arr = m->pages[i];
    else if (!create || (arr = bm_new_page(m, key - 1)) == NULL)
        return NULL;
    m->last_key = key;
    m->last = arr;
    return arr;
}

int
ht_bm_put_slow(ht_bm *m, uint64_t addr, uint32_t idx, uint32_t *prev)
{
    if (!BM_ALIGNED(addr)) {
        int added;
        uint64_t *v = ht_table_upsert(&m->odd, addr, idx, &added);
        if (v == NULL)
            return -1;
        if (!added) {
            *prev = (uint32_t)*v;
            *v = idx;
            return 0;
        }
        m->count++;
        return 1;
    }
    uint32_t *arr = bm_page(m, addr, 1);
    if (arr == NULL)
        return -1;
    uint32_t *s = &arr[BM_SLOT(addr)];
    if (*s != 0) {
        *prev = *s - 1;
        *s = idx + 1;
        return 0;
    }
    *s = idx + 1;
    m->count++;
    return 1;
}

int
ht_bm_take_slow(ht_bm *m, uint64_t addr, uint32_t *idx)
{
    if (!BM_ALIGNED(addr)) {
        uint64_t v;
        if (!ht_table_remove(&m->odd, addr, &v))
            return 0;
        *idx = (uint32_t)v;
        m->count--;
        return 1;
    }
    uint32_t *arr = bm_page(m, addr, 0);
    if (arr == NULL)
        return 0;
    uint32_t *s = &arr[BM_SLOT(addr)];
    if (*s == 0)
        return 0;
    *idx = *s - 1;
    *s = 0;
    m->count--;
    return 1;
}

uint32_t
ht_bm_find(ht_bm *m, uint64_t addr)
{
    if (!BM_ALIGNED(addr)) {
        uint64_t *v = ht_table_find(&m->odd, addr);
        return v == NULL ? UINT32_MAX : (uint32_t)*v;
    }
    uint32_t *arr = bm_page(m, addr, 0);
    if (arr == NULL || arr[BM_SLOT(addr)] == 0)
        return UINT32_MAX;
    return arr[BM_SLOT(addr)] - 1;
}

void
ht_bm_foreach(const ht_bm *m, void (*fn)(uint64_t addr, uint32_t idx, void *arg), void *arg)
{
    for (uint32_t p = 0; p < m->npages; p++) {
        const uint32_t *arr = m->pages[p];
        uint64_t base = m->pageno[p] << HT_BM_PAGE_SHIFT;
        for (uint32_t s = 0; s < HT_BM_SLOTS; s++)
            if (arr[s] != 0)
                fn(base | ((uint64_t)s << HT_BM_GRAIN_SHIFT), arr[s] - 1, arg);
    }
    for (size_t i = 0; m->odd.keys != NULL && i <= m->odd.mask; i++)
        if (m->odd.keys[i] != 0)
            fn(m->odd.keys[i], (uint32_t)m->odd.values[i], arg);
}

size_t
ht_bm_memory(const ht_bm *m)
{
    return (size_t)m->npages * HT_BM_SLOTS * sizeof(uint32_t) +
           (size_t)m->cappages * (sizeof(uint32_t *) + sizeof(uint64_t)) +
           (size_t)m->nleaves * ((size_t)sizeof(uint32_t) << HT_BM_LEAF_BITS) +
           ht_table_memory(&m->dir) + ht_table_memory(&m->odd);
}
