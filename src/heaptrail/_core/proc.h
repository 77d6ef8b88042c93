/* proc.h - what other engines need from proc.c. */
#ifndef HT_PROC_H
#define HT_PROC_H

#include <stdint.h>

/* This process's resident set size in bytes, from /proc/self/statm; 0 when
 * unreadable. Safe without the GIL and inside allocator hooks: no Python
 * call, no allocation. cache: NULL to open and close the file each time
 * (right across fork: /proc/self is resolved at open), or a variable holding
 * -1 at first, where the open file is kept for later calls (a child of fork
 * opens its own the first time it calls). */
uint64_t ht_proc_self_rss(int *cache);

#endif
