"""pympler.tracker's SummaryTracker: what changed, per type, between two summaries of the heap.

    tr = SummaryTracker()        # a first summary
    ...
    tr.print_diff()              # rows that changed since the last summary, pympler's table

Summaries are :func:`heaptrail.pympler.summary.summarize` over
:func:`heaptrail.pympler.muppy.get_objects` (both C). With ``ignore_self=True`` (the default)
the summaries the tracker keeps are left out of the next one, so that a diff shows the
program's growth and not the tracker's: pympler guesses which objects are its own from
reference counts; heaptrail keeps its stored summaries as tuples of (name, count, size) -
containers of untracked objects, which the collector run by get_objects stops tracking - and
leaves out those tuples by identity. ``create_summary()``,
``diff()`` and ``summaries`` give lists of ``[name, count, size]`` as pympler's do.
pympler's ObjectTracker is not provided (``muppy.get_diff`` of two ``get_objects()`` is it).
"""
from heaptrail.pympler import muppy, summary

__all__ = ["SummaryTracker"]


def _frozen(rows):
    """rows as a tuple of tuples: after a collection the gc no longer tracks them, so they do
    not show in get_objects (only the outer tuple, referred to by the tracker, does)."""
    return tuple((row[0], row[1], row[2]) for row in rows)


def _rows(frozen):
    return [list(row) for row in frozen]


def _sweep(rows):
    """The rows where something changed (pympler drops rows of 0 objects and 0 bytes)."""
    return [row for row in rows if row[1] != 0 or row[2] != 0]


class SummaryTracker:
    """Summaries of the live objects per type; :meth:`diff` is the change since the last."""

    def __init__(self, ignore_self=True):
        self.ignore_self = ignore_self
        self._summaries = {}
        self._s0 = _frozen(self.create_summary())

    @property
    def summaries(self):
        """The summaries kept by :meth:`store_summary`, by key."""
        return {key: _rows(s) for key, s in self._summaries.items()}

    def create_summary(self):
        """A summary of every object muppy.get_objects() lists (the tracker's own stored
        summaries left out with ignore_self)."""
        objects = muppy.get_objects()
        if self.ignore_self:
            own = {id(self._summaries)}
            for s in (getattr(self, "_s0", ()), *self._summaries.values()):
                own.add(id(s))
                own.update(id(row) for row in s)
            objects = [o for o in objects if id(o) not in own]
        try:
            return summary.summarize(objects)
        finally:
            del objects

    def diff(self, summary1=None, summary2=None):
        """Rows that changed: from the last summary (or ``summary1``) to a new one, which then
        becomes the last; or from ``summary1`` to ``summary2``."""
        if summary2 is not None:
            if summary1 is None:
                raise ValueError("You cannot provide summary2 without summary1.")
            return _sweep(summary.get_diff(summary1, summary2))
        s1 = self.create_summary()
        res = summary.get_diff(_rows(self._s0) if summary1 is None else summary1, s1)
        self._s0 = _frozen(s1)
        return _sweep(res)

    def print_diff(self, summary1=None, summary2=None):
        """Prints :meth:`diff` as pympler's table."""
        summary.print_(self.diff(summary1=summary1, summary2=summary2))

    def format_diff(self, summary1=None, summary2=None):
        """The lines of :meth:`print_diff`'s table."""
        return summary.format_(self.diff(summary1=summary1, summary2=summary2))

    def store_summary(self, key):
        """Takes a summary and keeps it under ``key`` (see :attr:`summaries`)."""
        self._summaries[key] = _frozen(self.create_summary())
