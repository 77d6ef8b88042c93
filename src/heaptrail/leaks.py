"""Leak reports: what grows, where it was allocated, and who keeps it alive.

    report = heaptrail.leaks.check(func, runs=10, warmup=2)
    print(report)

    with heaptrail.leaks.watch() as w:      # code that cannot be wrapped in a function
        for request in requests:
            handle(request)
            w.step()                        # one iteration ends here
    print(w.report)

Under ``heaptrail leaks script.py`` a script marks its iterations with ``heaptrail.leaks.step()``.

How it works (the engines are C: ``_core/leaks.c``, ``heap.c``, ``graph.c``, ``tracer.c``):

1. ``warmup`` iterations run unmeasured (caches fill, imports happen, lazy state is built);
2. the tracer is started for the measured phase (unless it already runs), so every new object
   has the stack that allocated it;
3. at the start of the measured phase the young generations are collected, the interpreter's
   free lists (tuple, list, dict, float) are emptied by holding their blocks until the end, so
   that new objects get blocks allocated while tracing (a full collection would empty them
   too, at the cost of a walk of the whole heap), and a C pass (``_core/leaks.c``) counts the
   live objects per type and remembers every object it saw (address and type, sorted by
   address): that is "the start", at the cost of a counting pass rather than a full snapshot;
   after each of the ``runs`` measured iterations a collection of the young generations and a
   counting pass of the gc-tracked objects run again; the untracked objects (str, int,
   bytearray, tuples of atoms ...), which are found only through the containers that hold
   them and are counted once per reference, are counted too at the start, halfway and at the
   end (at steps 1, 2, 4, 8 ... and the end when the number of steps is not known): reading
   the header of everything the containers refer to costs twice the rest of a count. A full
   snapshot is taken at the end only (paths, dominators, retained sizes), without a
   collection first: it flags cyclic garbage unreachable, and garbage is left out;
4. a type is *growing* when its gc-tracked objects' count, or bytes, went up in nearly every
   measured step: in at least ``runs - 1`` of the ``runs`` steps (every step when ``runs <=
   2``), and more at the end than at the start; or when, over the counts that included the
   untracked objects, the count or bytes of all its objects went up from each of those
   counts to the next (all but one of them when there are more than three); or, for a
   leak that appears every k-th iteration, when its gc-tracked count never went down and
   rose at least three times, in both halves of the steps (then as many new objects as
   rises are enough to report its kind);
5. the NEW objects are those of the end snapshot that the start did not hold (same address,
   same type: Snapshot.diff's rule), grouped by owner kind (``Session``, ``dict of Session``);
   objects held only by running frames (the loop's own locals) are left out. A kind is
   reported when its type is growing and it has new objects. Interned strings and small ints
   are never new, an lru_cache that stopped growing after warm-up never grows, and what one
   iteration allocates and frees is gone before the count: none of them is reported;
6. for each reported kind: growth per iteration (new objects and bytes / measured runs),
   totals, the allocation sites of its new objects (tracer stacks, grouped by stack; the
   innermost line outside heaptrail is shown), sample objects with a short repr and their
   shortest retention path from a root, and the *holder*: the lowest common dominator of the
   new objects in the end snapshot's dominator tree, i.e. the root-most single object that
   keeps all of the growth alive, with its retained size.

Known limits: an object reused from one of CPython's free lists (list, dict, tuple, float)
keeps the allocation stack of the memory block's first allocation, as with tracemalloc; a
module global rebound to a fresh object each iteration (a script's loop variable at module
level) shows as one extra new object of its kind; an object that the counting pass cannot
reach (held only by a C extension's private state) may be taken for a new one at the end.
"""
import gc
import json
import os
import re
import reprlib
import sys

from heaptrail import _core, tracer
from heaptrail._core import Error as HeaptrailError
from heaptrail._format import human_bytes
# imported now, not during a check: an import while measuring would create new objects
from heaptrail.graph import render_dot
from heaptrail.heap import Snapshot, _walk
import linecache

__all__ = ["check", "watch", "step", "LeakReport", "LeakKind"]

MAX_SAMPLES = 3        # sample objects shown per kind
MAX_SITE_OBJECTS = 100 # new objects per kind whose allocation stacks are looked up
MAX_DOM_OBJECTS = 200  # new objects per kind used to find their common dominator

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_ADDR = re.compile(r" 0x[0-9a-f]+>")
_AT_ADDR = re.compile(r" at 0x[0-9a-f]+")
_DEFAULT_REPR = re.compile(r"^<[^<>]* at 0x[0-9a-f]+>$")
_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


def _strip_addr(text):
    return _ADDR.sub(">", text)


class LeakKind:
    """One kind of object that grew in nearly every iteration: see :class:`LeakReport`."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def as_dict(self):
        return dict(self.__dict__)

    def __repr__(self):
        return f"<LeakKind {self.kind}: +{self.count_per_iteration:g}/iteration>"


class LeakReport:
    """The result of a leak check. ``kinds`` holds one :class:`LeakKind` per leaking kind,
    most bytes per iteration first, with fields: kind, type, count_per_iteration,
    bytes_per_iteration, new_count, new_bytes, retained (bytes held by the holder), holder
    (text), holder_path, sites (allocation sites: dicts with count, bytes, innermost, stack),
    samples (dicts with address, repr, path, path_steps), growth (the change of its type's
    gc-tracked count at each measured step: [1, 0, 0, 1, ...] for a leak every third one).
    The report's own ``steps`` is the number of measured steps."""

    def __init__(self, kinds, runs, warmup, steps, tracing, dot_paths):
        self.kinds = kinds
        self.runs = runs
        self.warmup = warmup
        self.steps = steps
        self.tracing = tracing
        self._dot_paths = dot_paths

    def __bool__(self):
        return bool(self.kinds)

    def __len__(self):
        return len(self.kinds)

    def __iter__(self):
        return iter(self.kinds)

    def as_dict(self):
        return {"runs": self.runs, "warmup": self.warmup, "steps": self.steps,
                "allocation_sites": self.tracing,
                "leaks": [k.as_dict() for k in self.kinds]}

    def to_json(self):
        return json.dumps(self.as_dict(), indent=2)

    def format(self):
        head = (f"heaptrail leak report: {self.steps} measured iterations after {self.warmup} "
                f"warm-up")
        if not self.kinds:
            return head + "\nno leak: nothing grew in nearly every iteration"
        lines = [head + f", {len(self.kinds)} kind(s) growing"]
        for n, k in enumerate(self.kinds, 1):
            lines.append("")
            lines.append(f"#{n} {k.kind}: +{k.count_per_iteration:g} objects, "
                         f"+{human_bytes(k.bytes_per_iteration)} per iteration "
                         f"({k.new_count} new objects, {human_bytes(k.new_bytes)} in total)")
            if k.holder:
                lines.append(f"   held by {k.holder} (retains {human_bytes(k.retained)}): "
                             f"{k.holder_path}")
            if k.sites:
                lines.append("   allocated at:")
                for s in k.sites[:5]:
                    lines.append(f"     {s['count']:>6} x {s['innermost']}")
            elif not self.tracing:
                lines.append("   allocated at: unknown (the tracer could not be started)")
            for s in k.samples:
                lines.append(f"   sample {s['repr']}")
                lines.append(f"     path: {s['path']}")
        return "\n".join(lines)

    __str__ = format

    def print(self, file=None):
        print(self.format(), file=file or sys.stdout)

    def to_dot(self):
        """Graphviz text of the samples' retention paths (one node per object, labeled
        edges, the sample objects in red)."""
        out = ["digraph leaks {", '  node [shape=box, fontname="monospace", fontsize=10];',
               "  rankdir=LR;"]
        nodes, edges = {}, set()
        for steps, sample in self._dot_paths:
            prev = None
            for lab, idx, text in steps:
                if idx not in nodes:
                    nodes[idx] = len(nodes)
                    color = ', color=red' if idx == sample else ""
                    out.append(f'  n{nodes[idx]} [label="{_dot_escape(text)}"{color}];')
                if prev is not None and (prev, idx, lab) not in edges:
                    edges.add((prev, idx, lab))
                    out.append(f'  n{nodes[prev]} -> n{nodes[idx]} [label="{_dot_escape(lab or "")}"];')
                prev = idx
        out.append("}")
        return "\n".join(out) + "\n"

    def render(self, path):
        """Writes :meth:`to_dot` to ``path`` (.svg/.png/.pdf through Graphviz's ``dot``,
        .dot/.gv as text); returns ``path``."""
        return render_dot(self.to_dot(), path)


def _dot_escape(s):
    return str(s).replace("\\", "\\\\").replace('"', '\\"')


def _is_own(filename):
    return filename.startswith(_PACKAGE_DIR)


def _grew(series):
    """True when the series went up in at least len-1 of its steps (all of them for two
    steps or fewer) and ended higher than it started."""
    steps = len(series) - 1
    if steps <= 0:
        return False
    need = steps if steps <= 2 else steps - 1
    ups = sum(1 for a, b in zip(series, series[1:]) if b > a)
    return ups >= need and series[-1] > series[0]


def _growing(counts, nbytes, ucounts=None, ubytes=None):
    """True when a type grew in nearly every step: its gc-tracked objects' count or bytes
    (counted at every step), or, over the samples that also counted the untracked objects
    (str, int, bytearray, tuples of atoms ...: counted once per reference from a container),
    every object's count or bytes (see _grew)."""
    if _grew(counts) or _grew(nbytes):
        return True
    if ucounts is None:
        return False
    walked = [k for k, u in enumerate(ucounts) if u is not None]
    return (_grew([counts[k] + ucounts[k] for k in walked]) or
            _grew([nbytes[k] + ubytes[k] for k in walked]))


def _periodic(series):
    """The rises of a count that grew every k-th step (a leak that appears every k-th
    iteration): it never went down, rose at least 3 times, and rose in both halves of the
    steps (a cache that fills and stops rises in the first half only); else 0."""
    steps = len(series) - 1
    if steps < 4 or any(b < a for a, b in zip(series, series[1:])):
        return 0
    ups = [k for k, (a, b) in enumerate(zip(series, series[1:])) if b > a]
    if len(ups) >= 3 and ups[0] < steps // 2 <= ups[-1]:
        return len(ups)
    return 0


_running = None  # the _Session measuring now: one at a time


class _Session:
    """One measurement: start, step() after each iteration, finish() -> LeakReport."""

    def __init__(self, warmup=2, frames=32, runs=None, plan=None):
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise HeaptrailError(f"warmup must be an int >= 0, not {warmup!r}")
        self.warmup = warmup
        self.runs = runs  # None: every step() until finish(); else finish at warmup + runs
        self.plan = plan or runs  # measured steps expected, when known
        self.sampled = 0  # measured steps counted
        self.walked = False  # the last count also counted the untracked objects
        self.report = None
        self.frames = frames
        self.nsteps = 0
        self.counter = None
        self.own_tracer = False
        self.tracing = False
        self.done = False
        self.func = None  # check()'s function

    def start(self):
        global _running
        if _running is not None:
            # a check inside another would count the inner one's report, lists and strings
            # as the outer one's leaks, and stop the tracer the outer one started
            raise HeaptrailError("a leak check is already running: check() and watch() do "
                                 "not nest, nor run in two threads at once")
        _running = self
        try:
            if self.warmup == 0:
                self._begin()
        except BaseException:
            self.abort()
            raise

    def _begin(self):
        # the tracer starts with the measured phase: what the warm-up allocates and keeps is
        # no new object, and tracing it would only slow the warm-up down
        if not tracer.is_tracing():
            try:
                tracer.start(self.frames)
                self.own_tracer = True
            except HeaptrailError:
                pass  # stdlib tracemalloc runs: no allocation sites
        self.tracing = tracer.is_tracing()
        self.counter = _core._leaks_counter()
        # young garbage only: a full collection would walk the whole heap; old garbage is
        # no new object at the end (the end snapshot flags it unreachable)
        gc.collect(1)
        # empty the free lists (dict, list, tuple, float): an object the measured iterations
        # make then gets a block of its own, allocated while tracing, so its allocation site
        # is known (a full collection would empty them too)
        self.counter.drain()
        self.counter.sample(True)  # also remembers every object now: "the start"

    def step(self):
        if self.done:
            if self.runs is not None:
                return  # measured enough: later iterations are not looked at
            raise HeaptrailError("step() after the leak check finished")
        self.nsteps += 1
        if self.runs is not None and self.nsteps == self.warmup + self.runs:
            self.report = self.finish()
            return
        if self.nsteps == self.warmup:
            self._begin()
        elif self.nsteps > self.warmup:
            gc.collect(1)  # young cycles; a full collection per step costs as much as a walk
            self.sampled += 1
            self.walked = self._walk(self.sampled)
            self.counter.sample(False, self.walked)

    def _walk(self, k):
        """Whether measured step k also counts the untracked objects: that walk reads the
        header of everything the containers refer to and costs twice the rest of a count, so
        it runs at the start, halfway and at the end when the number of steps is known (at
        steps 1, 2, 4, 8 ... and the end otherwise); the gc-tracked objects are counted at
        every step."""
        if self.plan:
            return k >= self.plan or k == (self.plan + 1) // 2
        return k & (k - 1) == 0

    def _stop_running(self):
        global _running
        if _running is self:
            _running = None

    def abort(self):
        self._stop_running()
        self.done = True
        if self.counter is not None:
            self.counter.release()
        if self.own_tracer:
            tracer.stop()

    def finish(self):
        if self.report is not None:
            return self.report
        self.done = True
        try:
            measured = self.nsteps - self.warmup
            if self.counter is None or measured < 1:
                raise HeaptrailError(
                    f"no measured iteration: {self.nsteps} step(s) for {self.warmup} warm-up; "
                    "call step() after each iteration, at least warmup + 1 times")
            # the young objects join the old ones (gc order, and so the snapshot's order
            # and the samples', is then the order of creation); young cycles go
            gc.collect(1)
            if self.sampled < measured:  # watch(runs=N): the last step is counted now
                self.sampled += 1
                self.counter.sample(False, True)
            elif not self.walked:  # the end is counted in full: the same moment, again
                self.counter.sample(False, True, True)
            end = _snapshot(self)
            return _build(self, end, measured)
        finally:
            self._stop_running()
            if self.counter is not None:
                self.counter.release()
            if self.own_tracer:
                tracer.stop()


def _snapshot(session):
    # no collection first: the snapshot flags cyclic garbage unreachable, and _leaks_new
    # leaves it out, which is what a full collection would have done for the verdict
    handle = _walk(False, _exclude)  # not Snapshot(_walk(...)): the class on this frame's stack
    return Snapshot(handle)          # during the walk would be a gc root (see heap._take)


def _build(session, end, measured):
    # type name -> the fewest new objects its kind needs to be reported: a leak makes new
    # objects in nearly every iteration (a kind with fewer, a dict materialized once, a
    # lazily built cache, is none, even when its type grows), a periodic one at each rise
    growing, series = {}, {}
    for name, counts, nbytes, ucounts, ubytes in session.counter.rows():
        series[name] = counts
        need = [max(1, measured - 1)] if _growing(counts, nbytes, ucounts, ubytes) else []
        rises = _periodic(counts)
        if rises:
            need.append(rises)
        if need:
            growing[name] = min(need)
    rows = _core._leaks_new(end._h, session.counter, max(MAX_SITE_OBJECTS, MAX_DOM_OBJECTS))
    kinds, dot_paths = [], []
    chosen = []
    for kind, count, nbytes, indexes in rows:
        tname = end._h.record(indexes[0])[1] if indexes else kind
        if tname in growing and count >= growing[tname]:
            chosen.append((kind, tname, count, nbytes, indexes))
    # one pass over the live objects finds every kind's samples
    live = _core._leaks_objects([end._h.record(i)[0] for row in chosen
                                 for i in row[4][:MAX_SITE_OBJECTS]]) if chosen else {}
    for kind, tname, count, nbytes, indexes in chosen:
        k = _kind(session, end, live, kind, tname, count, nbytes, indexes, measured, dot_paths)
        counts = series.get(tname, ())
        k.growth = [b - a for a, b in zip(counts, counts[1:])]
        kinds.append(k)
    kinds.sort(key=lambda k: (-k.bytes_per_iteration, -k.count_per_iteration, k.kind))
    return LeakReport(kinds, session.nsteps - session.warmup, session.warmup, measured,
                      session.tracing, dot_paths)


def _kind(session, snap, live, kind, tname, count, nbytes, indexes, measured, dot_paths):
    addrs = [snap._h.record(i)[0] for i in indexes[:MAX_SITE_OBJECTS]]
    sites = _sites(live, addrs, session.func) if session.tracing else []
    samples = []
    # samples with a retention path first: an object that is a root itself (held by C code)
    # tells less about who keeps the growth alive
    picked, spare, paths = [], [], {}
    for i in indexes[:MAX_SAMPLES * 8]:
        if len(picked) == MAX_SAMPLES:
            break
        paths[i] = snap._path_of(i)
        (picked if len(paths[i]) > 0 else spare).append(i)
    for i in (picked + spare)[:MAX_SAMPLES]:
        addr = snap._h.record(i)[0]
        obj = live.get(addr)
        try:
            text = _repr.repr(obj) if obj is not None else snap._describe(i)
        except Exception:  # a __repr__ of the program's that fails: the snapshot's text
            text = snap._describe(i)
        if obj is None or _DEFAULT_REPR.match(text):  # object.__repr__: the snapshot's shorter "<Session>"
            text = _strip_addr(snap._describe(i))
        text = _AT_ADDR.sub("", text)
        path = paths[i]
        dot_paths.append(([(s.label, s.index, _strip_addr(s.text)) for s in path.steps], i))
        samples.append({"address": addr, "repr": text, "path": _strip_addr(str(path)),
                        "path_steps": [[s.label, _strip_addr(s.text)] for s in path.steps]})
    holder, holder_path, retained = _holder(snap, indexes[:MAX_DOM_OBJECTS])
    return LeakKind(kind=kind, type=tname, count_per_iteration=count / measured,
                    bytes_per_iteration=nbytes / measured, new_count=count, new_bytes=nbytes,
                    retained=retained, holder=holder, holder_path=holder_path, sites=sites,
                    samples=samples)


def _call(func, args, kwargs):
    return func(*args, **kwargs)  # check()'s call: _sites knows this line


_CALL_SITE = (_call.__code__.co_filename, _call.__code__.co_firstlineno + 1)


def _innermost(frames, func):
    """(filename, lineno, note) of the line that allocated, from a stack (oldest first).
    A stack that ends in heaptrail's own code did not see the allocating frame: at check()'s
    call of func, the object was made as func's frame started (a closure's cells, before its
    first line runs): func's def line; elsewhere in heaptrail, the block was one heaptrail
    allocated and freed, reused from a free list (the site is unknown). Naming the last
    user frame of such a stack named the caller of check() or watch()."""
    if not _is_own(frames[-1][0]):
        return frames[-1][0], frames[-1][1], ""
    code = getattr(func, "__code__", None)
    if frames[-1] == _CALL_SITE and code is not None:
        return code.co_filename, code.co_firstlineno, " (as the function starts)"
    return None, None, ""


def _sites(live, addrs, func=None):
    """Allocation sites of the live new objects, grouped by full stack, most objects first;
    the objects whose site is unknown (see _innermost) grouped last as one."""
    groups = {}
    for a in addrs:
        obj = live.get(a)
        tb = tracer.get_object_traceback(obj) if obj is not None else None
        if tb is None:
            continue
        frames = [(f.filename, f.lineno) for f in tb]  # oldest first
        fn, ln, note = _innermost(frames, func)
        key = tuple(frames) if fn is not None else None
        g = groups.get(key)
        if g is None and fn is None:
            g = groups[key] = {"count": 0, "bytes": 0, "filename": None, "lineno": None,
                               "innermost": "unknown (a memory block reused from a free list)",
                               "line": "", "stack": []}
        elif g is None:
            g = groups[key] = {"count": 0, "bytes": 0, "innermost": f"{fn}:{ln}{note}",
                               "filename": fn, "lineno": ln,
                               "line": _line(fn, ln), "stack": [f"{f}:{n}" for f, n in frames]}
        g["count"] += 1
        g["bytes"] += sys.getsizeof(obj)
    out = sorted(groups.values(), key=lambda g: (g["filename"] is None, -g["count"], g["innermost"]))
    for g in out:
        if g["line"]:
            g["innermost"] += "  " + g["line"]
    return out


def _line(filename, lineno):
    return linecache.getline(filename, lineno).strip()


def _holder(snap, indexes):
    """Lowest common dominator of the objects: (text, path from a root, retained size), or
    (None, None, 0) when only the virtual root holds them all."""
    if not indexes:
        return None, None, 0
    # new objects that are roots themselves (held by C code) have only the virtual root
    # above them; the holder is looked for among the others when there are any
    held = [i for i in indexes if _core.graph_idom(snap._h, i) is not None]
    indexes = held or indexes
    chains = []
    for i in indexes:
        chain = [i]
        j = _core.graph_idom(snap._h, i)
        while j is not None:
            chain.append(j)
            j = _core.graph_idom(snap._h, j)
        chains.append(chain[::-1])  # root-most first
    common = None
    for depth in range(min(len(c) for c in chains)):
        v = chains[0][depth]
        if all(c[depth] == v for c in chains):
            common = v
        else:
            break
    if common is None:
        return None, None, 0
    if len(indexes) == 1 and common == indexes[0] and len(chains[0]) > 1:
        common = chains[0][-2]  # a single new object: its holder is its dominator
    return (_strip_addr(snap._describe(common)), _strip_addr(str(snap._path_of(common))),
            _core.graph_retained(snap._h, common))


# ---- public API ---------------------------------------------------------------------------------

def check(func, runs=10, warmup=2, args=(), kwargs=None):
    """Calls ``func(*args, **kwargs)`` ``warmup + runs`` times and returns a
    :class:`LeakReport` of what grew in nearly every one of the ``runs`` measured calls."""
    if not callable(func):
        raise TypeError(f"check() needs a callable, not {type(func).__name__}")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise HeaptrailError(f"runs must be an int >= 1, not {runs!r}")
    kwargs = kwargs or {}
    s = _Session(warmup, plan=runs)
    s.func = func
    s.start()
    try:
        for _ in range(warmup + runs):
            _call(func, args, kwargs)
            s.step()
    except BaseException:
        s.abort()
        raise
    return s.finish()


class Watch:
    """``with heaptrail.leaks.watch(warmup=2) as w:`` ... ``w.step()`` after each iteration;
    the report is ``w.report`` once the block ends."""

    def __init__(self, warmup=2, runs=None):
        if runs is not None and (isinstance(runs, bool) or not isinstance(runs, int) or runs < 1):
            raise HeaptrailError(f"runs must be None or an int >= 1, not {runs!r}")
        self._s = _Session(warmup, runs=runs)
        self.report = None

    def __enter__(self):
        self._s.start()
        return self

    def step(self):
        self._s.step()

    def __exit__(self, et, ev, tb):
        if et is not None:
            self._s.abort()
            return False
        self.report = self._s.finish()
        return False


# the classes left out of our snapshots; made once, at import: a tuple made during a check
# would itself be a new object
_exclude = (Snapshot, _Session, Watch, LeakReport, LeakKind)


def watch(warmup=2, runs=None):
    """A :class:`Watch`: ``warmup`` steps unmeasured, then every step (or only ``runs`` of
    them, the later ones being ignored) measured."""
    return Watch(warmup, runs)


_active = None  # the Watch that module-level step() drives (set by `heaptrail leaks`)


def step():
    """Marks the end of one iteration of a script run under ``heaptrail leaks script.py``;
    does nothing otherwise."""
    if _active is not None:
        _active.step()
