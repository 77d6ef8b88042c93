"""Views over a snapshot of traced allocations, with tracemalloc's classes.

`Snapshot` wraps a snapshot held in C (what `heaptrail.tracer.take_snapshot()`
and `peak_snapshot()` return, or `Snapshot.load(path)`): grouping, sorting,
comparing and filtering run in C (aggregate.c); this module only builds the
small result objects. The classes behave like the stdlib's `tracemalloc`
ones -- same constructors, ordering, equality, `str()` and `repr()` -- so code
written for tracemalloc runs unchanged. Frames also know their function
(`Frame.name`), which is not part of a frame's identity.

Sampled snapshots (`heaptrail.tracer.start(sample=BYTES)`): every size and
count reported here is the weighted estimate -- each sampled block stands for
the bytes and allocations the sampler skipped around it -- so totals are
unbiased estimates, not exact figures.
"""
import fnmatch
import linecache
import os
from collections.abc import Iterable, Sequence
from functools import total_ordering

from heaptrail import _core
from heaptrail._format import replacing

__all__ = ["Frame", "Traceback", "Trace", "Statistic", "StatisticDiff", "Filter",
           "DomainFilter", "BaseFilter", "Snapshot"]


def _format_size(size, sign):
    """tracemalloc's size formatting: "12 B", "1.5 KiB", "+340 MiB"."""
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(size) < 100 and unit != 'B':
            return ("%+.1f %s" if sign else "%.1f %s") % (size, unit)
        if abs(size) < 10 * 1024 or unit == 'TiB':
            return ("%+.0f %s" if sign else "%.0f %s") % (size, unit)
        size /= 1024


@total_ordering
class Frame:
    """One frame of a traceback: `filename`, `lineno`, and (heaptrail's
    addition) the function's `name`, or None when unknown. Equality, order and
    hash use (filename, lineno) only, as tracemalloc's do."""

    __slots__ = ("_frame", "_name")

    def __init__(self, frame):
        # frame: (filename, lineno) or (filename, lineno, name)
        self._frame = (frame[0], frame[1])
        self._name = frame[2] if len(frame) > 2 else None

    @property
    def filename(self):
        return self._frame[0]

    @property
    def lineno(self):
        return self._frame[1]

    @property
    def name(self):
        return self._name

    def __eq__(self, other):
        if not isinstance(other, Frame):
            return NotImplemented
        return self._frame == other._frame

    def __lt__(self, other):
        if not isinstance(other, Frame):
            return NotImplemented
        return self._frame < other._frame

    def __hash__(self):
        return hash(self._frame)

    def __str__(self):
        return "%s:%s" % (self.filename, self.lineno)

    def __repr__(self):
        return "<Frame filename=%r lineno=%r>" % (self.filename, self.lineno)


@total_ordering
class Traceback(Sequence):
    """Sequence of Frame objects from the oldest frame to the most recent.

    The constructor takes frames the way tracemalloc's does: a tuple of
    (filename, lineno[, name]) tuples, most recent first."""

    __slots__ = ("_frames", "_names", "_total_nframe")

    def __init__(self, frames, total_nframe=None):
        Sequence.__init__(self)
        frames = tuple(reversed(frames))
        self._frames = tuple((f[0], f[1]) for f in frames)
        self._names = tuple(f[2] if len(f) > 2 else None for f in frames)
        self._total_nframe = total_nframe

    @property
    def total_nframe(self):
        return self._total_nframe

    def __len__(self):
        return len(self._frames)

    def _frame(self, i):
        f = self._frames[i]
        return Frame((f[0], f[1], self._names[i]))

    def __getitem__(self, index):
        if isinstance(index, slice):
            return tuple(self._frame(i) for i in range(len(self._frames))[index])
        if index < 0:
            index += len(self._frames)
        if not 0 <= index < len(self._frames):
            raise IndexError("traceback index out of range")
        return self._frame(index)

    def __contains__(self, frame):
        return frame._frame in self._frames

    def __hash__(self):
        return hash(self._frames)

    def __eq__(self, other):
        if not isinstance(other, Traceback):
            return NotImplemented
        return self._frames == other._frames

    def __lt__(self, other):
        if not isinstance(other, Traceback):
            return NotImplemented
        return self._frames < other._frames

    def __str__(self):
        return str(self[0])

    def __repr__(self):
        s = f"<Traceback {tuple(self)}"
        if self._total_nframe is None:
            return s + ">"
        return s + f" total_nframe={self.total_nframe}>"

    def format(self, limit=None, most_recent_first=False):
        """Lines like Python's tracebacks: '  File "x.py", line 3' and the
        source line. limit > 0 keeps the most recent frames, < 0 the oldest."""
        if limit is not None:
            frames = self[-limit:] if limit > 0 else self[:limit]
        else:
            frames = tuple(self)
        if most_recent_first:
            frames = reversed(frames)
        lines = []
        for frame in frames:
            lines.append('  File "%s", line %s' % (frame.filename, frame.lineno))
            line = linecache.getline(frame.filename, frame.lineno).strip()
            if line:
                lines.append('    %s' % line)
        return lines


class Trace:
    """A traced memory block: `domain`, `size` (bytes; for a sampled trace the
    estimated bytes it stands for), `traceback`; heaptrail adds `count` (the
    allocations it stands for: 1, or the sampling weight) and `thread_id`."""

    __slots__ = ("_trace", "_count", "_thread")

    def __init__(self, trace, count=1, thread_id=0):
        # trace: (domain, size, frames most recent first, total_nframe)
        self._trace = tuple(trace)
        self._count = count
        self._thread = thread_id

    @property
    def domain(self):
        return self._trace[0]

    @property
    def size(self):
        return self._trace[1]

    @property
    def traceback(self):
        return Traceback(*self._trace[2:])

    @property
    def count(self):
        return self._count

    @property
    def thread_id(self):
        return self._thread

    def __eq__(self, other):
        if not isinstance(other, Trace):
            return NotImplemented
        return self._trace == other._trace

    def __hash__(self):
        return hash(self._trace)

    def __str__(self):
        return "%s: %s" % (self.traceback, _format_size(self.size, False))

    def __repr__(self):
        return ("<Trace domain=%s size=%s, traceback=%r>"
                % (self.domain, _format_size(self.size, False), self.traceback))


class _Traces(Sequence):
    """The traces of a snapshot, materialized one at a time from C."""

    def __init__(self, handle):
        Sequence.__init__(self)
        self._handle = handle
        self._stacks = {}

    def __len__(self):
        return len(self._handle)

    def _trace(self, i):
        domain, size, stack, count, thread, _seq = self._handle.trace(i)
        frames = self._stacks.get(stack)
        if frames is None:
            frames = self._stacks[stack] = self._handle.stack(stack)
        return Trace((domain, size, frames, len(frames)), count, thread)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return tuple(self._trace(i) for i in range(len(self))[index])
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("trace index out of range")
        return self._trace(index)

    def __eq__(self, other):
        if not isinstance(other, _Traces):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __repr__(self):
        return "<Traces len=%s>" % len(self)


class Statistic:
    """Memory allocated at one key: `traceback`, `size` (bytes), `count`."""

    __slots__ = ('traceback', 'size', 'count')

    def __init__(self, traceback, size, count):
        self.traceback = traceback
        self.size = size
        self.count = count

    def __hash__(self):
        return hash((self.traceback, self.size, self.count))

    def __eq__(self, other):
        if not isinstance(other, Statistic):
            return NotImplemented
        return (self.traceback == other.traceback and self.size == other.size
                and self.count == other.count)

    def __str__(self):
        text = "%s: size=%s, count=%i" % (self.traceback, _format_size(self.size, False),
                                           self.count)
        if self.count:
            text += ", average=%s" % _format_size(self.size / self.count, False)
        return text

    def __repr__(self):
        return ('<Statistic traceback=%r size=%i count=%i>'
                % (self.traceback, self.size, self.count))

    def _sort_key(self):
        return (self.size, self.count, self.traceback)


class StatisticDiff:
    """Difference at one key between an old and a new snapshot."""

    __slots__ = ('traceback', 'size', 'size_diff', 'count', 'count_diff')

    def __init__(self, traceback, size, size_diff, count, count_diff):
        self.traceback = traceback
        self.size = size
        self.size_diff = size_diff
        self.count = count
        self.count_diff = count_diff

    def __hash__(self):
        return hash((self.traceback, self.size, self.size_diff, self.count, self.count_diff))

    def __eq__(self, other):
        if not isinstance(other, StatisticDiff):
            return NotImplemented
        return (self.traceback == other.traceback and self.size == other.size
                and self.size_diff == other.size_diff and self.count == other.count
                and self.count_diff == other.count_diff)

    def __str__(self):
        text = ("%s: size=%s (%s), count=%i (%+i)"
                % (self.traceback, _format_size(self.size, False),
                   _format_size(self.size_diff, True), self.count, self.count_diff))
        if self.count:
            text += ", average=%s" % _format_size(self.size / self.count, False)
        return text

    def __repr__(self):
        return ('<StatisticDiff traceback=%r size=%i (%+i) count=%i (%+i)>'
                % (self.traceback, self.size, self.size_diff, self.count, self.count_diff))

    def _sort_key(self):
        return (abs(self.size_diff), self.size, abs(self.count_diff), self.count,
                self.traceback)


def _normalize_filename(filename):
    filename = os.path.normcase(filename)
    if filename.endswith('.pyc'):
        filename = filename[:-1]
    return filename


class BaseFilter:
    def __init__(self, inclusive):
        self.inclusive = inclusive

    def _spec(self, filenames):
        raise NotImplementedError


class Filter(BaseFilter):
    """Keeps (inclusive) or drops traces whose most recent frame -- or any
    frame, with all_frames=True -- matches the fnmatch pattern (and lineno,
    and domain when given)."""

    def __init__(self, inclusive, filename_pattern, lineno=None, all_frames=False, domain=None):
        super().__init__(inclusive)
        self._filename_pattern = _normalize_filename(filename_pattern)
        self.lineno = lineno
        self.all_frames = all_frames
        self.domain = domain

    @property
    def filename_pattern(self):
        return self._filename_pattern

    def _match_frame_impl(self, filename, lineno):
        if not fnmatch.fnmatch(_normalize_filename(filename), self._filename_pattern):
            return False
        return self.lineno is None or lineno == self.lineno

    def _match_frame(self, filename, lineno):
        return self._match_frame_impl(filename, lineno) ^ (not self.inclusive)

    def _spec(self, filenames):
        # the pattern is matched once per distinct filename; C does the rest
        ids, names = filenames
        bits = bytearray((max(ids) // 8 + 1) if ids else 0)
        pattern = self._filename_pattern
        for i, name in zip(ids, names):
            if fnmatch.fnmatch(_normalize_filename(name), pattern):
                bits[i // 8] |= 1 << (i % 8)
        unknown = fnmatch.fnmatch("<unknown>", pattern)
        return (bool(self.inclusive), False, self.domain, self.lineno, bool(self.all_frames),
                bytes(bits), unknown)


class DomainFilter(BaseFilter):
    """Keeps (inclusive) or drops the traces of one allocator domain."""

    def __init__(self, inclusive, domain):
        super().__init__(inclusive)
        self._domain = domain

    @property
    def domain(self):
        return self._domain

    def _spec(self, filenames):
        return (bool(self.inclusive), True, self._domain, None, False, b"", False)


class Snapshot:
    """Traces of the memory blocks live when the snapshot was taken.

    `Snapshot(traces, traceback_limit)` builds one from tracemalloc-style raw
    traces (domain, size, frames most recent first); heaptrail's tracer and
    `Snapshot.load` build them in C. Sampled snapshots report weighted
    estimates in every size and count."""

    def __init__(self, traces, traceback_limit):
        handle = _core._tsnap_build(
            [(t[0], t[1], t[2]) + tuple(t[4:]) for t in traces],
            traceback_limit=traceback_limit)
        self._init(handle)

    def _init(self, handle):
        self._handle = handle
        info = handle.info()
        self.traceback_limit = info["traceback_limit"]
        self._info = info
        self._traces = None

    @classmethod
    def _from_handle(cls, handle):
        snap = cls.__new__(cls)
        snap._init(handle)
        return snap

    @property
    def traces(self):
        if self._traces is None:
            self._traces = _Traces(self._handle)
        return self._traces

    @property
    def sample_interval(self):
        """Mean bytes between samples, or 0 when every allocation was traced."""
        return self._info["sample_interval"]

    @property
    def is_peak(self):
        """True for the state at the high-water mark (peak_snapshot())."""
        return self._info["is_peak"]

    @property
    def traced_memory(self):
        """(current, peak) traced bytes when the snapshot was taken."""
        return (self._info["traced_current"], self._info["traced_peak"])

    @property
    def total_size(self):
        """Sum of the traces' sizes (estimated for a sampled snapshot)."""
        return self._info["total_size"]

    def __len__(self):
        return len(self._handle)

    def __repr__(self):
        return "<heaptrail Snapshot traces=%d size=%s limit=%d%s>" % (
            len(self._handle), _format_size(self.total_size, False), self.traceback_limit,
            " peak" if self.is_peak else "")

    def __reduce__(self):
        # pickles (multiprocessing, caches) carry the binary file format
        return (_snapshot_from_bytes, (_core._tsnap_dumps(self._handle),))

    def dump(self, filename):
        """Write the snapshot to a file (heaptrail's versioned binary format). A failed write
        leaves a file already there as it was."""
        with replacing(filename) as target:
            _core._tsnap_dump(self._handle, os.fsencode(target))

    @staticmethod
    def load(filename):
        """Read a snapshot written by dump(); a damaged or foreign file raises
        heaptrail.HeaptrailError."""
        return Snapshot._from_handle(_core._tsnap_load(os.fsencode(filename)))

    def filter_traces(self, filters):
        """A new Snapshot with the traces the filters keep: those matching at
        least one inclusive filter (if any) and every exclusive one."""
        if not isinstance(filters, Iterable):
            raise TypeError("filters must be a list of filters, not %s"
                            % type(filters).__name__)
        filters = list(filters)
        for f in filters:
            if not isinstance(f, BaseFilter):
                raise TypeError("expected a Filter or DomainFilter, not %s" % type(f).__name__)
        names = self._handle.filenames() if filters else ((), ())
        specs = [f._spec(names) for f in filters]
        return Snapshot._from_handle(_core._tsnap_filter(self._handle, specs))

    def statistics(self, key_type, cumulative=False):
        """Statistic objects grouped by key_type ("lineno", "filename" or
        "traceback"), biggest first. With cumulative=True a trace counts for
        every frame of its traceback (lineno and filename keys only), once
        per frame as tracemalloc does. In a sampled snapshot size and count
        are weighted estimates of the real totals."""
        return [Statistic(Traceback(frames), size, count)
                for frames, size, count in
                _core._tsnap_statistics(self._handle, key_type, bool(cumulative))]

    def compare_to(self, old_snapshot, key_type, cumulative=False):
        """StatisticDiff objects between old_snapshot and this one, biggest
        change first (estimates when either snapshot is sampled). Keys match
        by filename and line, so a loaded snapshot compares with a live one."""
        if not isinstance(old_snapshot, Snapshot):
            raise TypeError("old_snapshot must be a Snapshot, not %s"
                            % type(old_snapshot).__name__)
        return [StatisticDiff(Traceback(frames), size, size_diff, count, count_diff)
                for frames, size, size_diff, count, count_diff in
                _core._tsnap_compare(self._handle, old_snapshot._handle, key_type,
                                     bool(cumulative))]


def _snapshot_from_bytes(data):
    return Snapshot._from_handle(_core._tsnap_loads(data))
