"""Heap snapshots: every live object, captured and summarized in C.

``heaptrail.snapshot()`` walks the live objects (``_core/heap.c``) into C arrays and returns a
:class:`Snapshot`; ``heaptrail.load(path)`` reads one back from a file written by
:meth:`Snapshot.save`. Summaries, diffs and queries are computed in C; this module only formats
their small results. The graph views (referrers, paths to roots, retained sizes, cycles, DOT) come
from :class:`heaptrail.graph.GraphViews`.
"""
import gc
import os
import sys
import types
from typing import NamedTuple, Optional

from heaptrail import _core
from heaptrail._core import Error as HeaptrailError
from heaptrail._format import human_bytes, replacing
from heaptrail.graph import GraphViews

# per-object flags, as heap.h defines them
ROOT = 1 << 0
UNREACHABLE = 1 << 1
GC = 1 << 2
FINALIZER = 1 << 3
EXTERNAL = 1 << 4
TYPE = 1 << 5
MODULE = 1 << 6
FRAME = 1 << 7
DICT = 1 << 8
VIEW = 1 << 9
LEGACY_DEL = 1 << 10

SNAPSHOT_MAGIC = b"HTSNAP\x00\x01"


class ObjectRecord(NamedTuple):
    """One object of a snapshot (meliae's fields): address, type name, flat size in bytes, len()
    (None when it has none), short value or name (None when it has none)."""

    address: int
    type: str
    size: int
    len: Optional[int]
    value: Optional[str]

    def __str__(self):
        extra = f" len={self.len}" if self.len is not None else ""
        value = f" {self.value!r}" if self.value is not None else ""
        return f"0x{self.address:x} {self.type} {self.size} B{extra}{value}"


class SummaryRow(NamedTuple):
    index: int
    count: int
    count_percent: float
    size: int
    size_percent: float
    cumulative: int
    cumulative_percent: float
    max: int
    kind: str


class _Rows(list):
    """A list of named-tuple rows printed as a fixed-width table: subclasses give the header
    lines and one line per row; ``format(top=N)`` limits the rows, ``str()`` shows 20."""

    def _header(self):
        raise NotImplementedError

    def _line(self, r):
        raise NotImplementedError

    def format(self, top=None):
        lines = self._header()
        shown = self if top is None else self[:top]
        lines.extend(self._line(r) for r in shown)
        if len(shown) < len(self):
            lines.append(f"<{len(self) - len(shown)} more rows>")
        return "\n".join(lines)

    def __str__(self):
        return self.format(top=20)

    def as_dicts(self):
        return [r._asdict() for r in self]


class Summary(_Rows):
    """Rows of :meth:`Snapshot.summary`, largest total size first. ``str()`` prints heapy's
    table; ``format(top=N)`` limits the rows."""

    def __init__(self, rows, by, objects, total):
        super().__init__(rows)
        self.by = by
        self.objects = objects
        self.total_size = total

    def _header(self):
        kind = {"type": "Kind (class / type)", "owner": "Kind (class / dict of class)",
                "module": "Kind (module of class)"}[self.by]
        return [f"Partition of a set of {self.objects} objects. Total size = {self.total_size} bytes.",
                f"{'Index':>6} {'Count':>8} {'%':>3} {'Size':>10} {'%':>3} {'Cumulative':>11} {'%':>3}"
                f" {'Max':>8} {kind}"]

    def _line(self, r):
        return (f"{r.index:>6} {r.count:>8} {r.count_percent:>3.0f} {r.size:>10} {r.size_percent:>3.0f}"
                f" {r.cumulative:>11} {r.cumulative_percent:>3.0f} {r.max:>8} {r.kind}")


class DiffRow(NamedTuple):
    kind: str
    count_delta: int
    size_delta: int
    added: int       # objects in the newer snapshot only (matched by address and type)
    removed: int     # objects in the older snapshot only
    count: int       # in the newer snapshot
    size: int


class Diff(_Rows):
    """Rows of :meth:`Snapshot.diff`, largest size growth first; ``str()`` prints a table."""

    def _header(self):
        return [f"{'Count':>9} {'Size':>12} {'Added':>8} {'Removed':>8} {'Now':>8}  Kind"]

    def _line(self, r):
        return (f"{r.count_delta:>+9} {human_bytes(r.size_delta):>12} {r.added:>8} {r.removed:>8}"
                f" {r.count:>8}  {r.kind}")


def _quote(s):
    return "'" + str(s).replace("\\", "\\\\").replace("'", "\\'") + "'"


class Snapshot(GraphViews):
    """Every live object at one moment, held in C arrays (no Python object per heap object)."""

    def __init__(self, handle, path=None):
        self._h = handle
        self.path = path

    # ---- sizes ---------------------------------------------------------------------------------
    def __len__(self):
        return self._h.n

    @property
    def objects(self):
        """Number of objects."""
        return self._h.n

    @property
    def edges(self):
        """Number of references between them."""
        return self._h.m

    @property
    def total_size(self):
        """Sum of the objects' flat sizes, in bytes."""
        return self._h.total_size

    def memory_usage(self):
        """The snapshot's own memory: objects, edges, strings, bytes and bytes per object/edge."""
        s = self._h.stats()
        s["bytes_per_object"] = s["object_bytes"] / max(1, s["objects"])
        s["bytes_per_edge"] = s["edge_bytes"] / max(1, s["edges"])
        return s

    # ---- views ---------------------------------------------------------------------------------
    def summary(self, by="type"):
        """Objects grouped by type (``by="type"``), by type with instance dicts as ``dict of
        Class`` (``by="owner"``, heapy's default) or by the defining module of their type
        (``by="module"``): rows Index, Count, %, Size, %, Cumulative, %, Max, Kind."""
        raw = self._h.summary(by)
        n = self._h.n or 1
        total = self._h.total_size or 1
        rows, cum = [], 0
        for k, (kind, count, size, mx) in enumerate(raw):
            cum += size
            rows.append(SummaryRow(k, count, 100.0 * count / n, size, 100.0 * size / total, cum,
                                   100.0 * cum / total, mx, kind))
        return Summary(rows, by, self._h.n, self._h.total_size)

    def diff(self, older, by="type"):
        """Count and size deltas per kind between ``older`` and this snapshot, largest growth
        first. Objects are matched by address and type, so a reused address is a new object."""
        if not isinstance(older, Snapshot):
            raise TypeError("diff() needs another Snapshot")
        return Diff(DiffRow(*r) for r in self._h.diff(older._h, by))

    def query(self, expr, limit=None):
        """Objects matching ``expr``, e.g. ``"type == 'dict' and size > 1000 and len > 10"``.
        Fields: type, size, len, address, value, name, module, referrers, retained; operators
        == != < <= > >=, ``contains``, ``startswith``; and, or, not, parentheses."""
        if limit is not None and int(limit) < 0:
            raise HeaptrailError(f"query: limit must be >= 0, not {int(limit)}")
        limit = -1 if limit is None else min(int(limit), sys.maxsize)
        return [ObjectRecord(*r) for r in self._h.query(expr, limit)]

    def select(self, type=None, min_size=None, max_size=None, min_len=None, value=None,
               name=None, module=None, limit=None):
        """Keyword form of :meth:`query`: every given condition must hold."""
        conds = []
        if type is not None:
            conds.append(f"type == {_quote(type)}")
        if min_size is not None:
            conds.append(f"size >= {int(min_size)}")
        if max_size is not None:
            conds.append(f"size <= {int(max_size)}")
        if min_len is not None:
            conds.append(f"len >= {int(min_len)}")
        if value is not None:
            conds.append(f"value == {_quote(value)}")
        if name is not None:
            conds.append(f"name == {_quote(name)}")
        if module is not None:
            conds.append(f"module == {_quote(module)}")
        return self.query(" and ".join(conds) or "size >= 0", limit)

    # ---- files ---------------------------------------------------------------------------------
    def save(self, path):
        """Writes the snapshot to a compact binary file (see _core/format_snapshot.h). A failed
        write leaves a file already at path as it was (_format.replacing)."""
        with replacing(path) as target:
            self._h.save(target)

    def export_jsonl(self, path):
        """Writes one JSON object per line with meliae's fields (address, type, size, len, value,
        name, refs). A failed write leaves a file already at path as it was."""
        with replacing(path) as target:
            self._h.export_jsonl(target)

    # ---- what the graph views need -------------------------------------------------------------
    def _index(self, x):
        if isinstance(x, int) and not isinstance(x, bool):
            addr = x
        elif self.path is not None:
            # its addresses are another moment's, maybe another process's: id(x) of a live
            # object could name an unrelated object of the file
            raise HeaptrailError(f"{self.path} was loaded from a file: pass an address, not a live "
                                 f"{type(x).__name__} object")
        else:
            addr = id(x)
        if not 0 <= addr < 1 << 64:  # the handle takes an unsigned 64-bit address
            shown = ((f"0x{addr:x}" if addr >= 0 else str(addr)) if addr.bit_length() <= 128
                     else f"an int of {addr.bit_length()} bits")
            raise HeaptrailError(f"{shown} is not an address (0 to 2**64-1)")
        i = self._h.index(addr)
        if i < 0:
            raise HeaptrailError(f"object 0x{addr:x} is not in this snapshot")
        return i

    def _record(self, i):
        return ObjectRecord(*self._h.record(i)[:5])

    def _describe(self, i):
        address, tname, size, length, value, flags, owner, module, _ = self._h.record(i)
        short = tname.rsplit(".", 1)[-1]
        if flags & MODULE:
            return f"module {value}"
        if flags & TYPE:
            return f"class {value}"
        if flags & DICT and owner >= 0:
            orec = self._h.record(owner)
            if orec[5] & MODULE:
                return f"dict of module {orec[4] or '?'}"
            if orec[5] & TYPE:  # which class: "dict of type" named none (a top retainer's row)
                return f"dict of class {orec[4] or '?'}"
            return "dict of " + orec[1].rsplit(".", 1)[-1]
        if flags & FRAME and module is not None:
            return f"frame {value} (thread {module})"
        if value is not None:
            if tname == "str":
                return repr(value)
            if tname in ("int", "float", "bool", "bytes"):
                return value
            return f"{tname} {value}"
        return f"<{short} 0x{address:x}>"

    def _root_text(self, i):
        flags = self._h.record(i)[5]
        text = self._describe(i)
        if flags & EXTERNAL and not flags & (MODULE | FRAME | TYPE):
            return "gc root " + text  # held from outside the graph: C code, the interpreter
        return text

    def record(self, x):
        """The :class:`ObjectRecord` of ``x``: an address, or a live object (an int is always taken
        as an address: look an int object up by ``id(x)``)."""
        return self._record(self._index(x))

    def __repr__(self):
        src = f" from {self.path}" if self.path else ""
        return f"<heaptrail.Snapshot{src}: {self.objects} objects, {human_bytes(self.total_size)}>"


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _own_objects():
    """heaptrail's own modules and frames, which a snapshot leaves out with what only they hold
    (the walk's ``own``): every module of the package, the frames of its code on every thread's
    stack (the caller's, and another thread's: a check() or a command the main thread runs while
    a thread of the program takes a snapshot), and, while the command line runs a program, every
    frame from the command down (the command and what launched it)."""
    import heaptrail

    # no code of the program's: an entry that is no module may fake its __class__ (isinstance
    # reads it), a module subclass its __getattribute__ (m.__dict__), a str subclass key its
    # __eq__ and __hash__
    entries = heaptrail._modules()
    modules = [m for _, m in entries if _is_module(m)]
    own = [m for name, m in entries if _is_module(m) and name.partition(".")[0] == "heaptrail"]
    module_dicts = {id(_module_dict(m)) for m in modules}
    here = sys._getframe()
    # this thread's from the caller (this frame is done before the walk); the others' as they are
    tops = [sys._getframe(1)] + [f for f in sys._current_frames().values() if f is not here]
    base = heaptrail._program_base
    for f in tops:
        below = False
        while f is not None:
            below = below or f is base
            if below or f.f_code.co_filename.startswith(_PACKAGE_DIR):
                own.append(f)
                # a launcher's globals (the console script's, `python -m heaptrail`'s), which the
                # program's __main__ replaced in sys.modules
                if id(f.f_globals) not in module_dicts:
                    own.append(f.f_globals)
            f = f.f_back
    del here, tops  # this frame in a local of its own: a cycle, garbage for the next snapshot
    return tuple(own)


def _is_module(obj):
    """Whether obj is a module as the C walk sees it (PyModule_Check: its real type), without
    reading its __class__."""
    return issubclass(type(obj), types.ModuleType)


_module_dict = types.ModuleType.__dict__["__dict__"].__get__  # read in C, past any __getattribute__


def _thread_names():
    """{thread ident: name} of the threads threading knows (none when it is not imported)."""
    threading = sys.modules.get("threading")
    if not _is_module(threading):
        return {}
    # the running threads' own fields (threading._active: ident -> Thread), read past a Thread
    # subclass's `name` property or __getattribute__, which are the program's code
    active = _module_dict(threading).get("_active")
    names = {}
    for ident, t in list(active.items()) if type(active) is dict else ():
        try:
            name = object.__getattribute__(t, "_name")
        except AttributeError:
            continue
        if type(ident) is int and type(name) is str:
            names[ident] = name
    return names


def _own_imports():
    """The modules heaptrail imported for itself (heaptrail._note_imports) that sys.modules
    still lists: held, not seeds (the walk records one the program refers to)."""
    import heaptrail

    own = heaptrail._own_imports  # exact str keys (heaptrail._note_imports)
    # sys.modules' entries read in place: a lookup by name compares with a str subclass key
    # through its __eq__
    return tuple(m for name, m in heaptrail._modules() if own.get(name) is m)


def _walk(gc_first, exclude):
    """The C walk (heaptrail._core.heap_snapshot), heaptrail's own objects left out, the
    threads' frames named after their threads."""
    return _core.heap_snapshot(bool(gc_first), exclude, _own_objects(), _thread_names(),
                               _own_imports())


def _take(gc_first=True):
    import heaptrail

    if gc_first and heaptrail._young_import_garbage:
        # heaptrail's lazy imports ran with the collector off: their garbage is in the youngest
        # generation, which costs little to collect (gc_first collects the program's anyway),
        # where a walk that found it would collect everything and walk again
        heaptrail._young_import_garbage = False
        gc.collect(0)
    # no collection before the walk (materializing frames below allocates): it would free the
    # young garbage that gc_first=False keeps; the walk turns the collector off by itself
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        # the walk first: in `Snapshot(_walk(...))` this frame's stack holds the class during the
        # walk, a reference no object explains (a program that holds the class saw a gc root)
        handle = _walk(gc_first, (Snapshot,))
        return Snapshot(handle)
    finally:
        if was_enabled:
            gc.enable()


def snapshot(gc_first=True):
    """Walks every live object into a :class:`Snapshot`. ``gc_first`` keeps cyclic garbage
    out, as a full collection first would: the walk finds garbage the way the collector does, and
    only when it found some does it run ``gc.collect()`` and walk again (a heap without garbage
    is not collected: no finalizer or gc callback runs; but the first call after heaptrail
    imported a module of its own collects the youngest generation, which holds that import's
    garbage). A Snapshot that refers to other objects
    (given an attribute) could close a cycle the walk cannot see, as snapshots leave themselves
    out: then the heap is collected and walked again too. With ``gc_first=False`` cyclic garbage
    stays in, flagged unreachable."""
    return _take(gc_first)


def load(path):
    """Reads a snapshot file written by :meth:`Snapshot.save`."""
    path = os.fspath(path)
    return Snapshot(_core.heap_load(path), path=path)


# set by `heaptrail snapshot -o FILE -- script.py`: marks save next to FILE
_mark_output = None
_marks = []


def _set_mark_output(path):
    global _mark_output
    _mark_output = path
    del _marks[:]


def mark(label="mark"):
    """Takes a snapshot now. Under ``heaptrail snapshot -o FILE``, saves it as
    ``FILE.<n>.<label>`` beside the final one; returns the Snapshot."""
    snap = _take()
    if _mark_output is not None:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(label)) or "mark"
        path = f"{_mark_output}.{len(_marks) + 1}.{safe}"
        snap.save(path)
        _marks.append(path)
    return snap
