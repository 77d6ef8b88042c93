/* tracer.c - the PEP 445 allocation tracer (design and measurements in tracer.h).
 *
 * Third pass (speed; 3.11, alloc_heavy, 2 cores shared with 3 other jobs).
 * Measured with callgrind (instructions, scale 0.05-0.2: stable whatever the
 * load) and interleaved runs (CPU seconds, medians of 5). At the start:
 * untraced 1.30 s, full 2.37 s (1.79x), sampled 1.39 s (1.05-1.07x); perf
 * showed the full mode's free waiting on two dependent cache misses (the
 * block-map slot, then the 24-byte record) and captures missing their
 * one-entry memo one time in five.
 *
 * Kept, in the order tried:
 *   - The log (tr_flush_log). A full-tracing MEM/OBJ hook appends its
 *     operation (address, block-map slot, size, stack, thread slot) to a
 *     64-entry log and prefetches the slot; the log is applied in order, the
 *     records its removals will read (and the free stack's top) prefetched
 *     in a first pass. Every reader settles (applies it) first and a RAW
 *     queue is applied after it, so every figure is the one applying each
 *     operation at once gives (tests/test_tracer_log.py; test_tracer.py runs
 *     every test both ways). Realloc logs too (a failed realloc drops its
 *     own removal, still the log's last entry). CPU 2.37 -> 2.26 s; without
 *     the prefetch pass 2.22 vs 2.18 s (kept); 256 entries: no better. It
 *     adds instructions (~40 an operation), which cache-resident books pay
 *     for nothing (deep_recursion: +8%), so it starts only once the records
 *     outgrow 32768 (768 KiB); below, operations are applied at once.
 *   - The capture memo: 256 frames x 4 instructions, (frame block, lasti) ->
 *     node, the way chosen by the instruction (one compare), filled for
 *     every frame a walk passes, so a new call of a function walks one frame
 *     (its caller's call site is memoized); the hit path is inline in the
 *     hook (stacks.h); a frame found in the frame cache is not re-cached; a
 *     1024-entry direct-mapped cache sits in front of the intern table.
 *     The frame-cache filter and the sampling filter shrank to 4 KiB so
 *     they stay in L1 (the 32 KiB one was ~20% of a free's samples).
 *   - The log's application is specialized for full tracing (weights are
 *     sizes, no sampling filter, no runcap event: operations are logged only
 *     while runcap is off); record allocation inline; the logging hooks'
 *     paths apart from the others (fewer saved registers).
 *   - Sampling fast paths: one test of a thread-local generation (equal to
 *     tr.gen only in a sampling session) and the guard, then the countdown,
 *     without reading tr.tracing or tr.sample; a free reads the 4 KiB
 *     filter first. Sampled hooks' instructions 51M -> 33M (scale 0.05).
 * Tried and reverted:
 *   - records inline in the block map: what a free needs (size, thread
 *     slot) in a 64-bit slot, the peak test deferred to batches, records of
 *     16 bytes: the doubled slot array missed more than the records it
 *     spared, 2.37 -> 2.66 s;
 *   - skipping the books for frame objects materialized for a capture (never
 *     in them): only ~6% of allocations here, no gain measured;
 *   - a 256-entry log (above).
 * RESULTS (CPU s, medians of 5 interleaved runs, load ~2-3 on 2 cores,
 * base = the code before this pass, same runs): untraced 1.28-1.40; full
 * 2.12-2.29 (1.63-1.65x; base 2.27-2.46, 1.75-1.77x); sampled 1.058x over
 * 8 runs (base 1.067x), 1.02-1.07x in single runs of 5: within noise of
 * the target, not robustly under it. Max RSS untraced 33 MB, full 49 MB
 * (1.48x), sampled 35 MB. Harness (benchmarks/run.py -k tracer-alloc-heavy
 * --repeat 3, wall): none 1.34 s; heaptrail full 1.65x (53.5 MB, 1.59x);
 * sampled 1.07x; memray 1.35x (without Python allocators), memray with
 * them 3.32x; tracemalloc 1 frame 10.2x, 25 frames 50x.
 * deep_recursion, instructions at scale 0.1: untraced 542M, base 889M,
 * now 891M.
 * Not met: full <= 1.5x. What is left per allocation with its free (scale
 * 0.2: ~515 instructions over the untraced run's ~730): the capture ~130
 * (PyEval_GetFrame, PyFrame_GetLasti and PyGC_Disable/Enable through the
 * public API ~45, the memo, walks and interning for new frames and new
 * instructions), the log and its application ~145 an operation pair plus
 * the slot lookups ~45, the hooks' wrappers and entry checks ~140. Ideas
 * not tried: validating memo entries of generator frames by their caller
 * (they are never memoized), smaller log entries.
 * The line profiler: its counters are per thread and only their own thread
 * may update them, but the log is applied by whichever thread settles it;
 * so once line counters are used (ht_lines_used, set by @profile and
 * %memit, which settle the log first) the tracer stops logging for good and
 * applies each operation at once. With frames=0 (its own mode) nothing is
 * logged either. The same holds while runcap streams (ht_runcap_on).
 */
#include "tracer.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bigmem.h"
#include "blockmap.h"
#include "runcap.h"  /* runcap: heaptrail run streams the books' changes */
#include "hashtable.h"
#include "lines.h"  /* lines: hooks */
#include "stacks.h"
#include "tracesnap.h"
#include "tracesnap_build.h"

enum { TR_RAW, TR_MEM, TR_OBJ, TR_NDOMAINS };

#define TR_FILTER_BITS 12  /* 4 KiB of counters: stays in L1 (16 KiB did not) */
#define TR_FILTER_SIZE (1u << TR_FILTER_BITS)
#define TR_MAX_FRAMES 65535u

typedef struct tr_rec {  /* 24 bytes */
    uint64_t size;    /* requested bytes */
    uint64_t seq;     /* allocation sequence number, from 1 */
    uint32_t stack;   /* stacks.h node or HT_NONE */
    uint32_t tslot;   /* thread slot */
} tr_rec;

typedef struct tr_thread {
    uint64_t ident;   /* PyThread_get_thread_ident(); 0 for slot 0 ("unknown") */
    uint64_t born;    /* its thread's tr_tls.born; 0 while only queued RAW operations named it */
    uint64_t ended;   /* 1: another thread took its ident (so it ended) */
    uint64_t current; /* bytes (estimated when sampling) */
    uint64_t peak;
} tr_thread;

/* guard levels: our own work (capture, snapshot) allocates untraced but
 * frees are still recorded; inside the underlying allocator everything
 * passes through. */
#define TR_OWN 1
#define TR_INNER 2

typedef struct tr_tls {
    int guard;          /* 0, TR_OWN or TR_INNER */
    uint32_t slot;      /* thread slot, valid when gen == tr.gen */
    uint64_t gen;
    int64_t countdown;  /* sampling: bytes until the next sample */
    uint64_t rng;
    uint64_t sample_gen;
    uint64_t born;      /* this thread's number (tr_born), 0 until its first slot */
} tr_tls;

static _Thread_local tr_tls tr_me __attribute__((tls_model("initial-exec")));

/* The previous allocators, saved when we install ours. Never cleared: a hook
 * still running in another thread after stop() keeps calling them. */
static PyMemAllocatorEx tr_orig[TR_NDOMAINS];
static const PyMemAllocatorDomain tr_domains[TR_NDOMAINS] = {
    PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ};

/* A RAW-domain operation made without the GIL, queued for a GIL holder. */
typedef struct tr_op {
    uint64_t addr;
    uint64_t size;     /* TR_OP_ADD only */
    uint64_t ident;    /* thread that made it */
    uint32_t kind;     /* TR_OP_ADD, TR_OP_REMOVE */
    uint32_t counted;  /* ADD: the sampling filter was already incremented */
} tr_op;
enum { TR_OP_ADD = 1, TR_OP_REMOVE = 2 };

static struct {
    /* written with the GIL and the lock held, read lock-free by hooks */
    int tracing;
    uint64_t gen;        /* bumped by start, clear, stop, fork-child: invalidates thread-local state */
    /* written only while not tracing (GIL held) */
    int installed;       /* our hooks are somewhere in the allocator chain */
    unsigned limit;      /* frames kept per stack */
    uint64_t sample;     /* mean sampling interval in bytes, 0 = trace every block */
    double sample_d;
    /* "the books": protected by the GIL (every MEM/OBJ hook holds it; RAW
     * hooks without it go through the queue below) */
    ht_bm blocks;        /* block address -> record index */
    tr_rec *recs;
    uint32_t nrecs, caprecs;
    uint32_t *freestk;   /* [caprecs] free record indices, used as a stack (LIFO: warm records first) */
    uint32_t nfree;
    uint32_t *side;      /* [caprecs] records freed since the peak that were live at it */
    uint32_t nside;
    uint64_t seq, peak_seq;
    uint64_t current, peak;
    uint64_t allocated, allocations;  /* since start/clear (estimates when sampling) */
    uint64_t lost;       /* blocks not recorded for lack of memory */
    tr_thread *threads;
    uint32_t nthreads, capthreads;
    ht_table thread_index;  /* ident + 1 -> slot */
    uint8_t *filter;     /* sampling: counters of sampled addresses (atomic), NULL when full */
    /* protected by tr_lock */
    tr_op *queue;
    size_t nqueue, capqueue;
    int child_reset;     /* in a forked child: drop the inherited state first */
} tr;

/* Full tracing with stacks and books too big for the caches: the hooks log
 * their operations instead of applying them (tr_flush_log), unless runcap
 * streams the books' changes. Books that fit in the caches gain nothing
 * from the log's prefetches and pay its instructions (deep_recursion: 8%
 * slower with it), so it starts once the records outgrow TR_DEFER_RECS. */
static int tr_defer;
static uint32_t tr_defer_recs = 32768;  /* _tracer_defer_min() changes it (tests) */

static void
tr_defer_update(void)
{
    /* written under the books' lock, maybe by a RAW hook without the GIL */
    __atomic_store_n(&tr_defer, tr.sample == 0 && tr.limit != 0 && tr.caprecs >= tr_defer_recs,
                     __ATOMIC_RELAXED);
}

/* Nonzero when a GIL holder must look at the queue (or reset a forked
 * child) before touching the books: one load on the hot path. */
static int tr_slow;

/* The log of deferred operations (see tr_flush_log). */
#define TR_LOG 64
#define TR_LOG_REMOVE UINT32_MAX

typedef struct tr_logop {
    uint64_t addr;
    uint32_t *slot;   /* addr's slot in the block map when its page existed, else NULL */
    uintptr_t owner;  /* &tr_me of the thread that made it: compared, never dereferenced */
    uint64_t size;    /* an addition's requested size */
    uint32_t stack;   /* an addition's stack */
    uint32_t tslot;   /* an addition's thread slot, TR_LOG_REMOVE for a removal */
} tr_logop;

static tr_logop tr_log[TR_LOG];
static uint32_t tr_nlog;

/* The sampling filter: static, so a RAW hook reading it without the GIL can
 * never see it freed. */
static uint8_t tr_filter_arr[TR_FILTER_SIZE];

/* ---- the lock ------------------------------------------------------------ */

static int tr_lock_word;

static inline void
tr_lock(void)
{
    while (__atomic_exchange_n(&tr_lock_word, 1, __ATOMIC_ACQUIRE)) {
        int spins = 0;
        while (__atomic_load_n(&tr_lock_word, __ATOMIC_RELAXED)) {
            if (++spins >= 64) {
                sched_yield();
                spins = 0;
            }
#if defined(__x86_64__) || defined(__i386__)
            else
                __builtin_ia32_pause();
#endif
        }
    }
}

static inline void
tr_unlock(void)
{
    __atomic_store_n(&tr_lock_word, 0, __ATOMIC_RELEASE);
}

static inline int
tr_tracing(void)
{
    return __atomic_load_n(&tr.tracing, __ATOMIC_RELAXED);
}

/* ---- records, threads, filter (lock held) --------------------------------- */

static __attribute__((noinline)) uint32_t
tr_rec_grow_unlocked(void)
{
    if (tr.nrecs == tr.caprecs) {
        uint64_t cap = tr.caprecs ? (uint64_t)tr.caprecs * 2 : 4096;
        if (cap > HT_NONE - 1)
            cap = HT_NONE - 1;
        if (cap <= tr.caprecs)
            return HT_NONE;
        /* the index stacks can hold every record, so pushes never fail */
        tr_rec *r = ht_big_realloc(tr.recs, (size_t)cap * sizeof(tr_rec), 0);
        if (r == NULL)
            return HT_NONE;
        tr.recs = r;
        uint32_t *f = ht_big_realloc(tr.freestk, (size_t)cap * sizeof(uint32_t), 0);
        if (f == NULL)
            return HT_NONE;
        tr.freestk = f;
        uint32_t *sd = ht_big_realloc(tr.side, (size_t)cap * sizeof(uint32_t), 0);
        if (sd == NULL)
            return HT_NONE;
        tr.side = sd;
        tr.caprecs = (uint32_t)cap;
        tr_defer_update();
    }
    return tr.nrecs++;
}

/* A free record (the warmest: LIFO), or a new one; HT_NONE out of memory. */
static inline __attribute__((always_inline)) uint32_t
tr_rec_new_unlocked(void)
{
    if (HT_LIKELY(tr.nfree != 0))
        return tr.freestk[--tr.nfree];
    return tr_rec_grow_unlocked();
}

static inline void
tr_rec_release_unlocked(uint32_t i)
{
    tr.freestk[tr.nfree++] = i;
}

/* Moves the side list to the free stack: a sequential copy of indices,
 * never a walk over cold records (each record enters the side list once
 * per peak, so this is amortized O(1) per free). */
static void
tr_side_release_unlocked(void)
{
    if (tr.nside != 0) {
        memcpy(tr.freestk + tr.nfree, tr.side, (size_t)tr.nside * sizeof(uint32_t));
        tr.nfree += tr.nside;
        tr.nside = 0;
    }
}

static uint32_t tr_slot_of(uint64_t ident, uint64_t born);

/* Threads are numbered from 1 as they first get a slot, never reset: an
 * ident is reused by the next thread as soon as one ends (pthread ids are
 * addresses), a number is not. */
static uint64_t tr_born;

/* The calling thread's slot; 0 ("unknown") when memory ran out. */
static uint32_t
tr_thread_slot_unlocked(void)
{
    tr_tls *me = &tr_me;
    if (me->gen == tr.gen)
        return me->slot;
    if (me->born == 0)
        me->born = __atomic_add_fetch(&tr_born, 1, __ATOMIC_RELAXED);
    uint32_t slot = tr_slot_of((uint64_t)PyThread_get_thread_ident(), me->born);
    if (slot != 0) {
        me->slot = slot;
        me->gen = tr.gen;
    }
    return slot;
}

/* The slot of thread `ident` (its number `born`, 0 when unknown: a queued
 * RAW operation), created if new; 0 when out of memory. A slot of the same
 * ident but another number belonged to a thread that ended: the ident gets
 * a new slot, so per-thread figures never add up threads that reused an
 * ident (the old slot stays, reported as ended) -- unless the old one holds
 * nothing any more, which the new thread takes over: slots stay bounded by
 * the live blocks when a program starts thread after thread. */
static uint32_t
tr_slot_of(uint64_t ident, uint64_t born)
{
    int added;
    uint64_t *v = ht_table_upsert(&tr.thread_index, ident + 1, tr.nthreads, &added);
    if (v == NULL)
        return 0;
    uint32_t slot = (uint32_t)*v;
    if (!added && born != 0 && tr.threads[slot].born != born) {
        if (tr.threads[slot].born == 0) {  /* named by its queued operations only */
            tr.threads[slot].born = born;
            return slot;
        }
        if (tr.threads[slot].current == 0) {
            tr.threads[slot] = (tr_thread){ident, born, 0, 0, 0};
            return slot;
        }
        tr.threads[slot].ended = 1;
        /* an ended thread's slot emptied since: one scan per thread start */
        for (uint32_t i = 1; i < tr.nthreads; i++)
            if (tr.threads[i].ended && tr.threads[i].current == 0) {
                tr.threads[i] = (tr_thread){ident, born, 0, 0, 0};
                *v = i;
                return i;
            }
        added = 1;  /* *v still points at the index's value: set below */
        slot = tr.nthreads;
    }
    if (added) {
        if (tr.nthreads == tr.capthreads) {
            uint32_t cap = tr.capthreads ? tr.capthreads * 2 : 16;
            tr_thread *t = realloc(tr.threads, cap * sizeof(tr_thread));
            if (t == NULL) {
                if (slot == (uint32_t)*v)  /* a new ident: not in the index after all */
                    ht_table_remove(&tr.thread_index, ident + 1, NULL);
                return 0;
            }
            tr.threads = t;
            tr.capthreads = cap;
        }
        tr.threads[slot] = (tr_thread){ident, born, 0, 0, 0};
        *v = slot;
        tr.nthreads++;
    }
    return slot;
}

static inline uint32_t
tr_filter_index(const void *p)
{
    /* Fibonacci hashing of the 16-byte grain: 3 instructions on every free
     * (ht_hash64 was ~12), and blocks are spread well enough. */
    return (uint32_t)((((uint64_t)(uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ULL) >> (64 - TR_FILTER_BITS));
}

/* Counters are bytes, 4 KiB in all, so the read on every free stays in L1
 * (65536 uint32 = 256 KiB missed it). A counter that reaches 255 sticks
 * there until start() resets the array (only false positives: the slow,
 * correct path); below 255 it is exact. */
static inline void
tr_filter_add(const void *p, int delta)
{
    uint8_t *c = &tr_filter_arr[tr_filter_index(p)];
    uint8_t v = __atomic_load_n(c, __ATOMIC_RELAXED);
    while (v != UINT8_MAX && !__atomic_compare_exchange_n(c, &v, (uint8_t)(v + delta), 1,
                                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* Lock-free: 0 means p is certainly not a sampled block (see tracer.h). */
static inline int
tr_filter_maybe(const void *p)
{
    return __atomic_load_n(&tr_filter_arr[tr_filter_index(p)], __ATOMIC_RELAXED) != 0;
}

/* Estimated bytes and blocks a record of `size` stands for. */
static inline uint64_t
tr_est_bytes(uint64_t size)
{
    if (tr.sample == 0 || size == 0)
        return size;
    double p = -expm1(-(double)size / tr.sample_d);
    return (uint64_t)llround((double)size / p);
}

static inline uint64_t
tr_est_count(uint64_t size)
{
    if (tr.sample == 0 || size == 0)
        return 1;
    double p = -expm1(-(double)size / tr.sample_d);
    uint64_t c = (uint64_t)llround(1.0 / p);
    return c ? c : 1;
}

/* Drops every trace and counter (not the stacks, not the thread slots). */
static void
tr_clear_unlocked(void)
{
    tr_nlog = 0;  /* callers settle first, but for a forked child's reset */
    ht_bm_clear(&tr.blocks);
    tr.nrecs = 0;
    tr.nfree = tr.nside = 0;
    tr.peak_seq = tr.seq;
    tr.current = tr.peak = tr.allocated = tr.allocations = tr.lost = 0;
    for (uint32_t i = 0; i < tr.nthreads; i++)
        tr.threads[i].current = tr.threads[i].peak = 0;
    /* the sampling filter keeps its counts: records dropped here leave false
     * positives (a slower free), never a missed sampled block that a RAW
     * thread counted early and has not queued yet */
    __atomic_store_n(&tr.gen, tr.gen + 1, __ATOMIC_RELAXED);
}

static inline void
tr_check_child_unlocked(void)
{
    if (HT_UNLIKELY(tr.child_reset)) {
        tr.child_reset = 0;
        tr_clear_unlocked();
        /* the parent's other threads do not exist here */
        ht_table_clear(&tr.thread_index);
        if (tr.nthreads > 1)
            tr.nthreads = 1;  /* slot 0, "unknown", is not in the index */
    }
}

/* ---- accounting (lock held) ------------------------------------------------ */

/* Record i leaves the live set (its block was freed or reallocated). */
/* `full`: a constant 1 where the caller knows nothing is sampled (the log),
 * so weights are sizes and there is no sampling filter. */
static inline __attribute__((always_inline)) void
tr_forget_full(uint32_t i, const void *p, int full)
{
    tr_rec *r = &tr.recs[i];
    uint64_t w = full ? r->size : tr_est_bytes(r->size);
    tr.current -= w;
    tr.threads[r->tslot].current -= w;
    if (!full)  /* the log holds only operations made while runcap was off */
        ht_runcap_free(p, w);  /* runcap: the record left the books */
    ht_lines_on_free(w);  /* lines: hook */
    if (!full && tr.filter != NULL)
        tr_filter_add(p, -1);
    if (r->seq <= tr.peak_seq) {  /* it was live at the peak: keep it for peak_snapshot */
        tr.side[tr.nside++] = i;
    }
    else
        tr_rec_release_unlocked(i);
}

static inline __attribute__((always_inline)) void
tr_forget_unlocked(uint32_t i, const void *p)
{
    tr_forget_full(i, p, 0);
}

/* p enters the books; `bs` is p's block-map slot when known (else NULL). */
static inline __attribute__((always_inline)) void
tr_add_at(void *p, uint32_t *bs, uint64_t size, uint32_t stack, uint32_t slot, int counted, int full)
{
    uint32_t i = tr_rec_new_unlocked();
    if (i == HT_NONE) {
        tr.lost++;
        if (counted)
            tr_filter_add(p, -1);
        return;
    }
    uint32_t old;
    int added = bs != NULL ? ht_bm_put_at(&tr.blocks, bs, i, &old)
                           : ht_bm_put(&tr.blocks, (uint64_t)(uintptr_t)p, i, &old);
    if (added < 0) {
        tr_rec_release_unlocked(i);
        tr.lost++;
        if (counted)
            tr_filter_add(p, -1);
        return;
    }
    if (added == 0)  /* a stale record at a reused address (defensive) */
        tr_forget_full(old, p, full);
    tr_rec *r = &tr.recs[i];
    r->size = size;
    r->seq = ++tr.seq;
    r->stack = stack;
    r->tslot = slot;
    uint64_t w = full ? size : tr_est_bytes(size);
    tr.allocated += w;
    tr.allocations += full ? 1 : tr_est_count(size);
    tr.current += w;
    tr_thread *t = &tr.threads[slot];
    t->current += w;
    if (t->current > t->peak)
        t->peak = t->current;
    if (tr.current > tr.peak) {
        tr.peak = tr.current;
        tr.peak_seq = tr.seq;
        tr_side_release_unlocked();
    }
    if (!full && tr.filter != NULL && !counted)
        tr_filter_add(p, 1);
    if (!full)
        ht_runcap_alloc(p, w, stack);  /* runcap: the record entered the books */
}

static inline __attribute__((always_inline)) void
tr_add_slot(void *p, uint64_t size, uint32_t stack, int domain, uint32_t slot, int counted)
{
    tr_add_at(p, NULL, size, stack, slot, counted, 0);
}

static inline __attribute__((always_inline)) void
tr_add_unlocked(void *p, uint64_t size, uint32_t stack, int domain)
{
    tr_add_slot(p, size, stack, domain, tr_thread_slot_unlocked(), 0);
    ht_lines_on_alloc(tr_est_bytes(size));  /* lines: hook (this thread's own allocation) */
}

static inline __attribute__((always_inline)) void
tr_remove_unlocked(void *p)
{
    uint32_t i;
    if (ht_bm_take(&tr.blocks, (uint64_t)(uintptr_t)p, &i))
        tr_forget_unlocked(i, p);
}

/* ---- the log of deferred operations (GIL held) ---------------------------------- */

/* Full tracing does not touch the books in each hook: the hook appends the
 * operation to this log (prefetching the block's slot in the block map) and
 * the log is applied in order, TR_LOG operations at a time, or before
 * anything reads the books (every reader settles first), or before a RAW
 * queue is applied, so every figure (current, peak, the peak's side list,
 * sequence numbers, per-thread figures) is exactly what applying each
 * operation at once gives. What it wins: a free no longer waits on two
 * dependent cache misses (the slot, then the record): the slots were
 * prefetched when logged and the records are prefetched a few operations
 * ahead while the log is applied. Not used when sampling (few operations),
 * with frames=0 (the line profiler reads this thread's counters between
 * operations) or while runcap streams the books' changes. */

/* Applies the log. Another thread's operations count as foreign for the
 * line profiler, as the RAW queue's do. */
static __attribute__((noinline)) void
tr_flush_log(void)
{
    uint32_t n = tr_nlog;
    uintptr_t me = (uintptr_t)&tr_me;
    tr_nlog = 0;
    /* First the records every removal will read (their slots were
     * prefetched when logged; a slot changed by an earlier operation of the
     * log only makes a useless prefetch) and those the additions beyond the
     * removals will take from the free stack: all the misses at once. */
    uint32_t adds = 0;
    for (uint32_t k = 0; k < n; k++) {
        const tr_logop *e = &tr_log[k];
        if (e->tslot != TR_LOG_REMOVE)
            adds++;
        else if (e->slot != NULL) {
            uint32_t v = *e->slot;
            if (v != 0 && v - 1 < tr.nrecs)
                __builtin_prefetch(&tr.recs[v - 1]);
        }
    }
    for (uint32_t j = n - adds; j < adds && j < tr.nfree; j++)
        __builtin_prefetch(&tr.recs[tr.freestk[tr.nfree - 1 - j]], 1);
    for (uint32_t k = 0; k < n; k++) {
        const tr_logop *e = &tr_log[k];
        int mine = e->owner == me;
        void *p = (void *)(uintptr_t)e->addr;
        if (e->tslot == TR_LOG_REMOVE) {
            uint32_t i;
            if (!mine)
                ht_lines_foreign(1);  /* lines: hook */
            if (e->slot != NULL ? ht_bm_take_at(&tr.blocks, e->slot, &i)
                                : ht_bm_take(&tr.blocks, e->addr, &i))
                tr_forget_full(i, p, 1);
            if (!mine)
                ht_lines_foreign(0);  /* lines: hook */
        }
        else {
            tr_add_at(p, e->slot, e->size, e->stack, e->tslot, 0, 1);
            if (mine)
                ht_lines_on_alloc(e->size);  /* lines: hook */
        }
    }
}

/* Sampling (set by start, cleared by stop): a free first asks the filter,
 * before any other load. Stale after stop() only sends a free to the
 * checks below it. */
static int tr_sampling;


static inline int
tr_deferring(void)
{
    return __atomic_load_n(&tr_defer, __ATOMIC_RELAXED) && !ht_runcap_on && !ht_lines_used;
}

static inline __attribute__((always_inline)) void
tr_log_op(void *p, uint64_t size, uint32_t stack, uint32_t tslot)
{
    if (HT_UNLIKELY(tr_nlog == TR_LOG))
        tr_flush_log();
    uint64_t a = (uint64_t)(uintptr_t)p;
    uint32_t *s = ht_bm_slot(&tr.blocks, a);
    if (s != NULL)
        __builtin_prefetch(s, 1);
    tr_log[tr_nlog++] = (tr_logop){a, s, (uintptr_t)&tr_me, size, stack, tslot};
}

/* ---- the queue of RAW operations made without the GIL ------------------------ */

static uint64_t tr_qlost;  /* operations dropped for lack of memory (atomic) */

/* GIL held: applies the queued operations in order (and a forked child's
 * reset) before the caller touches the books. */
static __attribute__((noinline)) void
tr_sync_slow(void)
{
    tr_lock();
    if (tr.child_reset) {
        tr.nqueue = 0;  /* operations of the parent's threads */
        tr_nlog = 0;
        tr_check_child_unlocked();
    }
    else if (tr_nlog != 0)  /* logged operations came before the queued ones */
        tr_flush_log();
    ht_lines_foreign(1);  /* lines: hook (other threads' operations) */
    for (size_t k = 0; k < tr.nqueue; k++) {
        tr_op op = tr.queue[k];
        if (op.kind == TR_OP_ADD)
            tr_add_slot((void *)(uintptr_t)op.addr, op.size, HT_NONE, TR_RAW, tr_slot_of(op.ident, 0),
                        (int)op.counted);
        else
            tr_remove_unlocked((void *)(uintptr_t)op.addr);
    }
    ht_lines_foreign(0);  /* lines: hook */
    tr.nqueue = 0;
    __atomic_store_n(&tr_slow, 0, __ATOMIC_RELAXED);
    tr_unlock();
}

static inline void
tr_sync(void)
{
    if (HT_UNLIKELY(__atomic_load_n(&tr_slow, __ATOMIC_ACQUIRE)))
        tr_sync_slow();
}

/* Before reading the books, or applying an operation at once: the queue
 * and the log applied. GIL held. */
static inline void
tr_settle(void)
{
    tr_sync();
    if (HT_UNLIKELY(tr_nlog != 0))
        tr_flush_log();
}

/* Without the GIL: queues an operation for the next GIL holder. An ADD is
 * queued after the block was allocated and a REMOVE before it is freed, so
 * the queue's order is the blocks' order. */
static __attribute__((noinline)) void
tr_push(uint32_t kind, void *p, uint64_t size, int counted)
{
    tr_lock();
    if (!tr.tracing)
        goto drop;
    if (tr.nqueue == tr.capqueue) {
        size_t cap = tr.capqueue ? tr.capqueue * 2 : 256;
        tr_op *q = ht_big_realloc(tr.queue, cap * sizeof(tr_op), 0);
        if (q == NULL) {
            __atomic_fetch_add(&tr_qlost, 1, __ATOMIC_RELAXED);
            goto drop;
        }
        tr.queue = q;
        tr.capqueue = cap;
    }
    tr.queue[tr.nqueue++] = (tr_op){(uint64_t)(uintptr_t)p, size,
                                    (uint64_t)PyThread_get_thread_ident(), kind, (uint32_t)counted};
    __atomic_store_n(&tr_slow, 1, __ATOMIC_RELEASE);
    tr_unlock();
    return;
drop:
    tr_unlock();
    if (counted)
        tr_filter_add(p, -1);
}

/* Without the GIL: a sampled RAW block counts in the filter from now on, so
 * its free (maybe on another thread, before the queue is applied) is seen. */
static int
tr_count_early(void *p)
{
    if (__atomic_load_n(&tr.filter, __ATOMIC_RELAXED) == NULL)
        return 0;
    tr_filter_add(p, 1);
    return 1;
}

/* ---- sampling (thread-local) ------------------------------------------------ */

static inline uint64_t
tr_rand(tr_tls *me)
{
    uint64_t x = me->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    me->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static int64_t
tr_draw(tr_tls *me)
{
    double u = (double)((tr_rand(me) >> 11) + 1) * 0x1.0p-53;  /* (0, 1] */
    double d = -log(u) * tr.sample_d;
    return d >= 9.0e18 ? INT64_MAX : (int64_t)d + 1;
}

/* 1 when this allocation of `size` bytes is sampled. Thread-local only. */
static __attribute__((noinline)) int
tr_sample_hit(tr_tls *me, size_t size)
{
    uint64_t gen = __atomic_load_n(&tr.gen, __ATOMIC_RELAXED);
    if (HT_UNLIKELY(me->sample_gen != gen)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        me->rng = ht_hash64((uint64_t)(uintptr_t)me ^ ((uint64_t)ts.tv_nsec << 20) ^ gen) | 1;
        me->countdown = tr_draw(me);
        me->sample_gen = gen;
    }
    me->countdown -= (int64_t)size;
    if (HT_LIKELY(me->countdown > 0))
        return 0;
    me->countdown = tr_draw(me);
    return 1;
}

/* ---- the hooks --------------------------------------------------------------- */

static uint32_t
tr_capture(int domain)
{
    /* RAW blocks get no stack: the RAW hook may run without the GIL, and
     * may be called by another allocator wrapper that holds its own lock
     * (tracemalloc's raw_malloc does) while a capture can allocate a frame
     * object through that wrapper's other hooks: a deadlock. */
    if (domain == TR_RAW || tr.limit == 0)  /* lines: frames=0 counts only, no stacks */
        return HT_NONE;
#if PY_VERSION_HEX < 0x030C0000
    /* materializing a frame object may start a collection on 3.11 */
    int gc_was = PyGC_Disable();
#endif
    uint32_t s = ht_stk_capture(tr.limit, tr.sample == 0);
#if PY_VERSION_HEX < 0x030C0000
    if (gc_was)
        PyGC_Enable();
#endif
    return s;
}

/* The logging hooks' paths (MEM and OBJ: the GIL is held; full tracing):
 * apart from the others, so they save only the registers they use. */
static __attribute__((noinline)) void
tr_on_alloc_logged(int domain, void *p, size_t size)
{
    tr_tls *me = &tr_me;
    if (me->guard)
        return;
    me->guard = TR_OWN;
    uint32_t stack = tr_capture(domain);
    tr_sync();
    if (tr.tracing)
        tr_log_op(p, size, stack, tr_thread_slot_unlocked());
    me->guard = 0;
}

static __attribute__((noinline)) void
tr_on_free_logged(int domain, void *p)
{
    if (domain == TR_OBJ)
        ht_stk_block_freed(p);
    tr_sync();
    if (tr.tracing)
        tr_log_op(p, 0, HT_NONE, TR_LOG_REMOVE);
}

/* Applied at once (not logged). */
static inline __attribute__((always_inline)) void
tr_add_now(void *p, size_t size, uint32_t stack, int domain)
{
    tr_settle();
    tr_add_unlocked(p, size, stack, domain);
}

static inline __attribute__((always_inline)) void
tr_remove_now(void *p)
{
    tr_settle();
    tr_remove_unlocked(p);
}

static __attribute__((noinline)) void
tr_on_alloc(int domain, void *p, size_t size)
{
    tr_tls *me = &tr_me;
    if (me->guard)
        return;
    if (tr.sample != 0 && !tr_sample_hit(me, size))
        return;
    if (domain == TR_RAW && !PyGILState_Check()) {
        tr_push(TR_OP_ADD, p, size, tr_count_early(p));
        return;
    }
    me->guard = TR_OWN;
    uint32_t stack = tr_capture(domain);
    tr_sync();
    if (tr.tracing) {
        if (tr_deferring())
            tr_log_op(p, size, stack, tr_thread_slot_unlocked());
        else
            tr_add_now(p, size, stack, domain);
    }
    me->guard = 0;
}

/* p leaves the books. Sampling: the caller already saw p in the filter. */
static __attribute__((noinline)) void
tr_on_free(int domain, void *p)
{
    if (tr.sample == 0 && domain == TR_OBJ)
        ht_stk_block_freed(p);
    if (domain == TR_RAW && !PyGILState_Check()) {
        tr_push(TR_OP_REMOVE, p, 0, 0);
        return;
    }
    tr_sync();
    if (tr.tracing) {
        if (tr_deferring())
            tr_log_op(p, 0, HT_NONE, TR_LOG_REMOVE);
        else
            tr_remove_now(p);
    }
}

static void *
tr_realloc(int domain, void *ptr, size_t size)
{
    const PyMemAllocatorEx *o = &tr_orig[domain];
    tr_tls *me = &tr_me;
    int g = me->guard;
    if (g == TR_INNER || !tr_tracing())
        return o->realloc(o->ctx, ptr, size);
    int gil = domain != TR_RAW || PyGILState_Check();
    int defer = gil && tr_deferring();
    /* The old block leaves the books before it can be freed and its address
     * handed to another thread. */
    int had_old = 0;
    uint32_t logged = HT_NONE;  /* deferring: the log index of ptr's removal */
    tr_rec old = {0};
    if (ptr != NULL && (tr.sample == 0 || tr_filter_maybe(ptr))) {
        if (!gil)
            tr_push(TR_OP_REMOVE, ptr, 0, 0);  /* on failure the block stays untraced */
        else if (defer) {
            tr_sync();
            if (tr.tracing) {
                tr_log_op(ptr, 0, HT_NONE, TR_LOG_REMOVE);
                logged = tr_nlog - 1;
            }
        }
        else {
            uint32_t i;
            tr_settle();
            if (tr.tracing && ht_bm_take(&tr.blocks, (uint64_t)(uintptr_t)ptr, &i)) {
                old = tr.recs[i];
                had_old = 1;
                tr_forget_unlocked((uint32_t)i, ptr);
            }
        }
    }
    me->guard = TR_INNER;
    void *q = o->realloc(o->ctx, ptr, size);
    me->guard = g;
    if (q == NULL) {
        /* ptr is still ours. Its logged removal is still the log's last
         * operation (the allocator's own calls pass through): dropped. */
        if (logged != HT_NONE && tr_nlog == logged + 1 &&
            tr_log[logged].addr == (uint64_t)(uintptr_t)ptr)
            tr_nlog--;
        if (had_old) {  /* back in the books (as a new record) */
            tr_settle();
            if (tr.tracing)
                tr_add_unlocked(ptr, old.size, old.stack, domain);
        }
        return NULL;
    }
    int trace_new = g == 0 && (tr.sample == 0 || tr_sample_hit(me, size));
    if (!trace_new)
        return q;
    if (!gil) {
        tr_push(TR_OP_ADD, q, size, tr_count_early(q));
        return q;
    }
    me->guard = TR_OWN;
    uint32_t stack = tr_capture(domain);
    if (defer) {
        tr_sync();
        if (tr.tracing)
            tr_log_op(q, size, stack, tr_thread_slot_unlocked());
    }
    else {
        tr_settle();
        if (tr.tracing)
            tr_add_unlocked(q, size, stack, domain);
    }
    me->guard = g;
    return q;
}

/* Sampling's fast path: an allocation of `size` bytes that does not reach
 * the countdown only decreases it (thread-local, no call, no atomic). 0 when
 * the slow path must decide (a sample, a new generation, huge sizes). */
static inline int
tr_sample_skip(tr_tls *me, size_t size)
{
    /* sample_gen is only ever set to a sampling session's generation, and
     * stop/clear/start bump it: equal means "sampling, this session", so no
     * need to look at tr.tracing or tr.sample. The guard is tested here too:
     * one branch for the whole fast path. The countdown is positive. */
    if (HT_LIKELY((me->guard | (me->sample_gen ^ __atomic_load_n(&tr.gen, __ATOMIC_RELAXED))) == 0 &&
                  size < (uint64_t)me->countdown)) {
        me->countdown -= (int64_t)size;
        return 1;
    }
    return 0;
}

/* The traced (slow) paths, out of line so the hooks' fast paths stay small. */
static inline __attribute__((always_inline)) void *
tr_malloc_traced(int d, size_t size)
{
    tr_tls *me = &tr_me;
    me->guard = TR_INNER;
    void *p = tr_orig[d].malloc(tr_orig[d].ctx, size);
    me->guard = 0;
    if (p != NULL)
        (d != TR_RAW && tr_deferring() ? tr_on_alloc_logged : tr_on_alloc)(d, p, size);
    return p;
}

static inline __attribute__((always_inline)) void *
tr_calloc_traced(int d, size_t n, size_t elsize)
{
    tr_tls *me = &tr_me;
    me->guard = TR_INNER;
    void *p = tr_orig[d].calloc(tr_orig[d].ctx, n, elsize);
    me->guard = 0;
    if (p != NULL)
        (d != TR_RAW && tr_deferring() ? tr_on_alloc_logged : tr_on_alloc)(d, p, n * elsize);
    return p;
}

/* The underlying allocator runs with the guard at TR_INNER, so the calls it
 * makes itself (pymalloc handing a large request to the RAW domain) pass
 * through: a block is recorded once, by the outermost hook. Under our own
 * guard (TR_OWN) allocations are never traced, so they call the allocator
 * directly. Sampling: an allocation that does not reach the countdown only
 * sets the guard around the allocator (its inner RAW calls must not count
 * the same bytes again). */
#define TR_HOOKS(D, NAME)                                                      \
    static void *tr_malloc_##NAME(void *ctx, size_t size)                      \
    {                                                                          \
        tr_tls *me = &tr_me;                                                   \
        if (tr_sample_skip(me, size)) {                                        \
            me->guard = TR_INNER;                                              \
            void *p = tr_orig[D].malloc(tr_orig[D].ctx, size);                 \
            me->guard = 0;                                                     \
            return p;                                                          \
        }                                                                      \
        if (HT_UNLIKELY(me->guard != 0) || HT_UNLIKELY(!tr_tracing()))         \
            return tr_orig[D].malloc(tr_orig[D].ctx, size);                    \
        return tr_malloc_traced(D, size);                                      \
    }                                                                          \
    static void *tr_calloc_##NAME(void *ctx, size_t n, size_t elsize)          \
    {                                                                          \
        tr_tls *me = &tr_me;                                                   \
        size_t total;                                                          \
        if (!__builtin_mul_overflow(n, elsize, &total) && tr_sample_skip(me, total)) { \
            me->guard = TR_INNER;                                              \
            void *p = tr_orig[D].calloc(tr_orig[D].ctx, n, elsize);            \
            me->guard = 0;                                                     \
            return p;                                                          \
        }                                                                      \
        if (HT_UNLIKELY(me->guard != 0) || HT_UNLIKELY(!tr_tracing()))         \
            return tr_orig[D].calloc(tr_orig[D].ctx, n, elsize);               \
        return tr_calloc_traced(D, n, elsize);                                 \
    }                                                                          \
    static void *tr_realloc_##NAME(void *ctx, void *ptr, size_t size)          \
    {                                                                          \
        return tr_realloc(D, ptr, size);                                       \
    }                                                                          \
    /* A free needs no guard around the underlying allocator: a nested free  \
     * of the same block finds it already gone. Sampling: a block not in the \
     * filter was certainly not sampled (one load). */                        \
    static void tr_free_##NAME(void *ctx, void *p)                             \
    {                                                                          \
        if (__atomic_load_n(&tr_sampling, __ATOMIC_RELAXED)                     \
                ? HT_UNLIKELY(tr_filter_maybe(p)) : 1) {                       \
            if (p != NULL && HT_LIKELY(tr_me.guard != TR_INNER) && tr_tracing()) \
                (D != TR_RAW && tr_deferring() ? tr_on_free_logged : tr_on_free)(D, p); \
        }                                                                      \
        tr_orig[D].free(tr_orig[D].ctx, p);                                    \
    }

TR_HOOKS(TR_RAW, raw)
TR_HOOKS(TR_MEM, mem)
TR_HOOKS(TR_OBJ, obj)

static PyMemAllocatorEx
tr_hook(int d)
{
    static const PyMemAllocatorEx hooks[TR_NDOMAINS] = {
        {NULL, tr_malloc_raw, tr_calloc_raw, tr_realloc_raw, tr_free_raw},
        {NULL, tr_malloc_mem, tr_calloc_mem, tr_realloc_mem, tr_free_mem},
        {NULL, tr_malloc_obj, tr_calloc_obj, tr_realloc_obj, tr_free_obj},
    };
    PyMemAllocatorEx h = hooks[d];
    h.ctx = tr_orig[d].ctx;  /* see tracer.h: a torn read still pairs well */
    return h;
}

/* 1 when our hooks are the current allocators of every domain. */
static int
tr_on_top(void)
{
    for (int d = 0; d < TR_NDOMAINS; d++) {
        PyMemAllocatorEx cur;
        PyMem_GetAllocator(tr_domains[d], &cur);
        if (cur.free != tr_hook(d).free)
            return 0;
    }
    return 1;
}

static void
tr_install(void)
{
    if (tr.installed)
        return;
    for (int d = 0; d < TR_NDOMAINS; d++)
        PyMem_GetAllocator(tr_domains[d], &tr_orig[d]);
    for (int d = 0; d < TR_NDOMAINS; d++) {
        PyMemAllocatorEx h = tr_hook(d);
        PyMem_SetAllocator(tr_domains[d], &h);
    }
    tr.installed = 1;
}

/* Restores the saved allocators when ours are on top; otherwise someone
 * chained on us (tracemalloc started after us): our hooks stay, as a
 * pass-through, under theirs. */
static void
tr_uninstall(void)
{
    if (!tr.installed || !tr_on_top())
        return;
    for (int d = 0; d < TR_NDOMAINS; d++)
        PyMem_SetAllocator(tr_domains[d], &tr_orig[d]);
    tr.installed = 0;
}

/* ---- start / stop / fork / exit ------------------------------------------------ */

static void
tr_free_state_unlocked(void)
{
    tr_nlog = 0;  /* its slots point into the pages freed here */
    ht_bm_free(&tr.blocks);
    ht_table_free(&tr.thread_index);
    ht_big_free(tr.recs);
    ht_big_free(tr.freestk);
    ht_big_free(tr.side);
    tr.freestk = tr.side = NULL;
    free(tr.threads);
    __atomic_store_n(&tr.filter, NULL, __ATOMIC_RELEASE);  /* the array itself is static */
    ht_big_free(tr.queue);
    tr.queue = NULL;
    tr.nqueue = tr.capqueue = 0;
    __atomic_store_n(&tr_slow, 0, __ATOMIC_RELAXED);
    tr.recs = NULL;
    tr.threads = NULL;
    tr.nrecs = tr.caprecs = tr.nthreads = tr.capthreads = 0;
    tr.nfree = tr.nside = 0;
    tr.seq = tr.peak_seq = tr.current = tr.peak = 0;
    tr.allocated = tr.allocations = tr.lost = 0;
    tr.child_reset = 0;
    tr_defer_update();
}

static void
tr_fork_prepare(void)
{
    tr_lock();
}

static void
tr_fork_parent(void)
{
    tr_unlock();
}

static void
tr_fork_child(void)
{
    if (tr.tracing) {
        tr.child_reset = 1;
        __atomic_store_n(&tr_slow, 1, __ATOMIC_RELAXED);
    }
    tr_unlock();
}

static void
tr_at_exit(void)
{
    /* the interpreter is gone: no Python call, no decref */
    __atomic_store_n(&tr.tracing, 0, __ATOMIC_RELAXED);
    if (tr.installed && tr_on_top()) {
        for (int d = 0; d < TR_NDOMAINS; d++)
            PyMem_SetAllocator(tr_domains[d], &tr_orig[d]);
        tr.installed = 0;
    }
}

static int
tr_alloc_state(uint64_t sample)
{
    if (ht_bm_init(&tr.blocks) < 0 || ht_table_init(&tr.thread_index, 16, 1) < 0)
        return -1;
    tr.threads = malloc(16 * sizeof(tr_thread));
    if (tr.threads == NULL)
        return -1;
    tr.capthreads = 16;
    tr.threads[0] = (tr_thread){0, 0, 0, 0, 0};  /* slot 0: thread unknown (out of memory) */
    tr.nthreads = 1;
    if (sample != 0) {
        for (uint32_t i = 0; i < TR_FILTER_SIZE; i++)
            __atomic_store_n(&tr_filter_arr[i], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&tr.filter, tr_filter_arr, __ATOMIC_RELEASE);
    }
    return 0;
}

static PyObject *
tr_py_start(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"frames", "sample", NULL};
    long frames = 128;
    unsigned long long sample = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|lK:start", kwlist, &frames, &sample))
        return NULL;
    if (frames < 0 || frames > (long)TR_MAX_FRAMES)  /* lines: 0 = counting only */
        return ht_error("frames must be between 0 and %u, not %ld", TR_MAX_FRAMES, frames);
#ifdef Py_GIL_DISABLED
    return ht_error("the tracer does not support free-threaded Python");
#endif
    if (tr.tracing) {
        if (sample != tr.sample)
            return ht_error("already tracing with sample=%llu; stop() first",
                            (unsigned long long)tr.sample);
        if (tr.limit != (unsigned)frames) {
            tr_settle();
            tr.limit = (unsigned)frames;  /* like tracemalloc: later stacks use the new limit */
            tr_defer_update();
            ht_stk_forget_frames();       /* cached callers were cut to the old limit */
        }
        Py_RETURN_NONE;
    }
    static int atfork_done;
    if (!atfork_done) {
        if (pthread_atfork(tr_fork_prepare, tr_fork_parent, tr_fork_child) != 0 ||
            Py_AtExit(tr_at_exit) < 0)
            return ht_error("cannot register the tracer's fork and exit handlers");
        atfork_done = 1;
    }
    tr_me.guard = TR_OWN;
    tr_lock();
    tr_free_state_unlocked();
    int rc = tr_alloc_state(sample);
    if (rc < 0)
        tr_free_state_unlocked();
    tr_unlock();
    if (rc == 0)
        rc = ht_stk_start();
    tr_me.guard = 0;
    if (rc < 0) {
        ht_stk_reset(1);
        return PyErr_NoMemory();
    }
    tr.limit = (unsigned)frames;
    tr.sample = sample;
    tr.sample_d = (double)sample;
    tr_defer_update();
    __atomic_store_n(&tr_sampling, sample != 0, __ATOMIC_RELAXED); /* read by RAW hooks */
    tr_install();
    tr_lock();
    __atomic_store_n(&tr.gen, tr.gen + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&tr.tracing, 1, __ATOMIC_RELEASE);
    tr_unlock();
    Py_RETURN_NONE;
}

static PyObject *
tr_py_stop(PyObject *self, PyObject *noargs)
{
    if (!tr.tracing && !tr.installed)
        Py_RETURN_NONE;
    tr_lock();
    __atomic_store_n(&tr.tracing, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&tr.gen, tr.gen + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&tr_sampling, 0, __ATOMIC_RELAXED);
    tr_unlock();
    tr_uninstall();
    tr_lock();
    tr_free_state_unlocked();
    tr_unlock();
    /* dropping code references may free code objects: not traced any more */
    ht_stk_reset(1);
    Py_RETURN_NONE;
}

/* ---- queries ------------------------------------------------------------------- */

/* lines: traced bytes now, for the line profiler's Mem usage (GIL held). */
uint64_t
ht_tracer_current(void)
{
    tr_settle();
    return tr.current;
}

static PyObject *
tr_py_is_tracing(PyObject *self, PyObject *noargs)
{
    return PyBool_FromLong(tr.tracing);
}

static PyObject *
tr_py_clear(PyObject *self, PyObject *noargs)
{
    tr_settle();
    if (tr.tracing)
        tr_clear_unlocked();
    Py_RETURN_NONE;
}

static PyObject *
tr_py_traced_memory(PyObject *self, PyObject *noargs)
{
    tr_settle();
    uint64_t cur = tr.current, peak = tr.peak;
    return Py_BuildValue("(KK)", (unsigned long long)cur, (unsigned long long)peak);
}

static PyObject *
tr_py_reset_peak(PyObject *self, PyObject *noargs)
{
    tr_settle();
    if (tr.tracing) {
        tr.peak = tr.current;
        tr.peak_seq = tr.seq;
        tr_side_release_unlocked();
        for (uint32_t i = 0; i < tr.nthreads; i++)
            tr.threads[i].peak = tr.threads[i].current;
    }
    Py_RETURN_NONE;
}

static PyObject *
tr_py_limit(PyObject *self, PyObject *noargs)
{
    return PyLong_FromUnsignedLong(tr.tracing ? tr.limit : 1);
}

static size_t
tr_memory_unlocked(void)
{
    return ht_bm_memory(&tr.blocks) + ht_table_memory(&tr.thread_index) +
           (size_t)tr.caprecs * (sizeof(tr_rec) + 2 * sizeof(uint32_t)) + (size_t)tr.capthreads * sizeof(tr_thread) +
           (tr.filter ? TR_FILTER_SIZE * sizeof(uint8_t) : 0);
}

static PyObject *
tr_py_stats(PyObject *self, PyObject *noargs)
{
    tr_settle();
    uint64_t v[9] = {tr.current, tr.peak, tr.allocated, tr.allocations, tr.blocks.count,
                     tr.nside, tr.lost, tr.seq, tr_memory_unlocked()};
    size_t stk = ht_stk_memory();
    return Py_BuildValue("{sKsKsKsKsKsKsKsKsKsKsKsI}",
                         "current", (unsigned long long)v[0], "peak", (unsigned long long)v[1],
                         "allocated", (unsigned long long)v[2], "allocations", (unsigned long long)v[3],
                         "live_blocks", (unsigned long long)v[4], "freed_since_peak", (unsigned long long)v[5],
                         "lost", (unsigned long long)v[6], "seq", (unsigned long long)v[7],
                         "memory", (unsigned long long)(v[8] + stk),
                         "sample", (unsigned long long)tr.sample,
                         "stacks", (unsigned long long)ht_stk_count(),
                         "frames", tr.limit);
}

static PyObject *
tr_py_memory(PyObject *self, PyObject *noargs)
{
    tr_settle();
    size_t m = tr_memory_unlocked();
    return PyLong_FromSize_t(m + ht_stk_memory());
}

static PyObject *
tr_py_thread_stats(PyObject *self, PyObject *noargs)
{
    tr_me.guard = TR_OWN;
    PyObject *out = NULL;
    tr_settle();
    uint32_t n = tr.nthreads;
    uint64_t current = tr.current;
    tr_thread *copy = malloc((n ? n : 1) * sizeof(tr_thread));
    if (copy != NULL && n)
        memcpy(copy, tr.threads, n * sizeof(tr_thread));
    if (copy == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    out = PyList_New(0);
    if (out == NULL)
        goto cleanup;
    for (uint32_t i = 0; i < n; i++) {
        if (copy[i].ident == 0 && copy[i].peak == 0)
            continue;
        PyObject *t = Py_BuildValue("(KKKi)", (unsigned long long)copy[i].ident,
                                    (unsigned long long)copy[i].current,
                                    (unsigned long long)copy[i].peak, (int)copy[i].ended);
        if (t == NULL || PyList_Append(out, t) < 0) {
            Py_XDECREF(t);
            Py_CLEAR(out);
            goto cleanup;
        }
        Py_DECREF(t);
    }
    out = Py_BuildValue("(KN)", (unsigned long long)current, out);  /* N: steals out */
cleanup:
    free(copy);
    tr_me.guard = 0;
    return out;
}

/* ---- snapshots ------------------------------------------------------------------ */

typedef struct tr_copy {
    uint64_t addr, size, seq, thread;
    uint32_t stack;
} tr_copy;

typedef struct tr_copier {
    tr_copy *c;
    uint64_t k;
    int at_peak;
} tr_copier;

static void
tr_copy_one(uint64_t addr, uint32_t i, void *arg)
{
    tr_copier *cp = arg;
    const tr_rec *r = &tr.recs[i];
    if (cp->at_peak && r->seq > tr.peak_seq)
        return;
    cp->c[cp->k++] = (tr_copy){addr, r->size, r->seq, tr.threads[r->tslot].ident, r->stack};
}

/* Copies the traces (live ones, or those live at the peak).
 * Returns the count, or -1 out of memory. */
static int64_t
tr_copy_traces(int at_peak, tr_copy **out, uint64_t *current, uint64_t *peak)
{
    tr_settle();
    uint64_t n = tr.blocks.count + (at_peak ? tr.nside : 0);
    tr_copy *c = malloc((n ? n : 1) * sizeof(tr_copy));
    if (c == NULL) {
        return -1;
    }
    tr_copier cp = {c, 0, at_peak};
    ht_bm_foreach(&tr.blocks, tr_copy_one, &cp);
    uint64_t k = cp.k;
    if (at_peak)
        for (uint32_t j = 0; j < tr.nside; j++) {
            const tr_rec *r = &tr.recs[tr.side[j]];
            c[k++] = (tr_copy){0, r->size, r->seq, tr.threads[r->tslot].ident, r->stack};
        }
    *current = tr.current;  /* read with the copy: a snapshot's total equals them */
    *peak = tr.peak;
    *out = c;
    return (int64_t)k;
}

typedef struct tr_resolver {
    ht_tsb *b;
    ht_table nodes;  /* internal node + 1 -> snapshot stack node */
    ht_table codes;  /* code object address -> filename id << 32 | name id */
    uint32_t *chain;
    size_t chain_cap;
} tr_resolver;

static uint32_t
tr_pystring(ht_tsb *b, PyObject *obj, const char *attr)
{
    PyObject *v = PyObject_GetAttrString(obj, attr);
    if (v == NULL)
        return HT_NONE;
    Py_ssize_t len;
    const char *p = PyUnicode_Check(v) ? PyUnicode_AsUTF8AndSize(v, &len) : NULL;
    uint32_t id = HT_NONE;
    if (p != NULL)
        id = ht_tsb_string(b, p, (size_t)len);
    else if (!PyErr_Occurred())
        PyErr_Format(PyExc_TypeError, "code.%s is not a str", attr);
    Py_DECREF(v);
    return id;
}

/* The snapshot frame of internal node n; HT_NONE with an exception. */
static uint32_t
tr_frame_of(tr_resolver *r, uint32_t n)
{
    PyObject *code = ht_stk_code(n);
    uint64_t key = (uint64_t)(uintptr_t)code;
    uint64_t *v = ht_table_find(&r->codes, key);
    uint64_t names;
    if (v != NULL)
        names = *v;
    else {
        uint32_t f = tr_pystring(r->b, code, "co_filename");
        if (f == HT_NONE)
            return HT_NONE;
        uint32_t q = tr_pystring(r->b, code, "co_qualname");
        if (q == HT_NONE)
            return HT_NONE;
        names = (uint64_t)f << 32 | q;
        if (ht_table_put(&r->codes, key, names) < 0) {
            PyErr_NoMemory();
            return HT_NONE;
        }
    }
    int line = PyCode_Addr2Line((PyCodeObject *)code, ht_stk_lasti(n));
    return ht_tsb_frame(r->b, (uint32_t)(names >> 32), (uint32_t)names,
                        line > 0 ? (uint32_t)line : 0);
}

/* The snapshot stack node for internal node n (HT_NONE stays HT_NONE).
 * Returns 0 or -1 with an exception. */
static int
tr_stack_of(tr_resolver *r, uint32_t n, uint32_t *out)
{
    size_t len = 0;
    uint32_t base = HT_NONE;
    for (uint32_t cur = n; cur != HT_NONE; cur = ht_stk_parent(cur)) {
        uint64_t *v = ht_table_find(&r->nodes, (uint64_t)cur + 1);
        if (v != NULL) {
            base = (uint32_t)*v;
            break;
        }
        if (len == r->chain_cap) {
            size_t cap = r->chain_cap ? r->chain_cap * 2 : 64;
            uint32_t *c = realloc(r->chain, cap * sizeof(uint32_t));
            if (c == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            r->chain = c;
            r->chain_cap = cap;
        }
        r->chain[len++] = cur;
    }
    while (len > 0) {
        uint32_t x = r->chain[--len];
        uint32_t f = tr_frame_of(r, x);
        if (f == HT_NONE)
            return -1;
        base = ht_tsb_stack(r->b, base, f);
        if (base == HT_NONE)
            return -1;
        if (ht_table_put(&r->nodes, (uint64_t)x + 1, base) < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    *out = base;
    return 0;
}

/* Builds a snapshot of `n` copied traces; NULL with an exception. */
static ht_tsnap *
tr_build(tr_copy *c, int64_t n, int at_peak, uint64_t current, uint64_t peak)
{
    ht_tsb b;
    tr_resolver r = {0};
    if (ht_tsb_init(&b) < 0)
        return NULL;
    r.b = &b;
    if (ht_table_init(&r.nodes, 1024, 1) < 0 || ht_table_init(&r.codes, 256, 1) < 0) {
        PyErr_NoMemory();
        goto fail;
    }
    for (int64_t i = 0; i < n; i++) {
        uint32_t stack = HT_NONE;
        if (c[i].stack != HT_NONE && tr_stack_of(&r, c[i].stack, &stack) < 0)
            goto fail;
        if (ht_tsb_trace(&b, tr_est_bytes(c[i].size), stack, 0, c[i].thread, c[i].seq,
                         tr_est_count(c[i].size), c[i].addr) < 0)
            goto fail;
    }
    b.s->traced_current = current;
    b.s->traced_peak = peak;
    b.s->traceback_limit = tr.limit;
    b.s->sample_interval = tr.sample;
    b.s->is_peak = at_peak;
    ht_table_free(&r.nodes);
    ht_table_free(&r.codes);
    free(r.chain);
    return ht_tsb_finish(&b);
fail:
    ht_table_free(&r.nodes);
    ht_table_free(&r.codes);
    free(r.chain);
    ht_tsb_discard(&b);
    return NULL;
}

static PyObject *
tr_py_snapshot(PyObject *self, PyObject *arg)
{
    int at_peak = PyObject_IsTrue(arg);
    if (at_peak < 0)
        return NULL;
    if (!tr.tracing)
        return ht_error("the tracer is not tracing: call heaptrail.tracer.start() first");
    int guard = tr_me.guard;
    tr_me.guard = TR_OWN;  /* our own objects are not the patient's */
    PyObject *out = NULL;
    tr_copy *c = NULL;
    uint64_t current = 0, peak = 0;
    int64_t n = tr_copy_traces(at_peak, &c, &current, &peak);
    if (n < 0) {
        PyErr_NoMemory();
        goto cleanup;
    }
    ht_tsnap *s = tr_build(c, n, at_peak, current, peak);
    if (s != NULL)
        out = ht_tsnap_wrap(s);
cleanup:
    free(c);
    tr_me.guard = guard;
    return out;
}

/* Candidate block addresses of obj: its allocator block starts before the
 * object by the GC header (gc types) and, for types with a managed dict or
 * weakref pre-header, two more words. */
static int
tr_candidates(PyObject *obj, uint64_t out[4])
{
    PyTypeObject *tp = Py_TYPE(obj);
    uint64_t a = (uint64_t)(uintptr_t)obj;
    size_t gc = PyType_IS_GC(tp) ? 2 * sizeof(void *) : 0;
    size_t pre = 0;
#ifdef Py_TPFLAGS_MANAGED_WEAKREF
    if (PyType_HasFeature(tp, Py_TPFLAGS_MANAGED_DICT | Py_TPFLAGS_MANAGED_WEAKREF))
        pre = 2 * sizeof(void *);
#else
    if (PyType_HasFeature(tp, Py_TPFLAGS_MANAGED_DICT))
        pre = 2 * sizeof(void *);
#endif
    int k = 0;
    out[k++] = a - gc - pre;
    if (pre)
        out[k++] = a - gc;
    if (gc)
        out[k++] = a;
    return k;
}

static PyObject *
tr_py_object_traceback(PyObject *self, PyObject *obj)
{
    if (!tr.tracing)
        Py_RETURN_NONE;
    uint64_t cand[4];
    int k = tr_candidates(obj, cand);
    int found = 0;
    tr_copy c;
    tr_settle();
    for (int i = 0; i < k && !found; i++) {
        uint32_t v = ht_bm_find(&tr.blocks, cand[i]);
        if (v != UINT32_MAX) {
            const tr_rec *r = &tr.recs[v];
            c = (tr_copy){cand[i], r->size, r->seq, tr.threads[r->tslot].ident, r->stack};
            found = 1;
        }
    }
    if (!found)
        Py_RETURN_NONE;
    int guard = tr_me.guard;
    tr_me.guard = TR_OWN;
    PyObject *out = NULL;
    ht_tsnap *s = tr_build(&c, 1, 0, 0, 0);
    if (s != NULL) {
        out = ht_tsnap_pystack(s, s->trace_stack[0]);
        ht_tsnap_free(s);
    }
    tr_me.guard = guard;
    return out;
}

/* Tests: the record capacity from which full tracing logs its operations
 * (0: always, so small workloads exercise the log). Returns the old one. */
static PyObject *
tr_py_defer_min(PyObject *self, PyObject *arg)
{
    unsigned long n = PyLong_AsUnsignedLong(arg);
    if (n == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (n > UINT32_MAX)
        return ht_error("defer_min must be at most %u", UINT32_MAX);
    uint32_t old = tr_defer_recs;
    tr_settle();
    tr_defer_recs = (uint32_t)n;
    tr_defer_update();
    return PyLong_FromUnsignedLong(old);
}

static PyMethodDef tr_methods[] = {
    {"_tracer_start", (PyCFunction)(void (*)(void))tr_py_start, METH_VARARGS | METH_KEYWORDS,
     "_tracer_start(frames=128, sample=0): install the hooks and start recording."},
    {"_tracer_stop", tr_py_stop, METH_NOARGS, "Stop recording, restore the allocators, drop the traces."},
    {"_tracer_is_tracing", tr_py_is_tracing, METH_NOARGS, "True while recording."},
    {"_tracer_clear", tr_py_clear, METH_NOARGS, "Drop every trace and reset current and peak."},
    {"_tracer_traced_memory", tr_py_traced_memory, METH_NOARGS, "(current, peak) traced bytes."},
    {"_tracer_reset_peak", tr_py_reset_peak, METH_NOARGS, "Peak := current."},
    {"_tracer_limit", tr_py_limit, METH_NOARGS, "Frames kept per traceback."},
    {"_tracer_stats", tr_py_stats, METH_NOARGS, "Counters of the tracer, as a dict."},
    {"_tracer_memory", tr_py_memory, METH_NOARGS, "Bytes used by the tracer's own tables."},
    {"_tracer_thread_stats", tr_py_thread_stats, METH_NOARGS, "(current, [(thread ident, current, peak, ended)]), read together."},
    {"_tracer_snapshot", tr_py_snapshot, METH_O, "_tracer_snapshot(at_peak) -> snapshot handle."},
    {"_tracer_defer_min", tr_py_defer_min, METH_O,
     "_tracer_defer_min(records) -> old: full tracing logs its operations from this record capacity up."},
    {"_tracer_object_traceback", tr_py_object_traceback, METH_O,
     "Frames (filename, lineno, name) where obj was allocated, most recent first, or None."},
    {NULL},
};

int
ht_tracer_init(PyObject *m)
{
    return PyModule_AddFunctions(m, tr_methods);
}
