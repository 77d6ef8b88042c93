/* live.h - per-type counting of live objects, one pass shared by objgraph's
 * type counts (live.c) and the leak hunter's per-iteration counter (leaks.c).
 *
 * A ht_live_types maps type addresses to slots in first-seen order (so equal
 * counts sort as objgraph's dicts do), through the shared hash table with a
 * small direct-mapped cache in front (a heap has few types, and the pass is
 * bound by memory, not by hashing). Slots are never renumbered, so a caller
 * may keep its own arrays parallel to them across several passes. Memory is
 * libc malloc: counting makes no Python object.
 */
#ifndef HT_LIVE_H
#define HT_LIVE_H

#include "common.h"
#include "hashtable.h"

/* Also sum each counted object's flat size (ht_size_flat; a failing
 * __sizeof__ counts 0 bytes) into bytes[]. */
#define HT_LIVE_BYTES 1
/* Also count the untracked objects each object refers to (str, int, untracked
 * tuples and dicts, ...: found only through a container), once per
 * reference, not once per object, looking into untracked containers and
 * code objects up to a bounded depth; exact dicts' str keys count too.
 * They are counted apart (ucounts, ubytes), and only in the passes that ask
 * for them (walk = 1): the walk reads every referent's header, which costs
 * more than the rest of the pass. */
#define HT_LIVE_UNTRACKED 2

typedef struct ht_live_types {
    ht_table index;          /* type address -> slot + 1 */
    PyTypeObject **types;    /* [n] borrowed: valid while the objects counted live */
    uint64_t *counts;        /* [n] the objects of the sequence */
    uint64_t *bytes;         /* [n] with HT_LIVE_BYTES, else NULL */
    uint64_t *ucounts;       /* [n] with HT_LIVE_UNTRACKED: untracked referents */
    uint64_t *ubytes;        /* [n] with HT_LIVE_UNTRACKED and HT_LIVE_BYTES */
    size_t n, cap;
    int flags;
    int walk;                /* with HT_LIVE_UNTRACKED: this pass walks (default 1) */
    struct { PyTypeObject *tp; size_t slot; } cache[64];
} ht_live_types;

/* 0, or -1 with MemoryError set. flags: HT_LIVE_BYTES | HT_LIVE_UNTRACKED. */
int ht_live_types_init(ht_live_types *t, int flags);
void ht_live_types_free(ht_live_types *t);
/* Zeroes every count (and byte sum), keeping the slots. */
void ht_live_types_zero(ht_live_types *t);
/* Slot of tp, added (with zero counts) when new; (size_t)-1 with
 * MemoryError set. */
size_t ht_live_types_slot(ht_live_types *t, PyTypeObject *tp);

/* (address, type slot) of every object a pass counted, in the order
 * counted (an untracked object once per reference to it): appending to two
 * arrays costs a sequential write per object, where a hash table insert
 * missed the cache twice. The reader sorts them (leaks.c). */
typedef struct ht_live_rec {
    uint64_t *addr;
    uint32_t *slot;   /* the type's slot in the pass's ht_live_types */
    size_t n, cap;
    /* the addresses recorded last, direct-mapped: None, small ints, interned
     * dict keys are referred to from everywhere, and are recorded once per
     * run of hits instead of once per reference */
    uint64_t recent[1024];
} ht_live_rec;

void ht_live_rec_free(ht_live_rec *r);

/* Counts the objects of seq (a list or tuple, as PySequence_Fast gives) by
 * type, adding to the counts. filter (or NULL) is called on each object and
 * only objects it accepts are counted. record (or NULL) gets the address and
 * type slot of every object counted. The caller keeps the objects alive
 * (and, with HT_LIVE_UNTRACKED, the collector from running). 0 or -1 with an
 * exception set. */
int ht_live_types_count(ht_live_types *t, PyObject *seq, PyObject *filter, ht_live_rec *record);

/* Counts the objects of `all`, a list fresh from gc.get_objects() that only
 * the caller holds (refcount 1), like ht_live_types_count without a filter,
 * and lets go of each object once counted (the list is left empty):
 * releasing the list in a pass of its own would walk the heap a second time.
 * No Python code sees the list half emptied. With HT_LIVE_UNTRACKED the
 * caller keeps the collector from running. 0 or -1 with an exception set
 * (every object is let go all the same). */
int ht_live_types_count_owned(ht_live_types *t, PyObject *all, ht_live_rec *record);

/* Calls fn on every untracked object op refers to (str, int, untracked
 * tuples and dicts, ...: found only through a container), once per
 * reference, looking into untracked containers and code objects up to a
 * bounded depth; exact dicts are read with PyDict_Next so that their str
 * keys are seen too. Tracked referents are skipped (gc.get_objects() holds
 * them). The caller keeps op alive and the collector from running; fn must
 * not free objects. */
typedef void (*ht_live_untracked_fn)(PyObject *o, void *arg);
void ht_live_untracked(PyObject *op, ht_live_untracked_fn fn, void *arg);

#endif
