"""Graph views over a heap snapshot: referrers, paths to roots, dominators, cycles, Graphviz.

``GraphViews`` is a mixin inherited by :class:`heaptrail.heap.Snapshot`. All the work is done in
C (``_core/graph.c``: reverse edges, a backward breadth-first search, Lengauer-Tarjan dominators,
an iterative Tarjan for strongly connected components, DOT text); this module only converts
arguments and formats small results.

The mixin needs three things from the class it is mixed into:

- ``self._h``: the C handle of the snapshot;
- ``self._index(x)``: the object index of ``x`` (an address, or a live object), raising
  :class:`heaptrail.HeaptrailError` when the snapshot does not hold it;
- ``self._describe(i)``: a short text for object ``i`` (``module app.cache``, ``<Session 0x7f..>``);
- ``self._record(i)``: the public record of object ``i`` (whatever the snapshot returns for one
  object elsewhere).

**The virtual root.** Retained sizes, dominators and paths are computed from one virtual node
that refers to every root of the snapshot (module objects, thread frames, the builtins, objects
held from outside the walked graph). Objects that no root reaches (garbage kept with
``snapshot(gc_first=False)``, or objects held only by such garbage) are attached to the virtual
root too - first those that nothing refers to, then one entry object per remaining unreachable
cycle - so they also get a retained size: a piece of garbage is retained by its own entry
object, and ``path_to_root`` reports them as not reachable.
"""
# annotations stay text: List[PathStep] evaluated at import would put heaptrail's classes in
# typing's caches, where every snapshot would find them (the program's objects)
from __future__ import annotations

import os
import re
import sys
from typing import List, NamedTuple, Optional

from heaptrail import _core
from heaptrail._core import Error as HeaptrailError
from heaptrail._format import human_bytes, replacing, table, write_file

_IDENT_KEY = re.compile(r"^\['([A-Za-z_][A-Za-z0-9_]*)'\]$")


def _c_int(v):
    """v as an int a C Py_ssize_t holds (clamped: the engine checks the range and says so)."""
    return max(-sys.maxsize - 1, min(int(v), sys.maxsize))


class PathStep(NamedTuple):
    """One object on a path from a root: the label of the edge that reached it (None for the
    root itself), its index in the snapshot and its short description."""

    label: Optional[str]
    index: int
    text: str


class RootPath:
    """The shortest chain of references from a root to an object.

    ``steps[0]`` is the root, ``steps[-1]`` the object; each later step carries the label of the
    reference that leads to it. ``str()`` prints it the way a Python programmer would write the
    access: ``module app.cache -> .CACHE -> ['user:42'] -> [3] -> <Session 0x7f..>``. When no root
    reaches the object, ``reachable`` is False and ``steps`` holds only the object.
    """

    def __init__(self, steps: List[PathStep], reachable: bool):
        self.steps = steps
        self.reachable = reachable

    @property
    def root(self) -> Optional[PathStep]:
        return self.steps[0] if self.reachable else None

    def __len__(self):
        """Number of references on the path (0 when the object is a root itself)."""
        return len(self.steps) - 1 if self.reachable else 0

    def labels(self) -> List[str]:
        """The access path as printed: an instance or module ``__dict__`` followed by a key
        that is an identifier reads as ``.name``."""
        out = []
        steps = self.steps[1:]
        k = 0
        while k < len(steps):
            lab = steps[k].label
            nxt = steps[k + 1].label if k + 1 < len(steps) else None
            if lab == "__dict__" and nxt is not None:
                m = _IDENT_KEY.match(nxt)
                if m or nxt.startswith("."):
                    out.append("." + m.group(1) if m else nxt)
                    k += 2
                    continue
            if lab is not None:
                out.append(lab)
            elif k + 1 < len(steps):  # an unlabeled hop: name the object instead
                out.append(steps[k].text)
            k += 1
        return out

    def __str__(self):
        target = self.steps[-1].text
        if not self.reachable:
            return (f"{target} is not reachable from any root "
                    "(garbage, or held only by unreachable objects)")
        if len(self.steps) == 1:
            return f"{target} (a root)"
        return " -> ".join([self.steps[0].text, *self.labels(), target])

    def __repr__(self):
        return f"<RootPath {self}>"


class Retainer(NamedTuple):
    """A row of :meth:`GraphViews.top_retainers`."""

    address: int
    kind: str
    retained: int
    size: int
    index: int
    text: str  # short description: "module app.cache", "dict of Session", "<list 0x7f..>"


class Retainers(list):
    """Rows of :meth:`GraphViews.top_retainers`, largest retained size first; ``str()`` is a table."""

    def __str__(self):
        rows = [
            (k, human_bytes(r.retained), human_bytes(r.size), f"0x{r.address:x}", r.kind, r.text)
            for k, r in enumerate(self)
        ]
        return table(["Index", "Retained", "Size", "Address", "Kind", "Object"], rows,
                     align="rrrlll")


class Cycle:
    """A strongly connected component that is a reference cycle (more than one object, or one
    object referring to itself).

    - ``total_size``: flat sizes of the members, summed;
    - ``has_finalizers``: a member's type defines ``__del__`` (tp_finalize) or a legacy tp_del.
      Since Python 3.4 (PEP 442) a finalizer does not keep a cycle from being collected;
    - ``uncollectable``: a member has a legacy C-level tp_del, which still sends the cycle to
      ``gc.garbage`` instead of freeing it (a file written before snapshots recorded tp_del
      says False);
    - ``garbage``: every member was found unreachable (``snapshot(gc_first=False)``): the cycle
      is waiting for the collector.
    """

    def __init__(self, views, indexes, total_size, has_finalizers, uncollectable, garbage):
        self._views = views
        self.indexes = indexes
        self.total_size = total_size
        self.has_finalizers = has_finalizers
        self.uncollectable = uncollectable
        self.garbage = garbage

    def __len__(self):
        return len(self.indexes)

    @property
    def members(self):
        """The members' records (built on access: a live heap has big components)."""
        return [self._views._record(i) for i in self.indexes]

    def __str__(self):
        flags = [f for f, on in (("has finalizers", self.has_finalizers),
                                 ("UNCOLLECTABLE", self.uncollectable),
                                 ("garbage", self.garbage)) if on]
        head = ", ".join(self._views._describe(i) for i in self.indexes[:4])
        more = f", ... {len(self) - 4} more" if len(self) > 4 else ""
        note = f" [{', '.join(flags)}]" if flags else ""
        return f"cycle of {len(self)} objects, {human_bytes(self.total_size)}{note}: {head}{more}"

    def __repr__(self):
        return f"<Cycle {self}>"


class GraphViews:
    """Graph views of a snapshot; every method takes an address or a live object."""

    def referrers(self, x):
        """What refers to ``x``: a list of ``(label, record)``; the label says how it refers
        (``['key']``, ``.attr``, ``[3]``, ``__dict__``, ``type`` ...) or is None."""
        i = self._index(x)
        return [(lab, self._record(j)) for lab, j in _core.graph_referrers(self._h, i)]

    def referents(self, x):
        """What ``x`` refers to: a list of ``(label, record)`` in traversal order."""
        i = self._index(x)
        return [(lab, self._record(j)) for lab, j in _core.graph_referents(self._h, i)]

    def path_to_root(self, x) -> RootPath:
        """The shortest chain of references from a root to ``x`` (ties between equally near
        roots go to module globals, then thread frames); see :class:`RootPath`."""
        return self._path_of(self._index(x))

    def _path_of(self, i) -> RootPath:
        """path_to_root of object number i (no lookup by address: the address index a
        snapshot builds on its first such lookup costs a pass over every object)."""
        chain = _core.graph_path(self._h, i)
        if chain is None:
            return RootPath([PathStep(None, i, self._describe(i))], reachable=False)
        steps = [PathStep(lab, j, self._describe(j)) for lab, j in chain]
        steps[0] = steps[0]._replace(text=self._root_text(steps[0].index))
        return RootPath(steps, reachable=True)

    def _root_text(self, i):
        """How a path's root reads (a snapshot says which roots are held from C)."""
        return self._describe(i)

    def retained_size(self, x) -> int:
        """Bytes that would be freed if ``x`` went away: the flat sizes of every object that ``x``
        dominates (every path from a root to it passes through ``x``), ``x`` included."""
        return _core.graph_retained(self._h, self._index(x))

    def dominator(self, x):
        """The record of ``x``'s immediate dominator, or None when it is the virtual root (``x``
        is a root, or several roots reach it by separate paths)."""
        j = _core.graph_idom(self._h, self._index(x))
        return None if j is None else self._record(j)

    def dominated(self, x):
        """Records of every object ``x`` dominates, ``x`` first (their flat sizes add up to
        ``retained_size(x)``)."""
        return [self._record(j) for j in _core.graph_dominated(self._h, self._index(x))]

    def top_retainers(self, n=20, kind=None) -> Retainers:
        """The ``n`` objects with the largest retained sizes (rows: address, kind, retained,
        size). Roots such as modules are shown too - they do hold that memory. ``kind``
        keeps only objects whose type has that name (``"dict"``, ``"app.Session"``, or just
        ``"Session"``: the last dotted part)."""
        rows = _core.graph_top_retainers(self._h, _c_int(n), kind)
        return Retainers(Retainer(addr, k, ret, size, i, self._describe(i))
                         for i, addr, k, ret, size in rows)

    def cycles(self, garbage=False) -> List[Cycle]:
        """Reference cycles (strongly connected components of more than one object, or of one
        object referring to itself), biggest total size first. ``garbage=True`` keeps only the
        cycles that are unreachable garbage (with ``snapshot(gc_first=False)``: what the
        collector will free, or cannot free when ``uncollectable``)."""
        out = [Cycle(self, *row) for row in _core.graph_cycles(self._h)]
        return [c for c in out if c.garbage] if garbage else out

    def to_dot(self, x, direction="refs", depth=3, max_nodes=200) -> str:
        """Graphviz text of the objects around ``x``: what it refers to (``direction="refs"``)
        or what refers to it (``"backrefs"``), up to ``depth`` references away and at most
        ``max_nodes`` objects, with labeled edges and each object's type, value, size and
        address (objgraph's show_refs / show_backrefs)."""
        if direction not in ("refs", "backrefs"):
            raise HeaptrailError(f"to_dot: direction must be 'refs' or 'backrefs', not {direction!r}")
        return _core.graph_to_dot(self._h, self._index(x), direction == "backrefs",
                                  _c_int(depth), _c_int(max_nodes))

    def render(self, x, path, direction="refs", depth=3, max_nodes=200) -> str:
        """Writes the graph of :meth:`to_dot` to ``path``: ``.png``, ``.svg`` or ``.pdf`` through
        Graphviz's ``dot`` program, ``.dot``/``.gv`` as text. Returns ``path``."""
        return render_dot(self.to_dot(x, direction, depth, max_nodes), path)


_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def check_dot_output(path):
    """Raises HeaptrailError when render_dot could not write ``path`` (an unknown extension, a
    directory, Graphviz missing for .png/.svg/.pdf); returns the ``dot`` program's path or None
    for text. A command that works for minutes before it renders (`heaptrail leaks --dot`)
    asks first, so that the mistake costs nothing."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        raise HeaptrailError(f"cannot render {path!r}: it is a directory")
    if ext in (".dot", ".gv"):
        return None
    if ext not in _FORMATS:
        raise HeaptrailError(f"cannot render {path!r}: use a .png, .svg, .pdf or .dot file name")
    import shutil  # here: it brings bz2, lzma, fnmatch ..., kept out of a snapshot's modules

    dot = shutil.which("dot")
    if dot is None:
        raise HeaptrailError(
            "Graphviz's 'dot' program is not installed: install it (apt-get install graphviz, "
            "brew install graphviz, or https://graphviz.org/download/) or write a .dot file")
    return dot


def render_dot(text, path, timeout=300):
    """Writes Graphviz ``text`` to ``path`` (format by extension); raises HeaptrailError when
    ``dot`` is needed and not installed, or runs more than ``timeout`` seconds."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    dot = check_dot_output(path)
    if dot is None:
        write_file(path, text)
        return path
    # imported here: subprocess brings threading, signal, selectors ..., and threading registers
    # a fork handler with the interpreter, whose list would hold them in every snapshot
    import subprocess

    with replacing(path) as target:   # dot failing leaves a file already there whole
        try:
            proc = subprocess.run([dot, "-T" + _FORMATS[ext], "-o", target],
                                  input=text.encode("utf-8"), capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:  # run() has killed it
            raise HeaptrailError(f"dot did not finish {path!r} within {timeout:g} s: draw fewer "
                                 "objects (max_nodes, depth) or write a .dot file") from None
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise HeaptrailError(f"dot failed on {path!r}: "
                                 f"{err[-1] if err else 'exit %d' % proc.returncode}")
    return path


class EdgeGraph(GraphViews):
    """A graph given as explicit edges, with the snapshot's graph views: for tests and for
    checking the algorithms on known graphs. Objects are named by their index.

    ``EdgeGraph(n, edges, sizes=None, roots=(), flags=None, types=None, values=None)``: edges are
    ``(src, dst)`` or ``(src, dst, label)`` with label None, an int (shown ``[k]``) or a str;
    sizes default to 1; ``types[i]`` is the index of ``i``'s type object and ``values[t]``
    the type's name."""

    def __init__(self, n, edges, **kw):
        self._h = _core._graph_from_edges(n, edges, **kw)
        self._n = n
        self._values = kw.get("values")

    def _index(self, x):
        if isinstance(x, int) and 0 <= x < self._n:
            return x
        raise HeaptrailError(f"no object {x!r} in this graph")

    def _describe(self, i):
        name = self._values[i] if self._values and self._values[i] is not None else None
        return f"<{name} {i}>" if name else f"<{i}>"

    def _record(self, i):
        return i
