/* prefault.h - pages faulted in ahead of a writer, on a thread of its own.
 *
 * Why: a heap snapshot writes about 90 bytes per object into arrays that
 * are fresh memory (bigmem.h mappings): 130 MB on a heap of 1.45M objects,
 * a page fault per 4 KiB, and the kernel's work for them (zeroing, page
 * tables) was a fifth of the walk, more on a process's first snapshot. The
 * walk holds the GIL and runs on one CPU; the helper here takes those
 * faults on another, a little ahead of where the walk writes, by a
 * compare-and-swap of zero with zero on a word of each page: the page
 * comes in as the walk's write would bring it, and no byte the walk wrote
 * changes (see ht_pf_touch).
 *
 * The writer says where it is (ht_pf_count: how many elements it has
 * written, per counter) and what its arrays are (ht_pf_set); the helper
 * keeps each array faulted in an eighth plus HT_PF_AHEAD_MIN bytes beyond
 * that, never past its mapping. An array may only move or shrink while the
 * writer holds the lock: the helper holds it while it faults a step (at
 * most HT_PF_STEP bytes) in, and takes none while the writer waits.
 *
 * The helper calls nothing but the lock, sched_yield and nanosleep: no
 * Python, no allocation. It blocks every signal (they stay the program's
 * threads' business) and lives from ht_pf_start to ht_pf_stop, both called
 * by the writer; in a child forked meanwhile (by code the walk ran) the
 * lock and stop do nothing. Where it cannot run (not Linux, one CPU, no
 * thread, arrays that are malloc blocks as under ASan) the writer takes
 * its own faults: only speed is lost. Every function accepts a NULL ht_pf
 * and then does nothing. */
#ifndef HT_PREFAULT_H
#define HT_PREFAULT_H

#include <stddef.h>

#define HT_PF_ARRAYS 16     /* arrays watched at most */
#define HT_PF_COUNTERS 8    /* fill counters at most */

typedef struct ht_pf ht_pf;

/* Starts the helper: NULL when it cannot run (see above), or when this
 * thread may run on one CPU only. */
ht_pf *ht_pf_start(void);

/* Whether a helper could run here (Linux, two CPUs or more for this
 * thread): the writer may skip preparing its arrays for one otherwise. */
int ht_pf_possible(void);

/* Helpers started in this process so far (tests). */
size_t ht_pf_starts(void);

/* Stops and joins the helper, then frees pf. */
void ht_pf_stop(ht_pf *pf);

/* Around every move or resize of a watched array (ht_pf_set inside). */
void ht_pf_lock(ht_pf *pf);
void ht_pf_unlock(ht_pf *pf);

/* Array k (< HT_PF_ARRAYS) is now data (a bigmem.h block, or NULL: no
 * longer watched), filled up to counter's value times elt bytes. Pages up
 * to the end of its mapping may be faulted in (ht_big_reserve's room
 * included). The caller holds the lock. */
void ht_pf_set(ht_pf *pf, int k, void *data, int counter, size_t elt);

/* The writer's progress: counter (< HT_PF_COUNTERS) is now value. Cheap
 * (one relaxed store): call it every few thousand elements. */
void ht_pf_count(ht_pf *pf, int counter, size_t value);

#endif
