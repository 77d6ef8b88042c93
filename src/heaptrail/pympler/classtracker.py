"""pympler.classtracker's ClassTracker: instances of chosen classes followed over snapshots.

    tracker = ClassTracker()
    tracker.track_class(Node)            # every Node created from now on
    tracker.track_object(cache)          # one object
    tracker.create_snapshot('Before')
    ...
    tracker.create_snapshot('After')
    tracker.stats.print_summary()
    tracker.stats.sort_stats('size').print_stats(limit=10, clsname='Node')

Instances are held through weak references, so tracking does not keep them alive; an instance
that cannot be weakly referenced (``__slots__`` without ``__weakref__``, some builtins) is held
strongly, as with ``keep=True``. Each snapshot sizes every live tracked instance with
:func:`heaptrail.deepsize` (everything it reaches, each object once; classes, functions and
modules left out). With ``resolution_level`` > 0 the size is broken down by
:func:`heaptrail.deepsize_detail`: the largest members whose path from the instance is at most
``resolution_level`` steps (``.cache``, ``.cache['k']``) are kept with their flat sizes.
Note that naming an attribute on such a path asks the instance for its ``__dict__`` (on 3.11+
an instance keeps its attributes without a dict until asked), so from the second snapshot on
such an instance is measured with its dict; at resolution_level 0 nothing is asked.
Snapshots also record the total size of the live heap (``heaptrail.snapshot()``, walked in C)
when ``compute_total=True``, and the process's resident memory.
"""
import functools
import os
import sys
import threading
import time
import weakref

from heaptrail import size as _size

__all__ = ["ClassTracker", "TrackedObject", "Snapshot", "Asized", "PeriodicThread"]


class Asized:
    """A measured size (pympler's Asized): ``size`` in bytes, ``flat`` size, ``name`` and the
    measured parts ``refs`` (Asized too)."""

    __slots__ = ("size", "flat", "name", "refs")

    def __init__(self, size, flat, refs=(), name=None):
        self.size = size
        self.flat = flat
        self.refs = list(refs)
        self.name = name

    def __repr__(self):
        return f"<Asized {self.name!r} size={self.size} flat={self.flat}>"


def _safe_repr(obj, clip=128):
    try:
        text = repr(obj)
    except Exception:
        return "N/A"
    return text if len(text) <= clip else text[:clip - 4] + ".." + text[-2:]


def _class_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}" if cls.__module__ != "builtins" else cls.__qualname__


def _path_depth(path):
    """Steps in a deepsize_detail path such as ``obj.cache['k'][3]``."""
    depth, k, text = 0, 3, path
    while k < len(text):
        ch = text[k]
        if ch == ".":
            depth += 1
            k += 1
            while k < len(text) and (text[k].isalnum() or text[k] == "_"):
                k += 1
        elif ch in "[{<":
            close = {"[": "]", "{": "}", "<": ">"}[ch]
            depth += 1
            end = text.find(close, k + 1)
            k = len(text) if end < 0 else end + 1
        else:
            k += 1
    return depth


def _measure(obj, resolution_level):
    total = _size.deepsize(obj)
    flat = _size.sizeof(obj)
    refs = []
    if resolution_level > 0:
        detail = _size.deepsize_detail(obj, top=20)
        for m in detail.largest:
            if m.path != "obj" and _path_depth(m.path) <= resolution_level:
                refs.append(Asized(m.size, m.size, name=m.path[3:] or m.path))
    return Asized(total, flat, refs, name=None)


class TrackedObject:
    """One tracked instance: its name (class), id, repr, birth and death times (seconds since
    the tracker started), the stack where it was made (``trace=True``) and its sizes:
    ``snapshots`` is a list of ``(timestamp, Asized)``, the flat size at birth first (as
    pympler's), then one per snapshot."""

    def __init__(self, instance, name, resolution_level=0, trace=False, on_delete=None,
                 clock=time.time, start=0.0):
        self.name = name
        self.id = id(instance)
        self.repr = _safe_repr(instance)
        self._clock, self._start = clock, start
        self.birth = clock() - start
        self.death = None
        self._resolution_level = resolution_level
        # pympler's first entry: the flat size at birth (print_stats shows it as the first
        # line of each instance, get_size_at_time answers it before the first snapshot)
        flat = _size.sizeof(instance)
        self.snapshots = [(self.birth, Asized(flat, flat))]
        self.trace = None
        if trace:
            self.trace = _stack()
        self._strong = None
        try:
            self.ref = weakref.ref(instance, self._finalize if on_delete is None else on_delete)
        except TypeError:  # not weakly referenceable: hold it
            self._strong = instance
            self.ref = lambda: self._strong

    def _finalize(self, ref):
        self.death = self._clock() - self._start

    def set_resolution_level(self, level):
        self._resolution_level = level

    def track_size(self, ts):
        """Measures the instance now, if alive; records ``(ts, Asized)``."""
        obj = self.ref()
        if obj is not None:
            self.snapshots.append((ts, _measure(obj, self._resolution_level)))

    def get_max_size(self):
        """Largest size measured (0 when never measured)."""
        return max((s.size for _, s in self.snapshots), default=0)

    def get_size_at_time(self, timestamp):
        """Size measured at the latest snapshot at or before ``timestamp``; 0 when the object
        was not alive then or never measured."""
        if timestamp < self.birth or (self.death is not None and self.death <= timestamp):
            return 0
        size = 0
        for ts, s in self.snapshots:
            if ts <= timestamp:
                size = s.size
        return size

    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items()
                 if k not in ("ref", "_strong", "_clock")}
        return state


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _stack():
    """The caller's stack, outermost first, without heaptrail's own frames on top."""
    out = []
    f = sys._getframe(1)
    while f is not None and f.f_code.co_filename.startswith(_PACKAGE_DIR):
        f = f.f_back
    while f is not None:
        out.append((f.f_code.co_filename, f.f_lineno, f.f_code.co_name))
        f = f.f_back
    out.reverse()
    return out


class Snapshot:
    """One snapshot: ``timestamp`` (seconds since the tracker started), ``desc``,
    ``tracked_total`` (bytes of the tracked instances), ``asizeof_total`` (the live heap's
    total size with compute_total, else 0), ``system_total`` (resident memory of the process,
    bytes), and ``classes`` (per-class summary, filled by the stats)."""

    def __init__(self, timestamp=0.0, desc=""):
        self.timestamp = timestamp
        self.desc = desc
        self.tracked_total = 0
        self.asizeof_total = 0
        self.system_total = 0
        self.classes = None

    @property
    def total(self):
        """The reference for the per-class percentages: the heap's total when measured
        (compute_total), else the process's resident memory, else what was tracked."""
        return self.asizeof_total or self.system_total or self.tracked_total

    @property
    def label(self):
        return self.desc or f"{self.timestamp:.2f}s"


class PeriodicThread(threading.Thread):
    """Takes a snapshot every ``interval`` seconds until stopped."""

    def __init__(self, tracker, interval):
        super().__init__(name="heaptrail-classtracker", daemon=True)
        self._tracker = weakref.ref(tracker)
        self.interval = interval
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.wait(self.interval):
            tracker = self._tracker()
            if tracker is None:
                return
            tracker.create_snapshot()
            del tracker

    def stop(self):
        self.stop_event.set()


class ClassTracker:
    """Tracks instances of classes (``track_class``) and single objects (``track_object``)
    over snapshots. ``stats`` gives a :class:`heaptrail.pympler.classtracker_stats.ConsoleStats`
    over what was recorded. ``stream`` is where the stats print (sys.stdout by default)."""

    def __init__(self, stream=None):
        self.stream = stream
        self.index = {}          # class name -> [TrackedObject]
        self.objects = {}        # id -> TrackedObject of a live instance
        self.snapshots = []
        self._observers = {}     # class -> its tracking parameters
        self._patched = {}       # class -> the __init__ it had in its own __dict__ (or None)
        self._periodic = None
        self._lock = threading.RLock()
        self._start = time.time()

    def _now(self):
        return time.time() - self._start

    # ---- tracking ------------------------------------------------------------------------------
    def track_object(self, instance, name=None, resolution_level=0, keep=False, trace=False):
        """Tracks ``instance`` (under ``name``, default its class's full name). ``keep=True``
        holds it strongly (its size stays measurable after the program drops it).
        ``resolution_level`` > 0 records the sizes of its members that many references deep;
        ``trace=True`` records the stack where it was tracked."""
        with self._lock:
            known = self.objects.get(id(instance))
            if known is not None and known.ref() is instance:
                return
            name = name or _class_name(type(instance))
            tobj = TrackedObject(instance, name, resolution_level=resolution_level, trace=trace,
                                 start=self._start)
            if keep:
                tobj._strong = instance
            self.objects[id(instance)] = tobj
            self.index.setdefault(name, []).append(tobj)

    def track_change(self, instance, resolution_level=0):
        """Changes the resolution level of a tracked instance."""
        with self._lock:
            tobj = self.objects.get(id(instance))
            if tobj is None or tobj.ref() is not instance:
                raise ValueError("track_change: the instance is not tracked")
            tobj.set_resolution_level(resolution_level)

    def untrack_object(self, instance):
        """Stops measuring ``instance`` (its records stay in the index)."""
        with self._lock:
            tobj = self.objects.get(id(instance))
            if tobj is not None and tobj.ref() is instance:
                del self.objects[id(instance)]
                tobj._strong = None

    def track_class(self, cls, name=None, resolution_level=0, keep=False, trace=False):
        """Tracks every instance of ``cls`` created from now on (instances that exist already
        are not tracked). Calling it again for the same class changes the parameters."""
        if not isinstance(cls, type):
            raise TypeError(f"track_class needs a class, not {type(cls).__name__}")
        with self._lock:
            self._observers[cls] = dict(name=name or _class_name(cls),
                                        resolution_level=resolution_level, keep=keep, trace=trace)
            if cls not in self._patched:
                self._patch(cls)

    def _patch(self, cls):
        own = cls.__dict__.get("__init__")
        self._patched[cls] = own
        tracker_ref = weakref.ref(self)

        def __init__(obj, *args, **kwargs):
            if own is not None:
                own(obj, *args, **kwargs)
            else:
                super(cls, obj).__init__(*args, **kwargs)
            tracker = tracker_ref()
            if tracker is None:
                return
            # the most derived tracked class of obj decides (its name, its parameters)
            for klass in type(obj).__mro__:
                params = tracker._observers.get(klass)
                if params is not None:
                    if klass is cls:
                        tracker.track_object(obj, **params)
                    break

        if own is not None:
            functools.update_wrapper(__init__, own)  # signature, name and doc of the original
        else:
            __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        __init__._heaptrail_tracked = True
        cls.__init__ = __init__

    def detach_class(self, cls):
        """Stops tracking new instances of cls (those tracked stay tracked)."""
        with self._lock:
            self._observers.pop(cls, None)
            if cls in self._patched:
                own = self._patched.pop(cls)
                if own is None:
                    del cls.__init__
                else:
                    cls.__init__ = own

    def detach_all_classes(self):
        for cls in list(self._patched):
            self.detach_class(cls)

    def detach_all(self):
        """Stops tracking new instances of every class; forgets the tracked objects."""
        self.detach_all_classes()
        with self._lock:
            self.objects.clear()
            self.index.clear()

    def untrack_class(self, cls):
        """Stops tracking cls (alias of :meth:`detach_class`)."""
        self.detach_class(cls)

    def clear(self):
        """Forgets every tracked object and snapshot."""
        self.detach_all()
        with self._lock:
            self.snapshots = []

    def close(self):
        """Stops the periodic snapshots and detaches every class."""
        self.stop_periodic_snapshots()
        self.detach_all_classes()

    # ---- snapshots -----------------------------------------------------------------------------
    def create_snapshot(self, description="", compute_total=False):
        """Measures every live tracked instance and records a snapshot."""
        with self._lock:
            ts = self._now()
            snap = Snapshot(ts, str(description))
            for tobj in list(self.objects.values()):
                tobj.track_size(ts)
                if tobj.snapshots and tobj.snapshots[-1][0] == ts:
                    snap.tracked_total += tobj.snapshots[-1][1].size
            # forget what died (its records stay in the index)
            for key in [k for k, t in self.objects.items() if t.ref() is None]:
                del self.objects[key]
            if compute_total:
                from heaptrail import heap
                snap.asizeof_total = heap.snapshot(gc_first=False).total_size
            try:
                from heaptrail import process
                snap.system_total = int(process.memory().rss)
            except Exception:  # no /proc: leave it 0
                snap.system_total = 0
            self.snapshots.append(snap)
            return snap

    def start_periodic_snapshots(self, interval=1.0):
        """Takes a snapshot every ``interval`` seconds in a background thread."""
        interval = float(interval)
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        with self._lock:
            if self._periodic is not None and self._periodic.is_alive():
                self._periodic.interval = interval
                return
            self._periodic = PeriodicThread(self, interval)
            self._periodic.start()

    def stop_periodic_snapshots(self):
        """Stops the periodic snapshots (waits for the thread)."""
        t, self._periodic = self._periodic, None
        if t is not None:
            t.stop()
            if t is not threading.current_thread():
                t.join()

    @property
    def stats(self):
        """A ConsoleStats over what this tracker recorded."""
        from heaptrail.pympler.classtracker_stats import ConsoleStats
        return ConsoleStats(tracker=self, stream=self.stream)
