/* format_snapshot.h - the heap snapshot file (snap.save / heaptrail.load)
 * and the meliae-style JSON lines export. This comment is the spec.
 *
 * Integers are LEB128 varints (codec.h) unless marked u32 (little-endian).
 *
 *   +--------+---------+-------------------------------------------------+
 *   | magic  | 8 bytes | "HTSNAP\0\1"                                    |
 *   | version| u32     | 2                                               |
 *   | check  | u64     | ht_checksum (codec.h) of every byte after it    |
 *   | header | varints | python_minor, n (objects), m (edges), s (strings)|
 *   | section| ...     | repeated: tag (1 byte), length (varint),        |
 *   |        |         | payload (length bytes)                          |
 *   +--------+---------+-------------------------------------------------+
 *
 *   tag 1 STRINGS  s times: blob (varint length, UTF-8 bytes)
 *   tag 2 OBJECTS  n times, object i:
 *                    addr    svarint, difference from the previous object's
 *                            address (the first from 0)
 *                    type    varint, object index + 1 (0 = none)
 *                    size    varint, flat bytes
 *                    len     svarint (-1 = none)
 *                    flags   varint, HT_OBJ_* (heap.h)
 *                    value   varint, string id + 1 (0 = none)
 *                    owner   varint, object index + 1 (0 = none)
 *                    module  varint, string id + 1 (0 = none)
 *                    edges   varint, number of outgoing edges
 *   tag 3 EDGES    m times, in object order: dst (varint object index),
 *                  label (varint: 0 none, 2k+1 list index k, 2k+2 string k)
 *   tag 0 END      length 0; the last section of every complete file
 *
 *   Example: an empty heap written by Python 3.11 is these 32 bytes:
 *     48 54 53 4e 41 50 00 01 | 02 00 00 00 | (8 bytes of checksum) |
 *     0b 00 00 00 | 01 00 | 02 00 | 03 00 | 00 00
 *   (magic, version 2, checksum, header: python 11, n=0, m=0, s=0; then
 *   STRINGS, OBJECTS and EDGES with empty payloads, and END).
 *
 *   Version 1 (still read) is version 2 without the checksum. The checksum
 *   is what turns a flipped bit in a size, an address or a flag, which
 *   parses as well as the right one, into an error: without it 74 of 180
 *   randomly damaged files loaded with altered data.
 *
 * Invariants the reader checks (any failure is a HeaptrailError naming the
 * file, never a crash): the magic; the version; the checksum (version 2);
 * every section length fits in
 * what is left; STRINGS, OBJECTS, EDGES each appear exactly once and in this
 * order, and END follows; every count is bounded by the bytes that would
 * hold it (ht_rd_count) so no allocation exceeds a multiple of the file size;
 * every object index < n, string id < s, edge counts sum to m, and a
 * section's payload is consumed exactly.
 *
 * Compatibility rule: a reader of version V reads files of version <= V.
 * Additions that older readers can ignore are new sections with new tags
 * (readers skip unknown tags whose length fits); anything else (a changed
 * field, a removed section) bumps the version. Section tags on disk are
 * their own numbers, not in-memory enums.
 */
#ifndef HT_FORMAT_SNAPSHOT_H
#define HT_FORMAT_SNAPSHOT_H

#include "heap.h"

#define HT_SNAP_MAGIC "HTSNAP\0\1"
#define HT_SNAP_MAGIC_LEN 8
#define HT_SNAP_VERSION 2u

/* Writes h to path; 0, or -1 with OSError/MemoryError set. */
int ht_snapshot_save(const ht_heap *h, const char *path);

/* Reads a snapshot file into a new handle (heap.c's HeapHandle); NULL with
 * HeaptrailError (bad file), OSError or MemoryError set. */
PyObject *ht_snapshot_load(const char *path);

/* Writes one JSON object per line: address, type, size, len, value, name,
 * refs (meliae's fields); 0 or -1 with an exception set. */
int ht_snapshot_export_jsonl(const ht_heap *h, const char *path);

#endif
