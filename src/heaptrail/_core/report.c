/* report.c - capture reader and aggregation (report.h), and the Python
 * CaptureReport type that hands small results to the reporters. */
#include "report.h"
#include "capture.h"
#include "hashtable.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef HT_HAVE_ZLIB
#include <zlib.h>
#endif

#define REP_NONE UINT32_MAX

/* ---- growable arrays (libc) ---------------------------------------------- */

/* Makes room for one more item in *arr (count n, capacity *cap); 0 or -1. */
static int
rep_grow(void **arr, size_t *cap, size_t n, size_t item)
{
    if (n < *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 64;
    if (nc > SIZE_MAX / item)
        return -1;
    void *p = realloc(*arr, nc * item);
    if (p == NULL)
        return -1;
    *arr = p;
    *cap = nc;
    return 0;
}
#define REP_PUSH(arr, n, cap) (rep_grow((void **)&(arr), &(cap), (n), sizeof(*(arr))) == 0)

/* ---- the report ------------------------------------------------------------ */

typedef struct { uint32_t off, len; } rep_str;
typedef struct { uint32_t file, func, line; } rep_frame;           /* string ids */
typedef struct { uint32_t parent, frame; } rep_rawstack;            /* raw ids */
typedef struct { uint64_t bytes[HT_REP_METRICS], count[HT_REP_METRICS]; uint32_t raw; } rep_agg;
typedef struct { uint64_t size; uint32_t agg; uint32_t next_free; } rep_slot;
typedef struct { uint32_t id, name; uint64_t allocs, bytes; } rep_thread;
typedef struct { uint64_t t, rss, traced; } rep_sample;
typedef struct { uint64_t t; uint32_t label; } rep_marker;
typedef struct { uint64_t size; uint32_t agg; } rep_big;
typedef struct { uint32_t parent, frame; } rep_node;                /* canonical */
typedef struct { uint64_t t, events; } rep_tick;                    /* a block's end */

struct ht_rep {
    /* header */
    uint64_t pid, start_ns, sample_bytes, interval_ns;
    uint32_t cmdline;               /* string id */
    const char *truncated;          /* NULL, or why the data ends early */
    int clean_end;
    uint64_t duration_ns;
    /* strings: arena + index, interned by hash (ht_table hash -> id) */
    ht_buf arena;
    rep_str *strs; size_t nstrs, cstrs;
    ht_table str_index;
    /* raw frames and stack nodes as the file names them */
    rep_frame *frames; size_t nframes, cframes;
    ht_table frame_index;           /* raw id + 1 -> frames[] */
    rep_rawstack *raws; size_t nraws, craws;
    ht_table raw_index;             /* raw id + 1 -> raws[] */
    /* per raw stack id used by an ALLOC */
    rep_agg *aggs; size_t naggs, caggs;
    size_t naggs_read;              /* naggs after the first pass: what the tree covers */
    ht_table agg_index;             /* raw stack id + 1 -> aggs[] */
    /* live blocks */
    ht_table live;                  /* address -> slots[] (a hash table, not the
                                       tracer's page map: memory stays bounded by
                                       the live blocks, whatever the address span) */
    rep_slot *slots; size_t nslots, cslots;
    uint32_t free_slot;
    uint64_t current, live_count;
    /* counters */
    uint64_t events, allocs, frees, unmatched_frees, replaced, total_bytes;
    uint64_t peak_bytes, peak_count, peak_event, max_rss, leak_bytes, leak_count;
    uint64_t hist_count[65], hist_bytes[65];
    rep_big big[HT_REP_LARGEST]; size_t nbig;
    rep_thread *threads; size_t nthreads, cthreads;
    ht_table thread_index;          /* thread id + 1 -> threads[] */
    rep_sample *samples; size_t nsamples, csamples;
    unsigned sample_stride, sample_skip;
    /* the last sample read (kept or thinned out), and its values when the peak
     * was reached: samples() places the peak after it */
    uint64_t last_sample_t, last_sample_rss, peak_after_t, peak_rss;
    rep_marker *markers; size_t nmarkers, cmarkers;
    uint64_t markers_dropped;
    /* time index: (block time, alloc/free events up to its end), decimated */
    rep_tick *ticks; size_t nticks, cticks;
    unsigned tick_stride, tick_skip;
    char *path;                     /* for replays (timeline) */
    /* canonical tree */
    rep_frame *cframes_; size_t ncframes, ccframes;
    ht_table cframe_index;
    rep_node *nodes; size_t nnodes, cnodes;
    ht_table node_index;
    uint64_t *nbytes[HT_REP_METRICS], *ncount[HT_REP_METRICS];    /* self, per node */
    uint32_t *agg_node;             /* aggs[] -> node */
};

/* Reading context of one pass. */
typedef struct {
    ht_rep *r;
    int pass;                       /* 1 or 2 */
    uint64_t stop_event;            /* pass 2: replay this many alloc/free events */
    uint32_t thread;                /* the block's thread */
    const char *fault;              /* corruption description */
    /* timeline replay: fold the live blocks into out[i * nnodes + node]
     * when the event count reaches cps[i] */
    const uint64_t *cps;
    size_t ncp, icp;
    uint64_t *out;
} rep_ctx;

/* ---- strings ------------------------------------------------------------------ */

/* The id of the string (p, n), adding it; REP_NONE when out of memory. */
static uint32_t
rep_intern(ht_rep *r, const uint8_t *p, size_t n)
{
    uint64_t key = ht_hash_bytes(p, n) | 1;
    for (;;) {
        uint64_t *v = ht_table_find(&r->str_index, key);
        if (v == NULL)
            break;
        rep_str s = r->strs[*v];
        /* n == 0: the arena may still be empty (data NULL, no memcmp) */
        if (s.len == n && (n == 0 || memcmp(r->arena.data + s.off, p, n) == 0))
            return (uint32_t)*v;
        key = ht_hash64(key) | 1;   /* collision: the next key in a fixed sequence */
    }
    if (r->arena.len + n > UINT32_MAX || !REP_PUSH(r->strs, r->nstrs, r->cstrs))
        return REP_NONE;
    rep_str s = {(uint32_t)r->arena.len, (uint32_t)n};
    ht_buf_put(&r->arena, p, n);
    if (r->arena.error || ht_table_put(&r->str_index, key, r->nstrs) < 0)
        return REP_NONE;
    r->strs[r->nstrs] = s;
    return (uint32_t)r->nstrs++;
}

static PyObject *
rep_pystr(const ht_rep *r, uint32_t sid)
{
    if (sid == REP_NONE || sid >= r->nstrs)
        return PyUnicode_FromString("?");
    rep_str s = r->strs[sid];
    return PyUnicode_DecodeUTF8((const char *)r->arena.data + s.off, s.len, "replace");
}

/* ---- events ---------------------------------------------------------------------- */

/* Index into aggs[] of a raw stack id, added on first use; -1 out of memory. */
static int64_t
rep_agg_of(ht_rep *r, uint32_t raw)
{
    int added;
    uint64_t *v = ht_table_upsert(&r->agg_index, (uint64_t)raw + 1, r->naggs, &added);
    if (v == NULL)
        return -1;
    if (added) {
        if (!REP_PUSH(r->aggs, r->naggs, r->caggs)) {
            ht_table_remove(&r->agg_index, (uint64_t)raw + 1, NULL);
            return -1;
        }
        memset(&r->aggs[r->naggs], 0, sizeof(rep_agg));
        r->aggs[r->naggs].raw = raw;
        r->naggs++;
    }
    return (int64_t)*v;
}

static rep_thread *
rep_thread_of(ht_rep *r, uint32_t id)
{
    int added;
    uint64_t *v = ht_table_upsert(&r->thread_index, (uint64_t)id + 1, r->nthreads, &added);
    if (v == NULL)
        return NULL;
    if (added) {
        if (!REP_PUSH(r->threads, r->nthreads, r->cthreads)) {
            ht_table_remove(&r->thread_index, (uint64_t)id + 1, NULL);
            return NULL;
        }
        r->threads[r->nthreads] = (rep_thread){id, REP_NONE, 0, 0};
        r->nthreads++;
    }
    return &r->threads[*v];
}

static void
rep_remove_live(ht_rep *r, uint64_t slot)
{
    rep_slot *s = &r->slots[slot];
    s->agg = REP_NONE;              /* a free slot: iterations skip it */
    r->current -= s->size;
    r->live_count--;
    s->next_free = r->free_slot;
    r->free_slot = (uint32_t)slot;
}

static int
rep_free(rep_ctx *c, uint64_t addr)
{
    ht_rep *r = c->r;
    uint64_t slot;
    r->events++;
    if (c->pass == 1)
        r->frees++;
    /* 0 is the live table's empty key: no block lives there (removing it
     * would take an empty slot's stale value for a block) */
    if (addr != 0 && ht_table_remove(&r->live, addr, &slot) == 1)
        rep_remove_live(r, slot);
    else if (c->pass == 1)
        r->unmatched_frees++;
    return 0;
}

static void
rep_note_big(ht_rep *r, uint64_t size, uint32_t agg)
{
    if (r->nbig == HT_REP_LARGEST && size <= r->big[r->nbig - 1].size)
        return;
    size_t i = r->nbig < HT_REP_LARGEST ? r->nbig++ : HT_REP_LARGEST - 1;
    while (i > 0 && r->big[i - 1].size < size) {
        r->big[i] = r->big[i - 1];
        i--;
    }
    r->big[i] = (rep_big){size, agg};
}

static void
rep_note_alloc(rep_ctx *c, uint64_t size, uint32_t agg)
{
    ht_rep *r = c->r;
    r->allocs++;
    r->total_bytes += size;
    r->aggs[agg].bytes[HT_REP_TOTAL] += size;
    r->aggs[agg].count[HT_REP_TOTAL]++;
    int b = size == 0 ? 0 : 64 - __builtin_clzll(size);
    r->hist_count[b]++;
    r->hist_bytes[b] += size;
    rep_note_big(r, size, agg);
    rep_thread *t = rep_thread_of(r, c->thread);
    if (t != NULL) {
        t->allocs++;
        t->bytes += size;
    }
}

/* 0, or -1 (out of memory: fault set). */
static int
rep_alloc(rep_ctx *c, uint64_t addr, uint64_t size, uint32_t stack)
{
    ht_rep *r = c->r;
    int64_t agg = rep_agg_of(r, stack);
    if (agg < 0)
        return -1;
    /* a replay meeting a stack the first pass never saw: the file was
     * rewritten since (agg_node and the replay's counters stop short) */
    if (c->pass == 2 && (size_t)agg >= r->naggs_read) {
        c->fault = "the file changed since it was first read";
        return -1;
    }
    r->events++;
    if (c->pass == 1)
        rep_note_alloc(c, size, (uint32_t)agg);
    uint64_t slot;
    int added;
    /* One probe for the common case (a fresh address) instead of a remove
     * that misses and then a put. */
    uint64_t *v = ht_table_upsert(&r->live, addr, REP_NONE, &added);
    if (v == NULL)
        return -1;
    if (!added) {                                 /* reordered across threads */
        rep_remove_live(r, *v);
        if (c->pass == 1)
            r->replaced++;
    }
    if (r->free_slot != REP_NONE) {
        slot = r->free_slot;
        r->free_slot = r->slots[slot].next_free;
    } else {
        if (r->nslots >= REP_NONE || !REP_PUSH(r->slots, r->nslots, r->cslots))
            return -1;
        slot = r->nslots++;
    }
    r->slots[slot] = (rep_slot){size, (uint32_t)agg, REP_NONE};
    *v = slot;          /* valid: nothing was inserted into r->live since */
    r->current += size;
    r->live_count++;
    if (c->pass == 1 && r->current > r->peak_bytes) {
        r->peak_bytes = r->current;
        r->peak_count = r->live_count;
        r->peak_event = r->events;
        r->peak_after_t = r->last_sample_t;
        r->peak_rss = r->last_sample_rss;
    }
    return 0;
}

static void
rep_add_sample(ht_rep *r, uint64_t t, uint64_t rss, uint64_t traced)
{
    if (rss > r->max_rss)
        r->max_rss = rss;
    r->last_sample_t = t;
    r->last_sample_rss = rss;
    if (r->sample_skip > 0) {
        r->sample_skip--;
        return;
    }
    if (r->nsamples == HT_REP_MAX_SAMPLES) {    /* keep every other one from now on */
        for (size_t i = 0; i < r->nsamples / 2; i++)
            r->samples[i] = r->samples[2 * i];
        r->nsamples /= 2;
        r->sample_stride *= 2;
    }
    if (!REP_PUSH(r->samples, r->nsamples, r->csamples))
        return;                                  /* the time series is thinner */
    r->samples[r->nsamples++] = (rep_sample){t, rss, traced};
    r->sample_skip = r->sample_stride - 1;
}

static void
rep_add_tick(ht_rep *r, uint64_t t)
{
    if (r->tick_skip > 0) {
        r->tick_skip--;
        return;
    }
    if (r->nticks == HT_REP_MAX_TICKS) {       /* keep every other one from now on */
        for (size_t i = 0; i < r->nticks / 2; i++)
            r->ticks[i] = r->ticks[2 * i + 1];
        r->nticks /= 2;
        r->tick_stride *= 2;
    }
    if (!REP_PUSH(r->ticks, r->nticks, r->cticks))
        return;                                  /* a coarser timeline */
    r->ticks[r->nticks++] = (rep_tick){t, r->events};
    r->tick_skip = r->tick_stride - 1;
}

/* Timeline replay: the live blocks by node at each checkpoint reached. */
static void
rep_checkpoints(rep_ctx *c)
{
    ht_rep *r = c->r;
    while (c->icp < c->ncp && r->events >= c->cps[c->icp]) {
        uint64_t *out = c->out + c->icp * r->nnodes;
        for (size_t i = 0; i < r->nslots; i++)
            if (r->slots[i].agg != REP_NONE)
                out[r->agg_node[r->slots[i].agg]] += r->slots[i].size;
        c->icp++;
    }
}

/* ---- records ---------------------------------------------------------------------- */

static uint32_t
rep_u32(ht_rd *rd, uint64_t v)
{
    if (v > UINT32_MAX)
        ht_rd_fail(rd, "id larger than 32 bits");
    return (uint32_t)v;
}

static uint32_t
rep_rd_str(ht_rep *r, ht_rd *rd)
{
    size_t n;
    const uint8_t *p = ht_rd_blob(rd, &n);
    if (p == NULL)
        return REP_NONE;
    uint32_t id = rep_intern(r, p, n);
    if (id == REP_NONE)
        ht_rd_fail(rd, "out of memory");
    return id;
}

/* Definitions (read in pass 1 only). */
static void
rep_rd_definition(rep_ctx *c, ht_rd *rd, int type)
{
    ht_rep *r = c->r;
    if (type == HT_CAP_STACK) {
        uint32_t id = rep_u32(rd, ht_rd_varint(rd));
        uint64_t parent1 = ht_rd_varint(rd);
        uint32_t frame = rep_u32(rd, ht_rd_varint(rd));
        if (rd->error)
            return;
        if (parent1 > (uint64_t)UINT32_MAX)
            return ht_rd_fail(rd, "stack parent out of range");
        int added;
        uint64_t *v = ht_table_upsert(&r->raw_index, (uint64_t)id + 1, r->nraws, &added);
        if (v == NULL || (added && !REP_PUSH(r->raws, r->nraws, r->craws)))
            return ht_rd_fail(rd, "out of memory");
        if (added)
            r->nraws++;
        r->raws[*v] = (rep_rawstack){parent1 == 0 ? REP_NONE : (uint32_t)(parent1 - 1), frame};
    } else if (type == HT_CAP_FRAME) {
        uint32_t id = rep_u32(rd, ht_rd_varint(rd));
        uint32_t file = rep_rd_str(r, rd);
        uint32_t func = rep_rd_str(r, rd);
        uint32_t line = rep_u32(rd, ht_rd_varint(rd));
        if (rd->error)
            return;
        int added;
        uint64_t *v = ht_table_upsert(&r->frame_index, (uint64_t)id + 1, r->nframes, &added);
        if (v == NULL || (added && !REP_PUSH(r->frames, r->nframes, r->cframes)))
            return ht_rd_fail(rd, "out of memory");
        if (added)
            r->nframes++;
        r->frames[*v] = (rep_frame){file, func, line};
    } else if (type == HT_CAP_THREAD) {
        uint32_t id = rep_u32(rd, ht_rd_varint(rd));
        uint32_t name = rep_rd_str(r, rd);
        rep_thread *t = rd->error ? NULL : rep_thread_of(r, id);
        if (t != NULL)
            t->name = name;
    } else if (type == HT_CAP_SAMPLE) {
        uint64_t t = ht_rd_varint(rd), rss = ht_rd_varint(rd), traced = ht_rd_varint(rd);
        if (!rd->error) {
            rep_add_sample(r, t, rss, traced);
            rep_add_tick(r, t);             /* written the moment it was taken */
            if (t > r->duration_ns)
                r->duration_ns = t;
        }
    } else if (type == HT_CAP_MARKER) {
        uint64_t t = ht_rd_varint(rd);
        uint32_t label = rep_rd_str(r, rd);
        if (rd->error)
            return;
        rep_add_tick(r, t);
        if (r->nmarkers < HT_REP_MAX_MARKERS && REP_PUSH(r->markers, r->nmarkers, r->cmarkers))
            r->markers[r->nmarkers++] = (rep_marker){t, label};
        else
            r->markers_dropped++;
    }
}

/* Skips a definition's fields (pass 2). */
static void
rep_skip_definition(ht_rd *rd, int type)
{
    size_t n;
    switch (type) {
    case HT_CAP_STACK: ht_rd_varint(rd); ht_rd_varint(rd); ht_rd_varint(rd); break;
    case HT_CAP_FRAME: ht_rd_varint(rd); ht_rd_blob(rd, &n); ht_rd_blob(rd, &n); ht_rd_varint(rd); break;
    case HT_CAP_THREAD: ht_rd_varint(rd); ht_rd_blob(rd, &n); break;
    case HT_CAP_SAMPLE: ht_rd_varint(rd); ht_rd_varint(rd); ht_rd_varint(rd); break;
    case HT_CAP_MARKER: ht_rd_varint(rd); ht_rd_blob(rd, &n); break;
    }
}

static void
rep_rd_header(rep_ctx *c, ht_rd *rd)
{
    ht_rep *r = c->r;
    r->pid = ht_rd_varint(rd);
    r->start_ns = ht_rd_varint(rd);
    r->sample_bytes = ht_rd_varint(rd);
    r->interval_ns = ht_rd_varint(rd);
    r->cmdline = rep_rd_str(r, rd);
}

/* Decodes one block body. Returns 1 to go on, 0 when pass 2 reached its
 * event, -1 on corruption (c->fault set). */
static int
rep_block(rep_ctx *c, const uint8_t *body, size_t n, int first)
{
    ht_rep *r = c->r;
    ht_rd rd;
    ht_rd_init(&rd, body, n);
    c->thread = ht_rd_u32(&rd);
    uint64_t t = ht_rd_u64(&rd);
    if (t > r->duration_ns && c->pass == 1)
        r->duration_ns = t;
    uint64_t abase[HT_CAP_CLASSES] = {0}, fbase[HT_CAP_CLASSES] = {0};
    uint32_t stack = 0;
    int seen_header = 0;
    while (!rd.error && ht_rd_left(&rd) > 0) {
        if (c->pass == 2 && r->events >= c->stop_event)
            return 0;
        if (c->cps != NULL)
            rep_checkpoints(c);
        int type = ht_rd_u8(&rd);
        if (first && !seen_header && type != HT_CAP_HEADER) {
            c->fault = "the first block has no header";
            return -1;
        }
        if (type == HT_CAP_HEADER && (!first || seen_header)) {
            c->fault = "a second header";
            return -1;
        }
        if (type == HT_CAP_ALLOC || type == HT_CAP_ALLOC_SAME) {
            uint64_t size = ht_rd_varint(&rd);
            unsigned k = ht_cap_class(size);
            uint64_t addr = abase[k] += (uint64_t)ht_rd_svarint(&rd);
            if (type == HT_CAP_ALLOC)
                stack += (uint32_t)ht_rd_svarint(&rd);
            if (!rd.error && addr == 0) {        /* the live table's empty key */
                c->fault = "an allocation at address 0";
                return -1;
            }
            if (!rd.error && rep_alloc(c, addr, size, stack) < 0) {
                if (c->fault == NULL)
                    c->fault = "out of memory";
                return -1;
            }
        } else if (type >= HT_CAP_FREE && type < HT_CAP_FREE + (int)HT_CAP_CLASSES) {
            uint64_t addr = fbase[type - HT_CAP_FREE] += (uint64_t)ht_rd_svarint(&rd);
            if (!rd.error)
                rep_free(c, addr);
        } else if (type >= HT_CAP_STACK && type <= HT_CAP_MARKER) {
            if (c->pass == 1)
                rep_rd_definition(c, &rd, type);
            else
                rep_skip_definition(&rd, type);
        } else if (type == HT_CAP_HEADER) {
            seen_header = 1;
            rep_rd_header(c, &rd);
        } else if (type == HT_CAP_END) {
            uint64_t end = ht_rd_varint(&rd);
            if (!rd.error && c->pass == 1) {
                r->clean_end = 1;
                if (end > r->duration_ns)
                    r->duration_ns = end;
            }
        } else {
            c->fault = "unknown record type";
            return -1;
        }
    }
    if (rd.error) {
        c->fault = rd.error;
        return -1;
    }
    if (c->pass == 1)
        rep_add_tick(r, t);
    return 1;
}

/* ---- file ---------------------------------------------------------------------------- */

/* The body of a compressed block (data = raw_len:u32 zlib stream) into
 * *out (grown as needed). NULL, or why the data is not a valid block. */
static const char *
rep_inflate(const uint8_t *data, size_t n, uint8_t **out, size_t *cap, size_t *len)
{
#ifdef HT_HAVE_ZLIB
    if (n < 4)
        return "a compressed block without its length";
    size_t raw = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 | (size_t)data[3] << 24;
    if (raw < 12 || raw > HT_CAP_MAX_BLOCK)
        return "a compressed block of a bad length";
    if (raw > *cap) {
        uint8_t *nb = realloc(*out, raw);
        if (nb == NULL)
            return "out of memory";
        *out = nb;
        *cap = raw;
    }
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -15) != Z_OK)     /* raw deflate (capture.h) */
        return "out of memory";
    z.next_in = (Bytef *)(uintptr_t)(data + 4);
    z.avail_in = (uInt)(n - 4);
    z.next_out = *out;
    z.avail_out = (uInt)raw;
    int zr = inflate(&z, Z_FINISH);
    int ok = zr == Z_STREAM_END && z.total_out == raw && z.avail_in == 0;
    inflateEnd(&z);
    if (!ok)
        return "a compressed block that does not inflate to its length";
    *len = raw;
    return NULL;
#else
    (void)data; (void)n; (void)out; (void)cap; (void)len;
    return NULL;
#endif
}

/* One pass over the file. 0, or -1 with a Python exception. */
static int
rep_pass(rep_ctx *c, const char *path)
{
    ht_rep *r = c->r;
    FILE *f = fopen(path, "rb");
    uint8_t *body = NULL;
    uint8_t *raw = NULL;        /* an inflated body */
    size_t raw_cap = 0;
    int rc = -1;
    if (f == NULL) {
        ht_error_os(path);
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) < 0) {
        ht_error_os(path);
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        ht_error("%s: not a heaptrail capture (not a regular file)", path);
        goto done;
    }
    uint64_t size = (uint64_t)st.st_size;
    uint8_t head[HT_CAP_MAGIC_LEN + 4];
    size_t got = fread(head, 1, sizeof head, f);
    if (got < HT_CAP_MAGIC_LEN || memcmp(head, HT_CAP_MAGIC, HT_CAP_MAGIC_LEN) != 0) {
        ht_error("%s: not a heaptrail capture", path);
        goto done;
    }
    if (got < sizeof head) {
        ht_error("%s: truncated capture: it ends inside its header", path);
        goto done;
    }
    uint32_t version = (uint32_t)head[8] | (uint32_t)head[9] << 8 | (uint32_t)head[10] << 16 |
                       (uint32_t)head[11] << 24;
    if (version != HT_CAP_VERSION) {
        ht_error("%s: capture format %u is not supported (this heaptrail reads %u%s)", path,
                 version, HT_CAP_VERSION, version > HT_CAP_VERSION ? ": written by a newer heaptrail"
                 : ": written by an older heaptrail, record it again");
        goto done;
    }
    body = malloc(HT_CAP_BLOCK_BYTES * 2);
    size_t body_cap = HT_CAP_BLOCK_BYTES * 2;
    if (body == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    uint64_t off = sizeof head;
    for (int first = 1;; first = 0) {
        uint8_t bh[8];
        got = fread(bh, 1, 8, f);
        if (got == 0 && !first)
            break;                                   /* clean end of the blocks */
        if (got < 8) {
            r->truncated = first ? "it ends before its header block" : "the last block is incomplete";
            break;
        }
        uint32_t word = (uint32_t)bh[0] | (uint32_t)bh[1] << 8 | (uint32_t)bh[2] << 16 | (uint32_t)bh[3] << 24;
        uint32_t len = word & ~HT_CAP_COMPRESSED;
        uint32_t sum = (uint32_t)bh[4] | (uint32_t)bh[5] << 8 | (uint32_t)bh[6] << 16 | (uint32_t)bh[7] << 24;
        int last = off + 8 + len >= size;
        if (off + 8 + len > size) {
            r->truncated = "the last block is incomplete";
            break;
        }
        if (len < ((word & HT_CAP_COMPRESSED) ? 5u : 12u) || len > HT_CAP_MAX_BLOCK) {
            ht_error("%s: corrupted capture: bad block length at offset %llu", path,
                     (unsigned long long)off);
            goto done;
        }
        if (len > body_cap) {
            uint8_t *nb = realloc(body, len);
            if (nb == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            body = nb;
            body_cap = len;
        }
        if (fread(body, 1, len, f) != len) {
            if (ferror(f)) {
                ht_error_os(path);
                goto done;
            }
            r->truncated = "the last block is incomplete";
            break;
        }
        if (ht_cap_checksum(word, body, len) != sum) {
            if (last && !first) {
                r->truncated = "the last block is damaged";
                break;
            }
            ht_error("%s: corrupted capture: checksum mismatch in the block at offset %llu", path,
                     (unsigned long long)off);
            goto done;
        }
        const uint8_t *blk = body;
        size_t blen = len;
        if (word & HT_CAP_COMPRESSED) {
            if (!ht_cap_have_zlib()) {
                ht_error("%s: the capture's blocks are compressed and this heaptrail was built "
                         "without zlib", path);
                goto done;
            }
            const char *why = rep_inflate(body, len, &raw, &raw_cap, &blen);
            if (why != NULL) {
                ht_error("%s: corrupted capture: %s in the block at offset %llu", path, why,
                         (unsigned long long)off);
                goto done;
            }
            blk = raw;
        }
        int more = rep_block(c, blk, blen, first);
        if (more < 0) {
            ht_error("%s: corrupted capture: %s in the block at offset %llu", path, c->fault,
                     (unsigned long long)off);
            goto done;
        }
        if (more == 0)
            break;
        off += 8 + len;
    }
    rc = 0;
done:
    free(body);
    free(raw);
    fclose(f);
    return rc;
}

/* ---- canonical tree ------------------------------------------------------------------------ */

static uint32_t
rep_cframe(ht_rep *r, rep_frame fr)
{
    uint64_t key = ht_hash64(((uint64_t)fr.file << 32 | fr.func) ^ ht_hash64(fr.line)) | 1;
    for (;;) {
        uint64_t *v = ht_table_find(&r->cframe_index, key);
        if (v == NULL)
            break;
        rep_frame o = r->cframes_[*v];
        if (o.file == fr.file && o.func == fr.func && o.line == fr.line)
            return (uint32_t)*v;
        key = ht_hash64(key) | 1;
    }
    if (!REP_PUSH(r->cframes_, r->ncframes, r->ccframes) ||
        ht_table_put(&r->cframe_index, key, r->ncframes) < 0)
        return REP_NONE;
    r->cframes_[r->ncframes] = fr;
    return (uint32_t)r->ncframes++;
}

static uint32_t
rep_cnode(ht_rep *r, uint32_t parent, uint32_t cframe)
{
    uint64_t key = ((uint64_t)parent << 32 | cframe) + 1;
    uint64_t *v = ht_table_find(&r->node_index, key);
    if (v != NULL)
        return (uint32_t)*v;
    if (!REP_PUSH(r->nodes, r->nnodes, r->cnodes) || ht_table_put(&r->node_index, key, r->nnodes) < 0)
        return REP_NONE;
    r->nodes[r->nnodes] = (rep_node){parent, cframe};
    return (uint32_t)r->nnodes++;
}

/* The canonical frame of a raw frame id ("?" frames when undefined). */
static uint32_t
rep_cframe_of_raw(ht_rep *r, uint32_t raw_frame, uint32_t unknown)
{
    uint64_t *v = ht_table_find(&r->frame_index, (uint64_t)raw_frame + 1);
    rep_frame fr = v ? r->frames[*v] : (rep_frame){unknown, unknown, 0};
    return rep_cframe(r, fr);
}

/* Canonical node of a raw stack id. `memo` caches raws[] -> node; chains
 * are walked iteratively (a corrupted file may hold a cycle: the walk
 * stops after nraws steps). REP_NONE when out of memory. */
static uint32_t
rep_canon_stack(ht_rep *r, uint32_t raw, uint32_t *memo, uint32_t *chain, uint32_t unknown)
{
    if (raw == HT_CAP_NO_STACK)
        return 0;
    size_t depth = 0;
    uint32_t node = 0;
    for (uint32_t id = raw; id != REP_NONE && depth <= r->nraws;) {
        uint64_t *v = ht_table_find(&r->raw_index, (uint64_t)id + 1);
        if (v == NULL) {                   /* undefined: one "?" frame at the root */
            if (depth == 0)
                return rep_cnode(r, 0, rep_cframe_of_raw(r, REP_NONE, unknown));
            break;
        }
        if (memo[*v] != REP_NONE) {
            node = memo[*v];
            break;
        }
        chain[depth++] = (uint32_t)*v;
        id = r->raws[*v].parent;
    }
    while (depth > 0) {
        uint32_t i = chain[--depth];
        uint32_t cf = rep_cframe_of_raw(r, r->raws[i].frame, unknown);
        if (cf == REP_NONE || (node = rep_cnode(r, node, cf)) == REP_NONE)
            return REP_NONE;
        memo[i] = node;
    }
    return node;
}

static int
rep_build_tree(ht_rep *r)
{
    uint32_t unknown = rep_intern(r, (const uint8_t *)"?", 1);
    uint32_t *memo = malloc((r->nraws + 1) * sizeof(uint32_t));
    uint32_t *chain = malloc((r->nraws + 2) * sizeof(uint32_t));
    r->agg_node = malloc((r->naggs + 1) * sizeof(uint32_t));
    int rc = -1;
    if (unknown == REP_NONE || memo == NULL || chain == NULL || r->agg_node == NULL ||
        ht_table_init(&r->cframe_index, r->nframes + 1, 1) < 0 ||
        ht_table_init(&r->node_index, r->nraws + 1, 1) < 0)
        goto done;
    for (size_t i = 0; i < r->nraws; i++)
        memo[i] = REP_NONE;
    if (rep_cnode(r, 0, REP_NONE) != 0)           /* the root */
        goto done;
    for (size_t a = 0; a < r->naggs; a++)
        if ((r->agg_node[a] = rep_canon_stack(r, r->aggs[a].raw, memo, chain, unknown)) == REP_NONE)
            goto done;
    for (int m = 0; m < HT_REP_METRICS; m++) {
        r->nbytes[m] = calloc(r->nnodes, sizeof(uint64_t));
        r->ncount[m] = calloc(r->nnodes, sizeof(uint64_t));
        if (r->nbytes[m] == NULL || r->ncount[m] == NULL)
            goto done;
    }
    for (size_t a = 0; a < r->naggs; a++)
        for (int m = 0; m < HT_REP_METRICS; m++) {
            r->nbytes[m][r->agg_node[a]] += r->aggs[a].bytes[m];
            r->ncount[m][r->agg_node[a]] += r->aggs[a].count[m];
        }
    rc = 0;
done:
    free(memo);
    free(chain);
    if (rc < 0)
        PyErr_NoMemory();
    return rc;
}

/* Folds the live table into metric m of the aggregates. */
static void
rep_fold_live(ht_rep *r, int m)
{
    for (size_t i = 0; i < r->nslots; i++) {
        rep_slot *s = &r->slots[i];
        if (s->agg == REP_NONE)
            continue;
        r->aggs[s->agg].bytes[m] += s->size;
        r->aggs[s->agg].count[m]++;
    }
}

static void
rep_reset_live(ht_rep *r)
{
    ht_table_clear(&r->live);
    r->nslots = 0;
    r->free_slot = REP_NONE;
    r->current = 0;
    r->live_count = 0;
    r->events = 0;
}

void
ht_rep_free(ht_rep *r)
{
    if (r == NULL)
        return;
    ht_buf_free(&r->arena);
    ht_table_free(&r->str_index);
    ht_table_free(&r->frame_index);
    ht_table_free(&r->raw_index);
    ht_table_free(&r->agg_index);
    ht_table_free(&r->live);
    ht_table_free(&r->thread_index);
    ht_table_free(&r->cframe_index);
    ht_table_free(&r->node_index);
    free(r->strs); free(r->frames); free(r->raws); free(r->aggs); free(r->slots);
    free(r->threads); free(r->samples); free(r->markers); free(r->cframes_); free(r->nodes);
    free(r->agg_node);
    free(r->ticks);
    free(r->path);
    for (int m = 0; m < HT_REP_METRICS; m++) {
        free(r->nbytes[m]);
        free(r->ncount[m]);
    }
    free(r);
}

ht_rep *
ht_rep_read(const char *path)
{
    ht_rep *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return (ht_rep *)PyErr_NoMemory();
    ht_buf_init(&r->arena);
    r->free_slot = REP_NONE;
    r->sample_stride = 1;
    r->tick_stride = 1;
    if ((r->path = strdup(path)) == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    r->cmdline = REP_NONE;
    if (ht_table_init(&r->str_index, 64, 1) < 0 || ht_table_init(&r->frame_index, 64, 1) < 0 ||
        ht_table_init(&r->raw_index, 64, 1) < 0 || ht_table_init(&r->agg_index, 64, 1) < 0 ||
        ht_table_init(&r->live, 1024, 1) < 0 || ht_table_init(&r->thread_index, 8, 1) < 0) {
        PyErr_NoMemory();
        goto fail;
    }
    rep_ctx c = {r, 1, 0, 0, NULL, NULL, 0, 0, NULL};
    if (rep_pass(&c, path) < 0)
        goto fail;
    r->naggs_read = r->naggs;
    rep_fold_live(r, HT_REP_LEAKS);
    r->leak_bytes = r->current;
    r->leak_count = r->live_count;
    /* pass 2: replay to the peak (skipped when the end is the peak) */
    if (r->peak_event > 0 && r->peak_event == r->events) {
        rep_fold_live(r, HT_REP_PEAK);
    } else if (r->peak_event > 0) {
        const char *truncated = r->truncated;
        rep_reset_live(r);
        rep_ctx c2 = {r, 2, r->peak_event, 0, NULL, NULL, 0, 0, NULL};
        if (rep_pass(&c2, path) < 0)
            goto fail;
        if (r->events != r->peak_event) {
            ht_error("%s: the capture changed while it was being read", path);
            goto fail;
        }
        r->truncated = truncated;
        rep_fold_live(r, HT_REP_PEAK);
    }
    ht_table_free(&r->live);                 /* no longer needed: give it back */
    free(r->slots);
    r->slots = NULL;
    if (rep_build_tree(r) < 0)
        goto fail;
    if (!r->clean_end && r->truncated == NULL)
        r->truncated = "it has no end record (the program did not stop the capture)";
    return r;
fail:
    ht_rep_free(r);
    return NULL;
}

/* ---- queries ------------------------------------------------------------------------------ */

static int
rep_metric(const char *name)
{
    if (strcmp(name, "total") == 0)
        return HT_REP_TOTAL;
    if (strcmp(name, "peak") == 0)
        return HT_REP_PEAK;
    if (strcmp(name, "leaks") == 0)
        return HT_REP_LEAKS;
    ht_error("unknown report %s (peak, leaks or total)", name);
    return -1;
}

/* Inclusive sums of metric m over the tree: children have larger indexes
 * than their parents, so one backward sweep adds each node to its parent. */
static int
rep_inclusive(const ht_rep *r, int m, uint64_t **bytes, uint64_t **count)
{
    *bytes = malloc(r->nnodes * sizeof(uint64_t));
    *count = malloc(r->nnodes * sizeof(uint64_t));
    if (*bytes == NULL || *count == NULL) {
        free(*bytes);
        free(*count);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(*bytes, r->nbytes[m], r->nnodes * sizeof(uint64_t));
    memcpy(*count, r->ncount[m], r->nnodes * sizeof(uint64_t));
    for (size_t n = r->nnodes - 1; n > 0; n--) {
        (*bytes)[r->nodes[n].parent] += (*bytes)[n];
        (*count)[r->nodes[n].parent] += (*count)[n];
    }
    return 0;
}

typedef struct { uint64_t bytes, count; uint32_t node; } rep_group;

static int rep_by_count;   /* qsort has no context argument: the sort key */

static int
rep_group_cmp(const void *a, const void *b)
{
    const rep_group *x = a, *y = b;
    uint64_t x1 = rep_by_count ? x->count : x->bytes, y1 = rep_by_count ? y->count : y->bytes;
    uint64_t x2 = rep_by_count ? x->bytes : x->count, y2 = rep_by_count ? y->bytes : y->count;
    if (x1 != y1)
        return x1 < y1 ? 1 : -1;
    if (x2 != y2)
        return x2 < y2 ? 1 : -1;
    return x->node < y->node ? -1 : x->node > y->node;
}

/* Group key of node n for a grouping: 0 stack, 1 line, 2 function, 3 file. */
static uint64_t
rep_group_key(const ht_rep *r, uint32_t n, int by)
{
    if (n == 0)
        return UINT64_MAX;
    rep_frame fr = r->cframes_[r->nodes[n].frame];
    switch (by) {
    case 0: return (uint64_t)n + 1;
    case 1: return (uint64_t)r->nodes[n].frame + 1;
    case 2: return ((uint64_t)fr.file << 32 | fr.func) + 1;
    default: return (uint64_t)fr.file + 1;
    }
}

/* ---- pprof (profile.proto, uncompressed) ---------------------------------------------------- */

static void
pb_key(ht_buf *b, unsigned field, unsigned wire)
{
    ht_buf_varint(b, (uint64_t)field << 3 | wire);
}

static void
pb_uint(ht_buf *b, unsigned field, uint64_t v)
{
    pb_key(b, field, 0);
    ht_buf_varint(b, v);
}

static void
pb_msg(ht_buf *b, unsigned field, ht_buf *sub)
{
    pb_key(b, field, 2);
    ht_buf_blob(b, sub->data, sub->len);
    if (sub->error)
        b->error = 1;
    sub->len = 0;
}

enum { PB_EMPTY, PB_ALLOC_OBJECTS, PB_COUNT, PB_ALLOC_SPACE, PB_BYTES, PB_INUSE_OBJECTS,
       PB_INUSE_SPACE, PB_SPACE, PB_FIXED };
static const char *const pb_fixed[PB_FIXED] = {
    "", "alloc_objects", "count", "alloc_space", "bytes", "inuse_objects", "inuse_space", "space",
};

static void
pb_value_type(ht_buf *b, ht_buf *sub, unsigned field, uint64_t type, uint64_t unit)
{
    pb_uint(sub, 1, type);
    pb_uint(sub, 2, unit);
    pb_msg(b, field, sub);
}

static void
pb_samples(const ht_rep *r, int inuse, ht_buf *b, ht_buf *sub, ht_buf *packed)
{
    for (uint32_t n = 0; n < r->nnodes; n++) {
        uint64_t v[4] = {r->ncount[HT_REP_TOTAL][n], r->nbytes[HT_REP_TOTAL][n],
                         r->ncount[inuse][n], r->nbytes[inuse][n]};
        if ((v[0] | v[1] | v[2] | v[3]) == 0)
            continue;
        for (uint32_t m = n; m != 0; m = r->nodes[m].parent)   /* leaf first */
            ht_buf_varint(packed, (uint64_t)r->nodes[m].frame + 1);
        if (packed->len > 0)
            pb_msg(sub, 1, packed);
        for (int i = 0; i < 4; i++)
            ht_buf_varint(packed, v[i]);
        pb_msg(sub, 2, packed);
        pb_msg(b, 2, sub);
    }
}

/* Functions (by file and name) and one location per canonical frame. */
static int
pb_locations(const ht_rep *r, ht_buf *b, ht_buf *sub, ht_buf *line)
{
    ht_table fn;
    if (ht_table_init(&fn, r->ncframes + 1, 1) < 0)
        return -1;
    uint64_t next_id = 1;
    for (size_t cf = 0; cf < r->ncframes; cf++) {
        rep_frame fr = r->cframes_[cf];
        int added;
        uint64_t *id = ht_table_upsert(&fn, ((uint64_t)fr.file << 32 | fr.func) + 1, next_id, &added);
        if (id == NULL) {
            ht_table_free(&fn);
            return -1;
        }
        if (added) {
            next_id++;
            pb_uint(sub, 1, *id);
            pb_uint(sub, 2, PB_FIXED + (uint64_t)fr.func);
            pb_uint(sub, 3, PB_FIXED + (uint64_t)fr.func);
            pb_uint(sub, 4, PB_FIXED + (uint64_t)fr.file);
            pb_msg(b, 5, sub);
        }
        pb_uint(line, 1, *id);
        pb_uint(line, 2, fr.line);
        pb_uint(sub, 1, cf + 1);
        pb_msg(sub, 4, line);
        pb_msg(b, 4, sub);
    }
    ht_table_free(&fn);
    return 0;
}

/* Encodes the report as a profile.proto message into b. 0, or -1 (no
 * memory; no exception set). */
static int
rep_pprof(const ht_rep *r, int inuse, ht_buf *b)
{
    ht_buf sub, packed;
    ht_buf_init(&sub);
    ht_buf_init(&packed);
    pb_value_type(b, &sub, 1, PB_ALLOC_OBJECTS, PB_COUNT);
    pb_value_type(b, &sub, 1, PB_ALLOC_SPACE, PB_BYTES);
    pb_value_type(b, &sub, 1, PB_INUSE_OBJECTS, PB_COUNT);
    pb_value_type(b, &sub, 1, PB_INUSE_SPACE, PB_BYTES);
    pb_samples(r, inuse, b, &sub, &packed);
    int rc = pb_locations(r, b, &sub, &packed);
    for (int i = 0; i < PB_FIXED; i++) {
        pb_key(b, 6, 2);
        ht_buf_blob(b, pb_fixed[i], strlen(pb_fixed[i]));
    }
    for (size_t s = 0; s < r->nstrs; s++) {
        pb_key(b, 6, 2);
        ht_buf_blob(b, r->arena.data + r->strs[s].off, r->strs[s].len);
    }
    pb_uint(b, 9, r->start_ns);
    pb_uint(b, 10, r->duration_ns);
    pb_value_type(b, &sub, 11, PB_SPACE, PB_BYTES);
    pb_uint(b, 12, r->sample_bytes ? r->sample_bytes : 1);
    pb_uint(b, 14, PB_INUSE_SPACE);
    if (sub.error || packed.error || b->error)
        rc = -1;
    ht_buf_free(&sub);
    ht_buf_free(&packed);
    return rc;
}

/* ---- Python type -------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    ht_rep *rep;
} RepObject;

static PyObject *
rep_frame_tuple(const ht_rep *r, uint32_t n)
{
    if (n == 0)
        return Py_BuildValue("(OOO)", Py_None, Py_None, Py_None);
    rep_frame fr = r->cframes_[r->nodes[n].frame];
    return Py_BuildValue("(NNI)", rep_pystr(r, fr.func), rep_pystr(r, fr.file), fr.line);
}

static PyObject *
rep_py_info(RepObject *self, PyObject *unused)
{
    ht_rep *r = self->rep;
    PyObject *cmd = rep_pystr(r, r->cmdline);
    return Py_BuildValue(
        "{sKsKsKsKsNsssKsKsKsKsKsKsKsKsKsKsKsnsKsn}",
        "pid", (unsigned long long)r->pid, "start_ns", (unsigned long long)r->start_ns,
        "sample_bytes", (unsigned long long)r->sample_bytes,
        "interval_ns", (unsigned long long)r->interval_ns, "cmdline", cmd,
        "truncated", r->truncated, "duration_ns", (unsigned long long)r->duration_ns,
        "allocations", (unsigned long long)r->allocs, "frees", (unsigned long long)r->frees,
        "unmatched_frees", (unsigned long long)r->unmatched_frees,
        "replaced", (unsigned long long)r->replaced,
        "total_bytes", (unsigned long long)r->total_bytes,
        "peak_bytes", (unsigned long long)r->peak_bytes,
        "peak_count", (unsigned long long)r->peak_count,
        "leaked_bytes", (unsigned long long)r->leak_bytes,
        "leaked_count", (unsigned long long)r->leak_count,
        "max_rss", (unsigned long long)r->max_rss, "nodes", (Py_ssize_t)r->nnodes,
        "markers_dropped", (unsigned long long)r->markers_dropped,
        "threads", (Py_ssize_t)r->nthreads);
}

/* rows(metric, by, sort, top) -> [(bytes, count, node, func, file, line)] */
static PyObject *
rep_py_rows(RepObject *self, PyObject *args)
{
    const char *metric_s, *by_s, *sort_s;
    Py_ssize_t top;
    if (!PyArg_ParseTuple(args, "sssn:rows", &metric_s, &by_s, &sort_s, &top))
        return NULL;
    int m = rep_metric(metric_s);
    static const char *const bys[] = {"stack", "line", "function", "file"};
    int by = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(by_s, bys[i]) == 0)
            by = i;
    if (m < 0)
        return NULL;
    if (by < 0)
        return ht_error("unknown grouping %s (line, function, file or stack)", by_s);
    if (strcmp(sort_s, "size") != 0 && strcmp(sort_s, "count") != 0)
        return ht_error("unknown sort %s (size or count)", sort_s);
    ht_rep *r = self->rep;
    ht_table idx;
    rep_group *g = NULL;
    size_t ng = 0, cg = 0;
    PyObject *out = NULL;
    if (ht_table_init(&idx, 64, 1) < 0)
        return PyErr_NoMemory();
    for (uint32_t n = 0; n < r->nnodes; n++) {
        if (r->nbytes[m][n] == 0 && r->ncount[m][n] == 0)
            continue;
        int added;
        uint64_t *v = ht_table_upsert(&idx, rep_group_key(r, n, by), ng, &added);
        if (v == NULL || (added && !REP_PUSH(g, ng, cg))) {
            PyErr_NoMemory();
            goto done;
        }
        if (added)
            g[ng++] = (rep_group){0, 0, n};
        g[*v].bytes += r->nbytes[m][n];
        g[*v].count += r->ncount[m][n];
    }
    rep_by_count = sort_s[0] == 'c';
    if (ng > 0)
        qsort(g, ng, sizeof(*g), rep_group_cmp);
    if (top > 0 && (size_t)top < ng)
        ng = (size_t)top;
    if ((out = PyList_New((Py_ssize_t)ng)) == NULL)
        goto done;
    for (size_t i = 0; i < ng; i++) {
        PyObject *fr = rep_frame_tuple(r, g[i].node), *row = NULL;
        if (fr != NULL) {
            PyObject *line = by >= 2 ? Py_None : PyTuple_GET_ITEM(fr, 2);
            PyObject *func = by == 3 ? Py_None : PyTuple_GET_ITEM(fr, 0);
            row = Py_BuildValue("(KKIOOO)", (unsigned long long)g[i].bytes,
                                (unsigned long long)g[i].count, g[i].node, func,
                                PyTuple_GET_ITEM(fr, 1), line);
            Py_DECREF(fr);
        }
        if (row == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, row);
    }
done:
    free(g);
    ht_table_free(&idx);
    return out;
}

static int
rep_node_arg(const ht_rep *r, PyObject *arg, uint32_t *n)
{
    unsigned long v = PyLong_AsUnsignedLong(arg);
    if (PyErr_Occurred())
        return -1;
    if (v >= r->nnodes) {
        ht_error("no stack node %lu", v);
        return -1;
    }
    *n = (uint32_t)v;
    return 0;
}

/* stack(node) -> [(func, file, line)], innermost first */
static PyObject *
rep_py_stack(RepObject *self, PyObject *arg)
{
    uint32_t n;
    if (rep_node_arg(self->rep, arg, &n) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    for (; out != NULL && n != 0; n = self->rep->nodes[n].parent) {
        PyObject *t = rep_frame_tuple(self->rep, n);
        if (t == NULL || PyList_Append(out, t) < 0)
            Py_CLEAR(out);
        Py_XDECREF(t);
    }
    return out;
}

/* tree(metric) -> [(node, parent, func, file, line, self_bytes, self_count,
 * bytes, count)] for the nodes with something under them, parents first. */
static PyObject *
rep_py_tree(RepObject *self, PyObject *args)
{
    const char *metric_s;
    if (!PyArg_ParseTuple(args, "s:tree", &metric_s))
        return NULL;
    int m = rep_metric(metric_s);
    if (m < 0)
        return NULL;
    ht_rep *r = self->rep;
    uint64_t *ib, *ic;
    if (rep_inclusive(r, m, &ib, &ic) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    for (uint32_t n = 0; out != NULL && n < r->nnodes; n++) {
        if (ib[n] == 0 && ic[n] == 0)
            continue;
        PyObject *fr = rep_frame_tuple(r, n), *row = NULL;
        if (fr != NULL) {
            PyObject *parent = n == 0 ? Py_NewRef(Py_None) : PyLong_FromUnsignedLong(r->nodes[n].parent);
            row = parent ? Py_BuildValue("(INOOOKKKK)", n, parent, PyTuple_GET_ITEM(fr, 0),
                                         PyTuple_GET_ITEM(fr, 1), PyTuple_GET_ITEM(fr, 2),
                                         (unsigned long long)r->nbytes[m][n],
                                         (unsigned long long)r->ncount[m][n],
                                         (unsigned long long)ib[n], (unsigned long long)ic[n])
                         : NULL;
            Py_DECREF(fr);
        }
        if (row == NULL || PyList_Append(out, row) < 0)
            Py_CLEAR(out);
        Py_XDECREF(row);
    }
    free(ib);
    free(ic);
    return out;
}

static PyObject *
rep_py_histogram(RepObject *self, PyObject *unused)
{
    ht_rep *r = self->rep;
    PyObject *out = PyList_New(0);
    for (int b = 0; out != NULL && b < 65; b++) {
        if (r->hist_count[b] == 0)
            continue;
        unsigned long long lo = b == 0 ? 0 : 1ULL << (b - 1);
        unsigned long long hi = b == 0 ? 0 : b == 64 ? UINT64_MAX : (1ULL << b) - 1;
        PyObject *row = Py_BuildValue("(KKKK)", lo, hi, (unsigned long long)r->hist_count[b],
                                      (unsigned long long)r->hist_bytes[b]);
        if (row == NULL || PyList_Append(out, row) < 0)
            Py_CLEAR(out);
        Py_XDECREF(row);
    }
    return out;
}

static PyObject *
rep_py_largest(RepObject *self, PyObject *unused)
{
    ht_rep *r = self->rep;
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out != NULL && i < r->nbig; i++) {
        PyObject *row = Py_BuildValue("(KI)", (unsigned long long)r->big[i].size,
                                      r->agg_node[r->big[i].agg]);
        if (row == NULL || PyList_Append(out, row) < 0)
            Py_CLEAR(out);
        Py_XDECREF(row);
    }
    return out;
}

static PyObject *
rep_py_threads(RepObject *self, PyObject *unused)
{
    ht_rep *r = self->rep;
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out != NULL && i < r->nthreads; i++) {
        rep_thread *t = &r->threads[i];
        PyObject *name = t->name == REP_NONE ? Py_NewRef(Py_None) : rep_pystr(r, t->name);
        PyObject *row = name ? Py_BuildValue("(INKK)", t->id, name, (unsigned long long)t->allocs,
                                             (unsigned long long)t->bytes) : NULL;
        if (row == NULL || PyList_Append(out, row) < 0)
            Py_CLEAR(out);
        Py_XDECREF(row);
    }
    return out;
}

static uint64_t rep_time_of(const ht_rep *r, uint64_t events);

static int
rep_push_sample(PyObject *out, uint64_t t, uint64_t rss, uint64_t traced)
{
    PyObject *row = Py_BuildValue("(KKK)", (unsigned long long)t, (unsigned long long)rss,
                                  (unsigned long long)traced);
    int rc = row == NULL ? -1 : PyList_Append(out, row);
    Py_XDECREF(row);
    return rc;
}

/* samples() -> [(time_ns, rss, traced)]. A sample holds the traced bytes of
 * its moment: a peak shorter than the interval fell between two and the
 * memory over time never reached the peak. So the peak is one more point, at
 * its block's time (after the sample read before it) with the RSS sampled
 * last before it, unless a sample already holds it. */
static PyObject *
rep_py_samples(RepObject *self, PyObject *unused)
{
    ht_rep *r = self->rep;
    int add = r->nsamples > 0 && r->peak_event > 0 && r->peak_bytes > 0;
    for (size_t i = 0; add && i < r->nsamples; i++)
        if (r->samples[i].traced >= r->peak_bytes)
            add = 0;
    uint64_t tp = add ? rep_time_of(r, r->peak_event) : 0;
    tp = tp > r->peak_after_t ? tp : r->peak_after_t;
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out != NULL && i <= r->nsamples; i++) {
        if (add && (i == r->nsamples || (r->samples[i].t >= tp && r->samples[i].t > r->peak_after_t))) {
            if (rep_push_sample(out, tp, r->peak_rss, r->peak_bytes) < 0)
                Py_CLEAR(out);
            add = 0;
        }
        if (out != NULL && i < r->nsamples) {
            rep_sample s = r->samples[i];
            if (rep_push_sample(out, s.t, s.rss, s.traced) < 0)
                Py_CLEAR(out);
        }
    }
    return out;
}

static PyObject *
rep_py_markers(RepObject *self, PyObject *unused)
{
    ht_rep *r = self->rep;
    PyObject *out = PyList_New((Py_ssize_t)r->nmarkers);
    for (size_t i = 0; out != NULL && i < r->nmarkers; i++) {
        PyObject *row = Py_BuildValue("(KN)", (unsigned long long)r->markers[i].t,
                                      rep_pystr(r, r->markers[i].label));
        if (row == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, (Py_ssize_t)i, row);
    }
    return out;
}

/* pprof(inuse) -> bytes: profile.proto, uncompressed; inuse = peak|leaks */
static PyObject *
rep_py_pprof(RepObject *self, PyObject *args)
{
    const char *inuse_s;
    if (!PyArg_ParseTuple(args, "s:pprof", &inuse_s))
        return NULL;
    int m = rep_metric(inuse_s);
    if (m < 0)
        return NULL;
    if (m == HT_REP_TOTAL)
        return ht_error("in-use space is peak or leaks");
    ht_buf b;
    ht_buf_init(&b);
    PyObject *out = rep_pprof(self->rep, m, &b) < 0
                        ? PyErr_NoMemory()
                        : PyBytes_FromStringAndSize((const char *)b.data, (Py_ssize_t)b.len);
    ht_buf_free(&b);
    return out;
}

/* Checkpoint i's event count: the events up to the last block flushed at
 * or before time t (block times are made non-decreasing first). */
static uint64_t
rep_events_at(const ht_rep *r, uint64_t t)
{
    uint64_t events = 0, tmax = 0;
    for (size_t i = 0; i < r->nticks; i++) {
        tmax = r->ticks[i].t > tmax ? r->ticks[i].t : tmax;
        if (tmax > t)
            break;
        events = r->ticks[i].events;
    }
    return events;
}

/* Replays the file, folding live blocks at each checkpoint. 0 or -1. */
static int
rep_replay(ht_rep *r, const uint64_t *cps, size_t ncp, uint64_t *out)
{
    const char *truncated = r->truncated;
    int rc = -1;
    if (ht_table_init(&r->live, 1024, 1) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    r->slots = NULL;
    r->cslots = 0;
    rep_reset_live(r);
    rep_ctx c = {r, 2, UINT64_MAX, 0, NULL, cps, ncp, 0, out};
    if (rep_pass(&c, r->path) == 0) {
        rep_checkpoints(&c);               /* the ones at the very end */
        rc = 0;
    }
    r->truncated = truncated;
    ht_table_free(&r->live);
    free(r->slots);
    r->slots = NULL;
    return rc;
}

/* The time of the block that holds event number `events` (the first tick
 * that reached it), or the capture's end. */
static uint64_t
rep_time_of(const ht_rep *r, uint64_t events)
{
    for (size_t i = 0; i < r->nticks; i++)
        if (r->ticks[i].events >= events)
            return r->ticks[i].t < r->duration_ns ? r->ticks[i].t : r->duration_ns;
    return r->duration_ns;
}

/* Adds the peak's moment to the k checkpoints (sorted by events; times kept
 * in order): evenly spaced moments miss a short peak, and the timeline's
 * largest moment must be the peak. Returns the new count (k or k + 1). */
static long
rep_add_peak(const ht_rep *r, uint64_t *cps, uint64_t *times, long k)
{
    if (r->peak_event == 0)
        return k;
    long at = 0;
    while (at < k && cps[at] < r->peak_event)
        at++;
    if (at < k && cps[at] == r->peak_event)
        return k;                                /* already one of them */
    uint64_t t = rep_time_of(r, r->peak_event);
    if (at > 0 && t < times[at - 1])
        t = times[at - 1];
    if (at < k && t > times[at])
        t = times[at];
    memmove(cps + at + 1, cps + at, (size_t)(k - at) * sizeof(uint64_t));
    memmove(times + at + 1, times + at, (size_t)(k - at) * sizeof(uint64_t));
    cps[at] = r->peak_event;
    times[at] = t;
    return k + 1;
}

/* timeline(points) -> [(time_ns, events, {node: live bytes (self)})]: what
 * was live at `points` evenly spaced times (fewer when the tree is large:
 * points x nodes stays under 4M), and at the peak's moment when it is none
 * of them. Re-reads the file. */
static PyObject *
rep_py_timeline(RepObject *self, PyObject *arg)
{
    ht_rep *r = self->rep;
    long k = PyLong_AsLong(arg);
    if (k == -1 && PyErr_Occurred())
        return NULL;
    if (k < 1 || k > 1024)
        return ht_error("timeline points must be 1..1024");
    if ((size_t)k * r->nnodes > (4u << 20))
        k = (long)((4u << 20) / r->nnodes) > 0 ? (long)((4u << 20) / r->nnodes) : 1;
    /* one more room: the peak */
    uint64_t *cps = malloc((size_t)(k + 1) * sizeof(uint64_t));
    uint64_t *times = malloc((size_t)(k + 1) * sizeof(uint64_t));
    uint64_t *out = calloc((size_t)(k + 1) * r->nnodes, sizeof(uint64_t));
    PyObject *list = NULL;
    if (cps == NULL || times == NULL || out == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (long i = 0; i < k; i++) {
        times[i] = (uint64_t)((double)r->duration_ns * (double)(i + 1) / (double)k);
        cps[i] = rep_events_at(r, times[i]);
    }
    k = rep_add_peak(r, cps, times, k);
    if (rep_replay(r, cps, (size_t)k, out) < 0)
        goto done;
    if ((list = PyList_New(0)) == NULL)
        goto done;
    for (long i = 0; i < k; i++) {
        PyObject *d = PyDict_New(), *row = NULL;
        for (uint32_t n = 0; d != NULL && n < r->nnodes; n++) {
            uint64_t v = out[(size_t)i * r->nnodes + n];
            if (v == 0)
                continue;
            PyObject *key = PyLong_FromUnsignedLong(n), *val = PyLong_FromUnsignedLongLong(v);
            if (key == NULL || val == NULL || PyDict_SetItem(d, key, val) < 0)
                Py_CLEAR(d);
            Py_XDECREF(key);
            Py_XDECREF(val);
        }
        if (d != NULL)
            row = Py_BuildValue("(KKN)", (unsigned long long)times[i], (unsigned long long)cps[i], d);
        if (row == NULL || PyList_Append(list, row) < 0) {
            Py_XDECREF(row);
            Py_CLEAR(list);
            goto done;
        }
        Py_DECREF(row);
    }
done:
    free(cps);
    free(times);
    free(out);
    return list;
}

static void
rep_dealloc(RepObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    ht_rep_free(self->rep);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMethodDef rep_obj_methods[] = {
    {"info", (PyCFunction)rep_py_info, METH_NOARGS, "Header and totals as a dict."},
    {"rows", (PyCFunction)rep_py_rows, METH_VARARGS, "rows(metric, by, sort, top)"},
    {"stack", (PyCFunction)rep_py_stack, METH_O, "stack(node): frames, innermost first"},
    {"tree", (PyCFunction)rep_py_tree, METH_VARARGS, "tree(metric): the call tree"},
    {"histogram", (PyCFunction)rep_py_histogram, METH_NOARGS, "size histogram (powers of two)"},
    {"largest", (PyCFunction)rep_py_largest, METH_NOARGS, "largest blocks: (size, node)"},
    {"threads", (PyCFunction)rep_py_threads, METH_NOARGS, "(id, name, allocations, bytes)"},
    {"samples", (PyCFunction)rep_py_samples, METH_NOARGS, "(time_ns, rss, traced)"},
    {"markers", (PyCFunction)rep_py_markers, METH_NOARGS, "(time_ns, label)"},
    {"pprof", (PyCFunction)rep_py_pprof, METH_VARARGS, "pprof(inuse): profile.proto bytes"},
    {"timeline", (PyCFunction)rep_py_timeline, METH_O, "timeline(points): live bytes by node over time"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot rep_slots[] = {
    {Py_tp_dealloc, rep_dealloc},
    {Py_tp_methods, rep_obj_methods},
    {Py_tp_doc, "A capture file read and aggregated (capture_read(path))."},
    {0, NULL},
};

static PyType_Spec rep_spec = {
    "heaptrail._core.CaptureReport", sizeof(RepObject), 0, Py_TPFLAGS_DEFAULT, rep_slots,
};

static PyObject *rep_type;

/* capture_read(path) -> CaptureReport */
static PyObject *
rep_py_read(PyObject *module, PyObject *arg)
{
    PyObject *path = NULL;
    if (!PyUnicode_FSConverter(arg, &path))
        return NULL;
    /* read with the GIL held: the reader reports its errors as exceptions */
    ht_rep *r = ht_rep_read(PyBytes_AS_STRING(path));
    Py_DECREF(path);
    if (r == NULL)
        return NULL;
    RepObject *self = PyObject_New(RepObject, (PyTypeObject *)rep_type);
    if (self == NULL) {
        ht_rep_free(r);
        return NULL;
    }
    self->rep = r;
    return (PyObject *)self;
}

/* is_capture(path) -> bool: does the file start with the capture magic? */
static PyObject *
rep_py_is_capture(PyObject *module, PyObject *arg)
{
    PyObject *path = NULL;
    if (!PyUnicode_FSConverter(arg, &path))
        return NULL;
    FILE *f = fopen(PyBytes_AS_STRING(path), "rb");
    char head[HT_CAP_MAGIC_LEN];
    int yes = f != NULL && fread(head, 1, sizeof head, f) == sizeof head &&
              memcmp(head, HT_CAP_MAGIC, HT_CAP_MAGIC_LEN) == 0;
    if (f != NULL)
        fclose(f);
    Py_DECREF(path);
    return PyBool_FromLong(yes);
}

static PyMethodDef rep_methods[] = {
    {"capture_read", rep_py_read, METH_O, "Reads and aggregates a capture file."},
    {"is_capture", rep_py_is_capture, METH_O, "Does the file start with the capture magic?"},
    {NULL, NULL, 0, NULL},
};

int
ht_report_init(PyObject *m)
{
    if (rep_type == NULL && (rep_type = PyType_FromSpec(&rep_spec)) == NULL)
        return -1;
    if (PyModule_AddObjectRef(m, "CaptureReport", rep_type) < 0)
        return -1;
    return PyModule_AddFunctions(m, rep_methods);
}
