/* tracer.h - the allocation tracer: PEP 445 hooks on the RAW, MEM and OBJ
 * domains, a block table (address -> record), current/peak accounting
 * globally and per thread, the state at the peak, and a sampling mode.
 *
 * Design, and why (figures: benchmarks/cases/tracer.py, 3.11, 2 cores):
 *
 * Hooks. Each domain's hook chains to the allocator found at start() and
 * never changes a block's layout (no header), so a block allocated under
 * the hook may be freed after stop() and vice versa. Our allocator structs
 * carry the previous allocator's ctx, so a thread that reads a half-updated
 * PyMemAllocatorEx while start()/stop() swaps them still calls a matching
 * (function, ctx) pair. A thread-local guard is set while we capture a
 * stack or build a snapshot: allocations made meanwhile (frame objects
 * CPython materializes, our snapshot's strings) pass through untraced, but
 * frees are always processed so a traced block is never left stale.
 *
 * Stack capture (stacks.h). Designs:
 *   (a) walk frames at each allocation, with a frame cache (frame object ->
 *       caller's node, dropped when the frame's memory is freed), a memo of
 *       the last capture (same frame and instruction -> same node: a dict
 *       and its keys, every object json.loads builds) and a trie interned on
 *       (caller node, code, lasti); the line is computed only at snapshot
 *       time with PyCode_Addr2Line. An allocation in a frame already seen
 *       costs PyEval_GetFrame + one cache probe + one intern probe, whatever
 *       the depth.
 *   (b) a shadow stack kept by a C profile function: every Python call and
 *       return pays a callback, on 3.11 CPython materializes a frame object
 *       for every call to hand it over, and on 3.12+ PyEval_SetProfile runs
 *       on sys.monitoring and reports C calls too.
 *   (c) sys.monitoring (3.12+ only; nothing for 3.11).
 * Kept: (a). Only (a) was built and measured; (b) and (c) were rejected on
 * the reasoning above (they pay per call, and these workloads make several
 * calls per traced allocation), not on a measurement.
 * Where the time goes (alloc_heavy, 18.8M allocations, CPU seconds, one
 * machine shared with other jobs). With the first block table (the shared
 * ht_table, address -> record index): untraced 1.28; hooks alone 1.7; +
 * stack capture 2.0; hooks + bookkeeping without capture 4.0; everything
 * 4.6: the bookkeeping (about three random cache lines per operation in
 * 8-16 MB tables) was the cost, not the stacks. A nursery (direct-mapped
 * cache of recent blocks in front of the table) gained nothing (most blocks
 * here outlive any cache-sized nursery) and was reverted. The block map
 * (blockmap.h: slots laid out by address, so blocks allocated together share
 * cache lines) brought everything to 2.5 (untraced 1.46 in that run): hooks
 * alone 1.74, + capture 1.9, + bookkeeping without capture 2.25.
 *
 * Measured, first pass (3.11, machine shared with 4 other jobs, load ~4 on
 * 2 cores, so wall times are noisy): interleaved runs of alloc_heavy,
 * median CPU seconds of 3: untraced 1.48; heaptrail full 2.96 (2.0x, peak
 * RSS 46 vs 31 MB: 1.48x); heaptrail sampled 512 KiB 1.73 (1.17x);
 * memray with python allocators 4.95 (3.3x, 53 MB); tracemalloc 1 frame
 * 14.2 (9.6x, 65 MB). benchmarks/results/latest.json (harness, wall, same
 * code, under that load): alloc_heavy full 5.5x, sampled 2.6x, memray-pyalloc
 * 5.6x, tracemalloc-1 15x, tracemalloc-25 88x; deep_recursion full 2.1x,
 * sampled 1.5x, memray-pyalloc 4.7x, tracemalloc-25 46x. Targets: full
 * <= 1.5x and sampled <= 1.05x missed (2.0x and 1.17x in CPU time); RSS
 * <= 1.6x met (1.48x); faster than memray tracing the same blocks.
 * Second pass (instruction counts with valgrind --tool=callgrind, stable
 * whatever the load: alloc_heavy at scale 0.05, 938,692 traced allocations,
 * tracer Ir minus the untraced run's, per allocation with its free):
 *   full 622 -> 461 Ir, sampled 107 -> ~50 Ir. What did it:
 *   - hooks: the sampled fast path is inline in each hook (a thread-local
 *     countdown subtraction and the guard around the allocator, no call);
 *     the traced path is tr_on_alloc out of line. Frees test the sampling
 *     filter inline. (sampled -55 Ir)
 *   - sampling filter: Fibonacci hash of the grain instead of ht_hash64, and
 *     byte counters (16 KiB, stays in L1) instead of 65536 uint32 (256 KiB,
 *     read on every free): CPU 1.10x -> 1.04x in an A/B run.
 *   - frame cache: a counting filter over its keys (stacks.h) spares the
 *     table probe on every OBJ free (-30 Ir a free).
 *   - block map: a radix page directory instead of the hash probe, page
 *     creation out of line (bm_page had been saving registers for it: 18 of
 *     its 38 Ir a call), put/take fast path inline in blockmap.h (-90 Ir).
 *   - the books' add/forget always_inline into the hook paths (-50 Ir).
 * Third pass: see tracer.c's header (the log of deferred operations, the
 * capture memo, the sampling fast paths).
 * Left after the second pass (full, per allocation): stack capture ~150 Ir (PyEval_GetFrame 15,
 * PyFrame_GetLasti 11, PyGC_Disable/Enable 14, memo hit for 80% of the
 * captures, a walk + intern for the rest), the books ~90, block map ~65,
 * the wrapper ~45. Tried and not kept: nothing reverted in this pass; not
 * tried for lack of time: records inline in the block map's slots (one
 * cache line per free instead of two), an inline memo check before
 * PyEval_GetFrame.
 * CPU seconds, medians of 3 interleaved runs of alloc_heavy (3.11, load ~5
 * on 2 cores), base = the code before this pass, same run: untraced 1.61;
 * full 2.98 (1.85x) -> 2.69 (1.67x); sampled 1.77 (1.10x) -> 1.73 (1.07x),
 * and 1.72 (1.04x, untraced 1.65) with the byte filter; max RSS untraced
 * 32.8 MB, full 49.4 MB (1.5x), sampled 35 MB. Harness (wall, loaded
 * machine, final code): see benchmarks/results/latest.json. deep_recursion
 * in one process (CPU, scale 0.5, two rounds): untraced 0.165, sampled
 * 0.18 (1.08x), full 0.305 (1.85x); the harness's "none" child there took
 * 0.55 s against 0.36 s sampled (ratios below 1): not understood yet, so
 * those harness ratios mean nothing.
 * Targets: full <= 1.5x still missed (1.67-1.74x CPU); sampled <= 1.05x met
 * in CPU time on the last A/B run (1.04x), within noise of it; RSS met.
 * What is left in the sampled mode is the wrapper itself (an extra indirect
 * call, the guard and the countdown around the underlying allocator, ~3 ns a
 * call over 37.6M calls); PEP 445 offers no cheaper way to see every
 * allocation.
 *
 * On 3.11 materializing a frame object can run the garbage collector, i.e.
 * arbitrary Python code, inside an allocator (say, in the middle of a dict
 * resize): the capture disables the collector around it (PyGC_Disable),
 * which 3.12+ does not need (collections are deferred to the eval loop).
 *
 * Locking. "The books" (block table, records, counters, thread slots), the
 * log of deferred operations (tracer.c) and the stack tables are protected
 * by the GIL: MEM and OBJ hooks always hold it, so their hot path takes no
 * lock and does no atomic operation. A RAW
 * hook called without the GIL (PyGILState_Check) never touches the books:
 * it queues its operation (ADD after the block is allocated, REMOVE before
 * it is freed, so the queue order is the blocks' order) under a spinlock,
 * and the next GIL holder applies the queue before touching the books (one
 * load of a flag on the hot path). A first version took a spinlock for
 * every operation instead: its atomic exchange cost ~10% of the traced run.
 * RAW blocks get no stack: a RAW hook may be called by another allocator
 * wrapper that holds its own lock (tracemalloc's raw_malloc does), and a
 * capture can allocate a frame object through that wrapper's hooks: a
 * deadlock (seen, and tested). RAW blocks allocated by the underlying
 * allocator on behalf of MEM/OBJ (pymalloc's large requests) pass through:
 * the outer hook records the block once.
 *
 * Records: a slab of 24-byte records (size, seq, stack, thread slot)
 * with a LIFO stack of free indices; the block map (blockmap.h) maps
 * address -> index: 1 KiB per 4 KiB page of address space that ever held a
 * traced block, plus a 64 KiB radix leaf per 64 MiB region touched, kept
 * until stop() (a heap whose big blocks keep landing on new addresses grows
 * it: bounded by the address space the heap touched).
 *
 * Peak: peak_seq is the sequence number of the allocation that reached the
 * current peak. A freed record with seq <= peak_seq was live at the peak: its
 * index moves to a side list instead of the free stack. A new peak moves the
 * side list to the free stack (a sequential copy of indices, never a walk
 * over cold records; each record enters the side list at most once per peak:
 * amortized O(1) per free). The peak snapshot is the live records with
 * seq <= peak_seq plus the side list. Free records are reused LIFO (warm).
 *
 * Sampling (start(sample=B)): a per-thread countdown drawn from an
 * exponential of mean B (xorshift64* PRNG, -log(u) * B) is decreased by each
 * allocation's size; a block is sampled when it crosses zero, i.e. with
 * probability p = 1 - exp(-s/B), and then weighs s/p bytes and 1/p blocks,
 * so totals are unbiased. The relative standard error of a total T made of
 * blocks much smaller than B is about sqrt(B/T) (512 KiB over 1 GiB: 2.2%).
 * An unsampled allocation touches only thread-local state. Its free must not
 * take the lock either: a counting filter (4096 atomic byte counters (16384 before the third pass), sticky
 * at 255, indexed by a hash of the address) is incremented/decremented under the lock when a
 * sampled block is added/removed and read without the lock on free; zero
 * means "certainly not sampled". It cannot miss: the block's insertion
 * happened before the hook returned the block, which happened before any
 * thread could free it. False positives only take the slow (correct) path.
 *
 * Threads: per-thread current/peak in slots keyed by thread ident (a new
 * thread reusing a dead thread's ident shares its slot); names are read
 * from `threading` at report time, never in a hook.
 *
 * fork(): pthread_atfork takes the lock around fork() so the child never
 * inherits it held; the child keeps tracing with a fresh state (its
 * inherited traces are dropped lazily at its first traced operation; stacks
 * are kept, they are still valid).
 *
 * Shutdown: heaptrail.tracer registers atexit(stop); a Py_AtExit handler
 * restores the allocators if we are still on top at the very end.
 *
 * tracemalloc: heaptrail.tracer.start() refuses while tracemalloc traces.
 * If tracemalloc is started after us it chains to our hooks; our stop() then
 * sees it is not on top, leaves its hooks (and ours, below, turned into a
 * pass-through) in place and only stops recording: nothing is corrupted.
 *
 * Not supported: subinterpreters with their own GIL (the books rely on one
 * GIL) and free-threaded builds (refused at start()). A RAW realloc without
 * the GIL that fails leaves its (still valid) block untraced.
 */
#ifndef HT_TRACER_H
#define HT_TRACER_H

#include "common.h"

#endif
