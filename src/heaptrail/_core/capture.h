/* capture.h - the capture file (`heaptrail run`): its format, and the writer
 * that an allocator hook calls while a program runs.
 *
 * ==== File format, version 1 =============================================
 *
 * All fixed-width integers little-endian; "v" = unsigned LEB128 varint, "s" =
 * zigzag varint, "str" = v length + bytes (codec.h).
 *
 *   file   := magic[8] version:u32 block*
 *   magic  := 89 'H' 'T' 'C' 'A' 'P' 0D 0A      (0x89 and CR LF catch text-mode
 *                                                mangling, as PNG's magic does)
 *   block  := body_len:u32 checksum:u32 body[body_len]
 *   body   := thread:u32 time_ns:u64 record*
 *
 * checksum = FNV-1a 32 of the body. A block is written with one write(2)
 * under the writer's lock, so blocks never interleave. A reader stops at the
 * first block that is short (the file ends inside it) or whose checksum does
 * not match when nothing follows it: both mean the program died while
 * writing (SIGKILL, os._exit, power loss) and the capture is "truncated",
 * readable up to there. A bad checksum with more data after it is
 * corruption. body_len is at most HT_CAP_MAX_BLOCK.
 *
 * `thread` is the writing thread's small id (1, 2, ... in order of first
 * event; 0 = the writer itself: header, end). `time_ns` is when the block
 * was flushed, in ns since the capture started (monotonic clock). Blocks
 * are independently decodable: the delta state below restarts with each.
 *
 * Records (first byte = type; values of the delta state start at 0):
 *
 *   1 ALLOC   s(addr - prev_addr) v(size) s(stack - prev_stack)
 *             prev_addr = addr, prev_stack = stack. stack = innermost stack
 *             node id, or 0xFFFFFFFF (HT_CAP_NO_STACK) when no Python frame.
 *   2 FREE    s(addr - prev_free)                  prev_free = addr
 *             (two bases: allocations and frees each walk memory in small
 *             steps, while the distance between the two is often large)
 *   3 STACK   v(id) v(parent + 1) v(frame)         parent + 1 = 0: outermost
 *   4 FRAME   v(id) str(filename) str(function) v(line)
 *   5 THREAD  v(thread id) str(name)
 *   6 SAMPLE  v(time_ns) v(rss) v(traced current bytes)
 *   7 MARKER  v(time_ns) str(label)
 *   8 HEADER  v(pid) v(start unix time ns) v(sample bytes: 0 = every block)
 *             v(memory sample interval ns) str(command line, NUL-separated)
 *   9 END     v(time_ns)                           clean close: not truncated
 *
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
 * Worked example: the 21-byte body of thread 1's block flushed 1000 ns after
 * start, holding ALLOC(addr 0x1000, 300 bytes, stack 2) then FREE(0x1000):
 *
 *   01 00 00 00                      thread 1
 *   e8 03 00 00 00 00 00 00          time_ns 1000
 *   01 80 40 ac 02 04                ALLOC s(0x1000)=80 40, v(300)=ac 02, s(2)=04
 *   02 80 40                         FREE  s(0x1000 - 0) = 80 40
 *
 * Version rule: a reader reads the versions it knows (1) and refuses a
 * larger one ("written by a newer heaptrail"). Any change that an older
 * reader would misread (a new record type, a changed layout) bumps the
 * version; new record types get new numbers, numbers are never reused.
 */
#ifndef HT_CAPTURE_H
#define HT_CAPTURE_H

#include "common.h"
#include <stdint.h>
#include <stddef.h>

#define HT_CAP_MAGIC "\x89HTCAP\r\n"
#define HT_CAP_MAGIC_LEN 8
#define HT_CAP_VERSION 1u
#define HT_CAP_NO_STACK 0xFFFFFFFFu
#define HT_CAP_BLOCK_BYTES (64u * 1024u)     /* a thread flushes past this */
#define HT_CAP_MAX_STR 4096u                  /* longer strings are cut */
#define HT_CAP_MAX_BLOCK (1u << 24)           /* readers refuse larger bodies */

enum ht_cap_record {
    HT_CAP_ALLOC = 1, HT_CAP_FREE = 2, HT_CAP_STACK = 3, HT_CAP_FRAME = 4,
    HT_CAP_THREAD = 5, HT_CAP_SAMPLE = 6, HT_CAP_MARKER = 7, HT_CAP_HEADER = 8,
    HT_CAP_END = 9,
};

/* FNV-1a 32 of n bytes: the block checksum. */
uint32_t ht_cap_checksum(const uint8_t *p, size_t n);

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
void ht_cap_free(uint64_t addr);
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
