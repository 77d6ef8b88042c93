/* heap.h - a heap snapshot: every live object, stored as a struct of arrays
 * indexed by object number (0..n-1), with outgoing references in CSR form.
 * No Python object exists per heap object. Written by heap.c (live walk) and
 * format_snapshot.c (file reader); read by the views (heap.c, query.c) and by
 * graph.c.
 *
 * Budget: 48 bytes per object (addr 8, type 4, size 8, len 8, flags 4,
 * value 4, owner 4, module 4, edge_start 4) plus 8 per edge (dst, label), plus
 * the string table (each distinct string once). Indexes derived later
 * (reverse edges, dominators) are built on first use and counted separately.
 *
 * Edge labels (produced by the walk in heap.c):
 *   dict -> value          "['key']" (repr of a short str key, "[42]" for an
 *                          int key, "[<tuple>]" for other keys); the edge to
 *                          the key itself has no label;
 *   owned dict -> value    ".key" when the dict is the __dict__ of an
 *                          instance, a module or a class and the key is an
 *                          identifier (else "['a.b']"): a module's globals
 *                          read "module app.cache -> __dict__ -> .CACHE" and
 *                          the path printer may drop the "__dict__" step;
 *   instance -> __dict__   "__dict__" (also module -> its dict, class -> its
 *                          dict); instance -> its class "type";
 *   __slots__ member       ".name";
 *   list/tuple item        HT_LABEL_INDEX | i; subclasses' items too
 *                          (namedtuples, struct sequences' visible fields);
 *   cell -> contents       the closure variable's name (from a function
 *                          whose closure holds the cell), else "cell_contents";
 *   frame -> local         the variable's name (framevars.h). A running
 *                          frame's tp_traverse does not visit its
 *                          variables, so they are edges of their own: an
 *                          object only a local holds (a str, an untracked
 *                          dict) is found through them; a cell variable's
 *                          edge goes to the cell's contents. A finished
 *                          frame (a traceback's) visits its variables
 *                          itself: named too, a cell variable's edge going
 *                          to its cell;
 *   exception -> parts     "args", "__traceback__", "__context__",
 *                          "__cause__", "__notes__"; traceback -> "tb_next",
 *                          "tb_frame";
 *   function -> parts      "__code__", "__globals__", "__closure__",
 *                          "__defaults__", "__kwdefaults__", "__dict__";
 *   class -> parts         "__mro__", "__bases__", "__base__", "__dict__".
 *   inline attribute       ".name" too: instances whose attributes live
 *                          inline (3.11+ managed dict not materialized) have
 *                          them as direct edges; their names are learned per
 *                          class from the names its methods use (heap.c,
 *                          ht_hw_attrs), since the interpreter's key tables
 *                          are private and materializing the dict would
 *                          change the program. An attribute set only from
 *                          outside the class's methods stays unlabeled,
 *                          unless the instance's __dict__ was made (3.13
 *                          keeps the values inline then: the dict's keys
 *                          name them; the dict is HT_OBJ_VIEW).
 *   Anything else: HT_NONE.
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
    HT_OBJ_UNREACHABLE = 1u << 1, /* not reachable from any root: garbage (gc_first=False) */
    HT_OBJ_GC = 1u << 2,          /* gc-tracked */
    HT_OBJ_FINALIZER = 1u << 3,   /* type has tp_finalize or tp_del (__del__) */
    HT_OBJ_EXTERNAL = 1u << 4,    /* gc root: referenced from outside the walked graph
                                     (C code, the interpreter); also has HT_OBJ_ROOT */
    HT_OBJ_TYPE = 1u << 5,        /* the object is a class (value = qualified name) */
    HT_OBJ_MODULE = 1u << 6,      /* a module (value = its name) */
    HT_OBJ_FRAME = 1u << 7,       /* a frame of a thread's stack */
    HT_OBJ_DICT = 1u << 8,        /* a dict (owner[] may name its owner) */
    HT_OBJ_VIEW = 1u << 9,        /* 3.13: a __dict__ made from its owner's inline
                                     values: its edges name them but are no
                                     references (the owner's are) */
    HT_OBJ_LEGACY_DEL = 1u << 10, /* type has a legacy tp_del: a garbage cycle
                                     through it is uncollectable (gc.garbage) */
};

/* Strings: ids 0..count-1, bytes data[offset[id] .. offset[id+1]). The
 * interning index (an ht_table from content hash to id) is private to
 * heap.c and built only while a snapshot is being written. */
typedef struct ht_strtab {
    uint32_t count;
    uint64_t *offset;      /* count + 1 offsets into data */
    char *data;            /* UTF-8, not NUL-terminated */
    size_t data_len, data_cap, offset_cap;
    void *index;           /* interning index (heap.c), NULL when frozen */
    struct ht_pf *pf;      /* while a walk fills it: its prefaulter (prefault.h) */
} ht_strtab;

/* ht_heap's per-object columns, for X(field): every place that grows,
 * watches, trims or frees them all expands this list, so that a column is
 * added in one place. */
#define HT_HEAP_OBJECT_COLUMNS(X)                                              \
    X(addr) X(type) X(size) X(len) X(flags) X(value) X(owner) X(module) X(edge_start)

typedef struct ht_heap {
    uint32_t n;            /* objects */
    uint64_t *addr;        /* [n] address in the process that was walked */
    uint32_t *type;        /* [n] object index of its type, or HT_NONE */
    uint64_t *size;        /* [n] flat size in bytes (ht_size_flat) */
    int64_t *len;          /* [n] len() where it has one, else -1 */
    uint32_t *flags;       /* [n] HT_OBJ_* */
    uint32_t *value;       /* [n] string id: short value (str/bytes/int/float,
                              truncated) or name (module, class, function), or HT_NONE */
    uint32_t *owner;       /* [n] for a dict that is the __dict__ of an instance,
                              module or class: that object's index; else HT_NONE */
    uint32_t *module;      /* [n] for classes and functions: string id of the
                              defining module (__module__); for a thread's
                              frame: the thread's name; else HT_NONE */
    uint32_t *edge_start;  /* [n + 1] edges of i are edge_start[i] .. edge_start[i+1]-1 */
    uint32_t *edge_dst;    /* [m] target object index */
    uint32_t *edge_label;  /* [m] label (see above) */
    uint32_t m;            /* edges */
    ht_strtab strings;     /* values, names, labels: each distinct string once */
    uint64_t total_size;   /* sum of size[] */
    int python_minor;      /* 3.x of the process that was walked */
    void *graph_cache;     /* graph.c's derived indexes, freed with the heap */
    void *addr_index;      /* heap.c: ht_table address -> index + 1, built on use */
} ht_heap;

/* The snapshot handle's heap, or NULL with TypeError set when obj is not a
 * snapshot handle. The heap is owned by the handle. */
ht_heap *ht_heap_from_handle(PyObject *obj);

/* The string with id `id` and its length; NULL, 0 for HT_NONE. */
const char *ht_heap_string(const ht_heap *h, uint32_t id, size_t *len);

/* ---- for format_snapshot.c and query.c ---------------------------------- */

/* Allocates an empty heap (all arrays NULL); NULL with MemoryError set. */
ht_heap *ht_heap_new(void);
/* Allocates the per-object arrays for n objects and m edges (contents
 * uninitialized); 0 or -1 with MemoryError set. */
int ht_heap_alloc(ht_heap *h, uint32_t n, uint32_t m);
void ht_heap_free(ht_heap *h);
/* Wraps a heap in a new handle object that owns it (frees it on failure). */
PyObject *ht_heap_wrap(ht_heap *h);

/* Appends a string (not interned: the reader's strings are distinct by
 * construction); returns its id, or HT_NONE when out of memory. */
uint32_t ht_strtab_append(ht_strtab *s, const char *p, size_t n);

/* Index of the object at address addr, or HT_NONE. Builds the address index
 * on first use; -1 return of memory failure is reported as HT_NONE with
 * MemoryError set (check PyErr_Occurred when it matters). */
uint32_t ht_heap_index_of(ht_heap *h, uint64_t addr);

/* Name of object i's kind for summaries: its type's qualified name ("str",
 * "app.Session"); "?" when unknown. */
const char *ht_heap_type_name(const ht_heap *h, uint32_t i, size_t *len);

/* Whether object i's value[] is a name (a class's, module's, function's,
 * builtin's, code's, generator's), not a data value (str, bytes, int, float
 * and their subclasses'; a frame's function name counts as its value). */
int ht_heap_is_name(const ht_heap *h, uint32_t i);

/* Number of references to each object (a fresh malloc'd array of n counts):
 * its edges, but those of HT_OBJ_VIEW dicts; NULL with MemoryError set. */
uint32_t *ht_heap_referrer_counts(const ht_heap *h);

/* Appends object i's record (address, type, size, len, value) as a tuple to
 * list; 0 or -1. */
int ht_heap_append_record(const ht_heap *h, uint32_t i, PyObject *list);

#endif
