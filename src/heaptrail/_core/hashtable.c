/* hashtable.c - open addressing table with backward-shift deletion. */
#include "hashtable.h"

#include "bigmem.h"

#include <stdlib.h>
#include <string.h>

#define HT_MIN_CAPACITY 16

static size_t
ht__capacity_for(size_t expected)
{
    size_t cap = HT_MIN_CAPACITY;
    /* keep load <= 2/3 */
    while (cap / 3 * 2 < expected + 1)
        cap <<= 1;
    return cap;
}

static int
ht__alloc(ht_table *t, size_t cap, int with_values, int dense)
{
    /* bigmem blocks: a big table freed must not raise malloc's mapping
     * threshold (see bigmem.h). dense: it is about to be filled a third
     * (a rehash), every page of it touched: cleared by writing, where a
     * fresh mapping's zero pages, read first by the probes, would each
     * fault twice (the second time with a TLB flush on every CPU the
     * process runs on) */
    t->keys = dense ? ht_big_alloc(cap * sizeof(uint64_t), 0)
                    : ht_big_alloc_zero(cap * sizeof(uint64_t), 0);
    if (dense && t->keys != NULL)
        memset(t->keys, 0, cap * sizeof(uint64_t));
    t->values = NULL;
    if (t->keys == NULL)
        return -1;
    if (with_values) {
        t->values = ht_big_alloc(cap * sizeof(uint64_t), 0);
        if (t->values == NULL) {
            ht_big_free(t->keys);
            t->keys = NULL;
            return -1;
        }
    }
    t->mask = cap - 1;
    t->count = 0;
    t->with_values = with_values;
    return 0;
}

int
ht_table_init(ht_table *t, size_t expected, int with_values)
{
    memset(t, 0, sizeof(*t));
    t->with_values = with_values;
    if (ht__alloc(t, ht__capacity_for(expected), with_values, 0) < 0) {
        t->keys = NULL;
        return -1;
    }
    return 0;
}

void
ht_table_free(ht_table *t)
{
    int with_values = t->with_values;
    ht_big_free(t->keys);
    ht_big_free(t->values);
    memset(t, 0, sizeof(*t));
    t->with_values = with_values;
}

void
ht_table_clear(ht_table *t)
{
    if (t->keys != NULL)
        memset(t->keys, 0, (t->mask + 1) * sizeof(uint64_t));
    t->count = 0;
}

size_t
ht_table_memory(const ht_table *t)
{
    if (t->keys == NULL)
        return 0;
    return (t->mask + 1) * sizeof(uint64_t) * (t->values ? 2 : 1);
}

/* Places key (known absent) without checking load. Returns its slot. */
static size_t
ht__place(ht_table *t, uint64_t key)
{
    size_t i = (size_t)ht_hash64(key) & t->mask;
    while (t->keys[i] != 0)
        i = (i + 1) & t->mask;
    t->keys[i] = key;
    t->count++;
    return i;
}

static int
ht__grow(ht_table *t)
{
    ht_table bigger;
    size_t cap = (t->mask + 1) * 2;
    if (t->keys == NULL)
        cap = HT_MIN_CAPACITY;
    if (ht__alloc(&bigger, cap, t->with_values, t->keys != NULL) < 0)
        return -1;
    if (t->keys != NULL) {
        for (size_t i = 0; i <= t->mask; i++) {
            uint64_t k = t->keys[i];
            if (k == 0)
                continue;
            size_t j = ht__place(&bigger, k);
            if (bigger.values)
                bigger.values[j] = t->values[i];
        }
    }
    ht_big_free(t->keys);
    ht_big_free(t->values);
    *t = bigger;
    return 0;
}

static inline int
ht__full(const ht_table *t)
{
    return t->keys == NULL || (t->count + 1) * 3 > (t->mask + 1) * 2;
}

int
ht_table_add(ht_table *t, uint64_t key)
{
    if (t->keys != NULL) {
        size_t i = (size_t)ht_hash64(key) & t->mask;
        for (;;) {
            uint64_t k = t->keys[i];
            if (k == key)
                return 0;
            if (k == 0)
                break;
            i = (i + 1) & t->mask;
        }
        if (!ht__full(t)) {
            t->keys[i] = key;
            t->count++;
            return 1;
        }
    }
    if (ht__grow(t) < 0)
        return -1;
    ht__place(t, key);
    return 1;
}

uint64_t *
ht_table_upsert(ht_table *t, uint64_t key, uint64_t initial, int *added)
{
    size_t i = ht_table_lookup(t, key);
    if (i != (size_t)-1) {
        *added = 0;
        return &t->values[i];
    }
    if (ht__full(t) && ht__grow(t) < 0)
        return NULL;
    i = ht__place(t, key);
    t->values[i] = initial;
    *added = 1;
    return &t->values[i];
}

int
ht_table_put(ht_table *t, uint64_t key, uint64_t value)
{
    int added;
    uint64_t *v = ht_table_upsert(t, key, value, &added);
    if (v == NULL)
        return -1;
    *v = value;
    return added;
}

int
ht_table_remove(ht_table *t, uint64_t key, uint64_t *old)
{
    size_t i = ht_table_lookup(t, key);
    if (i == (size_t)-1)
        return 0;
    if (old != NULL && t->values != NULL)
        *old = t->values[i];
    /* Backward shift: pull later members of the probe run into the hole
     * when their home slot is at or before it (cyclically). */
    size_t hole = i, j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        uint64_t k = t->keys[j];
        if (k == 0)
            break;
        size_t home = (size_t)ht_hash64(k) & t->mask;
        /* distance from home to j vs. from home to hole */
        if (((j - home) & t->mask) >= ((j - hole) & t->mask)) {
            t->keys[hole] = k;
            if (t->values)
                t->values[hole] = t->values[j];
            hole = j;
        }
    }
    t->keys[hole] = 0;
    t->count--;
    return 1;
}
