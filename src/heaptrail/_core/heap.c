/* heap.c - the heap snapshot: the live-object walk, the string table, the
 * snapshot handle and the summary/diff/record views.
 *
 * The walk (ht_hw_walk) in short:
 *   1. (gc_first: see ht_heap_snapshot, which may collect and walk again);
 *   2. the gc-tracked objects, visited in place (gcvisit.h: no list, no
 *      reference taken, so the walk writes nothing to the program's
 *      objects). Instances of the classes the caller names are left out,
 *      and so is every live snapshot handle, and heaptrail's own objects
 *      (own.h: its modules and frames, marked in the index before the walk,
 *      and what they hold unless a recorded object refers to it);
 *   3. roots: sys.modules and its modules, builtins, every thread's frames
 *      (PyThreadState_GetFrame/PyFrame_GetBack; this materializes frame
 *      objects for running frames, as sys._current_frames() does: the stack
 *      is what it is, no local is read through f_locals);
 *   4. a breadth-first walk over the object table: each object is recorded
 *      once (address, type, ht_size_flat, len, short value) and its
 *      referents come from tp_traverse, or directly from exact dicts, lists
 *      and tuples so that every edge gets its label (see heap.h);
 *   5. no reference is held on the objects found (see "no references held"
 *      at ht_hw_guard): no Python code runs during the walk, so none can go
 *      away; where code might run (a __sizeof__ written in Python or in an
 *      extension, inline attributes of classes with C bases) the walk takes
 *      references first and drops them at the end, leaving every refcount as
 *      it was. Holding every untracked object (as it did) cost a write miss
 *      per object when found and a miss per object to release;
 *   The address -> index map of the walk is laid out by address (see
 *   ht_hw_slot): the allocator put most referents near their referrer, so
 *   lookups stay in cache where a hash of each address missed on every edge.
 *   6. gc roots and garbage, computed like the collector does: for each
 *      gc-tracked object, refcount minus the references we hold
 *      (ht_hw_hold's) minus the references from walked tracked
 *      objects; a positive remainder means
 *      something outside the graph (C code, the interpreter) holds it, so it
 *      is a root (HT_OBJ_EXTERNAL). Whatever no root reaches is flagged
 *      HT_OBJ_UNREACHABLE: that is cyclic garbage when gc_first=False.
 * Nothing the walk creates is recorded: it creates no Python objects except
 * the exceptions of failed attribute reads (released at once, never
 * reachable from the heap) and the frames of step 3 (a closure's variable
 * names are read in place: PyCode_GetFreevars's tuple stays cached on the
 * code object on 3.12+, see ht_hw_closure).
 * Speed (benchmarks/cases/heap.py, 1.45M objects, 2.5M edges; snapshot +
 * summary, gc_first=False, CPU time): 3.11 0.37 -> 0.30 s, 3.12 0.33 ->
 * 0.28 s, 3.13 0.31 -> 0.26 s, through the big arrays on huge pages
 * (ht_big_realloc, -13% on 3.11), prefetching in two stages (header, then
 * what recording reads next, ht_hw_prefetch_body; -3%), holding no
 * references (-6%) and, on 3.12+, no gc.get_objects() list. A third
 * prefetch stage (the referents' slots, 4 objects ahead) and a bigger
 * recent-chunk cache measured no gain.
 * Then, counted with callgrind, the walk turned out bound by instructions
 * (about 1040 per object) more than by misses: 3.11 0.28 -> 0.235 s, 3.12
 * 0.205 s, 3.13 0.21 s (about 800 instructions per object) by deciding
 * each type's kind, sizing rule and fixed size once (ht_hw_tinfo_of), \xNN
 * escapes without snprintf, inline fast paths for known referents
 * (ht_hw_add) and recent dict-key labels (ht_hw_key_label), and a bloom
 * filter in front of the excluded-address table. The heap is in the
 * (large) L3 cache after being built, so each miss is ~60 ns, not DRAM's.
 * What was left then, roughly: visiting the tracked objects (a linked
 * list: one dependent miss after another, as in gc.get_objects) ~60 ms;
 * recording ~130 ms, of which the kernel's page faults for the snapshot's
 * 130 MB of arrays were ~45 ms (more on the first snapshot of a process);
 * reachability 13 ms.
 * Then the page faults moved to another CPU (see "prefaulting": a helper
 * thread faults the arrays in ahead of the walk, in reservations where they
 * grow in place), and reachability stopped allocating (refcounts in place,
 * the spent index as its stack): 3.11 0.215 -> 0.185 s in one A/B run,
 * 3.12 0.205 -> 0.16 s, 3.13 0.21 -> 0.145 s, and a process's first
 * snapshot 0.23-0.34 -> 0.17-0.20 s. A fresh index block is written
 * before it is read (ht_hw_slot: a zero-page read, then a write that
 * flushed the helper's TLB): 0.21 -> 0.165 s against the start. In all,
 * against the start, same hour: 3.11 0.18 -> 0.134 s, 3.12 0.17 -> 0.125
 * s, 3.13 0.16 -> 0.115 s, first snapshots twice as fast. In the last
 * benchmark run (a faster hour of this shared machine): 0.140 s, guppy3
 * 5.8x slower, pympler 25x, the touch floor 0.018 s.
 * Tried and dropped: the tracked objects listed by the helper thread into
 * a ring the walk reads (the walk's visit went from 60 to 100-150 ms: it
 * read each object's lines right after the other CPU had, and waited on
 * the ring); madvise(MADV_POPULATE_WRITE) for the faults (it holds the
 * mmap lock, and the walk's own mmaps slept on it: milliseconds each on
 * this virtual machine); huge pages on the helper's arrays (slower first
 * snapshots, see ht_hw_reserve).
 * Unguardable: an extension type whose tp_traverse is wrong (visits freed
 * objects) would crash the walk just as it would crash the collector.
 */
#include "heap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framevars.h"
#include "gcvisit.h"
#include "graph.h"
#include "bigmem.h"
#include "hashtable.h"
#include "own.h"
#include "prefault.h"
#include "query.h"
#include "size.h"
#include <structmember.h>

#define HT_HW_HELD (1u << 30)    /* walk-time flag: the walk holds a reference */
#define HT_HW_NOREF (1u << 29)   /* walk-time flag: its edges are no references
                                  * (ht_hw_dict_embedded) */
#define HT_HW_LISTED (1u << 28)  /* walk-time flag: in the collector's generations (gcvisit.h) */
#define HT_HW_FROZEN (1u << 27)  /* walk-time flag: tracked, not listed: gc.freeze() set it aside */
#define HT_HW_SEEN (1u << 26)    /* walk-time flag: reached (ht_hw_garbage) */
#define HT_HW_REACHED ((uint64_t)1 << 32) /* ht_hw_edges' second pass: an edge went there */
/* The walk's arrays its prefaulter watches (prefault.h), and the counters
 * that say how far they are filled. */
#define HT_HW_PF_COLUMN_ID(f) HT_HW_PF_COL_##f,
enum {
    HT_HEAP_OBJECT_COLUMNS(HT_HW_PF_COLUMN_ID)
    HT_HW_PF_REFCNT, HT_HW_PF_EDGE_DST, HT_HW_PF_EDGE_LABEL, HT_HW_PF_SLOTS,
    HT_HW_PF_STR_OFFSET, HT_HW_PF_STR_DATA
};
#undef HT_HW_PF_COLUMN_ID
enum { HT_HW_PF_N_OBJECTS, HT_HW_PF_N_EDGES, HT_HW_PF_N_SLOTS, HT_HW_PF_N_STRINGS, HT_HW_PF_N_STRBYTES };
#define HT_VALUE_MAX 60     /* characters kept of a str/bytes value */
#define HT_LABEL_MAX 60     /* characters kept of a dict key in a label */


/* ---- big arrays ----------------------------------------------------------
 * The snapshot's arrays (per-object columns, edges, the string table) and
 * the walk's (object pointers, the address index) are read and written all
 * over as the walk goes: on 4 KiB pages nearly every access to them missed
 * the TLB, and the kernel took a page fault per 4 KiB to hand them out.
 * They are bigmem.h blocks with HT_BIG_HUGE (mappings of their own, huge
 * pages asked for): that took the whole snapshot from 0.345 s to 0.300 s on
 * benchmarks/cases/heap.py (1.45M objects). A walk now makes them in
 * reservations, without huge pages, and a helper thread faults them in
 * ahead of it (see "prefaulting"). They are freed with ht_big_free, never
 * free(). */

/* ======================================================================
 * string table
 * ====================================================================== */

static uint64_t
ht_strtab_hash(const char *p, size_t n)
{
    uint64_t x = 0x9e3779b97f4a7c15ULL ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        x = ht_hash64(x ^ w);
    }
    uint64_t w = 0;
    memcpy(&w, p + i, n - i);
    x = ht_hash64(x ^ w ^ ((uint64_t)(n - i) << 56));
    return x | 1; /* never the empty key 0 */
}

static int ht_strtab_reserve(ht_strtab *s, size_t count, size_t data_len);

/* Tells the walk's prefaulter (if any) where the table's arrays are; the
 * caller holds its lock. */
static void
ht_strtab_pf_arrays(ht_strtab *s)
{
    ht_pf_set(s->pf, HT_HW_PF_STR_OFFSET, s->offset, HT_HW_PF_N_STRINGS, sizeof(uint64_t));
    ht_pf_set(s->pf, HT_HW_PF_STR_DATA, s->data, HT_HW_PF_N_STRBYTES, 1);
}

uint32_t
ht_strtab_append(ht_strtab *s, const char *p, size_t n)
{
    if (s->count >= HT_LABEL_INDEX - 1)
        return HT_NONE;
    if (s->offset_cap < (size_t)s->count + 2 &&
        ht_strtab_reserve(s, s->offset_cap ? s->offset_cap * 2 : 1024, 0) < 0)
        return HT_NONE;
    if (s->data_len + n > s->data_cap) {
        size_t cap = s->data_cap ? s->data_cap * 2 : 16384;
        while (cap < s->data_len + n)
            cap *= 2;
        if (ht_strtab_reserve(s, 0, cap) < 0)
            return HT_NONE;
    }
    if (n)
        memcpy(s->data + s->data_len, p, n);
    s->data_len += n;
    s->count++;
    s->offset[s->count] = s->data_len;
    return s->count - 1;
}

/* Makes room for count strings (offsets count + 2) of data_len bytes in
 * all; 0 or -1 (the table unchanged). A walk reserves ahead so that a big
 * heap does not copy the table as it doubles. The arrays move under the
 * prefaulter's lock (prefault.h) when a walk has one. */
static int
ht_strtab_reserve(ht_strtab *s, size_t count, size_t data_len)
{
    int rc = 0;
    ht_pf_lock(s->pf);
    if (s->offset_cap < count + 2) {
        uint64_t *o = ht_big_realloc(s->offset, (count + 2) * sizeof(uint64_t), HT_BIG_HUGE);
        if (o == NULL) {
            rc = -1;
            goto done;
        }
        if (s->offset_cap == 0)
            o[0] = 0;
        s->offset = o;
        s->offset_cap = count + 2;
    }
    if (s->data_cap < data_len) {
        char *d = ht_big_realloc(s->data, data_len, HT_BIG_HUGE);
        if (d == NULL) {
            rc = -1;
            goto done;
        }
        s->data = d;
        s->data_cap = data_len;
    }
done:
    ht_strtab_pf_arrays(s);
    ht_pf_unlock(s->pf);
    return rc;
}

/* Interns p[0..n): returns the id of an equal string, adding it if new, or
 * HT_NONE when out of memory. */
static uint32_t
ht_strtab_intern(ht_strtab *s, const char *p, size_t n)
{
    ht_table *ix = s->index;
    if (ix == NULL) {
        ix = calloc(1, sizeof(ht_table));
        if (ix == NULL || ht_table_init(ix, 4096, 1) < 0) {
            free(ix);
            return HT_NONE;
        }
        s->index = ix;
    }
    uint64_t key = ht_strtab_hash(p, n);
    for (;;) {
        uint64_t *v = ht_table_find(ix, key);
        if (v == NULL)
            break;
        uint32_t id = (uint32_t)*v;
        size_t len = (size_t)(s->offset[id + 1] - s->offset[id]);
        if (len == n && memcmp(s->data + s->offset[id], p, n) == 0)
            return id;
        key = ht_hash64(key) | 1; /* a 64-bit collision: probe the next key */
    }
    uint32_t id = ht_strtab_append(s, p, n);
    if (id == HT_NONE)
        return HT_NONE;
    if (ht_table_put(ix, key, id) < 0)
        return HT_NONE;
    return id;
}

static void
ht_strtab_freeze(ht_strtab *s)
{
    if (s->index) {
        ht_table_free(s->index);
        free(s->index);
        s->index = NULL;
    }
}

/* Shrinks the table's arrays to what it holds, room of a reservation
 * included (best effort: a failed shrink keeps the old size). */
static void
ht_strtab_fit(ht_strtab *s)
{
    uint64_t *o = ht_big_realloc(s->offset, ((size_t)s->count + 1) * sizeof(uint64_t), 0);
    if (o) {
        s->offset = o;
        s->offset_cap = (size_t)s->count + 1;
    }
    size_t len = s->data_len ? s->data_len : 1;
    char *d = ht_big_realloc(s->data, len, 0);
    if (d) {
        s->data = d;
        s->data_cap = len;
    }
    ht_big_trim(s->offset);
    ht_big_trim(s->data);
}

static void
ht_strtab_free(ht_strtab *s)
{
    ht_strtab_freeze(s);
    ht_big_free(s->offset);
    ht_big_free(s->data);
    memset(s, 0, sizeof(*s));
}

const char *
ht_heap_string(const ht_heap *h, uint32_t id, size_t *len)
{
    if (id == HT_NONE || id >= h->strings.count) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = (size_t)(h->strings.offset[id + 1] - h->strings.offset[id]);
    return h->strings.data + h->strings.offset[id];
}

/* ======================================================================
 * the heap arrays
 * ====================================================================== */

ht_heap *
ht_heap_new(void)
{
    ht_heap *h = calloc(1, sizeof(ht_heap));
    if (h == NULL)
        PyErr_NoMemory();
    return h;
}

void
ht_heap_free(ht_heap *h)
{
    if (h == NULL)
        return;
    ht_graph_cache_free(h);
#define HT_FREE_COLUMN(f) ht_big_free(h->f);
    HT_HEAP_OBJECT_COLUMNS(HT_FREE_COLUMN)
#undef HT_FREE_COLUMN
    ht_big_free(h->edge_dst);
    ht_big_free(h->edge_label);
    ht_strtab_free(&h->strings);
    if (h->addr_index) {
        ht_table_free(h->addr_index);
        free(h->addr_index);
    }
    free(h);
}

/* Resizes the per-object arrays to cap objects (edge_start gets cap + 1). */
static int
ht_heap_resize_objects(ht_heap *h, size_t cap)
{
#define HT_GROW(field)                                                 \
    do {                                                               \
        void *p_ = ht_big_realloc(h->field, cap * sizeof(*h->field) + 8, HT_BIG_HUGE); \
        if (p_ == NULL)                                                \
            return -1;                                                 \
        h->field = p_;                                                 \
    } while (0);
    HT_HEAP_OBJECT_COLUMNS(HT_GROW)
#undef HT_GROW
    return 0;
}

int
ht_heap_alloc(ht_heap *h, uint32_t n, uint32_t m)
{
    if (ht_heap_resize_objects(h, (size_t)n + 1) < 0)
        goto oom;
    h->edge_dst = ht_big_alloc((size_t)m * sizeof(uint32_t) + 8, HT_BIG_HUGE);
    h->edge_label = ht_big_alloc((size_t)m * sizeof(uint32_t) + 8, HT_BIG_HUGE);
    if (h->edge_dst == NULL || h->edge_label == NULL)
        goto oom;
    h->n = n;
    h->m = m;
    return 0;
oom:
    PyErr_NoMemory();
    return -1;
}

uint32_t
ht_heap_index_of(ht_heap *h, uint64_t addr)
{
    /* 0 is the table's empty key (never indexed, below): looking it up
     * would "find" an empty slot and its stale value */
    if (addr == 0)
        return HT_NONE;
    if (h->addr_index == NULL) {
        ht_table *t = calloc(1, sizeof(ht_table));
        if (t == NULL || ht_table_init(t, h->n, 1) < 0) {
            free(t);
            PyErr_NoMemory();
            return HT_NONE;
        }
        for (uint32_t i = 0; i < h->n; i++) {
            if (h->addr[i] != 0 && ht_table_put(t, h->addr[i], (uint64_t)i + 1) < 0) {
                ht_table_free(t);
                free(t);
                PyErr_NoMemory();
                return HT_NONE;
            }
        }
        h->addr_index = t;
    }
    uint64_t *v = ht_table_find(h->addr_index, addr);
    return v ? (uint32_t)(*v - 1) : HT_NONE;
}

const char *
ht_heap_type_name(const ht_heap *h, uint32_t i, size_t *len)
{
    uint32_t t = h->type[i];
    const char *s = t == HT_NONE ? NULL : ht_heap_string(h, h->value[t], len);
    if (s == NULL) {
        *len = 1;
        return "?";
    }
    return s;
}

int
ht_heap_is_name(const ht_heap *h, uint32_t i)
{
    /* what ht_hw_describe names: classes, modules, functions (their module
     * is set; a frame's module is its thread's name), and the kinds below,
     * by their types' names. A frame's function name stays its value (the
     * query language and the JSON lines export say so) */
    static const char *const named[] = {
        "function", "builtin_function_or_method", "builtin_method", "code", "generator",
        "coroutine", "async_generator",
    };
    if ((h->flags[i] & (HT_OBJ_TYPE | HT_OBJ_MODULE)) ||
        (h->module[i] != HT_NONE && !(h->flags[i] & HT_OBJ_FRAME)))
        return 1;
    size_t n;
    const char *t = ht_heap_type_name(h, i, &n);
    for (size_t k = 0; k < sizeof named / sizeof named[0]; k++)
        if (strlen(named[k]) == n && memcmp(t, named[k], n) == 0)
            return 1;
    return 0;
}

uint32_t *
ht_heap_referrer_counts(const ht_heap *h)
{
    uint32_t *c = calloc((size_t)h->n + 1, sizeof(uint32_t));
    if (c == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    /* a 3.13 view dict's entries are its owner's references, counted from
     * the owner: counted twice, query's referrers said 2 for an attribute
     * held once by an instance whose __dict__ was made */
    for (uint32_t i = 0; i < h->n; i++)
        if (!(h->flags[i] & HT_OBJ_VIEW))
            for (uint32_t e = h->edge_start[i]; e < h->edge_start[i + 1]; e++)
                c[h->edge_dst[e]]++;
    return c;
}

static PyObject *
ht_heap_str_or_none(const ht_heap *h, uint32_t id)
{
    size_t n;
    const char *s = ht_heap_string(h, id, &n);
    if (s == NULL)
        Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, "replace");
}

int
ht_heap_append_record(const ht_heap *h, uint32_t i, PyObject *list)
{
    size_t tn;
    const char *tname = ht_heap_type_name(h, i, &tn);
    PyObject *len = h->len[i] < 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(h->len[i]);
    PyObject *value = ht_heap_str_or_none(h, h->value[i]);
    PyObject *rec = NULL;
    if (len && value)
        rec = Py_BuildValue("(KNKOO)", (unsigned long long)h->addr[i],
                            PyUnicode_DecodeUTF8(tname, (Py_ssize_t)tn, "replace"),
                            (unsigned long long)h->size[i], len, value);
    Py_XDECREF(len);
    Py_XDECREF(value);
    if (rec == NULL)
        return -1;
    int r = PyList_Append(list, rec);
    Py_DECREF(rec);
    return r;
}

/* ======================================================================
 * the handle: a Python object owning one ht_heap
 * ====================================================================== */

typedef struct {
    PyObject_HEAD
    ht_heap *heap;
} ht_handle;

static PyTypeObject ht_handle_type;

/* The address of every live handle (the GIL protects it): the walk leaves
 * them out by address, without reading each untracked object it finds to
 * see whether it is one. */
static ht_table ht_handle_live;

ht_heap *
ht_heap_from_handle(PyObject *obj)
{
    if (!PyObject_TypeCheck(obj, &ht_handle_type)) {
        PyErr_SetString(PyExc_TypeError, "expected a heap snapshot handle");
        return NULL;
    }
    return ((ht_handle *)obj)->heap;
}

PyObject *
ht_heap_wrap(ht_heap *h)
{
    ht_handle *o = PyObject_New(ht_handle, &ht_handle_type);
    if (o == NULL) {
        ht_heap_free(h);
        return NULL;
    }
    o->heap = h;
    if ((ht_handle_live.keys == NULL && ht_table_init(&ht_handle_live, 64, 0) < 0) ||
        ht_table_add(&ht_handle_live, (uint64_t)(uintptr_t)o) < 0) {
        Py_DECREF(o);
        return PyErr_NoMemory();
    }
    return (PyObject *)o;
}

static void
ht_handle_dealloc(ht_handle *self)
{
    ht_table_remove(&ht_handle_live, (uint64_t)(uintptr_t)self, NULL);
    ht_heap_free(self->heap);
    PyObject_Free(self);
}

/* ======================================================================
 * the walk
 * ====================================================================== */

/* A type as recording its objects needs it: the direct-mapped cache in
 * front of w->tfacts (the hash lookup per object, as types alternate, was
 * 4% of a walk's instructions). */
typedef struct {
    PyTypeObject *tp;
    unsigned tf;           /* HT_TF_* */
    Py_ssize_t fixed;      /* every object's flat size, when the type's is fixed; else -1 */
    ht_size_rule rule;     /* how its objects are sized, when HT_TF_SIZE_PURE */
} ht_hw_tinfo;

#define HT_HW_TCACHE 256
#define HT_HW_LCACHE 512

typedef struct {
    PyObject *p;
    uint32_t label;
    int used;
    int extra;     /* not visited by tp_traverse: add the edge if unmatched */
    uint32_t next; /* ht_hw_edges' second pass: the next candidate of the
                      same object, HT_NONE at the end */
} ht_hw_cand;

#define HT_HW_RECENT 32      /* chunks remembered: one per allocation stream */
#define HT_HW_ADD_LISTED 1   /* ht_hw_add_ex: a gc-tracked object (gcvisit.h) */
#define HT_HW_ADD_DICT 2     /* ht_hw_add_ex: an owner's __dict__ */
#define HT_HW_ADD_ROOT 4     /* ht_hw_add_ex: a root (found before the listed objects) */

typedef struct {
    ht_heap *h;
    size_t cap;              /* per-object capacity */
    uint32_t *refcnt;        /* [cap] refcount seen when recorded (saturated) */
    ht_table chunks;         /* (address >> HT_HW_CHUNK_SHIFT) + 1 -> block offset in slots */
    uint32_t *slots;         /* blocks of HT_HW_CHUNK_SLOTS: index + 1, or 0 (see ht_hw_slot) */
    size_t slots_len, slots_cap;
    uint64_t recent_key[HT_HW_RECENT];  /* recently used chunks (direct-mapped) */
    size_t recent_base[HT_HW_RECENT];   /* ... and their block offsets */
    ht_table excluded;       /* addresses never recorded */
    uint64_t ex_bloom;       /* bit (address >> 4) & 63 of each excluded address */
    ht_table labels;         /* (key address | owned bit) -> label id + 1 */
    uint64_t lcache_key[HT_HW_LCACHE]; /* recent labels (direct-mapped, see ht_hw_key_label) */
    uint32_t lcache_id[HT_HW_LCACHE];
    ht_table slotcache;      /* type address -> slot list position + 1 */
    ht_table literals;       /* label literal's address -> string id (ht_hw_lit) */
    uint32_t *slot_off;      /* slot lists: [count, (offset, label)...] */
    ht_table attrcache;      /* type address -> attribute list position + 1 */
    PyObject **attr_name;    /* attribute lists: names (held), see ht_hw_attrs */
    uint32_t *attr_label;    /* ... and their ".name" label ids */
    size_t attr_len, attr_cap;
    size_t slot_len, slot_cap;
    PyObject *exclude_types; /* tuple of classes whose instances are left out */
    int ex_dict;             /* one of them is a dict subclass */
    size_t mcap;
    PyObject **refs;         /* the current object's referents */
    size_t nrefs, refcap;
    ht_hw_cand *cand;        /* the current object's label candidates */
    size_t ncand, candcap;
    uint64_t *cells;         /* (cell address, label id) pairs for closures */
    size_t ncells, cellcap;
    PyObject *thread_names;  /* dict: thread ident -> name, or NULL */
    uint32_t *frame_thread;  /* (frame index, thread name id) pairs (ht_hw_roots) */
    size_t nframe_thread, frame_threadcap;
    uint64_t *quiet_refs;    /* references no edge stands for (ht_hw_outside_refs): running
                              * frames' to their function, code and namespace, sys.modules'
                              * to the modules heaptrail imported for itself */
    size_t nquiet_refs, quiet_refscap;
    PyObject *sysmodules;    /* sys.modules (borrowed), or NULL */
    int oom;
    int minor;
    PyObject *s_module;      /* interned "__module__" */
    PyObject *s_name;        /* interned "__name__" */
    PyObject *s_sizeof;      /* interned "__sizeof__" */
    int ex_untracked;        /* an excluded type may have objects gcvisit.h misses */
    int ex_refs_gc;          /* an excluded gc object refers to a gc object (ht_hw_ex_check) */
    int frozen;              /* gc.freeze() set objects aside */
    uint32_t cur;            /* the object being recorded: those below are done */
    int cur_counted;         /* its refcount is in refcnt[cur] already */
    uint32_t guarded;        /* objects below this index are protected (ht_hw_guard) */
    uint32_t *held;          /* objects the walk holds a reference to (HT_HW_HELD) */
    size_t nheld, heldcap;
    uint32_t *deferred;      /* objects sized after the walk (ht_hw_size) */
    size_t ndeferred, deferredcap;
    ht_table tfacts;         /* type address -> HT_TF_* bits */
    ht_hw_tinfo tcache[HT_HW_TCACHE]; /* recently recorded types (ht_hw_tinfo_of) */
    ht_pf *pf;               /* faults the arrays in ahead (ht_hw_pf_begin), or NULL */
    int pf_countdown;        /* objects until the next ht_hw_pf_tick */
    int pf_tried;            /* ht_hw_pf_begin tried to start it */
} ht_hw;

/* ---- prefaulting -----------------------------------------------------------
 * A big walk's arrays are faulted in by a helper thread a little ahead of
 * where the walk writes (prefault.h): the kernel's work for ~130 MB of fresh
 * pages (1.45M objects) moves to the other core. The thread starts once the
 * walk has room for ht_hw_pf_from objects (small walks do without it). The
 * arrays are made in reservations for ht_hw_pf_room objects (ht_hw_reserve),
 * in which they grow without moving, so the helper stays ahead of the walk
 * across a doubling; past that they move, under the prefaulter's lock.
 * Measured on benchmarks/cases/heap.py (1.45M objects, 3.11): snapshot +
 * summary 0.22 -> 0.19 s, and the first snapshot of a process 0.23-0.36 ->
 * 0.19 s. With huge pages (HT_BIG_HUGE) on these arrays it was slower, and
 * erratic (0.18-0.31 s): a huge page comes in whole, zeroed by the helper's
 * core. */
static size_t ht_hw_pf_from = (size_t)1 << 17;
static size_t ht_hw_pf_room = (size_t)1 << 24; /* objects (tests change it) */

/* Tells the prefaulter where every array is now; the caller holds its
 * lock. */
static void
ht_hw_pf_arrays(ht_hw *w)
{
    ht_heap *h = w->h;
    if (w->pf == NULL)
        return;
#define HT_PF_COLUMN(f) \
    ht_pf_set(w->pf, HT_HW_PF_COL_##f, h->f, HT_HW_PF_N_OBJECTS, sizeof(*h->f));
    HT_HEAP_OBJECT_COLUMNS(HT_PF_COLUMN)
#undef HT_PF_COLUMN
    ht_pf_set(w->pf, HT_HW_PF_REFCNT, w->refcnt, HT_HW_PF_N_OBJECTS, sizeof(uint32_t));
    ht_pf_set(w->pf, HT_HW_PF_EDGE_DST, h->edge_dst, HT_HW_PF_N_EDGES, sizeof(uint32_t));
    ht_pf_set(w->pf, HT_HW_PF_EDGE_LABEL, h->edge_label, HT_HW_PF_N_EDGES, sizeof(uint32_t));
    ht_pf_set(w->pf, HT_HW_PF_SLOTS, w->slots, HT_HW_PF_N_SLOTS, sizeof(uint32_t));
    ht_strtab_pf_arrays(&h->strings);
}

/* Tells the prefaulter how far the walk has written. */
static void
ht_hw_pf_progress(ht_hw *w)
{
    ht_heap *h = w->h;
    ht_pf_count(w->pf, HT_HW_PF_N_OBJECTS, h->n);
    ht_pf_count(w->pf, HT_HW_PF_N_EDGES, h->m);
    ht_pf_count(w->pf, HT_HW_PF_N_SLOTS, w->slots_len);
    ht_pf_count(w->pf, HT_HW_PF_N_STRINGS, h->strings.count + 1);
    ht_pf_count(w->pf, HT_HW_PF_N_STRBYTES, h->strings.data_len);
}

/* Starts the prefaulter once the walk is big enough (best effort). */
static void
ht_hw_pf_begin(ht_hw *w)
{
    char *map;
    /* malloc blocks (under ASan) are not faulted in: no helper for them */
    if (w->pf != NULL || w->pf_tried || w->cap < ht_hw_pf_from ||
        ht_big_mapping(w->h->addr, &map) == 0)
        return;
    w->pf_tried = 1; /* once: a thread that cannot start now will not later */
    if ((w->pf = ht_pf_start()) == NULL)
        return;
    w->h->strings.pf = w->pf;
    ht_pf_lock(w->pf);
    ht_hw_pf_arrays(w);
    ht_pf_unlock(w->pf);
}

/* Gives the walk's arrays (none made yet) reservations of ht_hw_pf_room
 * objects (bigmem.h ht_big_reserve): they grow in them without moving, and
 * without a copy, so that the prefaulter stays ahead of the walk across a
 * doubling. Best effort: an array without one is made as usual. */
static void
ht_hw_reserve(ht_hw *w)
{
    ht_heap *h = w->h;
#define HT_HW_RESERVE(p, elems)                                        \
    do {                                                               \
        void *q_ = ht_big_reserve((elems) * sizeof(*(p)));             \
        if (q_ != NULL)                                                \
            (p) = q_;                                                  \
    } while (0)
#define HT_HW_RESERVE_COLUMN(f) HT_HW_RESERVE(h->f, ht_hw_pf_room);
    HT_HEAP_OBJECT_COLUMNS(HT_HW_RESERVE_COLUMN)
#undef HT_HW_RESERVE_COLUMN
    HT_HW_RESERVE(w->refcnt, ht_hw_pf_room);
    HT_HW_RESERVE(h->edge_dst, 2 * ht_hw_pf_room);
    HT_HW_RESERVE(h->edge_label, 2 * ht_hw_pf_room);
    /* no huge pages for any of them, even the address index (read all
     * over): with them a process's first snapshots were slower (0.20 ->
     * 0.22 s), later ones hardly faster (0.19 -> 0.185 s) */
    HT_HW_RESERVE(w->slots, 2 * ht_hw_pf_room);
    HT_HW_RESERVE(h->strings.offset, ht_hw_pf_room / 2);
    HT_HW_RESERVE(h->strings.data, 16 * ht_hw_pf_room);
#undef HT_HW_RESERVE
}

/* Every 1024 objects: starts the prefaulter when the walk has grown big
 * enough, and tells it how far the walk is. */
static inline void
ht_hw_pf_tick(ht_hw *w)
{
    if (--w->pf_countdown > 0)
        return;
    w->pf_countdown = 1024;
    if (w->pf == NULL)
        ht_hw_pf_begin(w);
    ht_hw_pf_progress(w);
}

/* Stops the prefaulter (joins its thread): before the arrays shrink. */
static void
ht_hw_pf_end(ht_hw *w)
{
    if (w->pf == NULL)
        return; /* (w->h may be NULL then: a walk that failed at once) */
    ht_pf_stop(w->pf);
    w->pf = NULL;
    w->h->strings.pf = NULL;
}

static int
ht_hw_grow_objects(ht_hw *w, size_t need)
{
    if (need <= w->cap)
        return 0;
    /* indexes stay below HT_LABEL_INDEX (edge labels hold them): the cap
     * too, so that i < cap is the only check a new object needs */
    if (need > HT_LABEL_INDEX - 1)
        return -1;
    size_t cap = w->cap ? w->cap : 1024;
    while (cap < need)
        cap *= 2;
    if (cap > HT_LABEL_INDEX - 1)
        cap = HT_LABEL_INDEX - 1;
    int rc = -1;
    ht_pf_lock(w->pf);
    if (ht_heap_resize_objects(w->h, cap + 1) == 0) {
        uint32_t *r = ht_big_realloc(w->refcnt, cap * sizeof(uint32_t), HT_BIG_HUGE);
        if (r != NULL) {
            w->refcnt = r;
            w->cap = cap;
            rc = 0;
        }
    }
    /* some columns may have moved even on failure */
    ht_hw_pf_arrays(w);
    ht_pf_unlock(w->pf);
    return rc;
}

/* Object i of the walk: h->addr holds the live address until the walk ends
 * (no separate pointer array: 8 bytes less per object to fault in). */
static inline PyObject *
ht_hw_obj(const ht_hw *w, uint32_t i)
{
    return (PyObject *)(uintptr_t)w->h->addr[i];
}

/* ---- the walk's address index ------------------------------------------
 * address -> object index, laid out by address: the address space is cut in
 * chunks of 4 KiB; the shared hash table maps a chunk to a block of 256
 * slots, one per 16 bytes (every object is at least 16 bytes long, so two
 * objects never share a slot, whatever their alignment). The walk looks up
 * the referents of each object, which the allocator mostly put near it, in
 * about the order they were allocated: consecutive lookups then fall in the
 * same block, often the same cache line, where a hash of the full address
 * sent each one to a random slot of a table far bigger than the caches (a
 * cache and TLB miss per edge). The chunk table is small (one entry per
 * 4 KiB of heap) and recent chunks are remembered. Memory: 1 KiB per chunk
 * that holds an object: a quarter of the heap bytes it covers where objects
 * are dense (about 15 bytes for a 60-byte object), at most 1 KiB per object. */
#define HT_HW_CHUNK_SHIFT 12
#define HT_HW_CHUNK_SLOTS 256
/* Slot values past every index + 1 (indexes stay below HT_LABEL_INDEX):
 * heaptrail's own objects (own.h), set before the walk starts. A seed is
 * never recorded; a held object is recorded only when a recorded object
 * refers to it (LISTED: the collector's lists had it). */
#define HT_HW_SLOT_OWN 0xFFFFFFFDu
#define HT_HW_SLOT_OWN_LISTED 0xFFFFFFFEu
#define HT_HW_SLOT_SEED 0xFFFFFFFFu

/* Makes room for cap slots; 0 or -1. */
static int
ht_hw_reserve_slots(ht_hw *w, size_t cap)
{
    if (cap <= w->slots_cap)
        return 0;
    ht_pf_lock(w->pf);
    /* zeroed, by the kernel for a mapping: no block needs clearing when made */
    uint32_t *s = ht_big_realloc_zero(w->slots, cap * sizeof(uint32_t), HT_BIG_HUGE);
    if (s != NULL) {
        w->slots = s;
        w->slots_cap = cap;
        ht_hw_pf_arrays(w);
    }
    ht_pf_unlock(w->pf);
    return s ? 0 : -1;
}

/* The slot of address a, creating its block when create; NULL when absent
 * (create=0) or out of memory (create=1, w->oom set). */
static inline uint32_t *
ht_hw_slot(ht_hw *w, uint64_t a, int create)
{
    uint64_t key = (a >> HT_HW_CHUNK_SHIFT) + 1;
    size_t off = (size_t)(a >> 4) & (HT_HW_CHUNK_SLOTS - 1);
    size_t r = (size_t)(key ^ (key >> 5)) & (HT_HW_RECENT - 1);
    if (key == w->recent_key[r])
        return &w->slots[w->recent_base[r] + off];
    size_t base;
    uint64_t *v = ht_table_find(&w->chunks, key);
    if (v == NULL) {
        if (!create)
            return NULL;
        if (w->slots_len + HT_HW_CHUNK_SLOTS > w->slots_cap &&
            ht_hw_reserve_slots(w, w->slots_cap ? w->slots_cap * 2 : HT_HW_CHUNK_SLOTS * 4096) < 0) {
            w->oom = 1;
            return NULL;
        }
        if (ht_table_put(&w->chunks, key, w->slots_len) < 0) {
            w->oom = 1;
            return NULL;
        }
        base = w->slots_len; /* zero already (ht_hw_reserve_slots) */
        w->slots_len += HT_HW_CHUNK_SLOTS;
        /* written before it is read, at both ends (a block may straddle
         * two pages: the array starts after bigmem's header): a read of a
         * fresh page maps the shared zero page, and the first write then
         * faults again and flushes the TLB of every CPU the process runs
         * on (the prefault helper's: an interrupt each, 7% of the walk) */
        w->slots[base] = 0;
        w->slots[base + HT_HW_CHUNK_SLOTS - 1] = 0;
    } else {
        base = (size_t)*v;
    }
    w->recent_key[r] = key;
    w->recent_base[r] = base;
    return &w->slots[base + off];
}

/* Index of the recorded object at address a, or HT_NONE. */
static inline uint32_t
ht_hw_find(ht_hw *w, uint64_t a)
{
    uint32_t *s = ht_hw_slot(w, a, 0);
    return (s && *s && *s < HT_HW_SLOT_OWN) ? *s - 1 : HT_NONE;
}

/* Address a is never recorded; 0 or -1. The bloom bits spare the walk a
 * hash lookup per new object (there are a handful of excluded addresses). */
static int
ht_hw_exclude(ht_hw *w, uint64_t a)
{
    w->ex_bloom |= (uint64_t)1 << ((a >> 4) & 63);
    return ht_table_add(&w->excluded, a);
}

/* tp_traverse visitor of ht_hw_ex_check. */
static int
ht_hw_ex_visit(PyObject *r, void *arg)
{
    ht_hw *w = arg;
    if (!PyType_Check(r) && PyObject_IS_GC(r) && PyObject_GC_IsTracked(r))
        w->ex_refs_gc = 1;
    return 0;
}

/* An excluded gc object (a Snapshot): the walk cannot see a cycle of
 * garbage through it, as it leaves it out. Only one that refers to a gc
 * object (other than a class) can be in one: then w->ex_refs_gc is set,
 * and gc_first collects before walking (ht_heap_snapshot). A Snapshot
 * refers to its class, its C handle and its path: none of them. */
static void
ht_hw_ex_check(ht_hw *w, PyObject *op)
{
    traverseproc tr = Py_TYPE(op)->tp_traverse;
    if (!w->ex_refs_gc && tr != NULL && PyObject_IS_GC(op))
        tr(op, ht_hw_ex_visit, w);
}

static void ht_hw_note_owner(ht_hw *w, PyObject *op, uint32_t i);

/* Whether address a is left out (every live snapshot handle, and excluded
 * instances met before). */
static inline int
ht_hw_excluded_addr(ht_hw *w, uint64_t a)
{
    return (w->ex_bloom >> ((a >> 4) & 63) & 1) && ht_table_contains(&w->excluded, a);
}

/* Whether op is left out as an instance of an excluded type (remembered:
 * edges reach it later without this check). listed: the collector's lists
 * had it. */
static int
ht_hw_excluded_type(ht_hw *w, PyObject *op, int listed)
{
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(w->exclude_types); k++) {
        if ((PyObject *)Py_TYPE(op) == PyTuple_GET_ITEM(w->exclude_types, k)) {
            if (ht_hw_exclude(w, (uint64_t)(uintptr_t)op) < 0)
                w->oom = 1;
            if (listed)
                ht_hw_ex_check(w, op);
            return 1;
        }
    }
    return 0;
}

/* Appends op as a new object at slot s; its index, or HT_NONE (w->oom). */
static inline uint32_t
ht_hw_append(ht_hw *w, PyObject *op, uint32_t *s, int listed)
{
    uint32_t i = w->h->n;
    if (i >= w->cap && ht_hw_grow_objects(w, (size_t)i + 1) < 0) {
        w->oom = 1;
        return HT_NONE;
    }
    /* the slot pointer is still valid: nothing since it was found touched
     * the slots */
    *s = i + 1;
    w->h->addr[i] = (uint64_t)(uintptr_t)op;
    w->h->flags[i] = listed ? HT_HW_LISTED : 0;
    w->h->owner[i] = HT_NONE;
    w->h->n = i + 1;
    return i;
}

/* ht_hw_add_ex for one of heaptrail's own objects (own.h: slot s holds
 * HT_HW_SLOT_OWN, _OWN_LISTED or _SEED). Out of line and cold: the rare
 * case out of the hot ht_hw_add_ex made the walk 4% faster (A/B, 6 runs of
 * 5 snapshots each, benchmarks/cases/heap.py). */
static __attribute__((noinline, cold)) uint32_t
ht_hw_add_own(ht_hw *w, PyObject *op, uint32_t *s, int how)
{
    if (*s == HT_HW_SLOT_SEED)
        return HT_NONE;
    if (how & HT_HW_ADD_LISTED) { /* found in the collector's lists: left for an edge */
        *s = HT_HW_SLOT_OWN_LISTED;
        return HT_NONE;
    }
    int listed = *s == HT_HW_SLOT_OWN_LISTED; /* a recorded object refers to it */
    *s = 0;
    if (ht_hw_excluded_addr(w, (uint64_t)(uintptr_t)op) || ht_hw_excluded_type(w, op, listed))
        return HT_NONE;
    uint32_t i = ht_hw_append(w, op, s, listed);
    /* its listing was left for an edge (held objects are gc-tracked), and
     * with it the note of its __dict__'s owner */
    if (i != HT_NONE)
        ht_hw_note_owner(w, op, i);
    return i;
}

/* Index of op, recording it if new; HT_NONE for excluded objects, or with
 * w->oom set when out of memory. how: HT_HW_ADD_LISTED for the gc-tracked
 * objects the walk starts from, HT_HW_ADD_DICT for an owner's __dict__. No
 * reference is taken (see "no references held" at ht_hw_guard), and a new
 * object found through an edge is not even read here (unless an excluded
 * type could hide among such objects): its first touch is when it is
 * recorded, prefetched. Leaving out the reference and that read took the
 * walk from 0.300 s to 0.275 s on benchmarks/cases/heap.py. */
static uint32_t
ht_hw_add_ex(ht_hw *w, PyObject *op, int how)
{
    uint64_t a = (uint64_t)(uintptr_t)op;
    uint32_t *s = ht_hw_slot(w, a, 1);
    if (s == NULL)
        return HT_NONE;
    int listed = how & HT_HW_ADD_LISTED;
    if (HT_UNLIKELY(*s >= HT_HW_SLOT_OWN))
        return ht_hw_add_own(w, op, s, how);
    if (*s) {
        if (listed)
            w->h->flags[*s - 1] |= HT_HW_LISTED;
        return *s - 1;
    }
    if (ht_hw_excluded_addr(w, a))
        return HT_NONE;
    /* instances of the excluded types: all gc-tracked ones are listed, so
     * only listed objects need a look, unless one of the types can have
     * untracked instances; an owner's __dict__ can only be excluded by a
     * dict subclass */
    int check = (how & (HT_HW_ADD_LISTED | HT_HW_ADD_ROOT)) ||
                (w->ex_untracked && (!(how & HT_HW_ADD_DICT) || w->ex_dict));
    if (check && ht_hw_excluded_type(w, op, listed))
        return HT_NONE;
    return ht_hw_append(w, op, s, listed);
}

/* ---- no references held ----------------------------------------------------
 * The walk keeps raw pointers to the objects it has found and not yet
 * recorded. They stay valid because nothing can free an object while the
 * walk runs: the collector is off, and the walk runs no Python code, so no
 * reference is dropped, no finalizer runs and no other thread gets the GIL.
 * Every call the walk makes was checked for this: tp_traverse (must not run
 * code, the collector relies on it), PyDict_Next, the flat size of types
 * whose __sizeof__ is the interpreter's own C function (ht_hw_tfacts), the
 * frame and code accessors (PyFrame_GetCode: it allocates, never calls
 * code), lookups of a str key
 * by reading a dict's entries (ht_hw_dict_str_get: no __eq__ call), and
 * PyObject_GenericGetAttr for inline attributes when the class's lookup
 * calls no __eq__ and the name resolves to nothing or to what the
 * interpreter's own C code reads or binds (ht_hw_name_safe; Python
 * classes' attributes are never read). The objects this creates
 * (exceptions, tuples, bound methods) are the walk's own and die without
 * touching the program's.
 * Where that cannot be shown, the walk protects itself first:
 *   - an object whose __sizeof__ is Python code or an extension's C code is
 *     held (one reference) and sized after the walk (ht_hw_size_deferred);
 *   - before reading an inline attribute that may run code (an extension
 *     base class's getter, a class dict with a non-str key), ht_hw_guard
 *     takes a reference to every object found, recorded or not.
 * On the benchmark heap neither happens on 3.12/3.13; on 3.11, 90 objects
 * of extension types are sized after the walk.
 * The references taken are listed in w->held and dropped at the end. */

/* Appends v to the growable list (*arr, *n, *cap); 0, or -1 with w->oom
 * set. */
static int
ht_hw_push_u32(ht_hw *w, uint32_t **arr, size_t *n, size_t *cap, uint32_t v)
{
    uint32_t *p = ht_grow(*arr, *n, cap, sizeof(uint32_t));
    if (p == NULL) {
        w->oom = 1;
        return -1;
    }
    *arr = p;
    p[(*n)++] = v;
    return 0;
}

/* The same for a list of 64-bit values (addresses). */
static int
ht_hw_push_u64(ht_hw *w, uint64_t **arr, size_t *n, size_t *cap, uint64_t v)
{
    uint64_t *p = ht_grow(*arr, *n, cap, sizeof(uint64_t));
    if (p == NULL) {
        w->oom = 1;
        return -1;
    }
    *arr = p;
    p[(*n)++] = v;
    return 0;
}

/* Takes a reference to object i (once). */
static void
ht_hw_hold(ht_hw *w, uint32_t i)
{
    ht_heap *h = w->h;
    if ((h->flags[i] & HT_HW_HELD) || ht_hw_push_u32(w, &w->held, &w->nheld, &w->heldcap, i) < 0)
        return;
    Py_INCREF(ht_hw_obj(w, i));
    h->flags[i] |= HT_HW_HELD;
    /* refcnt[] counts the walk's reference of held objects (ht_hw_reach
     * subtracts it): one already counted gets it added */
    if ((i < w->cur || (i == w->cur && w->cur_counted)) && w->refcnt[i] < UINT32_MAX)
        w->refcnt[i]++; /* saturated: an immortal's UINT32_MAX must not wrap to 0 */
}

/* Object i is sized after the walk (its __sizeof__ may run code): held
 * until then. */
static void
ht_hw_defer_size(ht_hw *w, uint32_t i)
{
    ht_hw_hold(w, i);
    if (!w->oom)
        ht_hw_push_u32(w, &w->deferred, &w->ndeferred, &w->deferredcap, i);
}

/* The deferred sizes, once the walk has recorded everything: the objects
 * are held, Python code may run now. */
static int
ht_hw_size_deferred(ht_hw *w)
{
    ht_heap *h = w->h;
    for (size_t k = 0; k < w->ndeferred; k++) {
        uint32_t i = w->deferred[k];
        PyObject *op = ht_hw_obj(w, i);
        Py_ssize_t sz = ht_size_flat(op);
        if (sz < 0) {
            /* Ctrl-C (KeyboardInterrupt) or SystemExit raised in a __sizeof__ goes through,
             * as from sys.getsizeof: cleared, it was lost */
            if (!PyErr_ExceptionMatches(PyExc_Exception))
                return -1;
            PyErr_Clear();
            sz = Py_TYPE(op)->tp_basicsize;
        }
        h->size[i] = (uint64_t)sz;
        h->total_size += (uint64_t)sz;
    }
    return 0;
}

/* Protects every object found, recorded ones too, before a call that may
 * run Python code. A recorded object that code freed would leave its
 * address to a new one, which the walk would take for it: its index entry
 * and its type's cached facts (a new class where a freed one was read as
 * the old one's kind) are by address. Only code-running reads need it, so
 * the walk holds nothing otherwise. 0, or -1 (w->oom) when a reference
 * could not be listed: the call must then be skipped. */
static int
ht_hw_guard(ht_hw *w)
{
    ht_heap *h = w->h;
    for (uint32_t i = w->guarded; i < h->n && !w->oom; i++)
        ht_hw_hold(w, i);
    w->guarded = h->n;
    return w->oom ? -1 : 0;
}

/* Index of op, recording it if new (ht_hw_add_ex). Most referents are
 * known already and their chunk is a recent one: that path is inline, the
 * call and the rest are not. */
static inline uint32_t
ht_hw_add(ht_hw *w, PyObject *op)
{
    uint64_t a = (uint64_t)(uintptr_t)op;
    uint64_t key = (a >> HT_HW_CHUNK_SHIFT) + 1;
    size_t r = (size_t)(key ^ (key >> 5)) & (HT_HW_RECENT - 1);
    if (key == w->recent_key[r]) {
        uint32_t v = w->slots[w->recent_base[r] + ((size_t)(a >> 4) & (HT_HW_CHUNK_SLOTS - 1))];
        if (v && v < HT_HW_SLOT_OWN)
            return v - 1;
    }
    return ht_hw_add_ex(w, op, 0);
}

/* Prefetches the chunk-table slot of op (a container's items may lie far
 * from the container). */
static inline void
ht_hw_prefetch(ht_hw *w, PyObject *op)
{
    uint64_t a = (uint64_t)(uintptr_t)op;
    uint64_t key = (a >> HT_HW_CHUNK_SHIFT) + 1;
    size_t r = (size_t)(key ^ (key >> 5)) & (HT_HW_RECENT - 1);
    if (key == w->recent_key[r]) {
        __builtin_prefetch(&w->slots[w->recent_base[r] + ((size_t)(a >> 4) & (HT_HW_CHUNK_SLOTS - 1))]);
        return;
    }
    size_t slot = (size_t)ht_hash64(key) & w->chunks.mask;
    __builtin_prefetch(&w->chunks.keys[slot]);
    __builtin_prefetch(&w->chunks.values[slot]);
}

/* Second stage of the record pass's prefetch: op's header is in cache
 * (stage one fetched it); fetch what recording it will read next. */
static inline void
ht_hw_prefetch_body(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    if (tp == &PyDict_Type) {
        PyDictObject *d = (PyDictObject *)op;
        __builtin_prefetch(d->ma_keys);
        if (d->ma_values)
            __builtin_prefetch(d->ma_values);
    } else if (tp == &PyList_Type) {
        __builtin_prefetch(((PyListObject *)op)->ob_item);
    } else if (tp == &PyUnicode_Type) {
        __builtin_prefetch((char *)op + 64);
    } else if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        __builtin_prefetch((char *)op - 3 * sizeof(PyObject *));
    }
}

/* Makes room for edges up to cap (bounded below UINT32_MAX); 0 or -1. */
static int
ht_hw_reserve_edges(ht_hw *w, size_t cap)
{
    ht_heap *h = w->h;
    if (cap > UINT32_MAX - 1)
        cap = UINT32_MAX - 1;
    if (cap <= w->mcap)
        return h->m < w->mcap ? 0 : -1;
    int rc = -1;
    ht_pf_lock(w->pf);
    uint32_t *d = ht_big_realloc(h->edge_dst, cap * sizeof(uint32_t), HT_BIG_HUGE);
    if (d != NULL) {
        h->edge_dst = d;
        uint32_t *l = ht_big_realloc(h->edge_label, cap * sizeof(uint32_t), HT_BIG_HUGE);
        if (l != NULL) {
            h->edge_label = l;
            w->mcap = cap;
            rc = 0;
        }
    }
    ht_hw_pf_arrays(w);
    ht_pf_unlock(w->pf);
    return rc;
}

static inline void
ht_hw_edge(ht_hw *w, uint32_t dst, uint32_t label)
{
    if (dst == HT_NONE)
        return;
    ht_heap *h = w->h;
    if (h->m >= w->mcap && ht_hw_reserve_edges(w, w->mcap ? w->mcap * 2 : 4096) < 0) {
        w->oom = 1;
        return;
    }
    h->edge_dst[h->m] = dst;
    h->edge_label[h->m] = label;
    h->m++;
}

static uint32_t
ht_hw_intern(ht_hw *w, const char *p, size_t n)
{
    uint32_t id = ht_strtab_intern(&w->h->strings, p, n);
    if (id == HT_NONE)
        w->oom = 1;
    return id;
}

/* ---- short text of str / bytes / numbers, without allocating objects ---- */

typedef struct {
    char buf[HT_VALUE_MAX * 4 + 16];
    size_t len;
} ht_text;

static void
ht_text_put(ht_text *t, const char *p, size_t n)
{
    if (t->len + n > sizeof(t->buf))
        n = sizeof(t->buf) - t->len;
    memcpy(t->buf + t->len, p, n);
    t->len += n;
}

static void
ht_text_utf8(ht_text *t, Py_UCS4 c)
{
    char u[4];
    size_t n;
    if (c < 0x80) {
        u[0] = (char)c;
        n = 1;
    } else if (c < 0x800) {
        u[0] = (char)(0xC0 | (c >> 6));
        u[1] = (char)(0x80 | (c & 0x3F));
        n = 2;
    } else if (c < 0x10000) {
        if (c >= 0xD800 && c <= 0xDFFF)
            c = 0xFFFD; /* lone surrogate: not encodable */
        u[0] = (char)(0xE0 | (c >> 12));
        u[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        u[2] = (char)(0x80 | (c & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (c >> 18));
        u[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((c >> 6) & 0x3F));
        u[3] = (char)(0x80 | (c & 0x3F));
        n = 4;
    }
    ht_text_put(t, u, n);
}

/* \xNN, by hand: snprintf per byte was a fifth of a whole snapshot's
 * instructions (code objects' bytecode and line tables are bytes values). */
static inline void
ht_text_hex4(char *dst, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    dst[0] = '\\';
    dst[1] = 'x';
    dst[2] = hex[c >> 4];
    dst[3] = hex[c & 15];
}

static void
ht_text_hex_escape(ht_text *t, unsigned char c)
{
    char e[4];
    ht_text_hex4(e, c);
    ht_text_put(t, e, 4);
}

/* Appends at most max characters of str s (quoted with escapes when quote),
 * reading the canonical representation directly: no UTF-8 cache created. */
static void
ht_text_str(ht_text *t, PyObject *s, size_t max, int quote)
{
#if PY_VERSION_HEX < 0x030C0000
    if (!PyUnicode_IS_READY(s)) {
        ht_text_put(t, "?", 1);
        return;
    }
#endif
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    if (!quote && PyUnicode_IS_ASCII(s)) { /* the common case: the bytes are the text */
        ht_text_put(t, data, (size_t)n < max ? (size_t)n : max);
        if ((size_t)n > max)
            ht_text_put(t, "...", 3);
        return;
    }
    if (quote)
        ht_text_put(t, "'", 1);
    for (Py_ssize_t i = 0; i < n && (size_t)i < max; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (quote && (c == '\'' || c == '\\')) {
            char e[2] = {'\\', (char)c};
            ht_text_put(t, e, 2);
        } else if (quote && c < 0x20) {
            ht_text_hex_escape(t, (unsigned char)c);
        } else {
            ht_text_utf8(t, c);
        }
    }
    if ((size_t)n > max)
        ht_text_put(t, "...", 3);
    if (quote)
        ht_text_put(t, "'", 1);
}

/* b'...' with escapes, made in a local buffer and appended once: a call
 * per byte was 36 instructions a byte (code objects' bytecode and line
 * tables are the bytes values of every heap) */
static void
ht_text_bytes(ht_text *t, const char *p, Py_ssize_t n)
{
    char b[2 + 4 * HT_VALUE_MAX + 4]; /* b' + every byte escaped + ...' */
    size_t k = 0;
    b[k++] = 'b';
    b[k++] = '\'';
    Py_ssize_t m = n < HT_VALUE_MAX ? n : HT_VALUE_MAX;
    for (Py_ssize_t i = 0; i < m; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\'' || c == '\\') {
            b[k++] = '\\';
            b[k++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            ht_text_hex4(b + k, c);
            k += 4;
        } else {
            b[k++] = (char)c;
        }
    }
    if (n > HT_VALUE_MAX) {
        memcpy(b + k, "...", 3);
        k += 3;
    }
    b[k++] = '\'';
    ht_text_put(t, b, k);
}

static void
ht_text_float(ht_text *t, double v)
{
    char b[40];
    int k = 0;
    for (int prec = 15; prec <= 17; prec++) {
        k = snprintf(b, sizeof b, "%.*g", prec, v);
        if (strtod(b, NULL) == v)
            break;
    }
    if (k > 0 && strpbrk(b, ".eni") == NULL && k + 2 < (int)sizeof b) {
        b[k++] = '.';
        b[k++] = '0';
    }
    ht_text_put(t, b, (size_t)k);
}

/* An int past 64 bits: in full up to 256 bits (a UUID's 128), by int's
 * own C repr (never a subclass's __repr__), as a str value is, truncated;
 * past that its 17 leading digits ("~1.2345678901234567e+300": the full
 * decimal costs time quadratic in its length, for each such int), and past
 * a double's range "<big int>". sign: of op. */
static void
ht_text_big_int(ht_text *t, PyObject *op, int sign)
{
    double d = PyLong_AsDouble(op);
    if (d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear(); /* past 2**1024 */
        ht_text_put(t, sign > 0 ? "<big int>" : "<big negative int>", sign > 0 ? 9 : 18);
        return;
    }
    if (fabs(d) < 0x1p256) {
        PyObject *s = PyLong_Type.tp_repr(op);
        if (s != NULL) {
            ht_text_str(t, s, HT_VALUE_MAX, 0);
            Py_DECREF(s);
            return;
        }
        PyErr_Clear(); /* out of memory: the leading digits then */
    }
    char b[40];
    int n = snprintf(b, sizeof b, "~%.17g", d);
    ht_text_put(t, b, (size_t)n);
}

static void
ht_text_int(ht_text *t, PyObject *op)
{
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(op, &overflow);
    char b[32];
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        ht_text_put(t, "?", 1);
        return;
    }
    if (overflow) {
        ht_text_big_int(t, op, overflow);
        return;
    }
    if (PyBool_Check(op)) {
        ht_text_put(t, v ? "True" : "False", v ? 4 : 5);
        return;
    }
    /* by hand: snprintf costs more than the rest of recording an int */
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    size_t k = sizeof b;
    do {
        b[--k] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        b[--k] = '-';
    ht_text_put(t, b + k, sizeof b - k);
}

/* The text of a str object into t (unquoted, up to max characters). */
static void
ht_text_name(ht_text *t, PyObject *s)
{
    if (s && PyUnicode_Check(s))
        ht_text_str(t, s, HT_VALUE_MAX * 2, 0);
}

/* ---- code-free lookups and per-type facts --------------------------------- */

/* The value of key `name` (an exact str) in dict d, borrowed, or NULL. Reads
 * the entries with PyDict_Next and compares str contents: unlike a dict
 * lookup, it can never call a key's __eq__. */
static PyObject *
ht_hw_dict_str_get(PyObject *d, PyObject *name)
{
    if (d == NULL || !PyDict_Check(d))
        return NULL;
    Py_ssize_t it = 0, n = PyUnicode_GET_LENGTH(name);
    int kind = PyUnicode_KIND(name);
    PyObject *k, *v;
    while (PyDict_Next(d, &it, &k, &v)) {
        if (k == name)
            return v;
        if (PyUnicode_Check(k) && PyUnicode_GET_LENGTH(k) == n && PyUnicode_KIND(k) == kind &&
            memcmp(PyUnicode_DATA(k), PyUnicode_DATA(name), (size_t)n * (size_t)kind) == 0)
            return v;
    }
    return NULL;
}

/* 1 when every key of dict d is an exact str: a lookup there by a str key
 * compares str data only. */
static int
ht_hw_str_keys(PyObject *d)
{
    if (d == NULL || !PyDict_Check(d))
        return 0;
    Py_ssize_t it = 0;
    PyObject *k, *v;
    while (PyDict_Next(d, &it, &k, &v))
        if (!PyUnicode_CheckExact(k))
            return 0;
    return 1;
}

/* tp's attribute dict, borrowed: 3.12+ keeps the dicts of static builtin
 * types per interpreter, out of tp_dict (PyType_GetDict reads it; the
 * interpreter keeps it alive) */
static PyObject *
ht_hw_tdict(PyTypeObject *tp)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (tp->tp_dict == NULL) {
        PyObject *d = PyType_GetDict(tp);
        Py_XDECREF(d);
        return d;
    }
#endif
    return tp->tp_dict;
}

/* 1 when every class in tp's MRO has only exact-str keys in its dict:
 * attribute lookups on tp (_PyType_Lookup) then never call code. */
static int
ht_hw_mro_clean(PyTypeObject *tp)
{
    PyObject *mro = tp->tp_mro;
    if (mro == NULL || !PyTuple_Check(mro))
        return 0;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(mro); k++) {
        PyObject *b = PyTuple_GET_ITEM(mro, k);
        if (!PyType_Check(b) || !ht_hw_str_keys(ht_hw_tdict((PyTypeObject *)b)))
            return 0;
    }
    return 1;
}

/* What attribute `name` resolves to on tp (first class of its MRO having
 * it), borrowed, or NULL; *owner gets that class. Code-free. */
static PyObject *
ht_hw_mro_get(PyTypeObject *tp, PyObject *name, PyTypeObject **owner)
{
    PyObject *mro = tp->tp_mro;
    for (Py_ssize_t k = 0; mro && PyTuple_Check(mro) && k < PyTuple_GET_SIZE(mro); k++) {
        PyTypeObject *b = (PyTypeObject *)PyTuple_GET_ITEM(mro, k);
        PyObject *v = PyType_Check(b) ? ht_hw_dict_str_get(ht_hw_tdict(b), name) : NULL;
        if (v) {
            *owner = b;
            return v;
        }
    }
    return NULL;
}

#define HT_TF_SIZE_PURE 2  /* ht_size_flat runs no Python code for its objects */
#define HT_TF_CLEAN 4      /* lookups on tp (_PyType_Lookup) call no __eq__ */
/* What the type checks of recording one object would say, decided once per
 * type: PyFloat_Check, PyModule_Check, PyAnySet_Check ... of a type that is
 * not theirs call PyType_IsSubtype, and those calls were a twentieth of a
 * walk's instructions. "sub": the type or a subclass, "exact": the type. */
#define HT_TF_STR (1u << 3)         /* sub str */
#define HT_TF_BYTES (1u << 4)       /* sub bytes */
#define HT_TF_LONG (1u << 5)        /* sub int (bool too) */
#define HT_TF_FLOAT (1u << 6)       /* sub float */
#define HT_TF_TYPE (1u << 7)        /* sub type: a class */
#define HT_TF_MODULE (1u << 8)      /* sub module */
#define HT_TF_FUNC (1u << 9)        /* exact function */
#define HT_TF_CFUNC (1u << 10)      /* sub builtin_function_or_method */
#define HT_TF_CODE (1u << 11)       /* exact code */
#define HT_TF_FRAME (1u << 12)      /* exact frame */
#define HT_TF_DICT (1u << 13)       /* sub dict */
#define HT_TF_DICT_EXACT (1u << 14) /* exact dict */
#define HT_TF_LIST (1u << 15)       /* sub list */
#define HT_TF_SEQ_EXACT (1u << 16)  /* exact list or exact tuple */
#define HT_TF_TUPLE (1u << 17)      /* sub tuple */
#define HT_TF_SET (1u << 18)        /* sub set or frozenset */
#define HT_TF_BYTEARRAY (1u << 19)  /* sub bytearray */
#define HT_TF_GC (1u << 20)         /* PyType_IS_GC (tp_is_gc may still say no) */
#define HT_TF_FINAL (1u << 21)      /* tp_finalize or tp_del */
#define HT_TF_METHOD (1u << 22)     /* exact bound method */
#define HT_TF_CELL (1u << 23)       /* exact cell */
#define HT_TF_SIZE_IS_LEN (1u << 24) /* sub deque or array.array: ob_size is the length */
#define HT_TF_GEN (1u << 25)        /* exact generator, coroutine or async generator */

/* Whether tp's objects keep their length in ob_size although the walk
 * knows their types only by name (their modules are not imported by it):
 * collections.deque and array.array, and their subclasses. The name must
 * be a C type's (a class of the program's cannot be immutable) and its
 * objects large enough to have an ob_size. */
static int
ht_hw_size_is_len(PyTypeObject *tp)
{
    for (PyTypeObject *b = tp; b != NULL; b = b->tp_base) {
        int c_type = !(b->tp_flags & Py_TPFLAGS_HEAPTYPE) || (b->tp_flags & Py_TPFLAGS_IMMUTABLETYPE);
        if (c_type && b->tp_basicsize >= (Py_ssize_t)sizeof(PyVarObject) &&
            (strcmp(b->tp_name, "collections.deque") == 0 || strcmp(b->tp_name, "array.array") == 0))
            return 1;
    }
    return 0;
}

/* 1 when tp is one of the interpreter's own builtin types: their C
 * functions (__sizeof__, attribute getters, descriptor __get__) run no
 * Python code. */
static int
ht_hw_core_type(PyTypeObject *t)
{
    static PyTypeObject *const core[] = {
        &PyBaseObject_Type, &PyType_Type, &PyDict_Type, &PyList_Type, &PyTuple_Type,
        &PyUnicode_Type, &PyLong_Type, &PyBytes_Type, &PyByteArray_Type, &PySet_Type,
        &PyFrozenSet_Type, &PyFloat_Type, &PyCode_Type, &PyFrame_Type, &PyModule_Type,
        &PyMemoryView_Type, &PyCFunction_Type, &PyProperty_Type,
    };
    for (size_t k = 0; k < sizeof core / sizeof core[0]; k++)
        if (t == core[k])
            return 1;
    /* the builtin exceptions (static types of the interpreter) */
    return !(t->tp_flags & Py_TPFLAGS_HEAPTYPE) && PyExceptionClass_Check((PyObject *)t) &&
           strchr(t->tp_name, '.') == NULL;
}

/* 1 when the C __sizeof__ descriptor descr belongs to a core type (whose
 * __sizeof__ only adds up sizes). */
static int
ht_hw_core_sizeof(PyObject *descr)
{
    return descr != NULL && Py_IS_TYPE(descr, &PyMethodDescr_Type) &&
           ht_hw_core_type(((PyMethodDescrObject *)descr)->d_common.d_type);
}

/* The HT_TF_* kind bits of tp. */
static unsigned
ht_hw_tkind(PyTypeObject *tp)
{
    static const struct {
        PyTypeObject *t;
        unsigned bit;
    } sub[] = {
        {&PyUnicode_Type, HT_TF_STR}, {&PyBytes_Type, HT_TF_BYTES}, {&PyLong_Type, HT_TF_LONG},
        {&PyFloat_Type, HT_TF_FLOAT}, {&PyType_Type, HT_TF_TYPE}, {&PyModule_Type, HT_TF_MODULE},
        {&PyCFunction_Type, HT_TF_CFUNC}, {&PyDict_Type, HT_TF_DICT}, {&PyList_Type, HT_TF_LIST},
        {&PyTuple_Type, HT_TF_TUPLE}, {&PySet_Type, HT_TF_SET}, {&PyFrozenSet_Type, HT_TF_SET},
        {&PyByteArray_Type, HT_TF_BYTEARRAY},
    };
    unsigned f = 0;
    for (size_t k = 0; k < sizeof sub / sizeof sub[0]; k++)
        if (PyType_IsSubtype(tp, sub[k].t))
            f |= sub[k].bit;
    if (tp == &PyFunction_Type)
        f |= HT_TF_FUNC;
    if (tp == &PyCode_Type)
        f |= HT_TF_CODE;
    if (tp == &PyFrame_Type)
        f |= HT_TF_FRAME;
    if (tp == &PyMethod_Type)
        f |= HT_TF_METHOD;
    if (tp == &PyCell_Type)
        f |= HT_TF_CELL;
    if (tp == &PyGen_Type || tp == &PyCoro_Type || tp == &PyAsyncGen_Type)
        f |= HT_TF_GEN;
    if (ht_hw_size_is_len(tp))
        f |= HT_TF_SIZE_IS_LEN;
    if (tp == &PyDict_Type)
        f |= HT_TF_DICT_EXACT;
    if (tp == &PyList_Type || tp == &PyTuple_Type)
        f |= HT_TF_SEQ_EXACT;
    if (PyType_IS_GC(tp))
        f |= HT_TF_GC;
    if (tp->tp_finalize || tp->tp_del)
        f |= HT_TF_FINAL;
    return f;
}

/* HT_TF_* bits of type tp, computed once per walk. */
static unsigned
ht_hw_tfacts(ht_hw *w, PyTypeObject *tp)
{
    uint64_t *v = ht_table_find(&w->tfacts, (uint64_t)(uintptr_t)tp);
    if (v)
        return (unsigned)*v;
    unsigned f = ht_hw_tkind(tp);
    int clean = ht_hw_mro_clean(tp);
    /* sizing: size.c looks "__sizeof__" up on tp through its metaclass
     * (type's getattr, no override of it or of __sizeof__ there), finds
     * a C method of a core type and calls it, or computes object's size */
    PyTypeObject *meta = Py_TYPE(tp), *owner = NULL, *mowner = NULL;
    PyObject *name = w->s_sizeof;
    if (clean && meta->tp_getattro == PyType_Type.tp_getattro && ht_hw_mro_clean(meta)) {
        PyObject *mdescr = ht_hw_mro_get(meta, name, &mowner);
        PyObject *descr = ht_hw_mro_get(tp, name, &owner);
        if ((mdescr == NULL || mowner == &PyType_Type || mowner == &PyBaseObject_Type) &&
            ht_hw_core_sizeof(descr))
            f |= HT_TF_SIZE_PURE;
    }
    if (clean)
        f |= HT_TF_CLEAN;
    if (ht_table_put(&w->tfacts, (uint64_t)(uintptr_t)tp, f) < 0)
        w->oom = 1;
    return f;
}

/* tp's facts and fixed size, from the walk's type cache. */
static inline const ht_hw_tinfo *
ht_hw_tinfo_of(ht_hw *w, PyTypeObject *tp)
{
    uintptr_t a = (uintptr_t)tp;
    ht_hw_tinfo *e = &w->tcache[((a >> 4) ^ (a >> 12)) & (HT_HW_TCACHE - 1)];
    if (e->tp == tp)
        return e;
    e->tp = tp;
    e->tf = ht_hw_tfacts(w, tp);
    e->fixed = -1;
    if (!(e->tf & HT_TF_SIZE_PURE))
        return e;
    /* no code runs: SIZE_PURE says the lookup and the C __sizeof__ are the
     * interpreter's own; a rule that could not be made, or a Python
     * __sizeof__ after all, leaves the type's objects to be sized after
     * the walk (ht_hw_defer_size) */
    if (ht_size_rule_of(tp, &e->rule) < 0 || e->rule.kind == HT_SZ_PYCALL) {
        PyErr_Clear();
        e->tf &= ~(unsigned)HT_TF_SIZE_PURE;
        return e;
    }
    /* as ht_size_flat_with computes it for such a rule */
    if (e->rule.kind == HT_SZ_BASIC && tp->tp_itemsize == 0 && !e->rule.pre_static0)
        e->fixed = tp->tp_basicsize + e->rule.pre;
    return e;
}

/* 1 when PyObject_GenericGetAttr(instance of tp, name) runs no Python code
 * (ht_hw_attr_learn never asks it for names Python classes define): the
 * lookup on tp calls no __eq__, and what name resolves to on the class, if
 * anything, is read or bound by the interpreter's own C code. */
static int
ht_hw_name_safe(ht_hw *w, PyTypeObject *tp, PyObject *name)
{
    if (!(ht_hw_tfacts(w, tp) & HT_TF_CLEAN))
        return 0;
    PyTypeObject *owner = NULL;
    PyObject *d = ht_hw_mro_get(tp, name, &owner);
    if (d == NULL || Py_TYPE(d)->tp_descr_get == NULL || ht_hw_core_type(owner))
        return 1;
    PyTypeObject *dt = Py_TYPE(d);
    return dt == &PyMethodDescr_Type || dt == &PyClassMethodDescr_Type ||
           dt == &PyWrapperDescr_Type || dt == &PyMemberDescr_Type;
}

/* ---- type names ---------------------------------------------------------- */

/* Qualified name of a class as summaries show it: "str", "app.Session",
 * "collections.OrderedDict"; module name into mod. */
static void
ht_hw_type_names(ht_hw *w, PyTypeObject *tp, ht_text *name, ht_text *mod)
{
    if (tp->tp_flags & Py_TPFLAGS_HEAPTYPE) {
        PyHeapTypeObject *ht = (PyHeapTypeObject *)tp;
        PyObject *m = ht_hw_dict_str_get(tp->tp_dict, w->s_module);
        if (m && PyUnicode_Check(m)) {
            ht_text_name(mod, m);
            if (!(mod->len == 8 && memcmp(mod->buf, "builtins", 8) == 0)) {
                ht_text_put(name, mod->buf, mod->len);
                ht_text_put(name, ".", 1);
            }
        }
        ht_text_name(name, ht->ht_qualname);
        return;
    }
    const char *s = tp->tp_name;
    const char *dot = strrchr(s, '.');
    ht_text_put(name, s, strlen(s));
    if (dot)
        ht_text_put(mod, s, (size_t)(dot - s));
    else
        ht_text_put(mod, "builtins", 8);
}

/* ---- labels ---------------------------------------------------------------- */

static void
ht_hw_cand_add(ht_hw *w, PyObject *p, uint32_t label)
{
    if (p == NULL || label == HT_NONE)
        return;
    if (w->ncand == w->candcap) {
        size_t cap = w->candcap ? w->candcap * 2 : 64;
        ht_hw_cand *c = realloc(w->cand, cap * sizeof(*c));
        if (c == NULL) {
            w->oom = 1;
            return;
        }
        w->cand = c;
        w->candcap = cap;
    }
    w->cand[w->ncand].p = p;
    w->cand[w->ncand].label = label;
    w->cand[w->ncand].used = 0;
    w->cand[w->ncand].extra = 0;
    w->cand[w->ncand].next = HT_NONE;
    w->ncand++;
}

/* The id of a label given as a string literal ("type", "__dict__"):
 * interned once per walk, then found by the literal's address in a small
 * table instead of hashing its text again for every object. */
static uint32_t
ht_hw_lit(ht_hw *w, const char *label)
{
    uint64_t key = (uint64_t)(uintptr_t)label;
    uint64_t *v = ht_table_find(&w->literals, key);
    if (v)
        return (uint32_t)*v;
    uint32_t id = ht_hw_intern(w, label, strlen(label));
    if (id != HT_NONE && ht_table_put(&w->literals, key, id) < 0)
        w->oom = 1;
    return id;
}

static void
ht_hw_cand_str(ht_hw *w, PyObject *p, const char *label)
{
    if (p)
        ht_hw_cand_add(w, p, ht_hw_lit(w, label));
}

/* Label of a dict entry with key k: "['k']", "[42]", "[None]", "[1.5]",
 * "[b'k']", "[<tuple>]" (other keys: their type), ".k" for owned dicts
 * when k is an identifier; cached per key object. */
static uint32_t
ht_hw_key_label(ht_hw *w, PyObject *k, int owned)
{
    uint64_t ck = ((uint64_t)(uintptr_t)k) | (owned ? 1 : 0);
    /* instances of one class share their keys: a small cache in front of
     * the table answers most lookups */
    size_t c = (size_t)((ck >> 4) ^ (ck >> 13) ^ (ck & 1)) & (HT_HW_LCACHE - 1);
    if (w->lcache_key[c] == ck)
        return w->lcache_id[c];
    uint64_t *v = ht_table_find(&w->labels, ck);
    if (v) {
        w->lcache_key[c] = ck;
        w->lcache_id[c] = (uint32_t)(*v - 1);
        return (uint32_t)(*v - 1);
    }
    ht_text t;
    t.len = 0;
    if (PyUnicode_CheckExact(k)) {
        /* a namespace key that is no identifier (setattr(ns, "input-file"),
         * a module global "weird key") has no attribute access to read as:
         * ".a.b" or ".two<newline>lines" misled and broke one-line paths */
        if (owned && PyUnicode_IsIdentifier(k) == 1) {
            ht_text_put(&t, ".", 1);
            ht_text_str(&t, k, HT_LABEL_MAX, 0);
        } else {
            ht_text_put(&t, "[", 1);
            ht_text_str(&t, k, HT_LABEL_MAX, 1);
            ht_text_put(&t, "]", 1);
        }
    } else if (PyLong_CheckExact(k)) {
        ht_text_put(&t, "[", 1);
        ht_text_int(&t, k);
        ht_text_put(&t, "]", 1);
    } else if (k == Py_None || PyBool_Check(k)) { /* as written in the program */
        const char *lit = k == Py_None ? "[None]" : k == Py_True ? "[True]" : "[False]";
        ht_text_put(&t, lit, strlen(lit));
    } else if (PyFloat_CheckExact(k)) {
        ht_text_put(&t, "[", 1);
        ht_text_float(&t, PyFloat_AS_DOUBLE(k));
        ht_text_put(&t, "]", 1);
    } else if (PyBytes_CheckExact(k)) {
        ht_text_put(&t, "[", 1);
        ht_text_bytes(&t, PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k));
        ht_text_put(&t, "]", 1);
    } else {
        ht_text_put(&t, "[<", 2);
        ht_text_put(&t, Py_TYPE(k)->tp_name, strlen(Py_TYPE(k)->tp_name));
        ht_text_put(&t, ">]", 2);
    }
    uint32_t id = ht_hw_intern(w, t.buf, t.len);
    if (id != HT_NONE && ht_table_put(&w->labels, ck, (uint64_t)id + 1) < 0)
        w->oom = 1;
    return id;
}

static int
ht_hw_visit(PyObject *o, void *arg)
{
    ht_hw *w = arg;
    if (w->nrefs == w->refcap) {
        size_t cap = w->refcap ? w->refcap * 2 : 256;
        PyObject **r = realloc(w->refs, cap * sizeof(PyObject *));
        if (r == NULL) {
            w->oom = 1;
            return 1;
        }
        w->refs = r;
        w->refcap = cap;
    }
    w->refs[w->nrefs++] = o;
    return 0;
}

/* Address of op's instance __dict__ if it has one materialized, else NULL.
 * Managed dicts (3.11+) sit 3 words before the object; a tagged pointer
 * (3.12 inline values) or NULL means "not materialized". The result is only
 * compared with visited referents, never dereferenced unless it matches. */
static PyObject *
ht_hw_instance_dict(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        uintptr_t p = ((uintptr_t *)op)[-3];
        return (p && !(p & 1)) ? (PyObject *)p : NULL;
    }
    if (tp->tp_dictoffset > 0)
        return *(PyObject **)((char *)op + tp->tp_dictoffset);
    return NULL;
}

/* The __slots__ members of type tp holding objects: a cached list of
 * (offset, label id) at w->slot_off[pos]. Returns pos, or (size_t)-1. */
static size_t
ht_hw_slots(ht_hw *w, PyTypeObject *tp)
{
    uint64_t *v = ht_table_find(&w->slotcache, (uint64_t)(uintptr_t)tp);
    if (v)
        return (size_t)(*v - 1);
    size_t pos = w->slot_len;
    size_t need = pos + 1;
    uint32_t count = 0;
    PyObject *mro = tp->tp_mro;
    for (Py_ssize_t k = 0; mro && PyTuple_Check(mro) && k < PyTuple_GET_SIZE(mro); k++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, k);
        if (!(base->tp_flags & Py_TPFLAGS_HEAPTYPE) || base->tp_dict == NULL)
            continue;
        Py_ssize_t it = 0;
        PyObject *key, *val;
        while (PyDict_Next(base->tp_dict, &it, &key, &val)) {
            if (!Py_IS_TYPE(val, &PyMemberDescr_Type) || !PyUnicode_Check(key))
                continue;
            PyMemberDef *md = ((PyMemberDescrObject *)val)->d_member;
            if (md->type != 6 && md->type != 16) /* T_OBJECT, T_OBJECT_EX */
                continue;
            ht_text t;
            t.len = 0;
            ht_text_put(&t, ".", 1);
            ht_text_str(&t, key, HT_LABEL_MAX, 0);
            uint32_t id = ht_hw_intern(w, t.buf, t.len);
            if (need + 2 > w->slot_cap) {
                size_t cap = w->slot_cap ? w->slot_cap * 2 : 256;
                uint32_t *s = realloc(w->slot_off, cap * sizeof(uint32_t));
                if (s == NULL) {
                    w->oom = 1;
                    return (size_t)-1;
                }
                w->slot_off = s;
                w->slot_cap = cap;
            }
            w->slot_off[need++] = (uint32_t)md->offset;
            w->slot_off[need++] = id;
            count++;
        }
    }
    if (need > w->slot_cap) {
        uint32_t *s = realloc(w->slot_off, (need + 16) * sizeof(uint32_t));
        if (s == NULL) {
            w->oom = 1;
            return (size_t)-1;
        }
        w->slot_off = s;
        w->slot_cap = need + 16;
    }
    w->slot_off[pos] = count;
    w->slot_len = need;
    if (ht_table_put(&w->slotcache, (uint64_t)(uintptr_t)tp, pos + 1) < 0)
        w->oom = 1;
    return pos;
}

/* ---- attributes kept inline (3.11+ managed dicts not materialized) ---------
 * The interpreter's key tables are private, so the names are learned from the
 * class: every name its methods use (co_names) that is not a class attribute
 * of a Python-level class in its MRO is tried with PyObject_GenericGetAttr on
 * the first instance seen (which reads inline values without creating the
 * dict, never calls __getattr__, and with no class attribute of that name
 * runs no Python code). The names found are kept per class; on every
 * instance each is read again and labels the referent it returns. An
 * attribute that the first instance lacked stays unlabeled on the others. */

static int
ht_hw_attr_push(ht_hw *w, PyObject *name, uint32_t label)
{
    if (w->attr_len == w->attr_cap) {
        size_t cap = w->attr_cap ? w->attr_cap * 2 : 256;
        PyObject **n = realloc(w->attr_name, cap * sizeof(PyObject *));
        if (n == NULL)
            return -1;
        w->attr_name = n;
        uint32_t *l = realloc(w->attr_label, cap * sizeof(uint32_t));
        if (l == NULL)
            return -1;
        w->attr_label = l;
        w->attr_cap = cap;
    }
    Py_XINCREF(name);
    w->attr_name[w->attr_len] = name;
    w->attr_label[w->attr_len] = label;
    w->attr_len++;
    return 0;
}

/* 1 when name is an attribute of a Python-level class in tp's MRO */
static int
ht_hw_class_has(PyTypeObject *tp, PyObject *name)
{
    PyObject *mro = tp->tp_mro;
    for (Py_ssize_t k = 0; mro && PyTuple_Check(mro) && k < PyTuple_GET_SIZE(mro); k++) {
        PyTypeObject *b = (PyTypeObject *)PyTuple_GET_ITEM(mro, k);
        if (!(b->tp_flags & Py_TPFLAGS_HEAPTYPE) || b->tp_dict == NULL)
            continue;
        if (ht_hw_dict_str_get(b->tp_dict, name))
            return 1;
    }
    return 0;
}

/* Probes the names used by tp's methods on op; appends the hits. Returns
 * 1 when one of them may run code when read (ht_hw_name_safe): reads of
 * this class's attributes are then guarded. */
static int
ht_hw_attr_learn(ht_hw *w, PyTypeObject *tp, PyObject *op)
{
    int unsafe = 0;
    ht_table seen;
    if (ht_table_init(&seen, 64, 0) < 0) {
        w->oom = 1;
        return 1;
    }
    PyObject *mro = tp->tp_mro;
    for (Py_ssize_t k = 0; mro && PyTuple_Check(mro) && k < PyTuple_GET_SIZE(mro); k++) {
        PyTypeObject *b = (PyTypeObject *)PyTuple_GET_ITEM(mro, k);
        if (!(b->tp_flags & Py_TPFLAGS_HEAPTYPE) || b->tp_dict == NULL)
            continue;
        Py_ssize_t it = 0;
        PyObject *key, *fn;
        while (PyDict_Next(b->tp_dict, &it, &key, &fn)) {
            if (!PyFunction_Check(fn) || !PyCode_Check(((PyFunctionObject *)fn)->func_code))
                continue;
            PyObject *names = ((PyCodeObject *)((PyFunctionObject *)fn)->func_code)->co_names;
            for (Py_ssize_t j = 0; names && PyTuple_Check(names) && j < PyTuple_GET_SIZE(names); j++) {
                PyObject *name = PyTuple_GET_ITEM(names, j);
                if (!PyUnicode_CheckExact(name) ||
                    ht_table_add(&seen, (uint64_t)(uintptr_t)name) != 1 || ht_hw_class_has(tp, name))
                    continue;
                /* a data descriptor (object's __class__) is read in its place, never from the
                 * inline values: its value (the class) labeled another attribute that holds
                 * the same object (".__class__" for an enum member's __objclass__) */
                PyTypeObject *downer = NULL;
                PyObject *dd = ht_hw_mro_get(tp, name, &downer);
                if (dd != NULL && Py_TYPE(dd)->tp_descr_set != NULL)
                    continue;
                if (!ht_hw_name_safe(w, tp, name)) {
                    if (ht_hw_guard(w) < 0)
                        continue;
                    unsafe = 1;
                }
                PyObject *v = PyObject_GenericGetAttr(op, name);
                if (v == NULL) {
                    PyErr_Clear();
                    continue;
                }
                Py_DECREF(v); /* still held by op */
                ht_text t;
                t.len = 0;
                ht_text_put(&t, ".", 1);
                ht_text_str(&t, name, HT_LABEL_MAX, 0);
                if (ht_hw_attr_push(w, name, ht_hw_intern(w, t.buf, t.len)) < 0)
                    w->oom = 1;
            }
        }
    }
    ht_table_free(&seen);
    return unsafe;
}

static void
ht_hw_attrs_read(ht_hw *w, PyObject *op, size_t pos, size_t end)
{
    for (size_t k = pos; k < end; k++) {
        PyObject *v = PyObject_GenericGetAttr(op, w->attr_name[k]);
        if (v == NULL) {
            PyErr_Clear();
            continue;
        }
        ht_hw_cand_add(w, v, w->attr_label[k]);
        Py_DECREF(v); /* still held by op */
    }
}

/* Label candidates for op's inline attributes. */
static void
ht_hw_attrs(ht_hw *w, PyTypeObject *tp, PyObject *op)
{
    size_t pos, end;
    /* cache: position << 32 | count << 1 | reads may run code */
    uint64_t *v = ht_table_find(&w->attrcache, (uint64_t)(uintptr_t)tp);
    if (v) {
        pos = (size_t)(*v >> 32);
        end = pos + (size_t)((*v & 0xffffffffu) >> 1);
        if ((*v & 1) && end > pos && ht_hw_guard(w) < 0)
            return;
    } else {
        pos = w->attr_len;
        int unsafe = ht_hw_attr_learn(w, tp, op);
        end = w->attr_len;
        if (ht_table_put(&w->attrcache, (uint64_t)(uintptr_t)tp,
                         ((uint64_t)pos << 32) | ((uint64_t)(end - pos) << 1) | (unsigned)unsafe) < 0)
            w->oom = 1;
    }
    ht_hw_attrs_read(w, op, pos, end);
}

/* ht_fv_gen_each visitor: a generator's variable, a label candidate for
 * the edge its tp_traverse makes. */
static void
ht_hw_gen_var(PyObject *name, PyObject *value, void *arg)
{
    ht_hw *w = arg;
    ht_text t;
    t.len = 0;
    ht_text_name(&t, name);
    ht_hw_cand_add(w, value, ht_hw_intern(w, t.buf, t.len));
}

/* ht_fv_each visitor: a frame variable, a label candidate that becomes an
 * edge of its own when tp_traverse does not visit it (a running frame's
 * never does). */
static void
ht_hw_frame_var(PyObject *name, PyObject *value, void *arg)
{
    ht_hw *w = arg;
    size_t before = w->ncand;
    ht_hw_gen_var(name, value, arg);
    if (w->ncand > before)
        w->cand[before].extra = 1;
}

/* Label candidates of a frame: its code, and its variables by name
 * (framevars.h: a running frame's tp_traverse visits none of them). */
static void
ht_hw_frame_cands(ht_hw *w, PyFrameObject *f)
{
    /* a running frame's function, code and namespace are references its
     * tp_traverse does not visit either (without them the function a frame
     * runs was a gc root): counted, no edges (ht_hw_outside_refs) */
    PyObject *refs[3];
    if (ht_fv_frame_refs(f, refs)) {
        for (int k = 0; k < 3; k++)
            if (refs[k] && ht_hw_push_u64(w, &w->quiet_refs, &w->nquiet_refs, &w->quiet_refscap,
                                          (uint64_t)(uintptr_t)refs[k]) < 0)
                return;
    } else {
        PyCodeObject *co = PyFrame_GetCode(f);
        if (co == NULL) {
            PyErr_Clear();
            return;
        }
        ht_hw_cand_str(w, (PyObject *)co, "f_code");
        Py_DECREF(co);
    }
    ht_fv_each(f, ht_hw_frame_var, w);
    /* a finished frame (a stored exception's traceback holds it: the classic
     * leak) visits its variables itself, unnamed: "frame work -> <bytearray>"
     * said not which local */
    ht_fv_owned_each(f, ht_hw_gen_var, w);
}

/* Remembers (cell, variable name) for a function's closure cells. */
static void
ht_hw_closure(ht_hw *w, PyFunctionObject *fn)
{
    PyObject *cl = fn->func_closure;
    if (cl == NULL || !PyTuple_Check(cl) || fn->func_code == NULL || !PyCode_Check(fn->func_code))
        return;
    /* the free variables' names are the last co_nfreevars of co_localsplusnames, in the
     * closure's order: read in place, as PyCode_GetFreevars would make a tuple that 3.12 and
     * 3.13 cache on the code object (a new object left in the program per closure's code) */
    PyCodeObject *co = (PyCodeObject *)fn->func_code;
    PyObject *names = co->co_localsplusnames;
    if (names == NULL || !PyTuple_Check(names) || co->co_nfreevars > PyTuple_GET_SIZE(names))
        return;
    Py_ssize_t first = PyTuple_GET_SIZE(names) - co->co_nfreevars;
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(cl) && j < co->co_nfreevars; j++) {
        ht_text t;
        t.len = 0;
        ht_text_name(&t, PyTuple_GET_ITEM(names, first + j));
        uint32_t id = ht_hw_intern(w, t.buf, t.len);
        if (ht_hw_push_u64(w, &w->cells, &w->ncells, &w->cellcap,
                           (uint64_t)(uintptr_t)PyTuple_GET_ITEM(cl, j)) < 0 ||
            ht_hw_push_u64(w, &w->cells, &w->ncells, &w->cellcap, id) < 0)
            break;
    }
}

/* Code objects have no tp_traverse, but they hold their constants, names
 * and tables: real references, recorded as labeled edges. */
static void
ht_hw_code_edges(ht_hw *w, PyCodeObject *co)
{
    struct { PyObject *p; const char *label; } parts[] = {
        {co->co_consts, "co_consts"}, {co->co_names, "co_names"},
        {co->co_localsplusnames, "co_localsplusnames"}, {co->co_filename, "co_filename"},
        {co->co_name, "co_name"}, {co->co_qualname, "co_qualname"},
        {co->co_linetable, "co_linetable"}, {co->co_exceptiontable, "co_exceptiontable"},
    };
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
        if (parts[k].p)
            ht_hw_edge(w, ht_hw_add(w, parts[k].p), ht_hw_lit(w, parts[k].label));
}

#if PY_VERSION_HEX >= 0x030D0000
/* 3.13: a __dict__ made from op's inline values (vars(), pickling, copy)
 * leaves them inline, and op's tp_traverse still visits them: op's own
 * references to its attributes, unlabeled without this (the shortest path
 * read ".obj -> <list>", the attribute's name lost). The dict's entries name
 * them; reading them runs no code (PyDict_Next). Only read for a dict that
 * is such a view (ht_hw_dict_embedded's test), one read of d per instance. */
static void
ht_hw_embedded_attrs(ht_hw *w, PyTypeObject *tp, PyObject *op, PyObject *d)
{
    if (!(tp->tp_flags & Py_TPFLAGS_INLINE_VALUES) || !PyDict_Check(d) ||
        (char *)((PyDictObject *)d)->ma_values != (char *)op + tp->tp_basicsize)
        return;
    Py_ssize_t it = 0;
    PyObject *k, *v;
    while (PyDict_Next(d, &it, &k, &v))
        ht_hw_cand_add(w, v, ht_hw_key_label(w, k, 1));
}
#endif

/* Label candidates for the referents of a non-container object. */
static void
ht_hw_cands(ht_hw *w, PyObject *op, unsigned tf)
{
    PyTypeObject *tp = Py_TYPE(op);
    w->ncand = 0;
    if (tp->tp_flags & Py_TPFLAGS_HEAPTYPE) {
        ht_hw_cand_str(w, (PyObject *)tp, "type");
        /* 3.13 visits inline values even when a dict was made from
         * them: the dict is then an extra edge (an untracked one would
         * otherwise be missed). d is a live object whatever it is (the
         * __dict__ setters only take dicts), so it is not looked at here:
         * that would be a cache miss per instance */
        PyObject *d = ht_hw_instance_dict(op);
        if (d) {
            ht_hw_cand_str(w, d, "__dict__");
            if (w->ncand)
                w->cand[w->ncand - 1].extra = 1;
#if PY_VERSION_HEX >= 0x030D0000
            ht_hw_embedded_attrs(w, tp, op, d);
#endif
        }
        else if ((tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) && !(tf & HT_TF_TYPE))
            ht_hw_attrs(w, tp, op);
        size_t pos = ht_hw_slots(w, tp);
        if (pos != (size_t)-1) {
            uint32_t cnt = w->slot_off[pos];
            for (uint32_t k = 0; k < cnt; k++) {
                uint32_t off = w->slot_off[pos + 1 + 2 * k];
                /* a struct sequence's visible field is an item too, read
                 * [k] (ht_hw_item_run): its member would label the next
                 * reference to the same object, a hidden field */
                if ((tf & HT_TF_TUPLE) && off >= offsetof(PyTupleObject, ob_item) &&
                    off < offsetof(PyTupleObject, ob_item) + (size_t)Py_SIZE(op) * sizeof(PyObject *))
                    continue;
                if ((Py_ssize_t)off + (Py_ssize_t)sizeof(PyObject *) <= tp->tp_basicsize)
                    ht_hw_cand_add(w, *(PyObject **)((char *)op + off), w->slot_off[pos + 2 + 2 * k]);
            }
        }
    } else if (tp->tp_dictoffset > 0 && !(tf & (HT_TF_FUNC | HT_TF_TYPE | HT_TF_MODULE))) {
        /* a C type's instance __dict__ (exceptions, SimpleNamespace) */
        ht_hw_cand_str(w, ht_hw_instance_dict(op), "__dict__");
    }
    if (tf & HT_TF_MODULE) {
        ht_hw_cand_str(w, PyModule_GetDict(op), "__dict__");
    } else if (tf & HT_TF_TYPE) {
        PyTypeObject *t = (PyTypeObject *)op;
        ht_hw_cand_str(w, t->tp_dict, "__dict__");
        ht_hw_cand_str(w, t->tp_mro, "__mro__");
        ht_hw_cand_str(w, t->tp_bases, "__bases__");
        ht_hw_cand_str(w, (PyObject *)t->tp_base, "__base__");
    } else if (tf & HT_TF_FUNC) {
        PyFunctionObject *f = (PyFunctionObject *)op;
        ht_hw_cand_str(w, f->func_code, "__code__");
        ht_hw_cand_str(w, f->func_globals, "__globals__");
        ht_hw_cand_str(w, f->func_closure, "__closure__");
        ht_hw_cand_str(w, f->func_defaults, "__defaults__");
        ht_hw_cand_str(w, f->func_kwdefaults, "__kwdefaults__");
        ht_hw_cand_str(w, f->func_dict, "__dict__");
        ht_hw_cand_str(w, f->func_name, "__name__");
        ht_hw_cand_str(w, f->func_qualname, "__qualname__");
        ht_hw_cand_str(w, f->func_module, "__module__");
        ht_hw_closure(w, f);
    } else if (tf & HT_TF_METHOD) {
        ht_hw_cand_str(w, PyMethod_GET_FUNCTION(op), "__func__");
        ht_hw_cand_str(w, PyMethod_GET_SELF(op), "__self__");
    } else if (tf & HT_TF_CELL) {
        ht_hw_cand_str(w, PyCell_GET(op), "cell_contents");
    } else if (tf & HT_TF_FRAME) {
        ht_hw_frame_cands(w, (PyFrameObject *)op);
    } else if (tf & HT_TF_GEN) {
        ht_fv_gen_each(op, ht_hw_gen_var, w);
    } else if (PyExceptionInstance_Check(op)) {
        /* a stored exception holds its traceback and, through it, frames */
        PyBaseExceptionObject *e = (PyBaseExceptionObject *)op;
        ht_hw_cand_str(w, e->args, "args");
        ht_hw_cand_str(w, e->notes, "__notes__");
        ht_hw_cand_str(w, e->traceback, "__traceback__");
        ht_hw_cand_str(w, e->context, "__context__");
        ht_hw_cand_str(w, e->cause, "__cause__");
    } else if (PyTraceBack_Check(op)) {
        PyTracebackObject *tb = (PyTracebackObject *)op;
        ht_hw_cand_str(w, (PyObject *)tb->tb_next, "tb_next");
        ht_hw_cand_str(w, (PyObject *)tb->tb_frame, "tb_frame");
    }
}

/* The label of referent r among the candidates (each used once). */
static uint32_t
ht_hw_cand_find(ht_hw *w, PyObject *r)
{
    for (size_t k = 0; k < w->ncand; k++) {
        if (w->cand[k].p == r && !w->cand[k].used) {
            w->cand[k].used = 1;
            return w->cand[k].label;
        }
    }
    return HT_NONE;
}

/* ---- recording one object ------------------------------------------------ */

static void
ht_hw_dict_edges(ht_hw *w, PyObject *op, int owned)
{
    Py_ssize_t it = 0;
    PyObject *k, *v;
    while (PyDict_Next(op, &it, &k, &v)) {
        ht_hw_edge(w, ht_hw_add(w, k), HT_NONE);
        ht_hw_edge(w, ht_hw_add(w, v), ht_hw_key_label(w, k, owned));
    }
}

/* Whether op is one of heaptrail's held objects (own.h) that no recorded
 * object has referred to yet. */
static int
ht_hw_held_unrecorded(ht_hw *w, PyObject *op)
{
    uint32_t *s = ht_hw_slot(w, (uint64_t)(uintptr_t)op, 0);
    return s && (*s == HT_HW_SLOT_OWN || *s == HT_HW_SLOT_OWN_LISTED);
}

/* sys.modules' entries. A module heaptrail imported for itself (own.h) is
 * held: sys.modules' entry alone does not record it (its reference is
 * counted without an edge), the program's references to it do. The
 * interpreter records it first (a root), so an entry the program's own
 * import shares has no edge either: the module is a root all the same
 * (ht_hw_module_owners). */
static void
ht_hw_modules_edges(ht_hw *w, PyObject *op)
{
    Py_ssize_t it = 0;
    PyObject *k, *v;
    while (PyDict_Next(op, &it, &k, &v)) {
        if (ht_hw_held_unrecorded(w, v)) {
            if (ht_hw_push_u64(w, &w->quiet_refs, &w->nquiet_refs, &w->quiet_refscap,
                               (uint64_t)(uintptr_t)v) < 0)
                return;
            continue;
        }
        ht_hw_edge(w, ht_hw_add(w, k), HT_NONE);
        ht_hw_edge(w, ht_hw_add(w, v), ht_hw_key_label(w, k, 0));
    }
}

#if PY_VERSION_HEX >= 0x030D0000
/* 3.13: whether dict op (object i) is a view of its owner's inline values
 * (a __dict__ made from them): such a dict holds no reference to its
 * values and its tp_traverse visits none, while the owner visits them. */
static int
ht_hw_dict_embedded(ht_hw *w, PyObject *op, uint32_t i)
{
    uint32_t o = w->h->owner[i];
    if (o == HT_NONE || ((PyDictObject *)op)->ma_values == NULL)
        return 0;
    PyObject *owner = ht_hw_obj(w, o);
    PyTypeObject *otp = Py_TYPE(owner);
    return (otp->tp_flags & Py_TPFLAGS_INLINE_VALUES) &&
           (char *)((PyDictObject *)op)->ma_values == (char *)owner + otp->tp_basicsize;
}
#endif

/* A static type's (object i's) __dict__: nothing traverses a static type,
 * so without this edge its dict was a gc root of its own, and a path to a
 * method of str read "gc root <dict> -> ['join']". Its __mro__ and
 * __bases__ stay out: untracked tuples the leak check's live counter
 * (leaks.c) never sees, which would read as new objects. */
static void
ht_hw_static_type_dict(ht_hw *w, PyTypeObject *tp, uint32_t i)
{
    PyObject *d = ht_hw_tdict(tp);
    if (d == NULL)
        return;
    uint32_t j = ht_hw_add_ex(w, d, HT_HW_ADD_DICT);
    if (j == HT_NONE)
        return;
    if (w->h->owner[j] == HT_NONE)
        w->h->owner[j] = i;
    ht_hw_edge(w, j, ht_hw_lit(w, "__dict__"));
}

/* Where a list or tuple subclass's items (a namedtuple's, os.stat_result's)
 * are among the referents its tp_traverse gave: their base's traverse visits
 * them as one run, backward (list, tuple) or forward (struct sequences,
 * which visit hidden fields too), after the type or last. Returns the run's
 * first position in refs and sets *n (items in it) and *back; (size_t)-1
 * when no run matches (an extension's own order: no index labels). */
static size_t
ht_hw_item_run(PyObject *op, unsigned tf, PyObject *const *refs, size_t nrefs, size_t *n,
               int *back)
{
    PyObject **items = (tf & HT_TF_LIST) ? ((PyListObject *)op)->ob_item
                                         : ((PyTupleObject *)op)->ob_item;
    size_t len = (size_t)Py_SIZE(op);
    if (len == 0 || items == NULL || len > nrefs)
        return (size_t)-1;
    size_t starts[3] = {nrefs - len, 0, 1};
    for (int s = 0; s < 3; s++) {
        size_t j = starts[s], k;
        if (j + len > nrefs)
            continue;
        for (k = 0; k < len && refs[j + k] == items[len - 1 - k]; k++)
            ;
        if (k == len) {
            *n = len;
            *back = 1;
            return j;
        }
        for (k = 0; k < len && refs[j + k] == items[k]; k++)
            ;
        if (k == len) {
            *n = len;
            *back = 0;
            return j;
        }
    }
    return (size_t)-1;
}

/* The edges of object i (op), whose type has facts tf; gc: op is a gc
 * object. */
static void
ht_hw_edges(ht_hw *w, PyObject *op, uint32_t i, unsigned tf, int gc)
{
    PyTypeObject *tp = Py_TYPE(op);
    ht_heap *h = w->h;
    if (tf & HT_TF_DICT_EXACT) {
#if PY_VERSION_HEX >= 0x030D0000
        /* its entries stay edges (they label paths) but not references */
        if (ht_hw_dict_embedded(w, op, i))
            h->flags[i] |= HT_HW_NOREF | HT_OBJ_VIEW;
#endif
        if (op == w->sysmodules)
            ht_hw_modules_edges(w, op);
        else
            ht_hw_dict_edges(w, op, h->owner[i] != HT_NONE);
        return;
    }
    if (tf & HT_TF_SEQ_EXACT) {
        PyObject **items = (tf & HT_TF_LIST) ? ((PyListObject *)op)->ob_item
                                             : ((PyTupleObject *)op)->ob_item;
        Py_ssize_t n = Py_SIZE(op);
        for (Py_ssize_t k = 0; k < n; k++) {
            if (k + 8 < n)
                ht_hw_prefetch(w, items[k + 8]);
            ht_hw_edge(w, ht_hw_add(w, items[k]), HT_LABEL_INDEX | (uint32_t)k);
        }
        return;
    }
    if (tf & HT_TF_CODE) {
        ht_hw_code_edges(w, (PyCodeObject *)op);
        return;
    }
    if ((tf & HT_TF_TYPE) && !gc) {
        ht_hw_static_type_dict(w, (PyTypeObject *)op, i);
        return;
    }
    if (tp->tp_traverse == NULL || !gc)
        return;
    /* candidates first: reading inline attributes may need ht_hw_guard,
     * which protects found objects, not the referents gathered below */
    ht_hw_cands(w, op, tf);
    w->nrefs = 0;
    tp->tp_traverse(op, ht_hw_visit, w);
    if (w->oom)
        return;
    if (tf & HT_TF_DICT) { /* dict subclasses: entries first, then the rest */
        Py_ssize_t it = 0;
        PyObject *k, *v;
        while (PyDict_Next(op, &it, &k, &v)) {
            ht_hw_cand_add(w, v, ht_hw_key_label(w, k, 0));
        }
    }
    int many = w->ncand > 64;
    /* a list or tuple subclass's items read [k] as an exact one's (a path
     * through a namedtuple lost the step); they take no candidate's label */
    size_t run = (size_t)-1, nitems = 0;
    int back = 0;
    if ((tf & (HT_TF_LIST | HT_TF_TUPLE)) && w->nrefs > 0)
        run = ht_hw_item_run(op, tf, w->refs, w->nrefs, &nitems, &back);
    for (size_t k = 0; k < w->nrefs && k < 16; k++)
        ht_hw_prefetch(w, w->refs[k]);
    for (size_t k = 0; k < w->nrefs; k++) {
        PyObject *r = w->refs[k];
        if (k + 16 < w->nrefs)
            ht_hw_prefetch(w, w->refs[k + 16]);
        uint32_t label;
        if (k - run < nitems) /* run == (size_t)-1: never */
            label = HT_LABEL_INDEX | (uint32_t)(back ? nitems - 1 - (k - run) : k - run);
        else
            label = (many || w->ncand == 0) ? HT_NONE : ht_hw_cand_find(w, r);
        ht_hw_edge(w, ht_hw_add(w, r), label);
    }
    if (!many)
        for (size_t k = 0; k < w->ncand; k++)
            if (w->cand[k].extra && !w->cand[k].used)
                ht_hw_edge(w, ht_hw_add(w, w->cand[k].p), w->cand[k].label);
    if (many) { /* label big candidate sets by a second pass over the edges */
        ht_table t;
        if (ht_table_init(&t, w->ncand, 1) < 0) {
            w->oom = 1;
            return;
        }
        /* object -> its first unused candidate, the others chained in
         * order through .next, so that an object held twice gets both
         * labels in turn (every edge to it got the first: slots a3 and a50
         * holding one list both read ".a3"); HT_HW_REACHED once an edge
         * went to it */
        for (size_t k = w->ncand; k-- > 0;) {
            uint64_t *kv = ht_table_find(&t, (uint64_t)(uintptr_t)w->cand[k].p);
            w->cand[k].next = kv ? (uint32_t)*kv : HT_NONE;
            if (kv)
                *kv = k;
            else if (ht_table_put(&t, (uint64_t)(uintptr_t)w->cand[k].p, k) < 0)
                w->oom = 1;
        }
        for (uint32_t e = h->edge_start[i]; e < h->m; e++) {
            if ((size_t)(e - h->edge_start[i]) - run < nitems)
                continue; /* an item, labeled by its index */
            uint64_t *kv = ht_table_find(&t, h->addr[h->edge_dst[e]]);
            if (kv == NULL)
                continue;
            uint32_t k = (uint32_t)*kv;
            if (k != HT_NONE) {
                h->edge_label[e] = w->cand[k].label;
                w->cand[k].used = 1;
                k = w->cand[k].next;
            }
            *kv = HT_HW_REACHED | k;
        }
        /* and the references tp_traverse does not visit (a running frame's
         * locals: a function with over 64 of them lost them all): those
         * whose object no edge reached */
        for (size_t k = 0; k < w->ncand; k++) {
            if (!w->cand[k].extra)
                continue;
            uint64_t *kv = ht_table_find(&t, (uint64_t)(uintptr_t)w->cand[k].p);
            if (kv && !(*kv & HT_HW_REACHED))
                ht_hw_edge(w, ht_hw_add(w, w->cand[k].p), w->cand[k].label);
        }
        ht_table_free(&t);
    }
}

static Py_ssize_t
ht_hw_len(PyObject *op, unsigned tf)
{
    if (tf & HT_TF_STR)
        return PyUnicode_GET_LENGTH(op);
    if (tf & HT_TF_BYTES)
        return PyBytes_GET_SIZE(op);
    if (tf & HT_TF_LIST)
        return PyList_GET_SIZE(op);
    if (tf & HT_TF_TUPLE)
        return PyTuple_GET_SIZE(op);
    if (tf & HT_TF_DICT)
        return PyDict_GET_SIZE(op);
    if (tf & HT_TF_SET)
        return PySet_GET_SIZE(op);
    if (tf & HT_TF_BYTEARRAY)
        return PyByteArray_GET_SIZE(op);
    if (tf & HT_TF_SIZE_IS_LEN)
        return Py_SIZE(op);
    return -1;
}

/* Whether str op is ASCII and at most HT_VALUE_MAX long: its value is its
 * bytes as they are (what ht_text_str would copy out), appended directly. */
static inline int
ht_hw_str_ascii(PyObject *op)
{
#if PY_VERSION_HEX < 0x030C0000
    if (!PyUnicode_IS_READY(op))
        return 0;
#endif
    return PyUnicode_IS_ASCII(op) && PyUnicode_GET_LENGTH(op) <= HT_VALUE_MAX;
}

/* value, module, flags of object i (op, whose type has facts tf; gc: op
 * is a gc object) */
static void
ht_hw_describe(ht_hw *w, PyObject *op, uint32_t i, unsigned tf, int gc)
{
    ht_heap *h = w->h;
    ht_text t, mod;
    t.len = 0;
    mod.len = 0;
    int has = 1;
    const char *direct = NULL; /* a short ASCII str: its bytes are its value */
    if ((tf & HT_TF_STR) && ht_hw_str_ascii(op))
        direct = (const char *)PyUnicode_DATA(op);
    else if (tf & HT_TF_STR)
        ht_text_str(&t, op, HT_VALUE_MAX, 0);
    else if (tf & HT_TF_BYTES)
        ht_text_bytes(&t, PyBytes_AS_STRING(op), PyBytes_GET_SIZE(op));
    else if (tf & HT_TF_LONG)
        ht_text_int(&t, op);
    else if (tf & HT_TF_FLOAT)
        ht_text_float(&t, PyFloat_AS_DOUBLE(op));
    else if (tf & HT_TF_TYPE) {
        ht_hw_type_names(w, (PyTypeObject *)op, &t, &mod);
        h->flags[i] |= HT_OBJ_TYPE;
        /* a static type lives in C storage: held from outside the graph
         * (its instances refer to it through ob_type, which is no edge) */
        if (!(((PyTypeObject *)op)->tp_flags & Py_TPFLAGS_HEAPTYPE))
            h->flags[i] |= HT_OBJ_ROOT | HT_OBJ_EXTERNAL;
    } else if (tf & HT_TF_MODULE) {
        /* as PyModule_GetNameObject, without a dict lookup (ht_hw_dict_str_get) */
        ht_text_name(&t, ht_hw_dict_str_get(PyModule_GetDict(op), w->s_name));
        h->flags[i] |= HT_OBJ_MODULE;
    } else if (tf & HT_TF_FUNC) {
        ht_text_name(&t, ((PyFunctionObject *)op)->func_qualname);
        ht_text_name(&mod, ((PyFunctionObject *)op)->func_module);
    } else if (tf & HT_TF_CFUNC) {
        PyMethodDef *md = ((PyCFunctionObject *)op)->m_ml;
        if (md && md->ml_name)
            ht_text_put(&t, md->ml_name, strlen(md->ml_name));
    } else if (tf & HT_TF_CODE) {
        ht_text_name(&t, ((PyCodeObject *)op)->co_name);
    } else if (tf & HT_TF_GEN) {
        /* coroutines and async generators share the generator's head */
        ht_text_name(&t, ((PyGenObject *)op)->gi_qualname);
    } else if (tf & HT_TF_FRAME) {
        PyCodeObject *co = PyFrame_GetCode((PyFrameObject *)op);
        if (co)
            ht_text_name(&t, co->co_name);
        Py_XDECREF(co);
    } else
        has = 0;
    /* data values are mostly distinct: appended as they are; names are
     * interned (a class's name is the value of one object, but its kind
     * string is compared by every view) */
    if (!has)
        h->value[i] = HT_NONE;
    else if (direct != NULL) {
        if ((h->value[i] = ht_strtab_append(&h->strings, direct, (size_t)PyUnicode_GET_LENGTH(op))) == HT_NONE)
            w->oom = 1;
    } else if (h->flags[i] & (HT_OBJ_TYPE | HT_OBJ_MODULE))
        h->value[i] = ht_hw_intern(w, t.buf, t.len);
    else if ((h->value[i] = ht_strtab_append(&h->strings, t.buf, t.len)) == HT_NONE)
        w->oom = 1;
    h->module[i] = mod.len ? ht_hw_intern(w, mod.buf, mod.len) : HT_NONE;
    h->len[i] = ht_hw_len(op, tf);
    if (tf & HT_TF_DICT)
        h->flags[i] |= HT_OBJ_DICT;
    else
        h->owner[i] = HT_NONE; /* only dicts have owners */
    if (gc)
        h->flags[i] |= HT_OBJ_GC;
    if (tf & HT_TF_FINAL) {
        h->flags[i] |= HT_OBJ_FINALIZER;
        /* cycles() said uncollectable for none: the flag it needs */
        if (Py_TYPE(op)->tp_del)
            h->flags[i] |= HT_OBJ_LEGACY_DEL;
    }
}

static void
ht_hw_record(ht_hw *w, uint32_t i)
{
    ht_heap *h = w->h;
    PyObject *op = ht_hw_obj(w, i);
    w->cur = i;
    w->cur_counted = 0;
    /* two statements: ht_hw_add may append the type and move every column
     * (a realloc under ASan, or past a reservation), and `h->type[i] =
     * ht_hw_add(...)` may load h->type before the call (ASan caught the
     * write into the freed column) */
    uint32_t t = ht_hw_add(w, (PyObject *)Py_TYPE(op));
    h->type[i] = t;
    PyTypeObject *tp = Py_TYPE(op);
    const ht_hw_tinfo *ti = ht_hw_tinfo_of(w, tp);
    unsigned tf = ti->tf;
    /* PyObject_IS_GC without the call: types' tp_is_gc says which classes */
    int gc = (tf & HT_TF_GC) && (tp->tp_is_gc == NULL || tp->tp_is_gc(op));
    Py_ssize_t sz = 0;
    if (ti->fixed >= 0) {
        sz = ti->fixed;
    } else if (tf & HT_TF_SIZE_PURE) {
        sz = ht_size_flat_with(op, &ti->rule);
        if (sz < 0) {
            PyErr_Clear();
            sz = tp->tp_basicsize;
        }
    } else {
        ht_hw_defer_size(w, i); /* sized after the walk, held till then */
    }
    h->size[i] = (uint64_t)sz;
    h->total_size += (uint64_t)sz;
    ht_hw_describe(w, op, i, tf, gc);
    /* a tracked object the collector's generations do not hold: gc.freeze()
     * set it aside (the gc header is read only when there are such) */
    if (w->frozen && gc && !(h->flags[i] & HT_HW_LISTED) && PyObject_GC_IsTracked(op))
        h->flags[i] |= HT_HW_FROZEN;
    Py_ssize_t rc = Py_REFCNT(op);
    /* saturated: a count that high (immortal objects) is a root either way */
    w->refcnt[i] = rc > (Py_ssize_t)UINT32_MAX ? UINT32_MAX : (uint32_t)rc;
    w->cur_counted = 1;
    h->edge_start[i] = h->m;
    ht_hw_edges(w, op, i, tf, gc);
}

/* ---- roots, owned dicts, gc roots ------------------------------------------ */

static uint32_t
ht_hw_root(ht_hw *w, PyObject *op, uint32_t flag)
{
    uint32_t i = ht_hw_add_ex(w, op, HT_HW_ADD_ROOT);
    if (i != HT_NONE)
        w->h->flags[i] |= HT_OBJ_ROOT | flag;
    return i;
}

/* The string id of thread ts's name (w->thread_names), or HT_NONE. */
static uint32_t
ht_hw_thread_name(ht_hw *w, PyThreadState *ts)
{
    Py_ssize_t it = 0;
    PyObject *k, *v;
    while (w->thread_names && PyDict_Next(w->thread_names, &it, &k, &v)) {
        if (!PyLong_Check(k) || !PyUnicode_Check(v))
            continue;
        unsigned long id = PyLong_AsUnsignedLong(k);
        if (id == (unsigned long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            continue;
        }
        if (id == ts->thread_id) {
            ht_text t;
            t.len = 0;
            ht_text_name(&t, v);
            return ht_hw_intern(w, t.buf, t.len);
        }
    }
    return HT_NONE;
}

/* A frame's thread, in its module column: after the record pass, which
 * writes that column for every object. */
static void
ht_hw_frame_threads(ht_hw *w)
{
    for (size_t k = 0; k + 1 < w->nframe_thread; k += 2)
        w->h->module[w->frame_thread[k]] = w->frame_thread[k + 1];
}

/* Records the __dict__ of op (instance, module, class, function, C type
 * with a __dict__; op is object i) with op as its owner. Called for every
 * gc-tracked object (owners are gc-tracked) before any dict is recorded. */
static void
ht_hw_note_owner(ht_hw *w, PyObject *op, uint32_t i)
{
    PyObject *d = NULL;
    unsigned tf = ht_hw_tinfo_of(w, Py_TYPE(op))->tf;
    if (tf & HT_TF_MODULE)
        d = PyModule_GetDict(op);
    else if (tf & HT_TF_TYPE)
        d = ((PyTypeObject *)op)->tp_dict;
    else /* instances of classes, and of C types with a __dict__ (functions,
          * exceptions, SimpleNamespace) */
        d = ht_hw_instance_dict(op);
    if (d) { /* not read here: a miss per instance (see ht_hw_describe) */
        uint32_t j = ht_hw_add_ex(w, d, HT_HW_ADD_DICT);
        if (j != HT_NONE)
            w->h->owner[j] = i;
    }
}

/* Roots: sys.modules and its modules, builtins, every thread's frames.
 * heaptrail's own modules and frames are seeds of own.h (never recorded),
 * the modules it imported for itself are held (recorded when the program
 * refers to one: ht_hw_module_owners). */
static void
ht_hw_roots(ht_hw *w)
{
    PyObject *modules = PySys_GetObject("modules"); /* borrowed */
    if (modules && PyDict_Check(modules)) {
        w->sysmodules = modules;
        ht_hw_root(w, modules, 0);
        Py_ssize_t it = 0;
        PyObject *k, *v;
        while (PyDict_Next(modules, &it, &k, &v))
            if (PyModule_Check(v) && !ht_hw_held_unrecorded(w, v))
                ht_hw_root(w, v, 0);
    }
    PyObject *b = PyEval_GetBuiltins();
    if (b)
        ht_hw_root(w, b, 0);
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts; ts = PyThreadState_Next(ts)) {
        PyFrameObject *f = PyThreadState_GetFrame(ts);
        uint32_t name = f ? ht_hw_thread_name(w, ts) : HT_NONE;
        while (f) {
            uint32_t i = ht_hw_root(w, (PyObject *)f, HT_OBJ_FRAME);
            if (i != HT_NONE && name != HT_NONE &&
                (ht_hw_push_u32(w, &w->frame_thread, &w->nframe_thread, &w->frame_threadcap, i) < 0 ||
                 ht_hw_push_u32(w, &w->frame_thread, &w->nframe_thread, &w->frame_threadcap, name) < 0))
                name = HT_NONE; /* out of memory: w->oom set */
            PyFrameObject *back = PyFrame_GetBack(f);
            Py_DECREF(f);
            f = back;
        }
    }
}

/* After a record pass: the modules heaptrail imported for itself whose
 * __dict__ the program reached (a function's globals: the modules argparse
 * imports, once the program imported argparse) are the program's too, as
 * in a run without heaptrail: recorded, to be recorded in turn. Every
 * recorded module in sys.modules is a root, one heaptrail imported and the
 * program refers to as well. */
static void
ht_hw_module_owners(ht_hw *w)
{
    Py_ssize_t it = 0;
    PyObject *k, *v;
    while (w->sysmodules && PyDict_Next(w->sysmodules, &it, &k, &v)) {
        if (!PyModule_Check(v))
            continue;
        uint32_t i = ht_hw_find(w, (uint64_t)(uintptr_t)v);
        if (i != HT_NONE)
            w->h->flags[i] |= HT_OBJ_ROOT;
        else if (ht_hw_held_unrecorded(w, v) &&
                 ht_hw_find(w, (uint64_t)(uintptr_t)PyModule_GetDict(v)) != HT_NONE)
            ht_hw_root(w, v, 0);
    }
}

/* Marks heaptrail's own objects in the index (own.h) before the walk
 * meets any of them; 0 or -1 (w->oom). */
static int
ht_hw_own_mark(ht_hw *w, const ht_own *o)
{
    for (size_t k = 0; k < o->nseeds + o->nheld; k++) {
        int seed = k < o->nseeds;
        uint32_t *s = ht_hw_slot(w, seed ? o->seeds[k] : o->held[k - o->nseeds], 1);
        if (s == NULL)
            return -1;
        *s = seed ? HT_HW_SLOT_SEED : HT_HW_SLOT_OWN;
    }
    return 0;
}

/* One reference from outside the graph to the object at address a: taken
 * off its refcount and the object listed, when it is recorded; 0 or -1. */
static int
ht_hw_held_ref(ht_hw *w, uint64_t a, uint32_t **list, size_t *n, size_t *cap)
{
    uint32_t to = ht_hw_find(w, a);
    if (to == HT_NONE)
        return 0;
    uint32_t *rc = &w->refcnt[to];
    if (*rc != UINT32_MAX && *rc != 0)
        (*rc)--;
    return ht_hw_push_u32(w, list, n, cap, to);
}

/* The references to recorded objects that no edge stands for: those of the
 * objects the walk left out (heaptrail's own), and running frames' to
 * their function, code and namespace (no edges: a path to a function then
 * goes through its module, not "frame f -> f_func"). Taken off the
 * refcounts (as ht_hw_reach does for edges), their targets listed in
 * *list (ht_hw_reach roots those that nothing else keeps alive). 0 or -1
 * (w->oom). Before ht_hw_reach: it reads the index, which that reuses. */
static int
ht_hw_outside_refs(ht_hw *w, const ht_own *o, uint32_t **list, size_t *n)
{
    size_t cap = 0;
    for (size_t k = 0; k + 1 < o->nrefs; k += 2) /* an edge of the graph when its source is recorded */
        if (ht_hw_find(w, o->refs[k]) == HT_NONE && ht_hw_held_ref(w, o->refs[k + 1], list, n, &cap) < 0)
            return -1;
    for (size_t k = 0; k < w->nquiet_refs; k++)
        if (ht_hw_held_ref(w, w->quiet_refs[k], list, n, &cap) < 0)
            return -1;
    return 0;
}

/* Depth-first from the sp objects on stack (room for every object): each
 * object an edge leads to whose flags & mask are want gets flags ^= flip
 * (which must change flags & mask) and is visited in turn. */
static void
ht_hw_spread(ht_heap *h, uint32_t *stack, size_t sp, uint32_t mask, uint32_t want, uint32_t flip)
{
    while (sp) {
        uint32_t i = stack[--sp];
        for (uint32_t e = h->edge_start[i]; e < h->edge_start[i + 1]; e++) {
            uint32_t d = h->edge_dst[e];
            if ((h->flags[d] & mask) == want) {
                h->flags[d] ^= flip;
                stack[sp++] = d;
            }
        }
    }
}

/* A stack with room for every object, for ht_hw_spread: the walk's
 * address index, done with after ht_hw_label_cells, which has a slot per
 * recorded object at least (no two objects share one); else (never seen)
 * a new array, in *own for the caller to free. NULL: no memory. */
static uint32_t *
ht_hw_stack(ht_hw *w, uint32_t **own)
{
    *own = NULL;
    if (w->slots_len >= (size_t)w->h->n + 1)
        return w->slots;
    return *own = malloc(((size_t)w->h->n + 1) * sizeof(uint32_t));
}

/* Roots for what the graph does not explain (refcount left over), then
 * reachability: what no root reaches is flagged unreachable. The
 * references of walked objects are taken off refcnt[] in place (it is the
 * walk's own): what is left, beyond a reference the walk holds, comes from
 * outside the graph. outside: the objects ht_hw_outside_refs counted,
 * roots when nothing else reaches them. Neither that nor the stack
 * (ht_hw_stack) needs new memory: 8 bytes per object less to fault in. */
static int
ht_hw_reach(ht_hw *w, const uint32_t *outside, size_t noutside)
{
    ht_heap *h = w->h;
    uint32_t n = h->n;
    uint32_t *own, *stack = ht_hw_stack(w, &own);
    if (stack == NULL)
        return -1;
    /* every object's edges are references but those of HT_HW_NOREF ones: a
     * code object's too (no gc object, but its constants tuple, tracked,
     * is no gc root for it: 5,500 of a small program's 6,300 were) */
    for (uint32_t i = 0; i < n; i++) {
        if (h->flags[i] & HT_HW_NOREF)
            continue;
        for (uint32_t e = h->edge_start[i]; e < h->edge_start[i + 1]; e++) {
            uint32_t *rc = &w->refcnt[h->edge_dst[e]];
            /* a saturated count (an immortal) stays so; an edge that is no
             * reference (the walk's extra, labeled ones) cannot take it
             * below zero */
            if (*rc != UINT32_MAX && *rc != 0)
                (*rc)--;
        }
    }
    size_t sp = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (h->flags[i] & HT_OBJ_GC) {
            uint32_t held = (h->flags[i] & HT_HW_HELD) ? 1 : 0;
            if (w->refcnt[i] > held)
                h->flags[i] |= HT_OBJ_EXTERNAL | HT_OBJ_ROOT;
        }
        h->flags[i] &= ~(uint32_t)(HT_HW_HELD | HT_HW_NOREF);
        if (h->flags[i] & HT_OBJ_ROOT)
            stack[sp++] = i;
        h->flags[i] |= HT_OBJ_UNREACHABLE;
    }
    for (size_t k = 0; k < sp; k++)
        h->flags[stack[k]] &= ~(uint32_t)HT_OBJ_UNREACHABLE;
    ht_hw_spread(h, stack, sp, HT_OBJ_UNREACHABLE, HT_OBJ_UNREACHABLE, HT_OBJ_UNREACHABLE);
    /* held from outside the graph, like what C code holds: what heaptrail's
     * own objects keep alive, and nothing else; a code object no root
     * reaches (C holds it: the collector never frees a non-gc object, and
     * takes its references for outside ones) */
    sp = 0;
    for (uint32_t i = 0; i < n; i++) {
        if ((h->flags[i] & (HT_OBJ_GC | HT_OBJ_UNREACHABLE)) == HT_OBJ_UNREACHABLE &&
            h->edge_start[i + 1] > h->edge_start[i]) {
            h->flags[i] = (h->flags[i] & ~(uint32_t)HT_OBJ_UNREACHABLE) | HT_OBJ_EXTERNAL | HT_OBJ_ROOT;
            stack[sp++] = i;
        }
    }
    for (size_t k = 0; k < noutside; k++) {
        uint32_t i = outside[k];
        if (h->flags[i] & HT_OBJ_UNREACHABLE) {
            h->flags[i] = (h->flags[i] & ~(uint32_t)HT_OBJ_UNREACHABLE) | HT_OBJ_EXTERNAL | HT_OBJ_ROOT;
            stack[sp++] = i;
        }
    }
    ht_hw_spread(h, stack, sp, HT_OBJ_UNREACHABLE, HT_OBJ_UNREACHABLE, HT_OBJ_UNREACHABLE);
    free(own);
    return 0;
}

/* Whether gc.collect() would free something: a gc object in the
 * collector's generations that no root reaches (its references all come
 * from such objects: ht_hw_reach roots every gc object something outside
 * the graph holds). gc.freeze()'s objects are outside the generations: the
 * collector takes their references for outside ones, so what they reach is
 * no garbage to it. 1, 0, or -1 (no memory). Clears the walk-time flags. */
static int
ht_hw_garbage(ht_hw *w)
{
    ht_heap *h = w->h;
    uint32_t n = h->n, *stack = NULL, *own = NULL;
    const uint32_t lost = HT_OBJ_GC | HT_OBJ_UNREACHABLE;
    int found = 0;
    size_t sp = 0;
    for (uint32_t i = 0; i < n; i++)
        if ((h->flags[i] & lost) == lost) {
            found = 1;
            break;
        }
    if (found && w->frozen) {
        stack = ht_hw_stack(w, &own);
        if (stack == NULL) {
            found = -1;
            goto done;
        }
        for (uint32_t i = 0; i < n; i++)
            if ((h->flags[i] & (lost | HT_HW_FROZEN)) == (lost | HT_HW_FROZEN)) {
                h->flags[i] |= HT_HW_SEEN;
                stack[sp++] = i;
            }
        ht_hw_spread(h, stack, sp, HT_OBJ_UNREACHABLE | HT_HW_SEEN, HT_OBJ_UNREACHABLE, HT_HW_SEEN);
        found = 0;
        for (uint32_t i = 0; i < n && !found; i++)
            found = (h->flags[i] & (lost | HT_HW_LISTED | HT_HW_SEEN)) == (lost | HT_HW_LISTED);
    }
done:
    for (uint32_t i = 0; i < n; i++)
        h->flags[i] &= ~(uint32_t)(HT_HW_LISTED | HT_HW_FROZEN | HT_HW_SEEN);
    free(own);
    return found;
}

/* Names closure cells' contents after their functions' variables. */
static void
ht_hw_label_cells(ht_hw *w)
{
    ht_heap *h = w->h;
    for (size_t k = 0; k + 1 < w->ncells; k += 2) {
        uint32_t c = ht_hw_find(w, w->cells[k]);
        if (c == HT_NONE)
            continue;
        for (uint32_t e = h->edge_start[c]; e < h->edge_start[c + 1]; e++)
            h->edge_label[e] = (uint32_t)w->cells[k + 1];
    }
}

/* Drops the references the walk took (ht_hw_hold): few, often none. */
static void
ht_hw_release(ht_hw *w)
{
    for (size_t k = 0; k < w->nheld; k++) {
        if (k + 8 < w->nheld)
            __builtin_prefetch(ht_hw_obj(w, w->held[k + 8]), 1);
        Py_DECREF(ht_hw_obj(w, w->held[k]));
    }
    w->nheld = 0;
}

static void
ht_hw_free(ht_hw *w)
{
    ht_hw_pf_end(w);
    ht_hw_release(w);
    free(w->held);
    free(w->deferred);
    ht_table_free(&w->tfacts);
    ht_big_free(w->refcnt);
    ht_table_free(&w->chunks);
    ht_big_free(w->slots);
    ht_table_free(&w->excluded);
    ht_table_free(&w->labels);
    ht_table_free(&w->slotcache);
    ht_table_free(&w->literals);
    ht_table_free(&w->attrcache);
    for (size_t k = 0; k < w->attr_len; k++)
        Py_XDECREF(w->attr_name[k]);
    free(w->attr_name);
    free(w->attr_label);
    free(w->slot_off);
    free(w->refs);
    free(w->cand);
    free(w->cells);
    free(w->frame_thread);
    free(w->quiet_refs);
}

/* Shrinks the arrays to their final sizes (best effort). */
static void
ht_hw_finish(ht_hw *w)
{
    ht_heap *h = w->h;
    h->edge_start[h->n] = h->m;
    uint32_t *d = ht_big_realloc(h->edge_dst, (size_t)h->m * sizeof(uint32_t) + 8, HT_BIG_HUGE);
    if (d)
        h->edge_dst = d;
    uint32_t *l = ht_big_realloc(h->edge_label, (size_t)h->m * sizeof(uint32_t) + 8, HT_BIG_HUGE);
    if (l)
        h->edge_label = l;
    ht_heap_resize_objects(h, (size_t)h->n + 1);
    ht_strtab_freeze(&h->strings);
    /* the reservations' room, and what the prefaulter faulted in ahead of
     * the walk, go back (a resize to the same size keeps them) */
#define HT_TRIM_COLUMN(f) ht_big_trim(h->f);
    HT_HEAP_OBJECT_COLUMNS(HT_TRIM_COLUMN)
#undef HT_TRIM_COLUMN
    ht_big_trim(h->edge_dst);
    ht_big_trim(h->edge_label);
    ht_strtab_fit(&h->strings);
    h->python_minor = PY_MINOR_VERSION;
}

/* gc.collect(): PyGC_Collect() does nothing while gc is disabled, and a
 * program that disabled gc still asked for a collection here. */
static int
ht_hw_collect(void)
{
    PyObject *r = ht_gc_call("collect");
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* Whether gc.freeze() moved objects aside: 1, 0, or -1 with an exception
 * set. */
static int
ht_hw_frozen(void)
{
    PyObject *frozen = ht_gc_call("get_freeze_count");
    if (frozen == NULL)
        return -1;
    Py_ssize_t nf = PyLong_AsSsize_t(frozen);
    Py_DECREF(frozen);
    if (nf == -1 && PyErr_Occurred())
        return -1;
    return nf > 0;
}

/* Decides how excluded types are found (see ht_hw_add_ex); 0 or -1. */
static int
ht_hw_exclusions(ht_hw *w)
{
    PyObject *ex = w->exclude_types;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(ex); k++) {
        PyObject *t = PyTuple_GET_ITEM(ex, k);
        if (!PyType_Check(t))
            continue;
        PyTypeObject *tp = (PyTypeObject *)t;
        if (PyType_IsSubtype(tp, &PyDict_Type))
            w->ex_dict = 1;
        /* instances of Python classes are tracked from birth to death
         * (dicts and tuples may be untracked when they hold no container) */
        if (!(tp->tp_flags & Py_TPFLAGS_HEAPTYPE) || !PyType_IS_GC(tp) ||
            PyType_IsSubtype(tp, &PyDict_Type) || PyType_IsSubtype(tp, &PyTuple_Type))
            w->ex_untracked = 1;
    }
    /* objects gc.freeze() moved out of the generations are not listed */
    int frozen = ht_hw_frozen();
    if (frozen < 0)
        return -1;
    if (frozen)
        w->ex_untracked = w->frozen = 1;
    /* every live handle, by address */
    for (size_t k = 0; ht_handle_live.keys && k <= ht_handle_live.mask; k++)
        if (ht_handle_live.keys[k] && ht_hw_exclude(w, ht_handle_live.keys[k]) < 0)
            return -1;
    return 0;
}

/* One gc-tracked object: indexed (and its __dict__ with it as owner). */
static inline void
ht_hw_add_listed(ht_hw *w, PyObject *op)
{
    uint32_t i = ht_hw_add_ex(w, op, HT_HW_ADD_LISTED);
    if (i != HT_NONE)
        ht_hw_note_owner(w, op, i);
    ht_hw_pf_tick(w);
}

static int
ht_hw_visit_tracked(PyObject *op, void *arg)
{
    ht_hw *w = arg;
    ht_hw_add_listed(w, op);
    return !w->oom; /* 1: go on */
}

/* Records the objects from index `from` on, and those they find; returns
 * the count recorded. */
static uint32_t
ht_hw_record_from(ht_hw *w, uint32_t from)
{
    for (uint32_t i = from; i < w->h->n && !w->oom; i++) {
        if (i + 16 < w->h->n)
            __builtin_prefetch(ht_hw_obj(w, i + 16));
        if (i + 8 < w->h->n)
            ht_hw_prefetch_body(ht_hw_obj(w, i + 8));
        ht_hw_pf_tick(w);
        ht_hw_record(w, i);
    }
    return w->h->n;
}

/* Makes room for about `guess` objects so that neither the index nor the
 * arrays regrow during the walk; 0 or -1. */
static int
ht_hw_init(ht_hw *w, size_t guess)
{
    /* room to grow in place only where a helper can use it, and where it
     * costs nothing */
    if (ht_pf_possible() && ht_big_can_reserve())
        ht_hw_reserve(w);
    if (ht_table_init(&w->chunks, guess / 16, 1) < 0 || ht_table_init(&w->excluded, 16, 0) < 0 ||
        ht_table_init(&w->labels, 4096, 1) < 0 || ht_table_init(&w->slotcache, 256, 1) < 0 ||
        ht_table_init(&w->literals, 64, 1) < 0 || ht_table_init(&w->attrcache, 256, 1) < 0 ||
        ht_table_init(&w->tfacts, 256, 1) < 0 ||
        ht_hw_grow_objects(w, guess) < 0 || ht_hw_reserve_edges(w, guess * 2) < 0 ||
        ht_strtab_reserve(&w->h->strings, guess / 2, guess * 8) < 0 ||
        ht_hw_reserve_slots(w, guess * 8) < 0)
        return -1;
    return 0;
}

/* The walk: a new heap, or NULL with an exception set. exclude: tuple of
 * classes whose instances are left out, or NULL; own, extra: heaptrail's
 * own objects (own.h: a tuple of its modules and frames, and one more
 * object), left out with what only they hold; imports: a tuple of the
 * modules heaptrail imported for itself (own.h), or NULL; threads: a dict of thread
 * idents to names, for the frames' module column, or NULL. *collect
 * is set when gc.collect() would free something, or might (an excluded
 * object that may close a cycle: see ht_heap_snapshot); then, when
 * draft, the heap is only good for that answer (the caller collects and
 * walks again): the sizes the walk deferred are left at 0, since they
 * run Python code (a __sizeof__), which must not run for nothing. */
static ht_heap *
ht_hw_walk(PyObject *exclude, PyObject *own, PyObject *extra, PyObject *imports, PyObject *threads,
           int draft, int *collect)
{
    ht_hw w;
    memset(&w, 0, sizeof w);
    w.thread_names = threads;
    ht_own o;
    memset(&o, 0, sizeof o);
    uint32_t *outside = NULL;
    size_t noutside = 0;
    ht_heap *result = NULL;
    int gc_was_enabled = 0;
    w.exclude_types = exclude ? Py_NewRef(exclude) : PyTuple_New(0);
    w.s_module = PyUnicode_InternFromString("__module__");
    w.s_name = PyUnicode_InternFromString("__name__");
    w.s_sizeof = PyUnicode_InternFromString("__sizeof__");
    w.h = ht_heap_new();
    if (w.exclude_types == NULL || w.s_module == NULL || w.s_name == NULL ||
        w.s_sizeof == NULL || w.h == NULL)
        goto fail;
    /* no collection (and no finalizer of the program's) may run while the
     * walk holds raw pointers; restored at the end */
    gc_was_enabled = PyGC_Disable();
    /* the tracked objects are visited in place (gcvisit.h), without a
     * list: the arrays grow as they fill (mremap, no copy) */
    if (ht_hw_init(&w, (size_t)1 << 16) < 0)
        goto oom;
    if (ht_hw_exclusions(&w) < 0) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto fail;
    }
    /* from here to the end of the record pass no Python code runs (see
     * "no references held"): own.h's addresses stay good */
    if (ht_own_find(&o, own, extra, imports) < 0)
        goto fail;
    if (ht_hw_own_mark(&w, &o) < 0)
        goto oom;
    ht_hw_roots(&w);
    ht_gc_visit(ht_hw_visit_tracked, &w);
    if (w.oom)
        goto oom;
    /* the record pass, and again for the modules it found the program's */
    for (uint32_t done = 0; done < w.h->n && !w.oom;) {
        done = ht_hw_record_from(&w, done);
        ht_hw_module_owners(&w); /* more to record when it found some */
    }
    ht_hw_pf_end(&w);
    if (w.oom)
        goto oom;
    ht_hw_frame_threads(&w);
    ht_hw_finish(&w);
    ht_hw_label_cells(&w);
    if (ht_hw_outside_refs(&w, &o, &outside, &noutside) < 0 || ht_hw_reach(&w, outside, noutside) < 0)
        goto oom;
    int garbage = ht_hw_garbage(&w);
    if (garbage < 0)
        goto oom;
    *collect = garbage || w.ex_refs_gc;
    if (!(draft && *collect) && ht_hw_size_deferred(&w) < 0)
        goto fail;
    result = w.h;
    goto done;
oom:
    PyErr_NoMemory();
fail:
    result = NULL;
done:
    ht_hw_free(&w); /* drops the references the walk took (their addresses are in w.h) */
    ht_own_free(&o);
    free(outside);
    if (result == NULL)
        ht_heap_free(w.h);
    if (gc_was_enabled)
        PyGC_Enable();
    Py_XDECREF(w.exclude_types);
    Py_XDECREF(w.s_module);
    Py_XDECREF(w.s_name);
    Py_XDECREF(w.s_sizeof);
    return result;
}

/* heap_snapshot(gc_first, exclude_types, own, thread_names, imports) (see
 * ht_hw_walk). gc_first keeps
 * cyclic garbage out of the snapshot. A collection costs more than half a
 * walk (gc.collect() is 0.15 s on benchmarks/cases/heap.py, the walk
 * 0.22 s), so the heap is walked first: the walk sees garbage the way the
 * collector does, and only when it found some is the heap collected and
 * walked again. A heap without garbage is then neither collected nor
 * disturbed (no finalizer or gc callback of the program's runs); the
 * snapshot is the same either way. The walk's test is the collector's
 * (ht_hw_garbage, gc.freeze()'s objects included) but for the objects it
 * leaves out: when one of them refers to gc objects (a Snapshot given an
 * attribute), it could close a cycle the walk does not see, and the heap
 * is collected and walked again as well. */
static PyObject *
ht_heap_snapshot(PyObject *mod, PyObject *args)
{
    int gc_first = 1;
    PyObject *exclude = NULL, *own = NULL, *threads = NULL, *imports = NULL;
    if (!PyArg_ParseTuple(args, "|pO!O!O!O!", &gc_first, &PyTuple_Type, &exclude, &PyTuple_Type, &own,
                          &PyDict_Type, &threads, &PyTuple_Type, &imports))
        return NULL;
    int collect = 0;
    /* the call's own arguments are heaptrail's too */
    ht_heap *h = ht_hw_walk(exclude, own, args, imports, threads, gc_first, &collect);
    if (h != NULL && gc_first && collect) {
        ht_heap_free(h);
        h = ht_hw_collect() < 0 ? NULL : ht_hw_walk(exclude, own, args, imports, threads, 0, &collect);
    }
    return h ? ht_heap_wrap(h) : NULL; /* the handle owns h (freed on failure) */
}

/* ======================================================================
 * views: summary, diff
 * ====================================================================== */

typedef struct {
    char *name;
    size_t len;
    int64_t count, size, max;        /* this heap */
    int64_t ocount, osize;           /* the older heap (diff) */
    int64_t added, removed;          /* objects in only one of them (diff) */
} ht_kind;

#define HT_KINDS_MEMO 64

typedef struct {
    ht_table by_name;   /* name hash -> kind index + 1 */
    ht_table cache;     /* per-heap memo key -> kind index + 1 */
    /* recent memo keys and their kinds (direct-mapped by a hash of the key;
     * kind -1: empty): objects come in a few types interleaved (an
     * instance, its dict, a list, a str...), where one remembered key
     * missed every time */
    uint64_t memo_key[HT_KINDS_MEMO];
    ssize_t memo_k[HT_KINDS_MEMO];
    ht_kind *k;
    size_t nk, cap;
} ht_kinds;

/* Forgets the memo of kinds by type, and the recent-memo cache in front of
 * it: type indexes mean other types in another heap. */
static void
ht_kinds_forget(ht_kinds *ks)
{
    ht_table_clear(&ks->cache);
    for (size_t j = 0; j < HT_KINDS_MEMO; j++)
        ks->memo_k[j] = -1;
}

enum { HT_BY_TYPE, HT_BY_OWNER, HT_BY_MODULE };

/* what: the view, for the error message */
static int
ht_kinds_parse_by(const char *by, const char *what)
{
    if (strcmp(by, "type") == 0)
        return HT_BY_TYPE;
    if (strcmp(by, "owner") == 0)
        return HT_BY_OWNER;
    if (strcmp(by, "module") == 0)
        return HT_BY_MODULE;
    ht_error("%s: by must be 'type', 'owner' or 'module', not '%s'", what, by);
    return -1;
}

/* Kind index for a name (copied on first sight); -1 when out of memory. */
static ssize_t
ht_kinds_get(ht_kinds *ks, const char *name, size_t len)
{
    uint64_t key = ht_strtab_hash(name, len);
    for (;;) {
        uint64_t *v = ht_table_find(&ks->by_name, key);
        if (v == NULL)
            break;
        ht_kind *k = &ks->k[*v - 1];
        if (k->len == len && memcmp(k->name, name, len) == 0)
            return (ssize_t)(*v - 1);
        key = ht_hash64(key) | 1;
    }
    if (ks->nk == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 256;
        ht_kind *k = realloc(ks->k, cap * sizeof(ht_kind));
        if (k == NULL)
            return -1;
        ks->k = k;
        ks->cap = cap;
    }
    ht_kind *k = &ks->k[ks->nk];
    memset(k, 0, sizeof *k);
    k->name = malloc(len + 1);
    if (k->name == NULL)
        return -1;
    memcpy(k->name, name, len);
    k->name[len] = 0;
    k->len = len;
    if (ht_table_put(&ks->by_name, key, ks->nk + 1) < 0) {
        free(k->name);
        return -1;
    }
    return (ssize_t)ks->nk++;
}

static ssize_t ht_kinds_name(ht_kinds *ks, const ht_heap *h, uint32_t i, int by, uint32_t ot,
                             uint64_t memo, size_t c);

/* The kind of object i under `by`, memoized per (type, owner type). Inline:
 * nearly every object hits the recent memo, and the call alone (a
 * function with a 600-byte frame) cost more than the lookup. */
static inline ssize_t
ht_kinds_of(ht_kinds *ks, const ht_heap *h, uint32_t i, int by)
{
    uint32_t t = h->type[i];
    uint32_t ot = HT_NONE;
    if (by == HT_BY_OWNER && (h->flags[i] & HT_OBJ_DICT)) {
        ot = h->owner[i] == HT_NONE ? HT_NONE - 1 : h->type[h->owner[i]];
    }
    /* memo key: type and owner type; never 0 (the table's empty key)
     * because objects without a type are not memoized */
    uint64_t memo = ((uint64_t)t << 32) | ot;
    /* mixed: owner types are often neighbours (a class, then its dict) */
    size_t c = (size_t)(((uint32_t)(t * 0x9E3779B1u) ^ (uint32_t)(ot * 0x85EBCA77u)) >> 26) &
               (HT_KINDS_MEMO - 1);
    if (t != HT_NONE && ks->memo_k[c] >= 0 && memo == ks->memo_key[c])
        return ks->memo_k[c];
    return ht_kinds_name(ks, h, i, by, ot, memo, c);
}

/* ht_kinds_of past the recent memo: the per-heap memo, else the kind's
 * name made and looked up. */
static __attribute__((noinline)) ssize_t
ht_kinds_name(ht_kinds *ks, const ht_heap *h, uint32_t i, int by, uint32_t ot, uint64_t memo,
              size_t c)
{
    uint32_t t = h->type[i];
    int memoize = t != HT_NONE;
    uint64_t *v = memoize ? ht_table_find(&ks->cache, memo) : NULL;
    if (v) {
        ks->memo_key[c] = memo;
        ks->memo_k[c] = (ssize_t)(*v - 1);
        return ks->memo_k[c];
    }
    char buf[600];
    size_t len = 0, tl;
    const char *tn = ht_heap_type_name(h, i, &tl);
    if (by == HT_BY_MODULE) {
        const char *mn = t == HT_NONE ? NULL : ht_heap_string(h, h->module[t], &tl);
        tn = mn ? mn : "?";
        tl = mn ? tl : 1;
    }
    if (ot == HT_NONE - 1) {
        len = (size_t)snprintf(buf, sizeof buf, "%.*s (no owner)", (int)(tl > 500 ? 500 : tl), tn);
    } else if (ot != HT_NONE) {
        size_t ol;
        const char *on = ot == HT_NONE ? NULL : ht_heap_string(h, h->value[ot], &ol);
        if (on == NULL) {
            on = "?";
            ol = 1;
        }
        len = (size_t)snprintf(buf, sizeof buf, "%.*s of %.*s", (int)(tl > 200 ? 200 : tl), tn,
                               (int)(ol > 300 ? 300 : ol), on);
    } else {
        len = tl > sizeof buf ? sizeof buf : tl;
        memcpy(buf, tn, len);
    }
    if (len >= sizeof buf)
        len = sizeof buf - 1;
    ssize_t k = ht_kinds_get(ks, buf, len);
    if (k >= 0 && memoize && ht_table_put(&ks->cache, memo, (uint64_t)k + 1) < 0)
        return -1;
    if (k >= 0 && memoize) {
        ks->memo_key[c] = memo;
        ks->memo_k[c] = k;
    }
    return k;
}

static void
ht_kinds_free(ht_kinds *ks)
{
    for (size_t j = 0; j < ks->nk; j++)
        free(ks->k[j].name);
    free(ks->k);
    ht_table_free(&ks->by_name);
    ht_table_free(&ks->cache);
}

static int
ht_kind_by_size(const void *a, const void *b)
{
    const ht_kind *x = a, *y = b;
    int64_t dx = x->size - x->osize, dy = y->size - y->osize;
    if (dx != dy)
        return dx > dy ? -1 : 1;
    if (x->count - x->ocount != y->count - y->ocount)
        return (x->count - x->ocount) > (y->count - y->ocount) ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int
ht_kinds_init(ht_kinds *ks)
{
    memset(ks, 0, sizeof *ks);
    if (ht_table_init(&ks->by_name, 1024, 1) < 0 || ht_table_init(&ks->cache, 1024, 1) < 0) {
        ht_kinds_free(ks);
        PyErr_NoMemory();
        return -1;
    }
    ht_kinds_forget(ks);
    return 0;
}

/* Adds heap h's objects into ks (older=0: count/size; older=1: ocount/osize). */
static int
ht_kinds_fill(ht_kinds *ks, const ht_heap *h, int by, int older)
{
    ht_kinds_forget(ks);
    for (uint32_t i = 0; i < h->n; i++) {
        ssize_t k = ht_kinds_of(ks, h, i, by);
        if (k < 0) {
            PyErr_NoMemory();
            return -1;
        }
        ht_kind *kd = &ks->k[k];
        int64_t sz = (int64_t)h->size[i];
        if (older) {
            kd->ocount++;
            kd->osize += sz;
        } else {
            kd->count++;
            kd->size += sz;
            if (sz > kd->max)
                kd->max = sz;
        }
    }
    return 0;
}

/* summary(by) -> [(kind, count, size, max), ...] sorted by size, largest first */
static PyObject *
ht_handle_summary(ht_handle *self, PyObject *args)
{
    const char *bys = "type";
    if (!PyArg_ParseTuple(args, "|s", &bys))
        return NULL;
    int by = ht_kinds_parse_by(bys, "summary");
    if (by < 0)
        return NULL;
    ht_kinds ks;
    if (ht_kinds_init(&ks) < 0)
        return NULL;
    PyObject *out = NULL;
    if (ht_kinds_fill(&ks, self->heap, by, 0) < 0)
        goto done;
    if (ks.nk > 1) /* ks.k is NULL for an empty heap */
        qsort(ks.k, ks.nk, sizeof(ht_kind), ht_kind_by_size);
    out = PyList_New((Py_ssize_t)ks.nk);
    for (size_t j = 0; out && j < ks.nk; j++) {
        ht_kind *k = &ks.k[j];
        PyObject *row = Py_BuildValue("(NLLL)", PyUnicode_DecodeUTF8(k->name, (Py_ssize_t)k->len, "replace"),
                                      (long long)k->count,
                                      (long long)k->size, (long long)k->max);
        if (row == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)j, row);
    }
done:
    ht_kinds_free(&ks);
    return out;
}

/* Same object in both heaps: same address and same type name. */
static int
ht_same_object(ht_heap *older, const ht_heap *h, uint32_t i, int *err)
{
    uint32_t j = ht_heap_index_of(older, h->addr[i]);
    if (j == HT_NONE) {
        if (PyErr_Occurred())
            *err = 1;
        return 0;
    }
    size_t a, b;
    const char *x = ht_heap_type_name(h, i, &a), *y = ht_heap_type_name(older, j, &b);
    return a == b && memcmp(x, y, a) == 0;
}

/* diff(older, by) -> [(kind, dcount, dsize, added, removed, count, size)]
 * sorted by size growth */
static PyObject *
ht_handle_diff(ht_handle *self, PyObject *args)
{
    PyObject *other;
    const char *bys = "type";
    if (!PyArg_ParseTuple(args, "O!|s", &ht_handle_type, &other, &bys))
        return NULL;
    int by = ht_kinds_parse_by(bys, "diff");
    if (by < 0)
        return NULL;
    ht_heap *h = self->heap, *o = ((ht_handle *)other)->heap;
    ht_kinds ks;
    if (ht_kinds_init(&ks) < 0)
        return NULL;
    PyObject *out = NULL;
    int err = 0;
    if (ht_kinds_fill(&ks, h, by, 0) < 0 || ht_kinds_fill(&ks, o, by, 1) < 0)
        goto done;
    /* added: in h, not in o; removed: in o, not in h */
    for (int pass = 0; pass < 2; pass++) {
        ht_heap *a = pass == 0 ? h : o, *b = pass == 0 ? o : h;
        ht_kinds_forget(&ks);
        for (uint32_t i = 0; i < a->n; i++) {
            if (ht_same_object(b, a, i, &err))
                continue;
            if (err)
                goto done;
            ssize_t k = ht_kinds_of(&ks, a, i, by);
            if (k < 0) {
                PyErr_NoMemory();
                goto done;
            }
            if (pass == 0)
                ks.k[k].added++;
            else
                ks.k[k].removed++;
        }
    }
    if (ks.nk > 1) /* ks.k is NULL for an empty heap */
        qsort(ks.k, ks.nk, sizeof(ht_kind), ht_kind_by_size);
    out = PyList_New(0);
    for (size_t j = 0; out && j < ks.nk; j++) {
        ht_kind *k = &ks.k[j];
        if (k->count == k->ocount && k->size == k->osize && k->added == 0 && k->removed == 0)
            continue;
        PyObject *row = Py_BuildValue("(NLLLLLL)", PyUnicode_DecodeUTF8(k->name, (Py_ssize_t)k->len, "replace"),
                                      (long long)(k->count - k->ocount), (long long)(k->size - k->osize),
                                      (long long)k->added, (long long)k->removed,
                                      (long long)k->count, (long long)k->size);
        if (row == NULL || PyList_Append(out, row) < 0) {
            Py_XDECREF(row);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(row);
    }
done:
    ht_kinds_free(&ks);
    return out;
}

/* ======================================================================
 * small accessors for the Python layer
 * ====================================================================== */

static int
ht_handle_check_index(ht_heap *h, Py_ssize_t i)
{
    if (i < 0 || (size_t)i >= h->n) {
        PyErr_Format(PyExc_IndexError, "object index %zd out of range", i);
        return -1;
    }
    return 0;
}

/* record(i) -> (address, type, size, len, value, flags, owner, module, type_index) */
static PyObject *
ht_handle_record(ht_handle *self, PyObject *arg)
{
    ht_heap *h = self->heap;
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if ((i == -1 && PyErr_Occurred()) || ht_handle_check_index(h, i) < 0)
        return NULL;
    PyObject *list = PyList_New(0);
    if (list == NULL || ht_heap_append_record(h, (uint32_t)i, list) < 0) {
        Py_XDECREF(list);
        return NULL;
    }
    PyObject *base = PyList_GET_ITEM(list, 0);
    PyObject *mod = ht_heap_str_or_none(h, h->module[i]);
    PyObject *r = NULL;
    if (mod)
        r = Py_BuildValue("(OOOOOInOn)", PyTuple_GET_ITEM(base, 0), PyTuple_GET_ITEM(base, 1),
                          PyTuple_GET_ITEM(base, 2), PyTuple_GET_ITEM(base, 3), PyTuple_GET_ITEM(base, 4),
                          (unsigned)h->flags[i],
                          h->owner[i] == HT_NONE ? (Py_ssize_t)-1 : (Py_ssize_t)h->owner[i], mod,
                          h->type[i] == HT_NONE ? (Py_ssize_t)-1 : (Py_ssize_t)h->type[i]);
    Py_XDECREF(mod);
    Py_DECREF(list);
    return r;
}

/* edges(i) -> [(dst, label)] with label a str, an int (list/tuple index) or None */
static PyObject *
ht_handle_edges(ht_handle *self, PyObject *arg)
{
    ht_heap *h = self->heap;
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if ((i == -1 && PyErr_Occurred()) || ht_handle_check_index(h, i) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    for (uint32_t e = h->edge_start[i]; out && e < h->edge_start[i + 1]; e++) {
        uint32_t l = h->edge_label[e];
        PyObject *lab = HT_LABEL_IS_INDEX(l) ? PyLong_FromUnsignedLong(HT_LABEL_INDEX_OF(l))
                                             : ht_heap_str_or_none(h, l);
        PyObject *t = lab ? Py_BuildValue("(IN)", h->edge_dst[e], lab) : NULL;
        if (t == NULL || PyList_Append(out, t) < 0)
            Py_CLEAR(out);
        Py_XDECREF(t);
    }
    return out;
}

/* index(address) -> object index, or -1 */
static PyObject *
ht_handle_index(ht_handle *self, PyObject *arg)
{
    unsigned long long a = PyLong_AsUnsignedLongLong(arg);
    if (a == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    uint32_t i = ht_heap_index_of(self->heap, a);
    if (i == HT_NONE) {
        if (PyErr_Occurred())
            return NULL;
        return PyLong_FromLong(-1);
    }
    return PyLong_FromUnsignedLong(i);
}

/* stats() -> memory figures of the snapshot */
static PyObject *
ht_handle_stats(ht_handle *self, PyObject *unused)
{
    ht_heap *h = self->heap;
    size_t per_obj = sizeof(uint64_t) * 3 + sizeof(uint32_t) * 6;
    size_t obj_bytes = per_obj * h->n + 4;
    size_t edge_bytes = (size_t)h->m * 8;
    size_t str_bytes = h->strings.data_len + 8 * ((size_t)h->strings.count + 1);
    uint32_t roots = 0, unreachable = 0;
    for (uint32_t i = 0; i < h->n; i++) {
        roots += (h->flags[i] & HT_OBJ_ROOT) != 0;
        unreachable += (h->flags[i] & HT_OBJ_UNREACHABLE) != 0;
    }
    return Py_BuildValue("{sIsIsIsnsnsnsnsKsIsIsi}", "objects", h->n, "edges", h->m, "strings",
                         h->strings.count, "object_bytes", (Py_ssize_t)obj_bytes, "edge_bytes",
                         (Py_ssize_t)edge_bytes, "string_bytes", (Py_ssize_t)str_bytes, "bytes",
                         (Py_ssize_t)(obj_bytes + edge_bytes + str_bytes), "total_size",
                         (unsigned long long)h->total_size, "roots", roots, "unreachable", unreachable,
                         "python_minor", h->python_minor);
}

/* query(expr, limit) -> [record...]; save(path); export_jsonl(path): in
 * query.c and format_snapshot.c */
int ht_snapshot_save(const ht_heap *h, const char *path);
int ht_snapshot_export_jsonl(const ht_heap *h, const char *path);
PyObject *ht_snapshot_load(const char *path);

static PyObject *
ht_handle_query(ht_handle *self, PyObject *args)
{
    const char *expr;
    Py_ssize_t limit = -1;
    if (!PyArg_ParseTuple(args, "s|n", &expr, &limit))
        return NULL;
    return ht_query_run(self->heap, expr, limit);
}

static PyObject *
ht_handle_save(ht_handle *self, PyObject *arg)
{
    PyObject *bytes = NULL;
    if (!PyUnicode_FSConverter(arg, &bytes))
        return NULL;
    int r = ht_snapshot_save(self->heap, PyBytes_AS_STRING(bytes));
    Py_DECREF(bytes);
    if (r < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
ht_handle_export_jsonl(ht_handle *self, PyObject *arg)
{
    PyObject *bytes = NULL;
    if (!PyUnicode_FSConverter(arg, &bytes))
        return NULL;
    int r = ht_snapshot_export_jsonl(self->heap, PyBytes_AS_STRING(bytes));
    Py_DECREF(bytes);
    if (r < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
ht_heap_load(PyObject *mod, PyObject *arg)
{
    PyObject *bytes = NULL;
    if (!PyUnicode_FSConverter(arg, &bytes))
        return NULL;
    PyObject *r = ht_snapshot_load(PyBytes_AS_STRING(bytes));
    Py_DECREF(bytes);
    return r;
}

static PyObject *
ht_handle_get_n(ht_handle *self, void *unused)
{
    return PyLong_FromUnsignedLong(self->heap->n);
}

static PyObject *
ht_handle_get_m(ht_handle *self, void *unused)
{
    return PyLong_FromUnsignedLong(self->heap->m);
}

static PyObject *
ht_handle_get_total(ht_handle *self, void *unused)
{
    return PyLong_FromUnsignedLongLong(self->heap->total_size);
}

static PyMethodDef ht_handle_methods[] = {
    {"summary", (PyCFunction)ht_handle_summary, METH_VARARGS,
     "summary(by='type') -> [(kind, count, size, max)] largest first"},
    {"diff", (PyCFunction)ht_handle_diff, METH_VARARGS,
     "diff(older, by='type') -> [(kind, dcount, dsize, added, removed, count, size)]"},
    {"record", (PyCFunction)ht_handle_record, METH_O,
     "record(i) -> (address, type, size, len, value, flags, owner, module, type_index)"},
    {"edges", (PyCFunction)ht_handle_edges, METH_O, "edges(i) -> [(dst, label)]"},
    {"index", (PyCFunction)ht_handle_index, METH_O, "index(address) -> i or -1"},
    {"stats", (PyCFunction)ht_handle_stats, METH_NOARGS, "memory figures"},
    {"query", (PyCFunction)ht_handle_query, METH_VARARGS, "query(expr, limit=-1) -> [records]"},
    {"save", (PyCFunction)ht_handle_save, METH_O, "save(path)"},
    {"export_jsonl", (PyCFunction)ht_handle_export_jsonl, METH_O, "export_jsonl(path)"},
    {NULL},
};

static PyGetSetDef ht_handle_getset[] = {
    {"n", (getter)ht_handle_get_n, NULL, "objects", NULL},
    {"m", (getter)ht_handle_get_m, NULL, "edges", NULL},
    {"total_size", (getter)ht_handle_get_total, NULL, "sum of flat sizes", NULL},
    {NULL},
};

static PyTypeObject ht_handle_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "heaptrail._core.HeapHandle",
    .tp_basicsize = sizeof(ht_handle),
    .tp_dealloc = (destructor)ht_handle_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A heap snapshot held in C arrays (see heap.h).",
    .tp_methods = ht_handle_methods,
    .tp_getset = ht_handle_getset,
};

/* ---- a floor for the benchmarks ---------------------------------------------
 * heap_touch_floor() -> (tracked objects, edges, 0|1): the memory traffic no walk
 * of this heap can avoid, timed alone (benchmarks/cases/heap.py): every
 * gc-tracked object found as the walk finds them and traversed, and the
 * header of every edge's target read. No index, nothing recorded. */
typedef struct {
    size_t objects, edges;
    uintptr_t sum; /* what was read, so that the reads are not dropped */
} ht_floor;

static int
ht_floor_visit(PyObject *o, void *arg)
{
    ht_floor *f = arg;
    f->edges++;
    f->sum += (uintptr_t)Py_TYPE(o);
    return 0;
}

static int
ht_floor_one(PyObject *op, void *arg)
{
    ht_floor *f = arg;
    PyTypeObject *tp = Py_TYPE(op);
    f->objects++;
    f->sum += (uintptr_t)tp;
    if (tp->tp_traverse)
        tp->tp_traverse(op, ht_floor_visit, f);
    return 1;
}

/* heap_prefault_from(objects, room=0) -> (previous threshold, previous
 * room, helpers started so far): lets tests run small walks with the
 * prefaulter (ht_hw_pf_from), and walks that outgrow their reservations
 * (ht_hw_pf_room objects; 0 keeps it). */
static PyObject *
ht_heap_prefault_from(PyObject *mod, PyObject *args)
{
    Py_ssize_t from, room = 0;
    if (!PyArg_ParseTuple(args, "n|n:heap_prefault_from", &from, &room))
        return NULL;
    if (from < 0 || room < 0 || (room > 0 && room < 1024)) {
        PyErr_SetString(PyExc_ValueError, "heap_prefault_from: objects >= 0, room 0 or >= 1024");
        return NULL;
    }
    PyObject *old = Py_BuildValue("(nnn)", (Py_ssize_t)ht_hw_pf_from, (Py_ssize_t)ht_hw_pf_room,
                                  (Py_ssize_t)ht_pf_starts());
    if (old == NULL)
        return NULL;
    ht_hw_pf_from = (size_t)from;
    if (room > 0)
        ht_hw_pf_room = (size_t)room;
    return old;
}

static PyObject *
ht_heap_touch_floor(PyObject *mod, PyObject *unused)
{
    ht_floor f = {0, 0, 0};
    int was = PyGC_Disable();
    ht_gc_visit(ht_floor_one, &f);
    if (was)
        PyGC_Enable();
    return Py_BuildValue("(nnN)", (Py_ssize_t)f.objects, (Py_ssize_t)f.edges,
                         PyLong_FromSize_t(f.sum & 1));
}

static PyMethodDef ht_heap_functions[] = {
    {"heap_snapshot", ht_heap_snapshot, METH_VARARGS,
     "heap_snapshot(gc_first=True, exclude_types=(), own=(), thread_names={}) -> HeapHandle: own "
     "is heaptrail's own modules and frames, left out with what only they hold; thread_names maps "
     "thread idents to the names given to their frames"},
    {"heap_load", ht_heap_load, METH_O, "heap_load(path) -> HeapHandle"},
    {"heap_prefault_from", ht_heap_prefault_from, METH_VARARGS,
     "heap_prefault_from(objects, room=0) -> (previous objects, previous room, helpers started): "
     "walks that grow past this many objects fault their arrays in on a helper thread (tests)"},
    {"heap_touch_floor", ht_heap_touch_floor, METH_NOARGS,
     "heap_touch_floor() -> (objects, edges, 0|1): benchmark floor (see heap.c)"},
    {NULL},
};

int
ht_heap_init(PyObject *m)
{
    if (PyType_Ready(&ht_handle_type) < 0)
        return -1;
    Py_INCREF(&ht_handle_type);
    if (PyModule_AddObject(m, "HeapHandle", (PyObject *)&ht_handle_type) < 0) {
        Py_DECREF(&ht_handle_type);
        return -1;
    }
    return PyModule_AddFunctions(m, ht_heap_functions);
}
