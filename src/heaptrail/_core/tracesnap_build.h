/* tracesnap_build.h - building an ht_tsnap by interning strings, frames and
 * stacks (tests, the stdlib-compatible Snapshot constructor, the dump
 * reader), and the Python-facing helpers shared by the snapshot's views. */
#ifndef HT_TRACESNAP_BUILD_H
#define HT_TRACESNAP_BUILD_H

#include "tracesnap.h"
#include "hashtable.h"
#include "codec.h"

typedef struct ht_tsb {
    ht_tsnap *s;          /* being built; owned by the builder until finish */
    ht_buf data;          /* string bytes */
    ht_table strs;        /* content hash -> string id */
    ht_table frames;      /* (filename, name, lineno) hash -> frame id */
    ht_table stacks;      /* (parent, frame) hash -> stack node */
    uint64_t cap_str, cap_frames, cap_stacks, cap_traces;
} ht_tsb;

/* 0, or -1 with MemoryError set. */
int ht_tsb_init(ht_tsb *b);
/* Frees everything, including the snapshot being built. */
void ht_tsb_discard(ht_tsb *b);
/* Interned ids; HT_NONE with an exception set on failure. Interning keeps
 * parents before children: a stack node's parent always has a smaller id. */
uint32_t ht_tsb_string(ht_tsb *b, const char *p, size_t n);
uint32_t ht_tsb_frame(ht_tsb *b, uint32_t filename, uint32_t name, uint32_t lineno);
uint32_t ht_tsb_stack(ht_tsb *b, uint32_t parent, uint32_t frame);
/* Appends a trace; 0 or -1 with MemoryError set. */
int ht_tsb_trace(ht_tsb *b, uint64_t size, uint32_t stack, uint32_t domain, uint64_t thread,
                 uint64_t seq, uint64_t count, uint64_t addr);
/* The finished snapshot (the builder is emptied), or NULL with an exception. */
ht_tsnap *ht_tsb_finish(ht_tsb *b);

/* Content hash of bytes (never used as a table key without a check). */

/* Python views of a snapshot's pieces ("<unknown>" for a missing string). */
PyObject *ht_tsnap_pystring(const ht_tsnap *s, uint32_t id);
PyObject *ht_tsnap_pyframe(const ht_tsnap *s, uint32_t f);
PyObject *ht_tsnap_pystack(const ht_tsnap *s, uint32_t stack);

#endif
