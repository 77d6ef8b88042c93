/* tracesnap.h - a snapshot of traced allocations: the live blocks (or the
 * blocks live at the peak) with their interned stacks, frozen in C arrays.
 * Produced by tracer.c (take_snapshot, peak_snapshot) and by the trace-dump
 * reader (format_trace.c); read by aggregate.c (statistics, compare_to,
 * filters) and the dump writer. No Python object per trace.
 *
 * Stacks are a trie: stack node s is "frame stack_frame[s], called from
 * stack node stack_parent[s]" (HT_NONE for the outermost frame). A trace
 * points at its innermost node; walking parents gives the traceback from the
 * most recent frame to the oldest. Depth is bounded by the tracer's `frames`.
 *
 * Ownership: every array comes from libc malloc and is released by
 * ht_tsnap_free; a wrapped snapshot is never modified again (handles share
 * it without a lock). tracesnap_build.h builds one by interning strings,
 * frames and stacks (parents always get smaller ids than their children).
 */
#ifndef HT_TRACESNAP_H
#define HT_TRACESNAP_H

#include "common.h"

#ifndef HT_NONE
#define HT_NONE UINT32_MAX
#endif

/* PEP 445 domains, as tracemalloc numbers them for users (DomainFilter):
 * the tracer records Python's allocations in domain 0 like tracemalloc does;
 * other domains are for blocks reported by extensions (PyTraceMalloc_Track). */
typedef struct ht_tframe {
    uint32_t filename;  /* string id */
    uint32_t name;      /* function's qualified name, string id */
    uint32_t lineno;    /* 0 when unknown */
} ht_tframe;

typedef struct ht_tstrings {
    uint32_t count;
    uint64_t *offset;   /* count + 1 offsets into data */
    char *data;         /* UTF-8, not NUL-terminated */
} ht_tstrings;

typedef struct ht_tsnap {
    /* frames and stacks */
    uint32_t nframes;
    ht_tframe *frames;           /* [nframes] */
    uint32_t nstacks;
    uint32_t *stack_parent;      /* [nstacks] parent node or HT_NONE */
    uint32_t *stack_frame;       /* [nstacks] frame index */
    uint16_t *stack_depth;       /* [nstacks] frames from this node to the root (1 = outermost) */
    /* traces */
    uint64_t ntraces;
    uint64_t *trace_size;        /* [ntraces] bytes (for a sampled trace: its estimated bytes, see weight) */
    uint32_t *trace_stack;       /* [ntraces] innermost stack node, or HT_NONE (no Python frame) */
    uint32_t *trace_domain;      /* [ntraces] */
    uint64_t *trace_thread;      /* [ntraces] thread id (PyThread_get_thread_ident) */
    uint64_t *trace_seq;         /* [ntraces] allocation sequence number */
    uint64_t *trace_count;       /* [ntraces] allocations this trace stands for: 1, or the sampling weight */
    uint64_t *trace_addr;        /* [ntraces] block address (0 when loaded from a file) */
    ht_tstrings strings;
    /* what the tracer knew when the snapshot was taken */
    uint32_t traceback_limit;    /* `frames` given to start() */
    uint64_t sample_interval;    /* 0 = every allocation traced */
    uint64_t traced_current;     /* bytes traced when taken */
    uint64_t traced_peak;        /* high-water mark when taken */
    int is_peak;                 /* 1 when this is the state at the peak */
} ht_tsnap;

/* Allocates an empty snapshot (all counts 0); NULL with MemoryError set. */
ht_tsnap *ht_tsnap_new(void);
void ht_tsnap_free(ht_tsnap *s);

/* Wraps s in a Python handle that owns it (frees it on dealloc). On failure
 * frees s and returns NULL with an exception set. */
PyObject *ht_tsnap_wrap(ht_tsnap *s);

/* The snapshot inside a handle, or NULL with TypeError set. */
ht_tsnap *ht_tsnap_from_handle(PyObject *obj);

/* The string with id `id` and its length (NULL, 0 for HT_NONE). */
const char *ht_tsnap_string(const ht_tsnap *s, uint32_t id, size_t *len);

#endif
