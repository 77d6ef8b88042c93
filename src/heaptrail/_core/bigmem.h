/* bigmem.h - big growable arrays as mappings of their own.
 *
 * Why: glibc serves a block of 128 KiB or more with a mapping of its own,
 * but freeing one raises its threshold to that block's size (up to 32 MiB),
 * so the next blocks of that size come from the program's malloc heap,
 * where they stay resident after free() wherever a live block sits above
 * them. A tracer started and stopped twice, or a snapshot taken twice, then
 * left the program's peak RSS higher by the size of its tables (measured:
 * 49 MB, then 54 and 56 MB across three traced runs of alloc_heavy; 49 MB
 * each time with these arrays as mappings). Blocks of HT_BIG_MAP_MIN bytes
 * or more are mmap'd here (grown with mremap, unmapped when freed), so the
 * profiler neither moves malloc's threshold nor pins memory in the
 * program's heap. Smaller blocks, and every block under ASan (which checks
 * malloc blocks only), come from malloc.
 *
 * HT_BIG_HUGE asks for transparent huge pages (madvise, best effort) on a
 * block's mapping: for arrays read all over (the heap walk's), where 4 KiB
 * pages cost a TLB miss per access. Not for the tracer's tables: a huge page
 * is resident whole, and tracing's memory is measured.
 *
 * Every block starts with a header saying what it is: blocks from here are
 * freed with ht_big_free, never free(). */
#ifndef HT_BIGMEM_H
#define HT_BIGMEM_H

#include <stddef.h>

#define HT_BIG_HUGE 1   /* flags: transparent huge pages for the mapping */

/* Resizes block p (NULL: a new block) to n bytes, keeping the first
 * min(old, n) bytes; NULL on failure (p is then untouched). flags apply
 * when a mapping is made. */
void *ht_big_realloc(void *p, size_t n, int flags);

/* As ht_big_realloc, and the bytes past the old size read as zero: for a
 * mapping that grows, only the old last page is cleared (the kernel hands
 * out the rest zeroed), where a memset would touch every new page. */
void *ht_big_realloc_zero(void *p, size_t n, int flags);

/* A new block of n bytes; of n zero bytes. NULL on failure. */
void *ht_big_alloc(size_t n, int flags);
void *ht_big_alloc_zero(size_t n, int flags);

/* A new, empty block in a mapping with room for n bytes, where it grows
 * without a system call or a move (ht_big_realloc) until it shrinks or
 * outgrows that room; the room's pages are only taken when touched, and
 * are not charged to the system's commit limit (MAP_NORESERVE). NULL when
 * no mapping could be made (always under ASan). */
void *ht_big_reserve(size_t n);

/* Gives back the room of a reserved block (ht_big_reserve) past its size,
 * in place; nothing for another block (best effort). */
void ht_big_trim(void *p);

/* Whether reserving room is harmless here: not under strict overcommit
 * (vm.overcommit_memory=2, where MAP_NORESERVE is ignored and the room
 * would be charged) nor an address-space limit (RLIMIT_AS), and not under
 * ASan (no mappings). Reads a /proc file: call it once per use. */
int ht_big_can_reserve(void);

/* The mapping block p lives in: its length, with its (page-aligned) start
 * in *start; 0 when p is NULL or a malloc block. */
size_t ht_big_mapping(void *p, char **start);

/* Frees a block from here (NULL: nothing). */
void ht_big_free(void *p);

#endif
