/* capture.h - the capture file (`heaptrail run`): its format, and the writer
 * that an allocator hook calls while a program runs.
 *
 * ==== File format, version 2 =============================================
 *
 * All fixed-width integers little-endian; "v" = unsigned LEB128 varint, "s" =
 * zigzag varint, "str" = v length + bytes (codec.h).
 *
 *   file   := magic[8] version:u32 block*
 *   magic  := 89 'H' 'T' 'C' 'A' 'P' 0D 0A      (0x89 and CR LF catch text-mode
 *                                                mangling, as PNG's magic does)
 *   block  := word:u32 checksum:u32 data[word & 0x7FFFFFFF]
 *   data   := body                          when word's bit 31 is clear
 *           | raw_len:u32 deflate-stream    when set: the stream (raw deflate,
 *                                           RFC 1951, no zlib wrapper) inflates
 *                                           to exactly raw_len bytes, the body
 *   body   := thread:u32 time_ns:u64 record*
 *
 * checksum = ht_cap_checksum(word, data): a 64-bit multiply-xor hash over
 * the data's 8-byte little-endian words (the last one zero-padded), seeded
 * with the word, folded to 32 bits (codec.c ht_checksum says exactly how;
 * the tests compute it independently). Compression is optional: a writer built
 * without zlib, or a block that zlib does not shrink, is stored as is; a
 * reader built without zlib refuses a compressed block with a clear error.
 * A block is written with one write(2) under the writer's lock, so blocks
 * never interleave. A reader stops at the first block that is short (the
 * file ends inside it) or whose checksum does not match when nothing
 * follows it: both mean the program died while writing (SIGKILL, os._exit,
 * power loss) and the capture is "truncated", readable up to there. A bad
 * checksum with more data after it is corruption. The data and the body are
 * at most HT_CAP_MAX_BLOCK bytes.
 *
 * `thread` is the writing thread's small id (1, 2, ... in order of first
 * event; 0 = the writer itself: header, end). `time_ns` is when the block
 * was flushed, in ns since the capture started (monotonic clock). Blocks
 * are independently decodable: the delta state below restarts with each.
 *
 * Records (first byte = type; values of the delta state start at 0). The
 * size class of a size is c(size) = min((size + 7) / 8, 65); each class has
 * its own address base for allocations, A[c], and for frees, F[c]: pymalloc
 * serves a class from its own pools, so consecutive blocks of a class sit a
 * few bytes apart even when the program mixes classes.
 *
 *  10 ALLOC   v(size) s(addr - A[c]) s(stack - prev_stack)
 *             A[c] = addr, prev_stack = stack, c = c(size). stack = innermost
 *             stack node id, or 0xFFFFFFFF (HT_CAP_NO_STACK): no Python frame.
 *  11 ALLOC_SAME v(size) s(addr - A[c])  the same as ALLOC with stack =
 *             prev_stack (most allocations repeat the previous one's stack)
 *  32+c FREE  s(addr - F[c])              F[c] = addr, for c in 0..65 (types
 *             32..97). c is the freed block's size class when the writer
 *             knows it, else 0; it only selects the delta base.
 *   3 STACK   v(id) v(parent + 1) v(frame)         parent + 1 = 0: outermost
 *   4 FRAME   v(id) str(filename) str(function) v(line)
 *   5 THREAD  v(thread id) str(name)
 *   6 SAMPLE  v(time_ns) v(rss) v(traced current bytes)
 *   7 MARKER  v(time_ns) str(label)
 *   8 HEADER  v(pid) v(start unix time ns) v(sample bytes: 0 = every block)
 *             v(memory sample interval ns) str(command line, NUL-separated)
 *   9 END     v(time_ns)                           clean close: not truncated
 *
 * Types 1 and 2 (version 1's ALLOC and FREE) are retired, never reused.
 * The first block holds exactly one HEADER; END, when present, is the last
 * record of the file. Realloc is FREE(old) then ALLOC(new). STACK and FRAME
 * records are written the first time an id is used, possibly in another
 * thread's block than the ALLOC naming it: readers resolve ids after reading
 * the whole file, so their order does not matter.
 *
 * Ordering: events of one thread are in the order they happened. Across
 * threads, by default, the order is per block (each thread buffers up to
 * HT_CAP_BLOCK_BYTES): a block freed by thread B that thread A allocated and
 * A has not flushed yet may be seen FREE-before-ALLOC. Readers count such
 * frees as "unmatched" and an ALLOC of a live address replaces the old
 * block. A writer whose caller serializes its event calls (info.serialized,
 * e.g. the tracer calling under its own lock) flushes the previous thread's
 * buffer when another thread's event comes, which makes the order exact.
 *
 * Worked example: the 20-byte body of thread 1's block flushed 1000 ns after
 * start, holding ALLOC(addr 0x1000, 300 bytes, stack 2) then FREE(0x1000) of
 * that block (class 38), stored uncompressed:
 *
 *   01 00 00 00                      thread 1
 *   e8 03 00 00 00 00 00 00          time_ns 1000
 *   0a ac 02 80 40 04                ALLOC v(300)=ac 02, s(0x1000 - A[38]=0)=80 40,
 *                                          s(2 - 0)=04
 *   46 80 40                         FREE (32+38=0x46) s(0x1000 - F[38]=0) = 80 40
 *
 * Version rule: a reader reads exactly the version it knows (2) and refuses
 * any other with a one-line error: a larger one was "written by a newer
 * heaptrail", a smaller one "by an older heaptrail" (record it again). Any
 * change that an older reader would misread (a new record type, a changed
 * layout) bumps the version; record numbers are never reused.
 */
#ifndef HT_CAPTURE_H
#define HT_CAPTURE_H

#include "common.h"
#include <stdint.h>
#include <stddef.h>

#define HT_CAP_MAGIC "\x89HTCAP\r\n"
#define HT_CAP_MAGIC_LEN 8
#define HT_CAP_VERSION 2u
#define HT_CAP_NO_STACK 0xFFFFFFFFu
#define HT_CAP_BLOCK_BYTES (64u * 1024u)     /* a thread flushes past this */
#define HT_CAP_MAX_STR 4096u                  /* longer strings are cut */
#define HT_CAP_MAX_BLOCK (1u << 24)           /* readers refuse larger bodies */

#define HT_CAP_CLASSES 66u                   /* size classes 0..65 */
#define HT_CAP_COMPRESSED 0x80000000u         /* block word: data is deflated */

static inline unsigned
ht_cap_class(uint64_t size)
{
    return size >= 8u * (HT_CAP_CLASSES - 1) ? HT_CAP_CLASSES - 1 : (unsigned)((size + 7) / 8);
}

enum ht_cap_record {
    HT_CAP_STACK = 3, HT_CAP_FRAME = 4,
    HT_CAP_THREAD = 5, HT_CAP_SAMPLE = 6, HT_CAP_MARKER = 7, HT_CAP_HEADER = 8,
    HT_CAP_END = 9, HT_CAP_ALLOC = 10, HT_CAP_ALLOC_SAME = 11,
    HT_CAP_FREE = 32,   /* 32 + size class: 32..97 */
};

/* The block checksum of a block's data, seeded with its word (format). */
uint32_t ht_cap_checksum(uint32_t word, const uint8_t *p, size_t n);

/* 1 when this build writes and reads zlib-compressed blocks. */
int ht_cap_have_zlib(void);

/* ==== Writer ===============================================================
 *
 * One capture per process at a time (the tracer is process-wide). Every
 * event function may be called from any thread, with or without the GIL,
 * from inside an allocator hook: none calls Python, none allocates through
 * PyMem (a thread's buffer comes from libc malloc on its first event), and
 * none fails loudly: after an I/O or memory failure the writer drops events
 * and ht_cap_close() reports the first error. Events while no capture is
 * open are ignored. Each thread appends to its own buffer (no lock); full
 * buffers are written as one block under a mutex. A thread's buffer is
 * flushed when full, by ht_cap_flush_thread(), when the thread exits, and by
 * ht_cap_close().
 */

typedef struct ht_cap_info {
    uint64_t pid;
    uint64_t sample_bytes;   /* 0: every allocation is recorded */
    uint64_t interval_ns;    /* memory sample period */
    const char *cmdline;     /* NUL-separated arguments */
    size_t cmdline_len;
    /* 1: the caller never runs two event calls at once (it holds its own
     * lock around them): cross-thread order in the file is then exact. */
    int serialized;
    /* 1: compress blocks with zlib when this build has it. */
    int compress;
} ht_cap_info;

/* Creates (truncating) path and writes the magic, version and HEADER block.
 * Returns 0, or -1 with errno set (no Python exception): already open, or
 * the file could not be created/written. */
int ht_cap_open(const char *path, const ht_cap_info *info);

/* Is a capture open? (A relaxed read, for a hook's fast exit.) */
int ht_cap_active(void);

/* ns since the capture was opened (monotonic). */
uint64_t ht_cap_now(void);

/* Events: the calling thread's buffer. */
void ht_cap_alloc(uint64_t addr, uint64_t size, uint32_t stack);
/* size: the freed block's size when known, else 0 (only an encoding hint) */
void ht_cap_free(uint64_t addr, uint64_t size);
void ht_cap_realloc(uint64_t old_addr, uint64_t new_addr, uint64_t size, uint32_t stack);
/* Definitions, written once per id by the caller (the tracer knows which
 * ids it has emitted). parent = HT_CAP_NO_STACK for the outermost frame. */
void ht_cap_stack(uint32_t id, uint32_t parent, uint32_t frame);
void ht_cap_frame(uint32_t id, const char *filename, const char *function, uint32_t line);
/* Names the calling thread (its id is assigned on its first event). */
void ht_cap_thread_name(const char *name);
/* Memory sample and marker: written and flushed at once, so they sit
 * between the calling thread's events where they happened. */
void ht_cap_sample(uint64_t time_ns, uint64_t rss, uint64_t traced);
void ht_cap_marker(uint64_t time_ns, const char *label);
/* Writes the calling thread's buffered events as a block now. */
void ht_cap_flush_thread(void);

/* Flushes every thread's buffer, writes END, closes the file. The caller
 * guarantees no event function runs concurrently (hooks are removed).
 * Returns 0, or -1 with errno of the first failure seen while capturing. */
int ht_cap_close(void);

/* In a forked child: forgets the parent's capture without writing anything
 * (its buffers belong to the parent's file), so the child may open its own. */
void ht_cap_after_fork_child(void);

/* Python-visible test hooks (_capture_write). */
int ht_capture_init(PyObject *m);

#endif
