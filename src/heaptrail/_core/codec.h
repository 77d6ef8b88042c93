/* codec.h - the one varint codec: a growable output buffer and a bounded
 * input reader, shared by every file format (snapshot, trace dump, capture).
 *
 * Integers: unsigned LEB128 varints (7 bits a byte, low group first, high bit
 * = more follows, at most 10 bytes); signed values zigzag-encoded first
 * (0->0, -1->1, 1->2, -2->3 ...). Fixed-width fields are little-endian.
 *
 *   300 = 0b1_0010_1100  ->  0xAC 0x02
 *   -3  -> zigzag 5      ->  0x05
 *
 * The reader never reads past its end: every read checks the bytes left and,
 * on a short or malformed input, sets r->error (sticky) and returns 0/NULL.
 * Callers check r->error once after a group of reads. Counts read from a file
 * must go through ht_rd_count() so that a corrupted header can never make the
 * caller allocate more than the file could possibly describe.
 */
#ifndef HT_CODEC_H
#define HT_CODEC_H

#include <stdint.h>
#include <stddef.h>

/* ---- writing ------------------------------------------------------------ */

typedef struct ht_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    int error;      /* sticky: set when a grow failed; later writes are dropped */
} ht_buf;

void ht_buf_init(ht_buf *b);
void ht_buf_free(ht_buf *b);
/* Makes room for n more bytes; returns 0, or -1 (and sets b->error). */
int ht_buf_reserve(ht_buf *b, size_t n);
void ht_buf_put(ht_buf *b, const void *p, size_t n);
void ht_buf_u8(ht_buf *b, uint8_t v);
void ht_buf_u32(ht_buf *b, uint32_t v);
void ht_buf_u64(ht_buf *b, uint64_t v);
void ht_buf_varint(ht_buf *b, uint64_t v);
void ht_buf_svarint(ht_buf *b, int64_t v);
/* varint length, then the bytes */
void ht_buf_blob(ht_buf *b, const void *p, size_t n);
/* Encodes v into out (>= 10 bytes); returns bytes written. */
size_t ht_varint_encode(uint8_t *out, uint64_t v);

/* Encodes v at p, which has >= 10 bytes of room; returns the end. Inline for
 * hot writers that reserved their room up front (the capture's events). */
static inline uint8_t *
ht_varint_put(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static inline uint64_t ht_zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }
static inline int64_t ht_unzigzag(uint64_t v) { return (int64_t)(v >> 1) ^ -(int64_t)(v & 1); }

/* ---- reading ------------------------------------------------------------ */

typedef struct ht_rd {
    const uint8_t *p;
    const uint8_t *end;
    const char *error;   /* NULL, or a static description of the first fault */
} ht_rd;

static inline void ht_rd_init(ht_rd *r, const void *p, size_t n)
{
    r->p = (const uint8_t *)p;
    r->end = r->p + n;
    r->error = NULL;
}
static inline size_t ht_rd_left(const ht_rd *r) { return (size_t)(r->end - r->p); }

uint8_t ht_rd_u8(ht_rd *r);
uint32_t ht_rd_u32(ht_rd *r);
uint64_t ht_rd_u64(ht_rd *r);
uint64_t ht_rd_varint(ht_rd *r);
int64_t ht_rd_svarint(ht_rd *r);
/* Returns a pointer to the next n bytes and skips them, or NULL (error set)
 * when fewer are left. */
const uint8_t *ht_rd_bytes(ht_rd *r, size_t n);
/* A varint length followed by that many bytes; *n receives the length. */
const uint8_t *ht_rd_blob(ht_rd *r, size_t *n);
/* Reads a varint count of items that each take at least min_item_bytes in
 * the rest of the input, and fails (error set, returns 0) when the count
 * could not fit: the bound that keeps allocations proportional to the file. */
uint64_t ht_rd_count(ht_rd *r, size_t min_item_bytes);
/* Sets the error if not already set. */
static inline void ht_rd_fail(ht_rd *r, const char *why) { if (!r->error) r->error = why; }

/* ---- checksums ---- */

/* A 64-bit checksum of n bytes, seeded, the same on every host: it tells a
 * damaged file from the one that was written (the capture's blocks, the
 * snapshot file). A multiply-xor hash over the 8-byte little-endian words
 * (the last one zero-padded): any change to one word is always caught,
 * other changes but for a chance of about 2^-64. Not a defence against an
 * attacker. */
uint64_t ht_checksum(uint64_t seed, const void *p, size_t n);

/* ---- whole files (every format is read and written whole) ---- */

/* Reads the whole file at path into a malloc'd buffer (*len bytes); the GIL
 * is released while reading. NULL with OSError (ht_error_os) or MemoryError
 * set. Call with the GIL held. */
uint8_t *ht_rd_file(const char *path, size_t *len);
/* As ht_rd_file, but stops reading once the first magic_len bytes are not
 * `magic` (the caller's parser then reports the bad magic): a device that
 * never ends, such as /dev/zero, is not read until memory runs out. */
uint8_t *ht_rd_file_magic(const char *path, const void *magic, size_t magic_len, size_t *len);
/* Writes b (created or truncated), the GIL released while writing. 0, or -1
 * with OSError (ht_error_os) or, when b ran out of memory, MemoryError set.
 * Call with the GIL held. */
int ht_buf_write_file(const ht_buf *b, const char *path);

#endif
