/* heap.h - a heap snapshot: every live object, stored as a struct of arrays
 * indexed by object number (0..n-1), with outgoing references in CSR form.
 * No Python object exists per heap object. Written by heap.c (live walk) and
 * format_snapshot.c (file reader); read by the views and by graph.c.
 *
 * Budget: at most 48 bytes per object plus 8 per edge for what is stored
 * here; indexes derived later (reverse edges, dominators) are built on first
 * use and counted separately.
 */
#ifndef HT_HEAP_H
#define HT_HEAP_H

#include "common.h"

#define HT_NONE UINT32_MAX              /* no string / no index */

/* Edge labels: HT_NONE (no label), a string id (what the label says:
 * "['user:42']", ".CACHE", "__dict__", "type" ...), or an integer index
 * (list/tuple position) with the top bit set. */
#define HT_LABEL_INDEX 0x80000000u
#define HT_LABEL_IS_INDEX(l) ((l) != HT_NONE && ((l) & HT_LABEL_INDEX))
#define HT_LABEL_INDEX_OF(l) ((l) & ~HT_LABEL_INDEX)

/* per-object flags */
enum {
    HT_OBJ_ROOT = 1u << 0,        /* a root: module, thread frame, builtins, gc root */
    HT_OBJ_UNREACHABLE = 1u << 1, /* found by gc as garbage (gc_first=False) */
    HT_OBJ_GC = 1u << 2,          /* gc-tracked */
    HT_OBJ_FINALIZER = 1u << 3,   /* type has tp_finalize or tp_del (__del__) */
};

typedef struct ht_strtab {
    uint32_t count;
    uint64_t *offset;      /* count + 1 offsets into data */
    char *data;            /* UTF-8, not NUL-terminated */
    size_t data_len, data_cap, offset_cap;
    /* interning index is private to heap.c */
    void *index;
} ht_strtab;

typedef struct ht_heap {
    uint32_t n;            /* objects */
    uint64_t *addr;        /* [n] address in the process that was walked */
    uint32_t *type;        /* [n] object index of its type, or HT_NONE */
    uint64_t *size;        /* [n] flat size in bytes (ht_size_flat) */
    int64_t *len;          /* [n] len() where it has one, else -1 */
    uint32_t *flags;       /* [n] HT_OBJ_* */
    uint32_t *value;       /* [n] string id: short value (str/bytes/int/float,
                              truncated) or name (module, class, function), or HT_NONE */
    uint32_t *edge_start;  /* [n + 1] edges of i are edge_start[i] .. edge_start[i+1]-1 */
    uint32_t *edge_dst;    /* [m] target object index */
    uint32_t *edge_label;  /* [m] label (see above) */
    uint32_t m;            /* edges */
    ht_strtab strings;     /* values, names, labels: each distinct string once */
    uint64_t total_size;   /* sum of size[] */
    /* Owned by graph.c (reverse edges, dominators, components, built on
     * first use): NULL until then. The heap's destructor must call
     * ht_graph_cache_free(h) (graph.h) before freeing the arrays above. */
    void *graph_cache;
    void (*graph_cache_free)(void *);
} ht_heap;

/* The snapshot handle's heap, or NULL with TypeError set when obj is not a
 * snapshot handle. The heap is owned by the handle. */
ht_heap *ht_heap_from_handle(PyObject *obj);

/* The string with id `id` and its length; NULL, 0 for HT_NONE. */
const char *ht_heap_string(const ht_heap *h, uint32_t id, size_t *len);

#endif
