/* runcap.h - `heaptrail run`: the tracer's recorded blocks streamed into the
 * capture file (writer in capture.h) while a program runs.
 *
 * What goes into the file, and when:
 *   - ALLOC / FREE: exactly the blocks the tracer's books record (RAW, MEM
 *     and OBJ domains; RAW blocks made without the GIL reach the books, and
 *     the file, when the next GIL holder applies the tracer's queue, in the
 *     buffer of that thread). The tracer calls ht_runcap_alloc() when a
 *     record enters its books and ht_runcap_free() when one leaves them;
 *     a realloc is the two. Sizes are the tracer's weights: the requested
 *     size, or its unbiased estimate s/p when sampling.
 *   - STACK / FRAME: a stack node is written the first time an ALLOC uses it
 *     (a bitmap by node id remembers which were written), with its callers
 *     up to the first one already written. Its FRAME (file, qualname, line)
 *     is resolved right there, in the allocator hook, with the GIL held:
 *     PyCode_Addr2Line(code, lasti) and the code object's co_filename /
 *     co_qualname read from the object (UTF-8 copied into a libc buffer), so
 *     nothing allocates through Python and no Python code runs. Frames are
 *     shared by (code, line).
 *   - SAMPLE: a C thread wakes every interval, reads RSS from
 *     /proc/self/statm and raises a "due" flag; the next hook event (GIL
 *     held) writes the sample (RSS and the traced current bytes) and flushes
 *     its buffer. The writer runs in serialized mode (every event call is
 *     under the GIL), so at any time only the last thread's buffer holds
 *     unwritten events. When a whole interval passes and no hook answered
 *     the flag (sleep, blocking I/O, a long C call), the sampler takes the
 *     GIL itself with a thread state of its own (made at start, outside any
 *     hook, never running Python code) and writes the sample, which flushes
 *     the pending buffer. So a killed program loses at most about two
 *     intervals of events, and the timeline has a sample every interval.
 *     The sampler is stopped (GIL released while joining) before the
 *     interpreter finalizes: run.stop() runs at the latest from atexit.
 *   - MARKER: heaptrail.mark() under `heaptrail run`, from Python.
 *   - THREAD: the main thread's name at start; other threads name
 *     themselves from Python (heaptrail/run.py).
 *
 * All event functions are called with the GIL held (the tracer's books are
 * GIL-protected): the runcap state is protected by the GIL, except the
 * sampler's fields (rc_slow, rss, stopping: atomics; its mutex for stop).
 *
 * fork: a pthread_atfork child handler forgets the parent's file (its
 * buffers belong to the parent) and, with follow_fork, opens FILE.<pid> at
 * the child's first traced event (so a child that execs before allocating,
 * e.g. subprocess, leaves no file); the sampler thread is restarted from
 * Python (os.register_at_fork) by _runcap_after_fork().
 */
#ifndef HT_RUNCAP_H
#define HT_RUNCAP_H

#include "common.h"

/* Nonzero while a capture is open (GIL-protected). */
extern int ht_runcap_on;

void ht_runcap_alloc_event(const void *p, uint64_t bytes, uint32_t stack);
void ht_runcap_free_event(const void *p, uint64_t bytes);

/* A record of `bytes` (tracer weight) at p entered the tracer's books, with
 * stack node `stack` (HT_NONE: no Python frame). GIL held. */
static inline void
ht_runcap_alloc(const void *p, uint64_t bytes, uint32_t stack)
{
    if (ht_runcap_on)
        ht_runcap_alloc_event(p, bytes, stack);
}

/* The record at p (weight `bytes`) left the books. GIL held. */
static inline void
ht_runcap_free(const void *p, uint64_t bytes)
{
    if (ht_runcap_on)
        ht_runcap_free_event(p, bytes);
}

int ht_runcap_init(PyObject *m);

#endif
