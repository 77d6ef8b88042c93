"""pympler.asizeof's functions, backed by heaptrail's C size engine (``heaptrail.size``).

``asizeof(*objs)`` is the total size of every distinct object reachable from ``objs``, each
counted once: :func:`heaptrail.deepsize`. ``flatsize(obj)`` is :func:`heaptrail.sizeof`.

Differences from pympler (heaptrail's rules, see :mod:`heaptrail.size`):

- sizes are what the allocator holds, exactly ``sys.getsizeof`` per object: pympler rounds each
  object up to 8 bytes (``align``) and estimates some sizes from its own type table; heaptrail
  asks each object (``__sizeof__`` plus the gc header), so ``flatsize(x) == sys.getsizeof(x)``;
- references are those the garbage collector knows (``tp_traverse``) plus a dict's keys;
  pympler follows its own per-type table. Both count every object once, and both leave classes,
  modules, functions and code out (pympler's default ``code=False``), so on plain data (lists,
  tuples, dicts, sets, str, int, instances with a ``__dict__``) the totals agree up to the 8-byte
  alignment; on 3.11+ an instance whose ``__dict__`` was never asked for keeps its attributes
  without a dict object, which heaptrail does not count and pympler does;
- ``leng`` is ``len()`` (for an int, its number of 30-bit digits); pympler reports allocated
  slots for some types;
- options: ``all=True`` sizes every live object (muppy.get_objects); ``code=True`` also counts
  shared objects (classes, functions, code, modules); ``ignored`` is ignored; ``align``,
  ``clip``, ``derive``, ``detail``, ``infer``, ``limit``, ``stats``, ``frames``, ``above``,
  ``cutoff`` are accepted for compatibility and have no effect (no alignment, no depth limit:
  the C walk has an explicit stack). Any other keyword is a TypeError.
- ``asizesof(*objs)`` follows pympler's rule (each object sized without the other given
  objects; what two share counted with the earlier one; a repeat sized again);
- not provided: ``asized``/``Asized`` (a size broken down by member: use
  :func:`heaptrail.deepsize_detail`), the ``Asizer`` class, ``adict`` and ``amapped``.
"""
import sys

from heaptrail import _core
from heaptrail import size as _size

__all__ = ["asizeof", "asizesof", "basicsize", "flatsize", "itemsize", "leng", "refs"]

_ACCEPTED = {"align", "all", "clip", "code", "derive", "detail", "frames", "ignored", "infer",
             "limit", "stats", "above", "cutoff"}

# Py_TPFLAGS_HAVE_GC, and the flags that put two pointers in front of an object
# (3.11 MANAGED_DICT; 3.12+ MANAGED_DICT | MANAGED_WEAKREF)
_HAVE_GC = 1 << 14
_PREHEADER = (1 << 4) if sys.version_info < (3, 12) else (1 << 3) | (1 << 4)
_PTR = 8 if sys.maxsize > 2 ** 32 else 4


def _check_opts(opts):
    bad = set(opts) - _ACCEPTED
    if bad:
        raise TypeError(f"unexpected option(s) {', '.join(sorted(bad))}")


def asizeof(*objs, **opts):
    """Total size in bytes of objs and everything they reach, each object counted once."""
    _check_opts(opts)
    if opts.get("all"):
        from heaptrail.pympler import muppy
        objs = tuple(muppy.get_objects())
    if not objs:
        return 0
    return _size.deepsize(*objs, shared=bool(opts.get("code")))


def asizesof(*objs, **opts):
    """A tuple with the size of each of objs, by pympler's rule: each object is sized without
    the other given objects it reaches (``asizesof(box, item)`` counts ``item`` as ``item``'s,
    not ``box``'s); what two of them share is counted with the earlier one; an object given
    twice has the same size both times. The distinct objects' sizes add up to asizeof()."""
    _check_opts(opts)
    shared = bool(opts.get("code"))
    # the sizes are differences of cumulative walks: the first k distinct objects, walked
    # without entering the later ones (they are sized on their own turn). Walking a root from
    # another one among the first k adds nothing that root's own walk would not.
    roots = list({id(o): o for o in objs}.values())
    sizes, before = {}, 0
    for k in range(1, len(roots) + 1):
        total = _size.deepsize(*roots[:k], exclude=roots[k:], shared=shared)
        sizes[id(roots[k - 1])] = total - before
        before = total
    return tuple(sizes[id(o)] for o in objs)


def basicsize(obj, **opts):
    """The fixed part of obj's size: its type's ``__basicsize__`` plus what the allocator puts
    in front of it (the gc header, the managed-dict pointers)."""
    _check_opts(opts)
    t = type(obj)
    pre = 0
    if t.__flags__ & _HAVE_GC:
        pre += 2 * _PTR
    if t.__flags__ & _PREHEADER:
        pre += 2 * _PTR
    return t.__basicsize__ + pre


def flatsize(obj, align=0, **opts):
    """obj's own size, without what it refers to: ``sys.getsizeof(obj)``."""
    _check_opts(opts)
    return _size.sizeof(obj)


def itemsize(obj, **opts):
    """Bytes per item: the type's ``__itemsize__``, or the item size of the buffer a list
    (a pointer), bytearray (1) or array.array keeps apart from the object."""
    _check_opts(opts)
    if isinstance(obj, (list, set, frozenset, dict)):
        return _PTR
    if isinstance(obj, bytearray):
        return 1
    n = getattr(obj, "itemsize", None) if type(obj).__module__ == "array" else None
    return n if isinstance(n, int) else type(obj).__itemsize__


def leng(obj, **opts):
    """``len(obj)``; for an int, its number of 30-bit digits; None when obj has no length."""
    _check_opts(opts)
    if isinstance(obj, int):
        return max(1, (abs(obj).bit_length() + 29) // 30)
    try:
        return len(obj)
    except Exception:
        return None


def refs(obj, **opts):
    """The objects obj refers to, as the size walk follows them, each once: for a dict its keys
    and values as pympler lists them (key, value, key, value ...), for a list, tuple, set or
    frozenset its items in their order; for anything else the gc's referents (tp_traverse,
    whose order is the type's: a list's is last item first, which pympler does not show)."""
    _check_opts(opts)
    if type(obj) in (list, tuple, set, frozenset, dict):
        items = obj.items() if type(obj) is dict else ((x,) for x in obj)
        seen, out = set(), []
        for pair in items:
            for x in pair:
                if id(x) not in seen:
                    seen.add(id(x))
                    out.append(x)
        return out
    return _core.pym_referents(obj, 1, True)
