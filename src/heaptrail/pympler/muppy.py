"""pympler.muppy's functions over heaptrail's C loops (``_core/pymcompat.c``).

``get_objects()`` does what pympler's does, in C: a full collection, the gc's list of tracked
objects without frames, plus every object those refer to directly that the gc does not track
(str, int, float, and containers the gc stopped tracking), each once. The lists heaptrail makes
for the call are left out, and so are heaptrail's own frames with ``include_frames=True``. (The
heap snapshot, ``heaptrail.snapshot()``, sees more - everything reachable at any depth - but
holds addresses, not objects; muppy's callers want the objects themselves.)

Sizes are flat sizes (``sys.getsizeof``), computed in C. ``get_referents(obj, level)`` walks
level by level and lists each object once, in the order found, stopping at ``level``. pympler
extends the list it is iterating, so from level 2 on it also walks the objects it appends
(everything reachable); at level 1 the results are the same.
"""
import gc
import os
import sys

from heaptrail import _core
from heaptrail.pympler import summary

__all__ = ["get_objects", "get_size", "get_referents", "filter", "sort", "get_diff",
           "get_types", "ignore_object", "print_summary"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def ignore_object(obj):
    """True for objects get_objects leaves out: frames."""
    return isinstance(obj, type(sys._getframe()))


def get_objects(remove_dups=True, include_frames=False):
    """Every object the gc tracks (frames left out) and the untracked objects they refer to.
    ``include_frames=True`` appends the frames of the caller's callers (not the caller's own,
    which would hold the list in a cycle), as pympler does."""
    gc.collect()
    tracked = gc.get_objects()
    try:
        res = _core.pym_objects(tracked, bool(remove_dups), ())
    finally:
        del tracked
    if include_frames:
        f = sys._getframe(1)
        while f is not None and f.f_code.co_filename.startswith(_PACKAGE_DIR):
            f = f.f_back
        f = f.f_back if f is not None else None  # the caller's own frame stays out
        while f is not None:
            res.append(f)
            f = f.f_back
        del f
    return res


def get_size(objects):
    """Sum of the flat sizes of objects, in bytes."""
    return _core.pym_get_size(objects)


def get_referents(object, level=1):
    """The objects ``object`` refers to (gc.get_referents), and theirs down to ``level``, each
    once."""
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(f"level must be an int, not {type(level).__name__}")
    if level < 1:
        return []
    return _core.pym_referents(object, level, False)


def filter(objects, Type=None, min=-1, max=-1):  # noqa: A001 - pympler's name
    """The objects that are instances of Type (any type when None) and whose flat size is at
    least ``min`` and at most ``max`` (a bound < 0, or None, is no bound)."""
    lo = -1 if min is None else int(min)
    hi = -1 if max is None else int(max)
    if lo >= 0 and hi >= 0 and lo > hi:
        raise ValueError("minimum must be smaller than maximum")
    return _core.pym_filter(objects, Type, lo, hi)


def sort(objects):
    """The objects ordered by flat size, smallest first (equal sizes keep their order)."""
    return _core.pym_sort(objects)


def get_types(objects):
    """The distinct types of objects, in order of first appearance."""
    return list(dict.fromkeys(row[0] for row in _core.pym_summarize(objects)))


def get_diff(left, right):
    """``{'+': objects only in right, '-': objects only in left}``, by identity, each once."""
    plus, minus = _core.pym_diff(left, right)
    return {"+": plus, "-": minus}


def print_summary():
    """Prints summary.print_ of every object get_objects() lists, as pympler's does."""
    summary.print_(summary.summarize(get_objects()))
