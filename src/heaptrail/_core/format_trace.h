/* format_trace.h - the trace snapshot file (Snapshot.dump / Snapshot.load).
 * This comment is the format's specification.
 *
 * Layout (varints are LEB128 through codec.h; u32 is little-endian):
 *
 *   magic    8 bytes  "HTTRSNP\n"
 *   version  u32      1
 *   sections, each:   tag u8, length varint, payload[length]
 *     1 META     traceback_limit, sample_interval, traced_current,
 *                traced_peak, is_peak (0/1)
 *     2 STRINGS  count, then count x (length varint, UTF-8 bytes)
 *     3 FRAMES   count, then count x (filename+1, name+1, lineno)
 *                (0 = no string)
 *     4 STACKS   count, then count x (parent+1, frame); a parent always
 *                comes before its children (parent+1 <= own index), which
 *                makes a cycle impossible and depth a single pass
 *     5 TRACES   count, then count x (size, stack+1, domain, thread delta
 *                (zigzag), seq delta (zigzag), count)
 *     0 END      length 8: u64 FNV-1a (64-bit prime 1099511628211, started
 *                from 1469598103934665603: not FNV's offset basis, see
 *                ht_fnv1a in hashtable.h) of every byte before this
 *                tag; nothing may follow. Any single changed byte changes
 *                it, so damage is reported even where the fields would
 *                still parse.
 *   Known sections appear once each, in the order above; a section with an
 *   unknown tag is skipped (its length says how far).
 *   Compatibility rule: new information goes in new sections (new tags,
 *   same version), which older readers skip; the version changes only when
 *   a known section's content changes, and a reader refuses a version it
 *   does not know.
 *
 *   Example, an empty snapshot with limit 1:
 *   48 54 54 52 53 4E 50 0A  01 00 00 00   magic, version 1
 *   01 05 01 00 00 00 00                   META: limit 1, no sampling ...
 *   02 01 00  03 01 00  04 01 00  05 01 00 four empty tables
 *   00 08 <8 bytes>                        END and checksum
 *
 * The reader validates every count (ht_rd_count: a count must fit in the
 * bytes left), every id against its table, every section length against
 * the file, so a damaged file raises heaptrail.HeaptrailError and never
 * makes it allocate more than a small multiple of the file's size (the
 * file image, plus at most 8 bytes of arrays per byte of a section: a
 * trace takes >= 6 bytes and 48 in memory, a string >= 1 and 8).
 */
#ifndef HT_FORMAT_TRACE_H
#define HT_FORMAT_TRACE_H
#include "tracesnap.h"

/* Adds _tsnap_dump, _tsnap_load, _tsnap_dumps, _tsnap_loads to the module. */
int ht_ftrace_init(PyObject *m);

#endif
