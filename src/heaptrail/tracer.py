"""Where every byte was allocated: heaptrail's allocation tracer.

    from heaptrail import tracer
    tracer.start()                   # full tracing, 128 frames per stack
    ...
    snap = tracer.take_snapshot()    # a heaptrail.tracesnap.Snapshot
    for stat in snap.statistics("lineno")[:10]:
        print(stat)
    print(tracer.peak_snapshot().statistics("lineno")[0])   # state at the high-water mark

tracemalloc's API (start, stop, is_tracing, clear, get_traced_memory,
reset_peak, get_object_traceback, take_snapshot, get_traceback_limit) plus
`peak_snapshot()`, `thread_stats()` and a sampling mode:
`start(sample=512 * 1024)` records each block with probability
1 - exp(-size/sample) and weighs it so totals are unbiased estimates.

The engine is C (`_core/tracer.c`, `_core/stacks.c`); its design, limits and
measured costs are written in `_core/tracer.h`.
"""
import atexit
import threading

from heaptrail import _core
from heaptrail._core import Error as HeaptrailError
# imported now, not at the first snapshot, so the import is never traced
from heaptrail.tracesnap import Snapshot, Traceback

__all__ = ["start", "stop", "is_tracing", "clear", "get_traced_memory", "reset_peak",
           "get_object_traceback", "take_snapshot", "peak_snapshot", "thread_stats",
           "get_traceback_limit", "get_tracemalloc_memory", "get_tracer_memory", "stats"]

DEFAULT_FRAMES = 128
DEFAULT_SAMPLE = 512 * 1024

_atexit_registered = False


def start(frames=DEFAULT_FRAMES, sample=None):
    """Start tracing allocations, keeping the innermost `frames` frames of
    each stack (0: counting only, no stacks, as the line profiler uses it). `sample=BYTES` traces a Poisson sample (mean interval BYTES)
    instead of every block. Refused while the stdlib tracemalloc traces."""
    global _atexit_registered
    if isinstance(frames, bool) or not isinstance(frames, int):
        raise TypeError("frames must be an int, not %s" % type(frames).__name__)
    if sample is not None:
        if isinstance(sample, bool) or not isinstance(sample, int):
            raise TypeError("sample must be an int (bytes) or None, not %s" % type(sample).__name__)
        if sample <= 0:
            raise HeaptrailError("sample must be a positive number of bytes, not %d" % sample)
    import tracemalloc
    if tracemalloc.is_tracing():
        raise HeaptrailError("the stdlib tracemalloc is tracing: stop it (tracemalloc.stop()) "
                             "before starting heaptrail's tracer")
    if not _atexit_registered:
        atexit.register(stop)
        _atexit_registered = True
    _core._tracer_start(frames, sample or 0)


def stop():
    """Stop tracing and drop the traces (no-op when not tracing)."""
    _core._tracer_stop()


def is_tracing():
    return _core._tracer_is_tracing()


def clear():
    """Forget every trace and reset current and peak; tracing goes on."""
    _core._tracer_clear()


def get_traced_memory():
    """(current, peak) traced bytes (estimates when sampling)."""
    return _core._tracer_traced_memory()


def reset_peak():
    """Set the peak to the current traced memory."""
    _core._tracer_reset_peak()


def get_traceback_limit():
    """Frames kept per traceback (the `frames` given to start())."""
    return _core._tracer_limit()


def get_tracemalloc_memory():
    """Bytes used by the tracer's own tables (block table, records, stacks)."""
    return _core._tracer_memory()


get_tracer_memory = get_tracemalloc_memory


def stats():
    """The tracer's counters: current, peak, allocated (bytes since start or
    clear), allocations, live_blocks, freed_since_peak, lost, memory, stacks..."""
    return _core._tracer_stats()


def get_object_traceback(obj):
    """The Traceback where `obj` was allocated (most recent frame last, as
    tracemalloc's), or None when it was not traced."""
    frames = _core._tracer_object_traceback(obj)
    if frames is None:
        return None
    return Traceback(tuple(frames))


def _snapshot(at_peak):
    return Snapshot._from_handle(_core._tracer_snapshot(at_peak))


def take_snapshot():
    """The live traced blocks now, as a heaptrail.tracesnap.Snapshot."""
    return _snapshot(False)


def peak_snapshot():
    """The traced blocks that were live at the high-water mark of traced
    memory (since start, clear or reset_peak)."""
    return _snapshot(True)


def thread_stats():
    """Per-thread traced memory: a list of dicts (ident, name, current, peak),
    biggest peak first. Threads that ended are named "<ended>"."""
    names = {t.ident: t.name for t in threading.enumerate()}
    # `ended`: a later thread took the ident (the engine keeps them apart)
    rows = [{"ident": ident, "name": "<ended>" if ended else names.get(ident, "<ended>"),
             "current": cur, "peak": peak}
            for ident, cur, peak, ended in _core._tracer_thread_stats()[1]]
    rows.sort(key=lambda r: (-r["peak"], r["ident"]))
    return rows
