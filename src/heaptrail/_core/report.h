/* report.h - the capture reader: a streaming pass over a capture file
 * (format in capture.h) that folds its events into the reports: peak,
 * leaks at exit, totals, by stack/line/function/file, threads, size
 * histogram, largest blocks, memory over time; and the pprof encoder.
 *
 * Memory: proportional to the blocks live at once, the distinct stacks,
 * frames, strings and threads, and the memory samples (at most
 * HT_REP_MAX_SAMPLES, decimated beyond) - never to the number of events.
 * Two passes: the first finds the peak (the event after which traced bytes
 * were highest, first reached) and everything else; the second replays
 * allocations and frees up to that event to know what was live there.
 *
 * Stacks are canonicalized: nodes (caller node, frame) with frames by
 * (file, function, line), so two stack ids that print the same are one
 * node. Node 0 is the root: allocations without a Python frame count there.
 * A node's index is always larger than its parent's.
 */
#ifndef HT_REPORT_H
#define HT_REPORT_H

#include "common.h"
#include "codec.h"

#define HT_REP_MAX_SAMPLES (1u << 20)
#define HT_REP_MAX_MARKERS (1u << 16)
#define HT_REP_MAX_TICKS (1u << 18)   /* time index entries (timeline), decimated beyond */
#define HT_REP_LARGEST 16

enum { HT_REP_TOTAL = 0, HT_REP_PEAK = 1, HT_REP_LEAKS = 2, HT_REP_METRICS = 3 };

typedef struct ht_rep ht_rep;

/* Reads the capture at path. Returns the report, or NULL with a Python
 * exception: OSError for the file, heaptrail.Error (one line) for a file
 * that is not a capture or is corrupted. A truncated capture is a report
 * whose truncated field says why. */
ht_rep *ht_rep_read(const char *path);
void ht_rep_free(ht_rep *r);

int ht_report_init(PyObject *m);

#endif
