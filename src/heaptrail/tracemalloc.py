"""The stdlib's `tracemalloc` API backed by heaptrail's tracer.

    import heaptrail.tracemalloc as tracemalloc

runs code written for the standard module: the same functions and signatures
(`start(nframe=1)`, `take_snapshot()`, `get_traced_memory()` ...) and the same
classes with the same output (`Snapshot.statistics("lineno")`,
`compare_to`, `filter_traces`, `Statistic`, `StatisticDiff`, `Traceback`,
`Frame`, `Filter`, `DomainFilter`, `Trace`). The engine is
`heaptrail.tracer`; the snapshot views are `heaptrail.tracesnap`.

Differences, all additions: frames also carry the function's `name`;
`Snapshot.dump()` writes heaptrail's binary format (read back with
`Snapshot.load()`), not a pickle.
"""
from heaptrail.tracesnap import (BaseFilter, DomainFilter, Filter, Frame, Snapshot,  # noqa: F401
                                 Statistic, StatisticDiff, Trace, Traceback, _format_size)

__all__ = ["start", "stop", "is_tracing", "clear_traces", "take_snapshot",
           "get_traced_memory", "reset_peak", "get_object_traceback",
           "get_tracemalloc_memory", "get_traceback_limit", "Snapshot", "Statistic",
           "StatisticDiff", "Traceback", "Frame", "Filter", "DomainFilter", "Trace",
           "BaseFilter"]

_MAX_NFRAME = 65535
# the last nframe given to start(): tracemalloc keeps it after stop()
_last_nframe = 1


def _tracer():
    from heaptrail import tracer
    return tracer


def start(nframe=1):
    """Start tracing Python memory allocations, storing at most `nframe`
    frames per traceback (default 1, as tracemalloc)."""
    if not isinstance(nframe, int) or isinstance(nframe, bool):
        raise TypeError("nframe must be an integer, not %s" % type(nframe).__name__)
    if not 1 <= nframe <= _MAX_NFRAME:
        raise ValueError("the number of frames must be in range [1; %d]" % _MAX_NFRAME)
    global _last_nframe
    _tracer().start(frames=nframe)
    _last_nframe = nframe


def stop():
    """Stop tracing and clear the traces (no-op when not tracing)."""
    tracer = _tracer()
    if tracer.is_tracing():
        tracer.stop()


def is_tracing():
    """True if allocations are being traced."""
    return bool(_tracer().is_tracing())


def clear_traces():
    """Forget the traces of the blocks allocated so far (tracing goes on)."""
    tracer = _tracer()
    if tracer.is_tracing():
        tracer.clear()


def get_traced_memory():
    """(current, peak) bytes of traced memory blocks; (0, 0) when not tracing."""
    tracer = _tracer()
    if not tracer.is_tracing():
        return (0, 0)
    current, peak = tracer.get_traced_memory()
    return (current, peak)


def reset_peak():
    """Set the peak of traced memory to the current size."""
    tracer = _tracer()
    if tracer.is_tracing():
        tracer.reset_peak()


def get_traceback_limit():
    """The most frames a traceback keeps (the nframe given to start(), still
    after stop(), as tracemalloc's)."""
    tracer = _tracer()
    if not tracer.is_tracing():
        return _last_nframe
    return int(tracer.get_traceback_limit())


def get_tracemalloc_memory():
    """Bytes the tracer itself uses to store the traces."""
    return int(_tracer().get_tracer_memory())


def get_object_traceback(obj):
    """The Traceback where `obj` was allocated, or None when it was not
    traced (or tracing is off)."""
    tracer = _tracer()
    if not tracer.is_tracing():
        return None
    tb = tracer.get_object_traceback(obj)
    if tb is None or isinstance(tb, Traceback):
        return tb
    return Traceback(tuple(tb))


def take_snapshot():
    """A Snapshot of the traces of the memory blocks allocated by Python."""
    tracer = _tracer()
    if not tracer.is_tracing():
        raise RuntimeError("the tracemalloc module must be tracing memory "
                           "allocations to take a snapshot")
    return tracer.take_snapshot()
