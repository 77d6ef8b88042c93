/* format_snapshot.c - snapshot file writer and validating reader, JSON lines
 * export (layout in format_snapshot.h). */
#include "format_snapshot.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

enum { HT_SEC_END = 0, HT_SEC_STRINGS = 1, HT_SEC_OBJECTS = 2, HT_SEC_EDGES = 3 };

/* ======================================================================
 * writing
 * ====================================================================== */

static void
ht_snap_section(ht_buf *out, uint8_t tag, const ht_buf *payload)
{
    ht_buf_u8(out, tag);
    ht_buf_blob(out, payload->data, payload->len);
}

static void
ht_snap_put_strings(ht_buf *b, const ht_heap *h)
{
    for (uint32_t k = 0; k < h->strings.count; k++) {
        size_t n;
        const char *s = ht_heap_string(h, k, &n);
        ht_buf_blob(b, s, n);
    }
}

static void
ht_snap_put_objects(ht_buf *b, const ht_heap *h)
{
    uint64_t prev = 0;
    for (uint32_t i = 0; i < h->n; i++) {
        ht_buf_svarint(b, (int64_t)(h->addr[i] - prev));
        prev = h->addr[i];
        ht_buf_varint(b, h->type[i] == HT_NONE ? 0 : (uint64_t)h->type[i] + 1);
        ht_buf_varint(b, h->size[i]);
        ht_buf_svarint(b, h->len[i]);
        ht_buf_varint(b, h->flags[i]);
        ht_buf_varint(b, h->value[i] == HT_NONE ? 0 : (uint64_t)h->value[i] + 1);
        ht_buf_varint(b, h->owner[i] == HT_NONE ? 0 : (uint64_t)h->owner[i] + 1);
        ht_buf_varint(b, h->module[i] == HT_NONE ? 0 : (uint64_t)h->module[i] + 1);
        ht_buf_varint(b, h->edge_start[i + 1] - h->edge_start[i]);
    }
}

static void
ht_snap_put_edges(ht_buf *b, const ht_heap *h)
{
    for (uint32_t e = 0; e < h->m; e++) {
        uint32_t l = h->edge_label[e];
        ht_buf_varint(b, h->edge_dst[e]);
        if (l == HT_NONE)
            ht_buf_varint(b, 0);
        else if (HT_LABEL_IS_INDEX(l))
            ht_buf_varint(b, 2 * (uint64_t)HT_LABEL_INDEX_OF(l) + 1);
        else
            ht_buf_varint(b, 2 * (uint64_t)l + 2);
    }
}

int
ht_snapshot_save(const ht_heap *h, const char *path)
{
    ht_buf out, sec;
    ht_buf_init(&out);
    ht_buf_init(&sec);
    ht_buf_put(&out, HT_SNAP_MAGIC, HT_SNAP_MAGIC_LEN);
    ht_buf_u32(&out, HT_SNAP_VERSION);
    size_t check_at = out.len;
    ht_buf_u64(&out, 0); /* the checksum, once the rest is written */
    ht_buf_varint(&out, (uint64_t)h->python_minor);
    ht_buf_varint(&out, h->n);
    ht_buf_varint(&out, h->m);
    ht_buf_varint(&out, h->strings.count);
    ht_snap_put_strings(&sec, h);
    ht_snap_section(&out, HT_SEC_STRINGS, &sec);
    sec.len = 0;
    ht_snap_put_objects(&sec, h);
    ht_snap_section(&out, HT_SEC_OBJECTS, &sec);
    sec.len = 0;
    ht_snap_put_edges(&sec, h);
    ht_snap_section(&out, HT_SEC_EDGES, &sec);
    ht_buf_u8(&out, HT_SEC_END);
    ht_buf_varint(&out, 0);
    int r = -1;
    if (sec.error || out.error) {
        PyErr_NoMemory();
    } else {
        size_t body = check_at + 8;
        uint64_t ck = ht_checksum(0, out.data + body, out.len - body);
        for (int k = 0; k < 8; k++)
            out.data[check_at + k] = (uint8_t)(ck >> (8 * k));
        r = ht_buf_write_file(&out, path);
    }
    ht_buf_free(&out);
    ht_buf_free(&sec);
    return r;
}

/* ======================================================================
 * reading
 * ====================================================================== */

typedef struct {
    const char *path;
    const char *why;     /* first fault, static text */
} ht_snap_rd;

static int
ht_snap_bad(ht_snap_rd *s, const char *why)
{
    if (!s->why)
        s->why = why;
    return -1;
}

static int
ht_snap_read_strings(ht_snap_rd *s, ht_rd *r, ht_heap *h, uint64_t count)
{
    /* each string takes at least its 1-byte length */
    if (count > ht_rd_left(r))
        return ht_snap_bad(s, "string count larger than the strings section");
    for (uint64_t k = 0; k < count; k++) {
        size_t n;
        const uint8_t *p = ht_rd_blob(r, &n);
        if (p == NULL)
            return ht_snap_bad(s, "string runs past its section");
        if (ht_strtab_append(&h->strings, (const char *)p, n) == HT_NONE) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

/* an id+1 field: 0 -> HT_NONE, else id < bound */
static uint32_t
ht_snap_ref(ht_snap_rd *s, ht_rd *r, uint64_t bound, const char *why)
{
    uint64_t v = ht_rd_varint(r);
    if (v == 0)
        return HT_NONE;
    if (v - 1 >= bound) {
        ht_snap_bad(s, why);
        return HT_NONE;
    }
    return (uint32_t)(v - 1);
}

static int
ht_snap_read_objects(ht_snap_rd *s, ht_rd *r, ht_heap *h)
{
    uint64_t prev = 0, edges = 0;
    for (uint32_t i = 0; i < h->n; i++) {
        uint64_t addr = prev + (uint64_t)ht_rd_svarint(r);
        h->addr[i] = prev = addr;
        h->type[i] = ht_snap_ref(s, r, h->n, "object type out of range");
        h->size[i] = ht_rd_varint(r);
        h->len[i] = ht_rd_svarint(r);
        h->flags[i] = (uint32_t)ht_rd_varint(r);
        h->value[i] = ht_snap_ref(s, r, h->strings.count, "object value out of range");
        h->owner[i] = ht_snap_ref(s, r, h->n, "object owner out of range");
        h->module[i] = ht_snap_ref(s, r, h->strings.count, "object module out of range");
        uint64_t ne = ht_rd_varint(r);
        if (r->error)
            return ht_snap_bad(s, "objects section truncated or malformed");
        if (s->why)
            return -1;
        if (h->len[i] < -1)
            return ht_snap_bad(s, "object length out of range");
        h->edge_start[i] = (uint32_t)edges;
        if (ne > h->m - edges) /* compared before adding: a huge ne must not wrap around */
            return ht_snap_bad(s, "objects have more edges than the header says");
        edges += ne;
        /* the views add sizes up in int64 (a diff subtracts them): a total
         * past 2**63 (no real heap) would wrap into negative sizes */
        if (h->size[i] > (uint64_t)INT64_MAX - h->total_size)
            return ht_snap_bad(s, "object sizes add up past 2**63 bytes");
        h->total_size += h->size[i];
    }
    h->edge_start[h->n] = (uint32_t)edges;
    if (edges != h->m)
        return ht_snap_bad(s, "objects have fewer edges than the header says");
    return 0;
}

static int
ht_snap_read_edges(ht_snap_rd *s, ht_rd *r, ht_heap *h)
{
    for (uint32_t e = 0; e < h->m; e++) {
        uint64_t dst = ht_rd_varint(r);
        uint64_t l = ht_rd_varint(r);
        if (r->error)
            return ht_snap_bad(s, "edges section truncated or malformed");
        if (dst >= h->n)
            return ht_snap_bad(s, "edge target out of range");
        h->edge_dst[e] = (uint32_t)dst;
        if (l == 0) {
            h->edge_label[e] = HT_NONE;
        } else if (l & 1) {
            if ((l >> 1) >= HT_LABEL_INDEX - 1)
                return ht_snap_bad(s, "edge index label out of range");
            h->edge_label[e] = HT_LABEL_INDEX | (uint32_t)(l >> 1);
        } else {
            if ((l >> 1) - 1 >= h->strings.count)
                return ht_snap_bad(s, "edge label out of range");
            h->edge_label[e] = (uint32_t)((l >> 1) - 1);
        }
    }
    return 0;
}

/* Parses a whole file image into h; -1 with s->why (bad file) or an
 * exception (out of memory) set. */
static int
ht_snap_parse(ht_snap_rd *s, const uint8_t *data, size_t len, ht_heap *h)
{
    ht_rd r;
    ht_rd_init(&r, data, len);
    const uint8_t *magic = ht_rd_bytes(&r, HT_SNAP_MAGIC_LEN);
    if (magic == NULL || memcmp(magic, HT_SNAP_MAGIC, HT_SNAP_MAGIC_LEN) != 0)
        return ht_snap_bad(s, "not a heaptrail snapshot (bad magic)");
    uint32_t version = ht_rd_u32(&r);
    if (r.error)
        return ht_snap_bad(s, "truncated header");
    if (version == 0 || version > HT_SNAP_VERSION)
        return ht_snap_bad(s, "unsupported snapshot version (made by a newer heaptrail?)");
    if (version >= 2) {
        uint64_t want = ht_rd_u64(&r);
        if (r.error)
            return ht_snap_bad(s, "truncated header");
        if (ht_checksum(0, r.p, ht_rd_left(&r)) != want)
            return ht_snap_bad(s, "damaged or truncated (checksum mismatch)");
    }
    uint64_t minor = ht_rd_varint(&r);
    /* objects take at least 9 bytes each, edges 2, strings 1 */
    uint64_t n = ht_rd_count(&r, 9);
    uint64_t m = ht_rd_count(&r, 2);
    uint64_t ns = ht_rd_count(&r, 1);
    if (r.error)
        return ht_snap_bad(s, "truncated or impossible header counts");
    if (n >= HT_LABEL_INDEX - 1 || m >= UINT32_MAX || ns >= HT_LABEL_INDEX - 1 || minor > 1000)
        return ht_snap_bad(s, "header counts out of range");
    if (ht_heap_alloc(h, (uint32_t)n, (uint32_t)m) < 0)
        return -1;
    h->python_minor = (int)minor;
    int next = HT_SEC_STRINGS;
    for (;;) {
        uint8_t tag = ht_rd_u8(&r);
        size_t plen;
        const uint8_t *payload = ht_rd_blob(&r, &plen);
        if (r.error)
            return ht_snap_bad(s, "truncated (a section is cut short)");
        ht_rd sr;
        ht_rd_init(&sr, payload, plen);
        if (tag == HT_SEC_END) {
            if (next != HT_SEC_END)
                return ht_snap_bad(s, "a required section is missing");
            if (plen != 0 || ht_rd_left(&r) != 0)
                return ht_snap_bad(s, "data after the end section");
            return 0;
        }
        if (tag > HT_SEC_EDGES)
            continue; /* a later addition: skip it */
        if (tag != next)
            return ht_snap_bad(s, "sections out of order or repeated");
        int rc = tag == HT_SEC_STRINGS   ? ht_snap_read_strings(s, &sr, h, ns)
                 : tag == HT_SEC_OBJECTS ? ht_snap_read_objects(s, &sr, h)
                                         : ht_snap_read_edges(s, &sr, h);
        if (rc < 0)
            return -1;
        if (ht_rd_left(&sr) != 0)
            return ht_snap_bad(s, "section longer than its contents");
        next = tag == HT_SEC_EDGES ? HT_SEC_END : tag + 1;
    }
}

PyObject *
ht_snapshot_load(const char *path)
{
    size_t len = 0;
    /* its size bounds every later allocation */
    uint8_t *data = ht_rd_file_magic(path, HT_SNAP_MAGIC, HT_SNAP_MAGIC_LEN, &len);
    if (data == NULL)
        return NULL;
    ht_heap *h = ht_heap_new();
    if (h == NULL) {
        free(data);
        return NULL;
    }
    ht_snap_rd s = {path, NULL};
    int rc = ht_snap_parse(&s, data, len, h);
    free(data);
    if (rc < 0) {
        ht_heap_free(h);
        if (s.why && !PyErr_Occurred())
            ht_error("%s: %s", path, s.why);
        return NULL;
    }
    return ht_heap_wrap(h);
}

/* ======================================================================
 * JSON lines export
 * ====================================================================== */

static void
ht_json_str(ht_buf *b, const char *s, size_t n)
{
    ht_buf_u8(b, '"');
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c == '"' || c == '\\') {
            ht_buf_u8(b, '\\');
            ht_buf_u8(b, c);
        } else if (c < 0x20) {
            char e[8];
            int len = snprintf(e, sizeof e, "\\u%04x", c);
            ht_buf_put(b, e, (size_t)len);
        } else {
            ht_buf_u8(b, c);
        }
    }
    ht_buf_u8(b, '"');
}

static void
ht_json_num(ht_buf *b, const char *key, long long v)
{
    char t[48];
    int len = snprintf(t, sizeof t, ", \"%s\": %lld", key, v);
    ht_buf_put(b, t, (size_t)len);
}

/* Whether s (n bytes) is a number in JSON's grammar: an int's or float's
 * value ("-12", "1.5e+16"), not "inf", "nan" or "<big int>". */
static int
ht_json_is_number(const char *s, size_t n)
{
    size_t k = 0;
    if (k < n && s[k] == '-')
        k++;
    if (k == n || !isdigit((unsigned char)s[k]))
        return 0;
    if (s[k] == '0' && k + 1 < n && isdigit((unsigned char)s[k + 1]))
        return 0; /* no leading zero */
    while (k < n && isdigit((unsigned char)s[k]))
        k++;
    if (k < n && s[k] == '.') {
        if (++k == n || !isdigit((unsigned char)s[k]))
            return 0;
        while (k < n && isdigit((unsigned char)s[k]))
            k++;
    }
    if (k < n && (s[k] == 'e' || s[k] == 'E')) {
        if (++k < n && (s[k] == '+' || s[k] == '-'))
            k++;
        if (k == n || !isdigit((unsigned char)s[k]))
            return 0;
        while (k < n && isdigit((unsigned char)s[k]))
            k++;
    }
    return k == n;
}

/* An object's "value": a JSON number for an int or a float, as meliae
 * writes them (true/false for a bool), else a string. */
static void
ht_json_value(ht_buf *b, const ht_heap *h, uint32_t i, const char *s, size_t n)
{
    size_t tn;
    const char *t = ht_heap_type_name(h, i, &tn);
    int numeric = t && ((tn == 3 && memcmp(t, "int", 3) == 0) || (tn == 5 && memcmp(t, "float", 5) == 0));
    if (numeric && ht_json_is_number(s, n))
        ht_buf_put(b, s, n);
    else if (t && tn == 4 && memcmp(t, "bool", 4) == 0 && (n == 4 || n == 5))
        ht_buf_put(b, n == 4 ? "true" : "false", n);
    else
        ht_json_str(b, s, n);
}

static void
ht_json_object(ht_buf *b, const ht_heap *h, uint32_t i)
{
    char t[48];
    int len = snprintf(t, sizeof t, "{\"address\": %llu, \"type\": ", (unsigned long long)h->addr[i]);
    ht_buf_put(b, t, (size_t)len);
    size_t n;
    const char *s = ht_heap_type_name(h, i, &n);
    ht_json_str(b, s, n);
    ht_json_num(b, "size", (long long)h->size[i]);
    if (h->len[i] >= 0)
        ht_json_num(b, "len", (long long)h->len[i]);
    s = ht_heap_string(h, h->value[i], &n);
    if (s) {
        /* meliae: "name" for modules, classes, functions; "value" for data
         * (a code object's or a builtin's name was exported as a value) */
        int named = ht_heap_is_name(h, i);
        ht_buf_put(b, named ? ", \"name\": " : ", \"value\": ", named ? 10 : 11);
        if (named)
            ht_json_str(b, s, n);
        else
            ht_json_value(b, h, i, s, n);
    }
    ht_buf_put(b, ", \"refs\": [", 11);
    for (uint32_t e = h->edge_start[i]; e < h->edge_start[i + 1]; e++) {
        len = snprintf(t, sizeof t, e == h->edge_start[i] ? "%llu" : ", %llu",
                       (unsigned long long)h->addr[h->edge_dst[e]]);
        ht_buf_put(b, t, (size_t)len);
    }
    ht_buf_put(b, "]}\n", 3);
}

int
ht_snapshot_export_jsonl(const ht_heap *h, const char *path)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        ht_error_os(path);
        return -1;
    }
    ht_buf b;
    ht_buf_init(&b);
    int bad = 0;
    for (uint32_t i = 0; i < h->n && !bad; i++) {
        ht_json_object(&b, h, i);
        if (b.error) {
            bad = 2;
            break;
        }
        if (b.len > (1u << 20) || i + 1 == h->n) {
            if (fwrite(b.data, 1, b.len, f) != b.len)
                bad = 1;
            b.len = 0;
        }
    }
    if (fclose(f) != 0 && !bad)
        bad = 1;
    ht_buf_free(&b);
    if (bad == 2) {
        PyErr_NoMemory();
        return -1;
    }
    if (bad) {
        ht_error_os(path);
        return -1;
    }
    return 0;
}
