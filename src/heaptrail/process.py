"""Process memory as the OS and the allocators see it.

    memory(pid=None)   RSS, VMS, shared, USS, PSS, swap, peak RSS, data, stack, threads
    maps(pid=None)     one row per mapping of /proc/PID/smaps, with its kind
    pymalloc()         pymalloc arenas, pools and blocks per size class (this process)
    malloc()           glibc malloc statistics, mallinfo2 (this process)
    gc()               gc thresholds, counts, per-generation statistics and pauses
    track_gc_pauses() / untrack_gc_pauses()

The readers and parsers are C (heaptrail._core, proc.c); this module only
passes calls through and gathers the gc module's own figures. Sizes are bytes.
Linux only for memory() and maps(): elsewhere they raise HeaptrailError.

Permissions: /proc/PID/status and statm of another user's process are usually
readable, smaps_rollup and smaps are not (the kernel asks for ptrace rights).
memory() then returns pss and uss as None; maps() raises HeaptrailError.
"""
import gc as _gc
from dataclasses import dataclass

from heaptrail import _core

Memory = _core.Memory
Mapping = _core.Mapping
Pymalloc = _core.Pymalloc
SizeClass = _core.SizeClass
Malloc = _core.Malloc

__all__ = [
    "memory", "maps", "pymalloc", "malloc", "gc", "track_gc_pauses", "untrack_gc_pauses",
    "Memory", "Mapping", "Pymalloc", "SizeClass", "Malloc", "GcStats", "GcGeneration",
]

KINDS = ("heap", "stack", "anon", "file", "shm", "vdso", "vvar", "vsyscall", "other")


def memory(pid=None):
    """Memory of process `pid` (default: this one) as a Memory record. A thread id
    (which Linux also answers for under /proc) is refused with the process it belongs to.

    rss/vms/shared from statm, swap/peak_rss/data/stack/threads from status,
    pss and uss (private clean + dirty) from smaps_rollup. A figure the kernel
    does not give is None (pss/uss of a process we may not ptrace; every Vm*
    figure of a kernel thread). Raises HeaptrailError "no process with pid N".
    """
    return _core.proc_memory(pid)


def maps(pid=None):
    """The mappings of process `pid` (default: this one), a list of Mapping in
    address order: start, end, perms, offset, path, kind, size, rss, pss,
    shared_clean, shared_dirty, private_clean, private_dirty, swap.

    kind is one of KINDS: '[heap]' is heap, '[stack]' stack, a mapping with
    no path (or '[anon:name]') anon, a file file, shared anonymous memory,
    /dev/shm, SysV segments and memfds shm.
    """
    return _core.proc_maps(pid)


def pymalloc():
    """This process's pymalloc state as a Pymalloc record.

    Read from sys._debugmallocstats(), whose text heaptrail captures and
    parses in C. When pymalloc is not the object allocator
    (PYTHONMALLOC=malloc, mimalloc) the record has in_use=False and None
    figures. fragmentation = bytes_free / (bytes_used + bytes_free): the share
    of the used pools' space that sits in free blocks, which only objects of
    the same size class can reuse.
    """
    return _core.proc_pymalloc()


def malloc():
    """glibc's malloc statistics (mallinfo2) as a Malloc record: arena,
    in_use (uordblks), free (fordblks), mmapped (hblkhd), mmapped_chunks
    (hblks), free_chunks (ordblks), fastbin_chunks (smblks), fastbin_free
    (fsmblks), releasable (keepcost). HeaptrailError without glibc >= 2.33."""
    return _core.proc_malloc()


@dataclass(frozen=True)
class GcGeneration:
    """One gc generation: its threshold and count, what gc.get_stats() says,
    and the pauses timed since track_gc_pauses() (seconds; 0 untracked)."""
    generation: int
    threshold: int
    count: int
    collections: int
    collected: int
    uncollectable: int
    pauses: int
    pause_total: float
    pause_max: float
    pause_last: float


@dataclass(frozen=True)
class GcStats:
    """gc state: thresholds and counts (as gc.get_threshold()/get_count()),
    one GcGeneration each, and whether pauses are being timed."""
    enabled: bool
    tracking_pauses: bool
    thresholds: tuple
    counts: tuple
    generations: tuple

    @property
    def pauses(self):
        return sum(g.pauses for g in self.generations)

    @property
    def pause_total(self):
        return sum(g.pause_total for g in self.generations)

    @property
    def pause_max(self):
        return max((g.pause_max for g in self.generations), default=0.0)


def gc():
    """The gc's thresholds, counts, per-generation collections, collected and
    uncollectable objects, and the pause times measured since
    track_gc_pauses() (count, total, max, last per generation)."""
    thresholds = _gc.get_threshold()
    counts = _gc.get_count()
    stats = _gc.get_stats()
    pauses = _core.gc_pauses()
    gens = []
    for g, st in enumerate(stats):
        n, total, mx, last = pauses[g] if g < len(pauses) else (0, 0.0, 0.0, 0.0)
        gens.append(GcGeneration(
            generation=g,
            threshold=thresholds[g] if g < len(thresholds) else 0,
            count=counts[g] if g < len(counts) else 0,
            collections=st.get("collections", 0),
            collected=st.get("collected", 0),
            uncollectable=st.get("uncollectable", 0),
            pauses=n, pause_total=total, pause_max=mx, pause_last=last,
        ))
    return GcStats(
        enabled=_gc.isenabled(),
        tracking_pauses=_core.gc_pause_callback in _gc.callbacks,
        thresholds=tuple(thresholds), counts=tuple(counts), generations=tuple(gens),
    )


def track_gc_pauses(reset=False):
    """Starts timing every gc collection (a C callback in gc.callbacks: a
    clock read and a few additions per collection). Calling it again is
    harmless; reset=True zeroes the figures gathered so far."""
    if reset:
        _core.gc_pauses_reset()
    if _core.gc_pause_callback not in _gc.callbacks:
        _gc.callbacks.append(_core.gc_pause_callback)


def untrack_gc_pauses():
    """Stops timing collections; the figures gathered so far are kept."""
    while _core.gc_pause_callback in _gc.callbacks:
        _gc.callbacks.remove(_core.gc_pause_callback)
