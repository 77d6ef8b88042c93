"""Garbage cycles: what the cyclic collector frees, found with DEBUG_SAVEALL and reported.

::

    with heaptrail.garbage.collect() as g:
        run_the_code()
    print(g)                     # table: one row per cycle, members, total size, finalizers
    g.render("garbage.svg")      # Graphviz graph of the cycles (pympler's garbagegraph)

    g = heaptrail.garbage.find() # the garbage waiting for the collector right now

How: ``gc.DEBUG_SAVEALL`` is set and ``gc.collect()`` run, so every object the collector finds
unreachable is appended to ``gc.garbage`` instead of being freed; the new entries are taken out,
``gc.garbage`` and the debug flags are put back as they were, and the cycles among the saved
objects are computed in C (``_core/live.c``: references between them, Tarjan's strongly
connected components, flat sizes). Then the saved objects are let go and collected again, for
real - unless ``keep=True``, which leaves them in :attr:`Garbage.objects` until
:meth:`Garbage.release`.

A cycle's total size is the flat size of its members plus that of the objects the collector
does not track (bytes, str, numbers ...) which only that cycle refers to: they go with it.
"""
import gc
import threading
from typing import List, NamedTuple, Optional

from heaptrail import _core
from heaptrail._format import human_bytes, table
from heaptrail.graph import render_dot
from heaptrail.size import sizeof

__all__ = ["collect", "find", "Garbage", "GarbageCycle", "Member"]

_lock = threading.Lock()  # one DEBUG_SAVEALL collection at a time


class Member(NamedTuple):
    """One object of a garbage cycle."""

    address: int
    type: str
    size: int
    text: str  # a short repr


class GarbageCycle(NamedTuple):
    """A reference cycle found in the garbage: its members, total size in bytes, and whether a
    member's type has a finalizer (``__del__``, or a C-level tp_finalize/tp_del)."""

    members: List[Member]
    total_size: int
    has_finalizers: bool

    def __len__(self):
        return len(self.members)


def _short(o):
    try:
        r = repr(o)
    except Exception:
        r = f"<{type(o).__name__} (unrepresentable)>"
    return r if len(r) <= 60 else r[:57] + "..."


class Garbage:
    """The result of a DEBUG_SAVEALL collection: ``cycles`` (biggest total size first), the
    number of objects collected (``count``), and, with ``keep=True``, the objects themselves."""

    def __init__(self):
        self.cycles: List[GarbageCycle] = []
        self.count = 0
        self.objects: Optional[list] = None
        self._edges = []  # (i, j) between members, as Member positions in _members
        self._members: List[Member] = []
        self._flags = 0
        self._saved = None

    # ---- the collection ------------------------------------------------------------------------
    def _begin(self):
        with _lock:
            self._flags = gc.get_debug()
            self._saved = list(gc.garbage)
            gc.set_debug(self._flags | gc.DEBUG_SAVEALL)

    def _end(self, keep):
        try:
            gc.collect()
            n = len(self._saved)
            found = gc.garbage[n:]
        finally:
            with _lock:
                gc.garbage[:] = self._saved
                gc.set_debug(self._flags)
                self._saved = None
        try:
            self._report(found)
        finally:
            if keep:
                self.objects = found
            else:
                del found[:]
                gc.collect()  # now they are plain garbage again, and freed
        return self

    def _report(self, found):
        self.count = len(found)
        rows, edges = _core.live_garbage(found)
        rows.sort(key=lambda r: r[1], reverse=True)
        where = {}
        for members, total, fin in rows:
            ms = []
            for i in members:
                o = found[i]
                where[i] = len(self._members)
                m = Member(id(o), type(o).__qualname__, sizeof(o), _short(o))
                self._members.append(m)
                ms.append(m)
            self.cycles.append(GarbageCycle(ms, total, bool(fin)))
        self._edges = [(where[i], where[j]) for i, j in edges if i in where and j in where]

    def release(self):
        """Lets go of the objects kept with ``keep=True`` and collects them."""
        if self.objects is not None:
            del self.objects[:]
            self.objects = None
            gc.collect()

    # ---- views -------------------------------------------------------------------------------
    @property
    def total_size(self):
        """Bytes held by all the cycles."""
        return sum(c.total_size for c in self.cycles)

    def as_dicts(self):
        return [{"members": [m._asdict() for m in c.members], "total_size": c.total_size,
                 "has_finalizers": c.has_finalizers} for c in self.cycles]

    def format(self, top=None):
        head = (f"{self.count} objects collected, {len(self.cycles)} cycles, "
                f"{human_bytes(self.total_size)} in cycles")
        shown = self.cycles if top is None else self.cycles[:top]
        rows = []
        for k, c in enumerate(shown):
            kinds = ", ".join(m.type for m in c.members[:4]) + (
                f", ... {len(c) - 4} more" if len(c) > 4 else "")
            rows.append((k, len(c), human_bytes(c.total_size), "yes" if c.has_finalizers else "",
                         kinds))
        text = head + "\n" + table(["Cycle", "Members", "Total size", "Finalizer", "Types"], rows,
                                   align="rrrll")
        if len(shown) < len(self.cycles):
            text += f"\n<{len(self.cycles) - len(shown)} more cycles>"
        return text

    def __str__(self):
        return self.format(top=20)

    def __repr__(self):
        return f"<heaptrail.garbage.Garbage: {self.count} objects, {len(self.cycles)} cycles>"

    def to_dot(self, max_nodes=500):
        """Graphviz text: one cluster per cycle, a node per member (type, repr, size), an edge
        per reference between members; members with finalizers drawn red."""
        out = ["digraph garbage {",
               '  node [shape=box, style=filled, fillcolor="#f7f7f7", fontname="Helvetica", '
               "fontsize=10];"]
        drawn = set()
        pos = 0
        for k, c in enumerate(self.cycles):
            out.append(f"  subgraph cluster_{k} {{")
            out.append(f'    label="cycle {k}: {len(c)} objects, {human_bytes(c.total_size)}'
                       f'{", has finalizers" if c.has_finalizers else ""}";')
            for m in c.members:
                if len(drawn) < max_nodes:
                    color = "#fcbba1" if c.has_finalizers else "#f7f7f7"
                    out.append(f'    g{pos} [label="{_q(m.type)}\\n{_q(m.text)}\\n'
                               f'{human_bytes(m.size)}\\n0x{m.address:x}", fillcolor="{color}"];')
                    drawn.add(pos)
                pos += 1
            out.append("  }")
        for i, j in self._edges:
            if i in drawn and j in drawn:
                out.append(f"  g{i} -> g{j};")
        if pos > len(drawn):
            out.append(f"  // {pos - len(drawn)} members left out (max_nodes={max_nodes})")
        out.append("}")
        return "\n".join(out) + "\n"

    def render(self, path, max_nodes=500):
        """Writes :meth:`to_dot` to ``path`` (.dot/.gv text, or .png/.svg/.pdf through
        Graphviz); returns ``path``."""
        return render_dot(self.to_dot(max_nodes), path)


def _q(s):
    return str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


class collect:
    """``with collect() as g:`` reports the garbage cycles the block leaves behind: on entry a
    plain collection clears older garbage and DEBUG_SAVEALL is set (so automatic collections
    inside the block save instead of free); on exit a last collection, then the report, then
    ``gc.garbage`` and the debug flags as they were, and the garbage freed."""

    def __init__(self, keep=False):
        self.keep = keep
        self.result = Garbage()

    def __enter__(self):
        gc.collect()
        self.result._begin()
        return self.result

    def __exit__(self, *exc):
        self.result._end(self.keep)
        return False


def find(keep=False) -> Garbage:
    """Collects now with DEBUG_SAVEALL and reports the cycles found (garbage made since the
    last collection), then frees them (``keep=True`` keeps them in ``.objects``)."""
    g = Garbage()
    g._begin()
    return g._end(keep)
