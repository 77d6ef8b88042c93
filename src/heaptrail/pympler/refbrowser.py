"""pympler.refbrowser's console tree, over heaptrail's C referents (``_core/pymcompat.c``).

``ConsoleBrowser(root, maxdepth=3).print_tree()`` prints the tree in pympler's drawing::

    dict-+-list-+-int
         |      +-int
         |
         +-tuple--str

Difference from pympler: the tree shows what each object refers to (its referents, as the gc
sees them, a dict's keys included), not what refers to it. Referrers depend on everything else
alive in the process (the browser itself, the caller's frames); referents are a property of the
structure. ``repeat=False`` prints an object seen before as ``<label> (already included, id N)``
instead of expanding it again.
pympler's Tk ``InteractiveBrowser`` is not provided.
"""
import io
import sys

from heaptrail import _core
from heaptrail._format import replacing
from heaptrail.pympler.summary import _ADDRESS, _TYPE_REPR

__all__ = ["RefBrowser", "StreamBrowser", "ConsoleBrowser", "FileBrowser"]


def _repr(o):
    """pympler's default node label: the type's name; 'function (f)', 'module(m)',
    'frame (codename: f)' for those."""
    t = type(o)
    if t.__name__ == "function" and t.__module__ == "builtins":
        return f"function ({o.__name__})"
    if t.__name__ == "module" and t.__module__ == "builtins":
        return f"module({getattr(o, '__name__', 'nameless, id: %d' % id(o))})"
    if t.__name__ == "frame" and t.__module__ == "builtins":
        return f"frame (codename: {o.f_code.co_name})"
    return _TYPE_REPR.sub(r"\1", _ADDRESS.sub("", str(t)))


class _Node:
    """A node of the tree: the object and its children (nodes, or text for leaves)."""

    __slots__ = ("o", "children", "str_func")

    def __init__(self, o, str_func=None):
        self.o = o
        self.children = []
        self.str_func = str_func

    def __str__(self):
        return self.str_func(self.o) if self.str_func is not None else str(self.o)


class RefBrowser:
    """Builds the tree of referents of ``rootobject`` down to ``maxdepth``."""

    def __init__(self, rootobject, maxdepth=3, str_func=_repr, repeat=True, stream=None):
        if isinstance(maxdepth, bool) or not isinstance(maxdepth, int) or maxdepth < 0:
            raise ValueError(f"maxdepth must be an int >= 0, got {maxdepth!r}")
        self.root = rootobject
        self.maxdepth = maxdepth
        self.str_func = str_func
        self.repeat = repeat
        self.stream = stream

    def get_tree(self):
        """The tree of referents, as _Node objects."""
        seen = set()
        return self._tree(self.root, self.maxdepth, seen)

    def _tree(self, obj, depth, seen):
        node = _Node(obj, self.str_func)
        seen.add(id(obj))
        if depth == 0:
            return node
        for child in _core.pym_referents(obj, 1, True, False):
            if not self.repeat and id(child) in seen:
                node.children.append(f"{self.str_func(child)} (already included, id {id(child)})")
                continue
            node.children.append(self._tree(child, depth - 1, seen))
        return node


class StreamBrowser(RefBrowser):
    """Prints the tree to ``stream``; the drawing characters are class attributes."""

    hline = "-"
    vline = "|"
    cross = "+"
    space = " "

    def print_tree(self, tree=None):
        if tree is None:
            tree = self.get_tree()
        for line in self._lines(tree):
            self.stream.write(line + "\n")

    def tree_text(self, tree=None):
        """The tree as print_tree writes it, as a string."""
        if tree is None:
            tree = self.get_tree()
        return "".join(line + "\n" for line in self._lines(tree))

    def _lines(self, tree):
        out = []
        self._draw(tree, "", "", 0, out)
        return out

    def _draw(self, tree, head, pad, level, out):
        """Appends the lines of ``tree``: ``head`` starts its first line, ``pad`` (as wide as
        head) starts the lines below it."""
        label = str(tree)
        children = tree.children if isinstance(tree, _Node) else []
        if not children or level == self.maxdepth:
            out.append(head + label)
            return
        many = len(children) > 1
        # "label-+-first" over "      | " when there are several children, "label--only" else
        joint = self.hline + (self.cross + self.hline if many else self.hline)
        below = pad + self.space * len(label) + self.space + (self.vline + self.space if many else self.space)
        self._draw(children[0], head + label + joint, below, level + 1, out)
        for k, child in enumerate(children[1:], 1):
            last = k == len(children) - 1
            branch = below[:-2] + self.cross + self.hline
            inner = below[:-2] + (self.space if last else self.vline) + self.space
            self._draw(child, branch, inner, level + 1, out)
            if last:
                gap = below[:-2].rstrip()
                if gap:
                    out.append(gap)


class ConsoleBrowser(StreamBrowser):
    """Prints the tree to sys.stdout (or ``stream``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.stream is None:
            self.stream = sys.stdout


class FileBrowser(StreamBrowser):
    """Writes the tree to a file."""

    def print_tree(self, filename, tree=None):
        with replacing(filename) as target, open(target, "w", encoding="utf-8") as f:
            old, self.stream = self.stream, f
            try:
                super().print_tree(tree)
            finally:
                self.stream = old
