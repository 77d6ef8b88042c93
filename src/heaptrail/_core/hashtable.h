/* hashtable.h - the one hash table: open addressing, linear probing, 64-bit
 * keys, optional 64-bit values. Used as an address set (deep size, heap
 * walk), an address -> index map (snapshots) and a block table (tracer).
 *
 * Contract:
 *   - key 0 is reserved for "empty" and must never be inserted (addresses
 *     and ids+1 are never 0);
 *   - memory comes from bigmem.h (malloc or mappings of its own; never
 *     traced by PEP 445 hooks): keys and values are freed by this file
 *     only, with ht_big_free, never free();
 *   - no locking: a table used from several threads is protected by its
 *     owner, who says so where the table is declared;
 *   - deletion shifts entries back (no tombstones), so a table that sees
 *     many inserts and removes never degrades;
 *   - load is kept at or below 2/3; a failed grow leaves the table as it was.
 *   - slots may move on insert: pointers returned by find/upsert are valid
 *     only until the next insert.
 */
#ifndef HT_HASHTABLE_H
#define HT_HASHTABLE_H

#include <stdint.h>
#include <stddef.h>

typedef struct ht_table {
    uint64_t *keys;    /* capacity slots, 0 = empty */
    uint64_t *values;  /* capacity slots, or NULL for a set */
    size_t mask;       /* capacity - 1; capacity is a power of two */
    size_t count;      /* keys in use */
    int with_values;   /* set at init; kept across free so a freed table can regrow */
} ht_table;

/* Initializes an empty table sized for about `expected` keys. with_values=0
 * makes a set (8 bytes a slot). Returns 0, or -1 when out of memory (the
 * table is then zeroed and safe to free). No Python exception is set. */
int ht_table_init(ht_table *t, size_t expected, int with_values);

/* Releases the slots; the table is zeroed and may be initialized again. */
void ht_table_free(ht_table *t);

/* Empties the table, keeping its capacity. */
void ht_table_clear(ht_table *t);

/* Mixes a key into a slot index; exposed for callers that shard tables. */
static inline uint64_t
ht_hash64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* FNV-1a over n bytes (prime 1099511628211), started from
 * 1469598103934665603: one digit short of FNV's offset basis
 * (14695981039346656037), kept because the trace format's checksum
 * (format_trace.h) has used it since version 1. Every step is a bijection
 * of the state, so two inputs of one length differing in one byte never
 * share a sum. */
static inline uint64_t
ht_fnv1a(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* The key of the bytes (p, n) in a table of strings (never 0 once the
 * caller sets a bit). */
static inline uint64_t
ht_hash_bytes(const void *p, size_t n)
{
    return ht_hash64(ht_fnv1a(p, n) ^ n);
}

/* Returns the slot index of key, or (size_t)-1 when absent. */
static inline size_t
ht_table_lookup(const ht_table *t, uint64_t key)
{
    if (t->keys == NULL)
        return (size_t)-1;
    size_t i = (size_t)ht_hash64(key) & t->mask;
    for (;;) {
        uint64_t k = t->keys[i];
        if (k == key)
            return i;
        if (k == 0)
            return (size_t)-1;
        i = (i + 1) & t->mask;
    }
}

static inline int
ht_table_contains(const ht_table *t, uint64_t key)
{
    return ht_table_lookup(t, key) != (size_t)-1;
}

/* Asks the CPU to start loading key's home slot: callers that know a batch
 * of keys ahead (a walk's next objects) hide the cache miss of each probe. */
static inline void
ht_table_prefetch(const ht_table *t, uint64_t key)
{
    if (t->keys != NULL)
        __builtin_prefetch(&t->keys[(size_t)ht_hash64(key) & t->mask], 1);
}

/* Pointer to key's value (tables with values only), or NULL when absent. */
static inline uint64_t *
ht_table_find(const ht_table *t, uint64_t key)
{
    size_t i = ht_table_lookup(t, key);
    return i == (size_t)-1 ? NULL : &t->values[i];
}

/* Adds key if absent. Returns 1 when added, 0 when it was already there,
 * -1 when out of memory (table unchanged). For sets, the fast path of a
 * visited check: `if (ht_table_add(&seen, addr) == 1) visit(addr)`. */
int ht_table_add(ht_table *t, uint64_t key);

/* Inserts or overwrites key -> value. Returns 1 added, 0 replaced, -1 out of
 * memory (table unchanged). */
int ht_table_put(ht_table *t, uint64_t key, uint64_t value);

/* Returns a pointer to key's value, inserting key with value `initial` if it
 * is absent (*added tells which); NULL when out of memory. */
uint64_t *ht_table_upsert(ht_table *t, uint64_t key, uint64_t initial, int *added);

/* Removes key. Returns 1 and stores its value in *old (when old and values
 * are not NULL), or 0 when absent. Never allocates. */
int ht_table_remove(ht_table *t, uint64_t key, uint64_t *old);

/* Bytes held by the table's slots. */
size_t ht_table_memory(const ht_table *t);

#endif
