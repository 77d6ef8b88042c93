/* bigmem.c - big growable arrays as mappings of their own (see bigmem.h). */
#define _GNU_SOURCE 1 /* mremap */
#include "bigmem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define HT_BIG_HDR 64                    /* keeps the data 64-byte aligned */
#define HT_BIG_MAP_MIN ((size_t)128 << 10) /* glibc's own initial threshold */
#if defined(__linux__) && defined(MREMAP_MAYMOVE) && !defined(__SANITIZE_ADDRESS__)
#define HT_BIG_USE_MMAP 1
#else
#define HT_BIG_USE_MMAP 0
#endif

typedef struct {
    size_t maplen;   /* length of the mapping, 0 for a malloc block */
    size_t size;     /* bytes of data asked for */
    int flags;       /* HT_BIG_* the block was made with, and HT_BIG__RESERVED */
} ht_big_hdr;

/* The mapping is longer than the block (ht_big_reserve): the block grows
 * in it without a system call, and has only grown since it was reserved
 * (so every page past its size's last one is as the kernel gave it). */
#define HT_BIG__RESERVED (1 << 30)

#if HT_BIG_USE_MMAP
/* Moves the block at base (maplen 0: a malloc block) to a mapping of need
 * bytes; NULL on failure. */
static char *
ht_big__map(char *base, size_t maplen, size_t need, size_t keep, int flags)
{
    char *q;
    if (maplen) {
        q = mremap(base, maplen, need, MREMAP_MAYMOVE);
    } else {
        q = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (q != MAP_FAILED && base) {
            memcpy(q + HT_BIG_HDR, base + HT_BIG_HDR, keep);
            free(base);
        }
    }
    if (q == MAP_FAILED)
        return NULL;
    if (flags & HT_BIG_HUGE)
        (void)madvise(q, need, MADV_HUGEPAGE); /* best effort: only speed is lost */
    ((ht_big_hdr *)q)->maplen = need;
    return q;
}
#endif

void *
ht_big_realloc(void *p, size_t n, int flags)
{
    char *base = p ? (char *)p - HT_BIG_HDR : NULL;
    size_t maplen = base ? ((ht_big_hdr *)base)->maplen : 0;
    size_t old = base ? ((ht_big_hdr *)base)->size : 0;
    if (base)
        flags = ((ht_big_hdr *)base)->flags;
    size_t need = n + HT_BIG_HDR;
    if (need < n)
        return NULL;
    char *q;
#if HT_BIG_USE_MMAP
    if ((flags & HT_BIG__RESERVED) && need <= maplen && n >= old) {
        ((ht_big_hdr *)base)->size = n; /* grows in its reservation */
        return p;
    }
    flags &= ~HT_BIG__RESERVED; /* a shrink or a move gives the rest back */
    if (maplen || need >= HT_BIG_MAP_MIN) {
        q = ht_big__map(base, maplen, need, old < n ? old : n, flags);
        if (q == NULL)
            return NULL;
    } else
#endif
    {
        (void)maplen;
        (void)old;
        q = realloc(base, need);
        if (q == NULL)
            return NULL;
        ((ht_big_hdr *)q)->maplen = 0;
    }
    ((ht_big_hdr *)q)->size = n;
    ((ht_big_hdr *)q)->flags = flags;
    return q + HT_BIG_HDR;
}

void *
ht_big_alloc(size_t n, int flags)
{
    return ht_big_realloc(NULL, n, flags);
}

void *
ht_big_alloc_zero(size_t n, int flags)
{
    return ht_big_realloc_zero(NULL, n, flags);
}

void *
ht_big_realloc_zero(void *p, size_t n, int flags)
{
    ht_big_hdr *hdr = p ? (ht_big_hdr *)((char *)p - HT_BIG_HDR) : NULL;
    size_t old = hdr ? hdr->size : 0;
    size_t old_map = hdr ? hdr->maplen : 0;
    int reserved = hdr ? (hdr->flags & HT_BIG__RESERVED) : 0;
    char *q = ht_big_realloc(p, n, flags); /* hdr is stale from here */
    if (q == NULL || n <= old)
        return q;
    size_t zero_end = n;
    if (((ht_big_hdr *)(q - HT_BIG_HDR))->maplen) {
        /* a mapping: every page past the old one's last page is fresh from
         * the kernel (zero), and so is all of a new mapping; that last page
         * may hold bytes of an earlier, larger size (a shrink keeps it).
         * A reserved mapping (longer than the block) has only grown: its
         * fresh pages start after the old size's last page. */
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        size_t used = reserved ? old + HT_BIG_HDR : old_map;
        size_t last = (used + page - 1) / page * page;
        zero_end = old_map == 0 ? old : last - HT_BIG_HDR < n ? last - HT_BIG_HDR : n;
    }
    if (zero_end > old)
        memset(q + old, 0, zero_end - old);
    return q;
}

void
ht_big_free(void *p)
{
    if (p == NULL)
        return;
    char *base = (char *)p - HT_BIG_HDR;
#if HT_BIG_USE_MMAP
    if (((ht_big_hdr *)base)->maplen) {
        munmap(base, ((ht_big_hdr *)base)->maplen);
        return;
    }
#endif
    free(base);
}

void *
ht_big_reserve(size_t n)
{
#if HT_BIG_USE_MMAP
    size_t need = n + HT_BIG_HDR;
    if (need < n)
        return NULL;
    /* MAP_NORESERVE: the room is not charged to the commit limit (pages
     * are still only taken when touched) */
    char *q = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (q == MAP_FAILED)
        return NULL;
    ht_big_hdr *hdr = (ht_big_hdr *)q;
    hdr->maplen = need;
    hdr->size = 0;
    hdr->flags = HT_BIG__RESERVED; /* no huge pages: see heap.c ht_hw_reserve */
    return q + HT_BIG_HDR;
#else
    (void)n;
    return NULL;
#endif
}

void
ht_big_trim(void *p)
{
#if HT_BIG_USE_MMAP
    if (p == NULL)
        return;
    char *base = (char *)p - HT_BIG_HDR;
    ht_big_hdr *hdr = (ht_big_hdr *)base;
    if (!(hdr->flags & HT_BIG__RESERVED))
        return;
    size_t need = hdr->size + HT_BIG_HDR;
    /* a shrink in place (no MREMAP_MAYMOVE): p stays */
    if (mremap(base, hdr->maplen, need, 0) == MAP_FAILED)
        return; /* best effort: the room stays until the block is freed */
    hdr->maplen = need;
    hdr->flags &= ~HT_BIG__RESERVED;
#else
    (void)p;
#endif
}

int
ht_big_can_reserve(void)
{
#if HT_BIG_USE_MMAP
    /* strict overcommit (mode 2) ignores MAP_NORESERVE and would charge the
     * whole room to the commit limit; an address-space limit would be
     * spent on it */
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur != RLIM_INFINITY)
        return 0;
    FILE *f = fopen("/proc/sys/vm/overcommit_memory", "r");
    int mode = 2;
    if (f != NULL) {
        if (fscanf(f, "%d", &mode) != 1)
            mode = 2;
        fclose(f);
    }
    return mode != 2;
#else
    return 0;
#endif
}

size_t
ht_big_mapping(void *p, char **start)
{
#if HT_BIG_USE_MMAP
    if (p != NULL) {
        char *base = (char *)p - HT_BIG_HDR;
        size_t maplen = ((ht_big_hdr *)base)->maplen;
        if (maplen) {
            *start = base;
            return maplen;
        }
    }
#else
    (void)p;
#endif
    *start = NULL;
    return 0;
}
