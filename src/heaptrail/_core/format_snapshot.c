/* format_snapshot.c - (being written) */
#include "heap.h"
int ht_snapshot_save(const ht_heap *h, const char *path) { ht_error("not yet"); return -1; }
int ht_snapshot_export_jsonl(const ht_heap *h, const char *path) { ht_error("not yet"); return -1; }
PyObject *ht_snapshot_load(const char *path) { return ht_error("not yet"); }
