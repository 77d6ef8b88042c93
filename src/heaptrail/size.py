"""Object sizes: flat (sizeof), deep (deepsize) and a deep breakdown
(deepsize_detail). The walks are C (heaptrail/_core/size.c); this module parses
arguments and formats the few paths it prints.

What deepsize counts
--------------------
Every distinct object reachable from the roots through the referents the
garbage collector knows (tp_traverse), each once (by identity), at its flat
size (``sizeof``, which equals ``sys.getsizeof``: buffers an object owns, such
as a bytearray's or an array.array's, are part of it).

Shared objects are neither counted nor walked into, unless ``shared=True``:
modules, type objects (classes, metaclasses, builtin types), Python
functions, builtin functions and methods, code objects, and the descriptors
that live in classes. So an instance's class is not counted, its ``__dict__``
is. A root is always counted and walked, whatever its type.

A memoryview is counted at its own size; the buffer it shows belongs to
another object and is not counted (nor is that object, unless reached some
other way). Objects outside the gc's view are not seen: the payload of an int,
str or bytes is flat; a ``range``'s start/stop/step are not counted.

A dict's str keys are counted (its tp_traverse leaves them out: they cannot be
in a cycle). On Python 3.11-3.13, an instance whose ``__dict__`` was never
asked for keeps its attribute values without a dict object; then there is no
dict to count, and the values are counted as the instance's referents (as the
gc sees them). On 3.13 such an instance keeps showing its inline values to the
gc even after its ``__dict__`` is made, and that dict is not counted.
"""
import sys
import types
from collections import namedtuple

from heaptrail import _core
from heaptrail._format import human_bytes, table

__all__ = ["sizeof", "deepsize", "deepsize_detail", "DeepSize", "TypeLine", "Member"]

TypeLine = namedtuple("TypeLine", "name count bytes")
TypeLine.__doc__ = "One line of deepsize_detail's per-type table."
Member = namedtuple("Member", "path type size")
Member.__doc__ = "One of the largest members: its path from the root, type name, flat size."

# label kinds of a path step (size.c HT_LBL_*)
_ROOT, _REF, _INDEX, _KEY, _SET = range(5)


def sizeof(obj):
    """Flat size of obj in bytes, as the allocator sees it: equal to
    sys.getsizeof(obj) (its __sizeof__ plus the gc header and the managed
    dict/weakref pre-header). Builtin types are sized in C without calling
    __sizeof__; a Python-level __sizeof__ override is called."""
    return _core.size_flat(obj)


def _exclude_tuple(exclude):
    if exclude is None:
        return ()
    if isinstance(exclude, (str, bytes)):
        raise TypeError("exclude must be an iterable of objects, not a single str/bytes")
    try:
        return tuple(exclude)
    except TypeError:
        raise TypeError(
            f"exclude must be an iterable of objects, not {type(exclude).__name__}") from None


def deepsize(*objs, exclude=None, shared=False):
    """Total bytes of every distinct object reachable from objs, each counted
    once. exclude: objects (by identity) neither counted nor walked into.
    shared=True also counts and walks modules, classes, functions and code.
    See the module docstring for the exact rules."""
    total, _count = _core.size_deep(objs, _exclude_tuple(exclude), bool(shared))
    return total


class DeepSize:
    """The result of deepsize_detail: total bytes, number of objects, a
    per-type table (``types``: TypeLine, largest bytes first) and the largest
    members (``largest``: Member with a path such as ``obj.cache['k'][3]``).
    str() renders both tables."""

    __slots__ = ("total", "count", "types", "largest")

    def __init__(self, total, count, types, largest):
        self.total = total
        self.count = count
        self.types = types
        self.largest = largest

    def __repr__(self):
        return f"<DeepSize {self.total} bytes in {self.count} objects, {len(self.types)} types>"

    def format(self, types=20):
        lines = [f"deep size: {human_bytes(self.total)} ({self.total:,} bytes) in {self.count:,} objects", ""]
        rows = [(t.name, f"{t.count:,}", human_bytes(t.bytes), f"{100.0 * t.bytes / (self.total or 1):.1f}%")
                for t in self.types[:types]]
        lines.append(table(["type", "count", "bytes", "share"], rows, align="lrrr"))
        if len(self.types) > types:
            lines.append(f"... {len(self.types) - types} more types")
        if self.largest:
            lines += ["", "largest members (flat size):"]
            rows = [(human_bytes(m.size), m.type, m.path) for m in self.largest]
            lines.append(table(["size", "type", "path"], rows, align="rll"))
        return "\n".join(lines)

    __str__ = format


def deepsize_detail(obj, top=20, exclude=None, shared=False):
    """The deepsize walk of obj, with a per-type table (name, count, bytes,
    largest bytes first) and the `top` largest members (by flat size) with
    their path from obj, e.g. ``obj.cache['k'][3]``: attribute ``.name``, dict
    value ``['key']``, list/tuple item ``[i]``, set member ``{...}``, any
    other referent ``<referent>``. Returns a DeepSize.

    Naming an attribute of an instance whose __dict__ was never asked for
    (3.11+ keep such attributes without a dict) asks for it, for the few
    instances on the printed paths only."""
    if isinstance(top, bool) or not isinstance(top, int):
        raise TypeError(f"top must be an int, not {type(top).__name__}")
    if top < 0:
        raise ValueError(f"top must be >= 0, got {top}")
    top = min(top, sys.maxsize)
    total, count, types, largest = _core.size_detail(obj, _exclude_tuple(exclude), bool(shared), top)
    type_lines = [TypeLine(_type_name(t), c, b) for t, c, b in types]
    members = [Member(_format_path(omitted, steps), _type_name(type(o)), size)
               for o, size, (omitted, steps) in largest]
    return DeepSize(total, count, type_lines, members)


def _type_name(t):
    mod = getattr(t, "__module__", None)
    name = getattr(t, "__qualname__", None) or t.__name__
    if mod in (None, "builtins"):
        return name
    return f"{mod}.{name}"


def _key_repr(key):
    if isinstance(key, (str, int)) and not isinstance(key, bool):
        r = repr(key)
        return r if len(r) <= 60 else r[:57] + "..."
    return f"<{type(key).__name__}>"


def _format_path(omitted, steps):
    out = ["obj" if not omitted else f"obj<{omitted:,} steps>"]
    attr_dict = False  # the previous step entered an instance's __dict__
    for n, (parent, kind, payload, child) in enumerate(steps, 1):
        if kind == _INDEX:
            out.append(f"[{payload}]")
        elif kind == _KEY:
            if attr_dict and isinstance(payload, str) and payload.isidentifier():
                out.append(f".{payload}")
            else:
                out.append(f"[{_key_repr(payload)}]")
        elif kind == _SET:
            out.append("{...}")
        else:
            text, attr_dict = _name_referent(parent, child)
            if attr_dict and n == len(steps):
                text = ".__dict__"  # the path ends at the dict itself
            out.append(text)
            continue
        attr_dict = False
    return "".join(out)


def _instance_dict(obj):
    try:
        d = object.__getattribute__(obj, "__dict__")
    except (AttributeError, TypeError):
        return None
    return d if isinstance(d, dict) else None


# attributes of builtin objects that only read a field (no code runs): tried
# to name a referent of such an object
_PLAIN_ATTRS = {
    types.FunctionType: ("__code__", "__globals__", "__defaults__", "__kwdefaults__", "__closure__",
                         "__dict__", "__module__", "__name__", "__qualname__", "__doc__"),
    types.MethodType: ("__self__", "__func__"),
    types.CellType: ("cell_contents",),
}


def _name_referent(parent, child):
    """Names how parent refers to child, for a step the walk left unnamed.
    Returns (text, entered_instance_dict)."""
    if isinstance(parent, (list, tuple)):
        for i, v in enumerate(parent):
            if v is child:
                return f"[{i}]", False
    elif isinstance(parent, dict):
        for k, v in parent.items():
            if v is child:
                return f"[{_key_repr(k)}]", False
            if k is child:
                return f"<key {_key_repr(k)}>", False
    if isinstance(parent, type):
        ns = parent.__dict__  # a read-only view of the class's dict
        if isinstance(child, dict) and child == ns:
            return "", True
        for k, v in ns.items():
            if v is child:
                return f".{k}", False
    for name in _PLAIN_ATTRS.get(type(parent), ()):
        if getattr(parent, name, None) is child:
            return f".{name}", False
    if not isinstance(parent, (type, dict)):
        d = _instance_dict(parent)
        if d is not None:
            if d is child:
                return "", True
            for k, v in d.items():
                if v is child:
                    return (f".{k}" if isinstance(k, str) and k.isidentifier() else f".__dict__[{_key_repr(k)}]"), False
        for cls in type(parent).__mro__:
            slots = cls.__dict__.get("__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                try:
                    if object.__getattribute__(parent, name) is child:
                        return f".{name}", False
                except (AttributeError, TypeError):
                    pass
    return "<referent>", False
