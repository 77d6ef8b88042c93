"""objgraph's functions, same names, signatures and output, computed by heaptrail's C engine.

``import heaptrail.objgraph as objgraph`` and keep using ``show_growth()``,
``show_most_common_types()``, ``find_backref_chain(obj, objgraph.is_proper_module)``,
``show_backrefs(obj, filename="refs.png")`` ... The counting, the id sets, the reference
searches and the leak search run in C over the live heap (``_core/live.c``): type counts in one
pass over the gc objects, referrers from one indexed pass instead of one ``gc.get_referrers``
walk per visited object. This module only formats the small results (tables, DOT text).

Differences from objgraph: ``find_ref_chain``/``find_backref_chain`` do not run
``gc.collect()`` first (on a big heap the collection costs more than the whole search; garbage
cannot put a root on a chain, at most it is explored) - call it yourself to search a heap
without garbage. A missing Graphviz ``dot`` when an image file is asked for raises
:class:`heaptrail.HeaptrailError` (objgraph prints a note and writes nothing); no IPython inline
display and no xdot viewer - without ``filename``/``output`` the graph goes to a temporary
``.dot`` file, converted to ``.png`` when ``dot`` is installed.
"""
import collections
import gc
import inspect
import operator
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types

from heaptrail import _core
from heaptrail._core import Error as HeaptrailError
from heaptrail._format import replacing, write_file

__all__ = [
    "count", "typestats", "most_common_types", "show_most_common_types", "growth",
    "show_growth", "get_new_ids", "get_leaking_objects", "by_type", "at", "at_addrs",
    "find_ref_chain", "find_backref_chain", "show_refs", "show_backrefs", "show_chain",
    "is_proper_module",
]


# ---- counting ---------------------------------------------------------------------------------

def count(typename, objects=None):
    """Number of objects (every gc object, or ``objects``) whose type is named ``typename``:
    ``"dict"``, or with a dot the qualified ``"mymodule.MyClass"``."""
    return _core.live_typestats(objects, "." not in typename, None).get(typename, 0)


def typestats(objects=None, shortnames=True, filter=None):
    """``{type name: count}`` over every gc object (or ``objects``); ``shortnames=False`` names
    types ``module.Name``; ``filter(obj)`` keeps only what it accepts."""
    return _core.live_typestats(objects, bool(shortnames), filter)


def most_common_types(limit=10, objects=None, shortnames=True, filter=None):
    """``[(type name, count)]``, most numerous first, ``limit`` rows (all when falsy)."""
    stats = sorted(typestats(objects, shortnames=shortnames, filter=filter).items(),
                   key=operator.itemgetter(1), reverse=True)
    return stats[:limit] if limit else stats


def show_most_common_types(limit=10, objects=None, shortnames=True, file=None, filter=None):
    """Prints :func:`most_common_types` as ``name count`` lines."""
    if file is None:
        file = sys.stdout
    stats = most_common_types(limit, objects, shortnames=shortnames, filter=filter)
    width = max((len(name) for name, _ in stats), default=0)
    for name, n in stats:
        file.write("%-*s %i\n" % (width, name, n))


_peak_stats = {}


def growth(limit=10, peak_stats=_peak_stats, shortnames=True, filter=None):
    """Collects garbage, then ``[(type name, count, delta)]`` for the types whose count went
    above the peak recorded in ``peak_stats`` (kept between calls), biggest delta first."""
    # garbage is no growth: only a full collection tells it apart, and on a big heap it
    # costs several times the count itself (benchmarks/cases/objgraph.py shows both parts)
    gc.collect()
    return _growth_of_live(limit, peak_stats, shortnames, filter)


def _growth_of_live(limit, peak_stats, shortnames, filter):
    """The counting part of :func:`growth`: the deltas of every gc object now, garbage
    included (growth() collects first)."""
    stats = _core.live_typestats(None, bool(shortnames), filter)
    deltas = sorted(_core.live_growth(stats, peak_stats), key=operator.itemgetter(2),
                    reverse=True)
    return deltas[:limit] if limit else deltas


def show_growth(limit=10, peak_stats=None, shortnames=True, file=None, filter=None):
    """Prints :func:`growth` as ``name  count  +delta`` lines (nothing when nothing grew)."""
    if peak_stats is None:
        result = growth(limit, shortnames=shortnames, filter=filter)
    else:
        result = growth(limit, peak_stats, shortnames, filter)
    if result:
        if file is None:
            file = sys.stdout
        width = max(len(name) for name, _, _ in result)
        for name, n, delta in result:
            file.write("%-*s%9d %+9d\n" % (width, name, n, delta))


def get_new_ids(skip_update=False, limit=10, sortby="deltas", shortnames=None, file=None,
                _state={}):
    """Ids of the objects created since the previous call, per type name (a dict of sets), and
    a table of old/current/new counts. ``sortby``: 'old', 'current', 'new' or 'deltas';
    ``limit=0`` prints nothing, ``None`` every row; ``shortnames=None`` keeps the last choice."""
    if not _state:
        _state["ids"] = _core.live_ids_state()
        _state["classes"] = {}
        _state["names"] = []
        _state["new"] = collections.defaultdict(set)
        _state["shortnames"] = True
    if skip_update:
        return _state["new"]
    if shortnames is None:
        shortnames = _state["shortnames"]
    elif shortnames != _state["shortnames"]:
        # names change meaning: ids recorded under the other naming are not comparable
        _state["shortnames"] = shortnames
    index_by_sortby = {"old": 1, "current": 2, "new": 3, "deltas": 4}
    if sortby not in index_by_sortby:
        raise ValueError(f"sortby must be one of {', '.join(index_by_sortby)}, not {sortby!r}")
    _state["new"] = collections.defaultdict(set)  # the previous sets go before the count
    gc.collect()
    raw = _core.live_new_ids(_state["ids"], bool(shortnames), _state["classes"],
                             _state["names"])
    # a defaultdict(set), as objgraph's: new_ids['MyClass'] is an empty set, not a KeyError,
    # when no MyClass was made (the usual at_addrs(new_ids[name]) idiom)
    new_ids = collections.defaultdict(set, ((name, ids) for name, _, _, _, ids in raw))
    _state["new"] = new_ids
    rows = [(name, old, cur, new, cur - old) for name, old, cur, new, _ in raw]
    rows.sort(key=operator.itemgetter(index_by_sortby[sortby], 0), reverse=True)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        return new_ids
    if file is None:
        file = sys.stdout
    width = max(len(row[0]) for row in rows)
    print("=" * (width + 13 * 4), file=file)
    print("%-*s%13s%13s%13s%13s" % (width, "Type", "Old_ids", "Current_ids", "New_ids",
                                    "Count_Deltas"), file=file)
    print("=" * (width + 13 * 4), file=file)
    for name, old, cur, new, delta in rows:
        print("%-*s%13d%13d%+13d%+13d" % (width, name, old, cur, new, delta), file=file)
    print("=" * (width + 13 * 4), file=file)
    return new_ids


# ---- finding objects --------------------------------------------------------------------------

def get_leaking_objects(objects=None):
    """Objects (every gc object, or ``objects``) that no gc object refers to: held from C code
    or from a frame's stack, or roots such as ``sys.modules``' owner."""
    gc.collect()
    return _core.live_leaking(objects)


def by_type(typename, objects=None):
    """Every object (gc objects, or ``objects``) whose type is named ``typename``."""
    return _core.live_by_type(typename, objects)


def at(addr):
    """The gc object whose ``id()`` is ``addr``, or None."""
    found = _core.live_at_addrs((addr,))
    return found[0] if found else None


def at_addrs(address_set):
    """Every gc object whose ``id()`` is in ``address_set``."""
    return _core.live_at_addrs(address_set)


def is_proper_module(obj):
    """True when ``obj`` is a module registered in ``sys.modules`` (a garbage collector root
    for our purposes)."""
    return inspect.ismodule(obj) and obj is sys.modules.get(getattr(obj, "__name__", None))


def _own_ignore(extra_ignore, depth):
    """Ids not to go through: extra_ignore, and the frames of this module's functions that
    are running (the caller's and, with depth 2, its caller's - never the user's)."""
    ignore = set(extra_ignore)
    ignore.add(id(extra_ignore))
    f = sys._getframe(1)
    for _ in range(depth):
        if f is None:
            break
        ignore.add(id(f))
        f = f.f_back
    return ignore


def find_ref_chain(obj, predicate, max_depth=20, extra_ignore=()):
    """The shortest chain of references from ``obj`` to an object satisfying ``predicate``:
    ``[obj, ..., found]``; ``[obj]`` when none is within ``max_depth`` references.
    ``extra_ignore`` holds ids of objects not to go through."""
    ignore = _own_ignore(extra_ignore, 1)
    return _core.live_find_chain(obj, predicate, int(max_depth), ignore, False)[::-1]


def find_backref_chain(obj, predicate, max_depth=20, extra_ignore=()):
    """The shortest chain of references to ``obj`` from an object satisfying ``predicate``
    (e.g. :func:`is_proper_module`): ``[found, ..., obj]``; ``[obj]`` when none is within
    ``max_depth``."""
    ignore = _own_ignore(extra_ignore, 1)
    return _core.live_find_chain(obj, predicate, int(max_depth), ignore, True)


# ---- graphs -----------------------------------------------------------------------------------

def show_backrefs(objs, max_depth=3, extra_ignore=(), filter=None, too_many=10, highlight=None,
                  filename=None, extra_info=None, refcounts=False, shortnames=True, output=None,
                  extra_node_attrs=None):
    """Graph of what refers to ``objs`` (one object or a list), ``max_depth`` levels up, at
    most ``too_many`` referrers per object, stopping at modules: DOT text written to
    ``output`` (a file object) or ``filename`` (.dot, or .png/.svg/.pdf through Graphviz)."""
    return _show_graph(objs, True, max_depth, extra_ignore, filter, too_many, highlight,
                       filename, extra_info, refcounts, shortnames, output, is_proper_module,
                       extra_node_attrs)


def show_refs(objs, max_depth=3, extra_ignore=(), filter=None, too_many=10, highlight=None,
              filename=None, extra_info=None, refcounts=False, shortnames=True, output=None,
              extra_node_attrs=None):
    """Graph of what ``objs`` refer to, directly and indirectly (see :func:`show_backrefs`)."""
    return _show_graph(objs, False, max_depth, extra_ignore, filter, too_many, highlight,
                       filename, extra_info, refcounts, shortnames, output, None,
                       extra_node_attrs)


def show_chain(*chains, **kw):
    """Graph of one or more chains from :func:`find_backref_chain` (``backrefs=True``, the
    default) or :func:`find_ref_chain` (``backrefs=False``); other keywords as show_backrefs."""
    backrefs = kw.pop("backrefs", True)
    chains = [chain for chain in chains if chain]
    ids = {id(x) for chain in chains for x in chain}

    def in_chains(x):
        return id(x) in ids

    max_depth = max(map(len, chains)) - 1
    if backrefs:
        show_backrefs([chain[-1] for chain in chains], max_depth=max_depth, filter=in_chains, **kw)
    else:
        show_refs([chain[0] for chain in chains], max_depth=max_depth, filter=in_chains, **kw)


def _show_graph(objs, backrefs, max_depth, extra_ignore, filter, too_many, highlight, filename,
                extra_info, refcounts, shortnames, output, cull, extra_node_attrs):
    if not isinstance(objs, (list, tuple)):
        objs = [objs]
    if filename and output:
        raise ValueError("Cannot specify both output and filename.")
    ignore = _own_ignore(extra_ignore, 2)  # _show_graph, show_refs/show_backrefs
    ignore.add(id(objs))
    gc.collect()
    rows = _core.live_graph(objs, bool(backrefs), int(max_depth), int(too_many), ignore, filter,
                            cull)
    text = _dot(objs, rows, backrefs, max_depth, highlight, extra_info, refcounts, shortnames,
                extra_node_attrs)
    nodes = len(rows)
    del rows
    if output:
        output.write(text)
        return None
    if filename and filename.endswith(".dot"):
        dot_filename = filename
        write_file(filename, text)   # a failed write leaves a file already there whole
    else:
        if filename:
            ext = os.path.splitext(filename)[1]
            if not ext or shutil.which("dot") is None:
                raise HeaptrailError(
                    "Graphviz's 'dot' program is not installed: install it (apt-get install "
                    "graphviz) or pass a .dot filename" if ext else
                    f"cannot tell the image format of {filename!r}: give it an extension")
        fd, dot_filename = tempfile.mkstemp(prefix="objgraph-", suffix=".dot", text=True)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    print("Graph written to %s (%d nodes)" % (dot_filename, nodes))
    _present(dot_filename, filename)
    return None


def _present(dot_filename, filename):
    if filename == dot_filename:
        return
    dot = shutil.which("dot")
    if dot is None:
        print("Graph viewer (xdot) and image renderer (dot) not found, not doing anything else")
        return
    if not filename:
        filename = dot_filename[:-4] + ".png"
    ext = os.path.splitext(filename)[1]
    with replacing(filename) as target:   # dot failing leaves a file already there whole
        proc = subprocess.run([dot, "-T" + ext[1:], "-o" + target, dot_filename],
                              capture_output=True, timeout=300)
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise HeaptrailError(f"dot failed on {filename!r}: {err[-1] if err else proc.returncode}")
    print("Image generated as %s" % filename)


# ---- DOT text in objgraph's shape ------------------------------------------------------------

def _dot(objs, rows, backrefs, max_depth, highlight, extra_info, refcounts, shortnames,
         extra_node_attrs):
    out = ["digraph ObjectGraph {\n  node[shape=box, style=filled, fillcolor=white];\n"]
    for obj in objs:
        out.append("  %s[fontcolor=red];\n" % _node_id(obj))
    for target, tdepth, neighbours, skipped in rows:
        nid = _node_id(target)
        out.append('  %s[label="%s"%s];\n' % (nid, _label(target, extra_info, refcounts, shortnames),
                                              _attrs(target, extra_node_attrs)))
        h, s, v = _gradient((0, 0, 1), (0, 0, .3), tdepth, max_depth)
        if inspect.ismodule(target):
            h, s = .3, 1
        if highlight and highlight(target):
            h, s, v = .6, .6, 0.5 + v * 0.5
        out.append('  %s[fillcolor="%g,%g,%g"];\n' % (nid, h, s, v))
        if v < 0.5:
            out.append("  %s[fontcolor=white];\n" % nid)
        if hasattr(getattr(target, "__class__", None), "__del__"):
            out.append("  %s->%s_has_a_del[color=red,style=dotted,len=0.25,weight=10];\n"
                       % (nid, nid))
            out.append('  %s_has_a_del[label="__del__",shape=doublecircle,height=0.25,color=red,'
                       'fillcolor="0,.5,1",fontsize=6];\n' % nid)
        for other in neighbours:
            src, dst = (other, target) if backrefs else (target, other)
            out.append("  %s -> %s%s;\n" % (_node_id(src), _node_id(dst),
                                            _edge_label(src, dst, shortnames)))
        if skipped:
            h, s, v = _gradient((0, 1, 1), (0, 1, .3), tdepth + 1, max_depth)
            if backrefs:
                label = "%d more backreferences" % skipped
                edge = "too_many_%s->%s" % (nid, nid)
            else:
                label = "%d more references" % skipped
                edge = "%s->too_many_%s" % (nid, nid)
            out.append("  %s[color=red,style=dotted,len=0.25,weight=10];\n" % edge)
            out.append('  too_many_%s[label="%s",shape=box,height=0.25,color=red,'
                       'fillcolor="%g,%g,%g",fontsize=6];\n' % (nid, label, h, s, v))
            out.append("  too_many_%s[fontcolor=white];\n" % nid)
    out.append("}\n")
    return "".join(out)


def _node_id(obj):
    return "o%d" % id(obj)


def _short_typename(obj):
    return type(obj).__name__


def _long_typename(obj):
    t = type(obj)
    module = getattr(t, "__module__", None)
    return "%s.%s" % (module, t.__name__) if module else t.__name__


def _quote(s):
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\0", "\\\\0")


def _attrs(obj, extra_node_attrs):
    if extra_node_attrs is None:
        return ""
    attrs = extra_node_attrs(obj)
    return ", " + ", ".join('%s="%s"' % (k, _quote(v)) for k, v in sorted(attrs.items())
                            if v is not None)


def _label(obj, extra_info, refcounts, shortnames):
    label = [_short_typename(obj) if shortnames else _long_typename(obj)]
    if refcounts:
        label[0] += " [%d]" % (sys.getrefcount(obj) - 4)
    label.append(_safe_repr(obj))
    if extra_info:
        label.append(str(extra_info(obj)))
    return _quote("\n".join(label))


def _name_or_repr(value):
    try:
        result = value.__name__
    except AttributeError:
        result = repr(value)[:40]
    return result if isinstance(result, str) else repr(value)[:40]


def _short_repr(obj):
    if isinstance(obj, (type, types.ModuleType, types.BuiltinMethodType,
                        types.BuiltinFunctionType)):
        return _name_or_repr(obj)
    if isinstance(obj, types.MethodType):
        name = _name_or_repr(obj.__func__)
        return name + " (bound)" if obj.__self__ else name
    if isinstance(obj, types.LambdaType) and obj.__name__ == "<lambda>":
        return "lambda: %s:%s" % (os.path.basename(obj.__code__.co_filename),
                                  obj.__code__.co_firstlineno)
    if isinstance(obj, types.FrameType):
        return "%s:%s" % (obj.f_code.co_filename, obj.f_lineno)
    if isinstance(obj, (tuple, list, dict, set)):
        return "%d items" % len(obj)
    return repr(obj)[:40]


def _safe_repr(obj):
    try:
        return _short_repr(obj)
    except Exception:
        return "(unrepresentable)"


def _gradient(start, end, depth, max_depth):
    if max_depth == 0:
        return start
    f = float(depth) / max_depth
    return tuple(a * (1 - f) + b * f for a, b in zip(start, end))


_is_identifier = re.compile("[a-zA-Z_][a-zA-Z_0-9]*$").match


def _edge_label(source, target, shortnames=True):
    if isinstance(target, dict) and target is getattr(source, "__dict__", None):
        return ' [label="__dict__",weight=10]'
    if isinstance(source, types.FrameType):
        if target is source.f_globals:
            return ' [label="f_globals",weight=10]'
    if isinstance(source, types.MethodType):
        if target is source.__self__:
            return ' [label="__self__",weight=10]'
        if target is source.__func__:
            return ' [label="__func__",weight=10]'
    if isinstance(source, types.FunctionType):
        for k in dir(source):
            if target is getattr(source, k):
                return ' [label="%s",weight=10]' % _quote(k)
    if isinstance(source, dict):
        for k, v in source.items():
            if v is target:
                if isinstance(k, str) and _is_identifier(k):
                    return ' [label="%s",weight=2]' % _quote(k)
                tn = _short_typename(k) if shortnames else _long_typename(k)
                return ' [label="%s"]' % _quote(tn + "\n" + _safe_repr(k))
    return ""
