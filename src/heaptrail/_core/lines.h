/* lines.h - the line-by-line memory profiler: per-thread byte counters fed
 * by the tracer's books, and a C trace function that charges them to the
 * lines of the profiled functions.
 *
 * Design, and why:
 *
 * Counters, not stacks. The tracer already sees every block allocated and
 * freed; at the points where its books change the current bytes it calls
 * the inline hooks below (tracer.c, each line marked "lines:"):
 *   tr_add_unlocked, after tr_add_slot:   ht_lines_on_alloc(tr_est_bytes(size))
 *     (only this thread's own allocations come through tr_add_unlocked);
 *   tr_forget_unlocked, after the thread slot's current -= w: ht_lines_on_free(w);
 *   tr_sync_slow, around the loop applying the queue: ht_lines_foreign(1) / (0)
 *     (another thread's queued RAW operations are not this thread's);
 *   tr_capture: limit 0 captures no stack (start(frames=0): counting only);
 *   tr_py_start: frames may be 0;
 *   ht_tracer_current(): tracer.c's traced bytes now (Mem usage, Peak).
 * They update counters of the
 * thread that made the operation, in thread-local storage: no lock, no
 * atomic, three adds and a compare. So a line's numbers are those of the
 * thread that ran it, whatever other threads do meanwhile:
 *   cur    bytes this thread allocated minus bytes it freed (traced blocks:
 *          a free of a block allocated before tracing started is not seen);
 *   alloc  bytes this thread allocated, ever (cumulative);
 *   peak   the highest `cur` since the last line boundary.
 * The tracer can run in counting-only mode (start(frames=0): no stack
 * capture), which is all the line profiler needs.
 *
 * Lines. A C trace function (PyEval_SetTrace), installed on a thread only
 * while a decorated function runs there (enter/leave, counted), receives
 * CALL/LINE/RETURN. Calls of code objects that are not profiled cost one
 * hash probe and are otherwise ignored; LINE and RETURN events of frames
 * that are not the innermost profiled frame cost one pointer compare. So
 * whatever an inner function, a comprehension or a library call does is
 * charged to the line of the profiled frame that called it. At each line
 * boundary the line that ended gets: Increment += cur - cur0, Allocated +=
 * alloc - alloc0, Peak = max(Peak, traced memory at its start + highest
 * excursion of cur above cur0), Mem usage = traced memory (or RSS) after it,
 * and the new line's Occurrences += 1.
 *
 * Nesting. Each thread keeps a stack of its running profiled frames (nested
 * decorated functions, recursion, generators resumed: a suspended generator
 * leaves the stack on yield and comes back on resume). Counters are
 * cumulative, so an outer line's increment includes its profiled callees'.
 * Peaks fold upward in O(1): a callee's highest excursion over its life is
 * folded into its caller's current line when it returns.
 *
 * Locking: the results and the code table are protected by the GIL (the
 * trace function and every entry point hold it). The per-thread state is
 * thread-local. Python 3.12+ runs PyEval_SetTrace on sys.monitoring; each
 * outermost enter/leave toggles it, which re-instruments code lazily.
 */
#ifndef HT_LINES_H
#define HT_LINES_H

#include "common.h"

typedef struct ht_lines_tls {
    int64_t cur;        /* bytes allocated minus freed by this thread */
    int64_t peak;       /* highest cur since the last line boundary */
    uint64_t alloc;     /* bytes allocated by this thread, cumulative */
    int foreign;        /* the tracer applies another thread's queued ops */
} ht_lines_tls;

extern _Thread_local ht_lines_tls ht_lines_me __attribute__((tls_model("initial-exec")));

/* The tracer recorded a block of `w` bytes allocated by this thread. */
static inline void
ht_lines_on_alloc(uint64_t w)
{
    ht_lines_tls *me = &ht_lines_me;
    me->alloc += w;
    me->cur += (int64_t)w;
    if (me->cur > me->peak)
        me->peak = me->cur;
}

/* The tracer forgot a block of `w` bytes (freed, or reallocated). */
static inline void
ht_lines_on_free(uint64_t w)
{
    ht_lines_tls *me = &ht_lines_me;
    if (HT_LIKELY(!me->foreign))
        me->cur -= (int64_t)w;
}

/* Around the tracer's application of other threads' queued operations. */
static inline void
ht_lines_foreign(int on)
{
    ht_lines_me.foreign = on;
}

/* Traced bytes now (tracer.c, GIL held). */
uint64_t ht_tracer_current(void);

/* Set once line counters are read (profile, memit): the tracer stops logging. */
extern int ht_lines_used;

#endif
