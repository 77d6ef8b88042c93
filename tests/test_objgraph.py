"""heaptrail.objgraph: objgraph's functions computed by _core/live.c, checked against gc-based
counts, known reference chains, and objgraph itself (same script, same objects) when it is
installed."""
import gc
import io
import os
import re
import shutil
import sys
import types

import pytest

import heaptrail
from heaptrail import HeaptrailError
from heaptrail import objgraph as hog

try:
    import objgraph as real_objgraph
except ImportError:  # pragma: no cover - depends on the environment
    real_objgraph = None

needs_objgraph = pytest.mark.skipif(real_objgraph is None,
                                    reason="objgraph is not installed (pip install objgraph)")
needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz's dot is not installed (apt-get install graphviz)")


class Widget:
    pass


class Gadget:
    pass


def _mixed_objects():
    """A fixed list of objects of known types (what typestats(objects=...) sees)."""
    return ([Widget() for _ in range(5)] + [Gadget() for _ in range(3)] + [[1], [2]] +
            [{"a": 1}] + [(1, 2)] + ["text", 3, 4.5] + [types.SimpleNamespace()])


# ---- counting ------------------------------------------------------------------------------------

def test_count_equals_gc_count_for_user_class():
    keep = [Widget() for _ in range(37)]
    expected = sum(1 for o in gc.get_objects() if type(o) is Widget)
    assert hog.count("Widget") == expected
    assert hog.count(f"{__name__}.Widget") == expected
    assert expected >= 37
    del keep


def test_count_with_objects_and_long_names():
    objs = _mixed_objects()
    assert hog.count("Widget", objs) == 5
    assert hog.count("Gadget", objs) == 3
    assert hog.count("list", objs) == 2
    assert hog.count("builtins.list", objs) == 2
    assert hog.count("str", objs) == 1
    assert hog.count("types.SimpleNamespace", objs) == 1  # __module__ of SimpleNamespace
    assert hog.count("nope", objs) == 0


def test_typestats_exact_on_given_objects():
    objs = _mixed_objects()
    assert hog.typestats(objs) == {"Widget": 5, "Gadget": 3, "list": 2, "dict": 1, "tuple": 1,
                                   "str": 1, "int": 1, "float": 1, "SimpleNamespace": 1}
    long = hog.typestats(objs, shortnames=False)
    assert long[f"{__name__}.Widget"] == 5 and long["builtins.dict"] == 1
    assert hog.typestats(objs, filter=lambda o: isinstance(o, Widget)) == {"Widget": 5}


def test_own_objects_not_counted():
    """A call's own objects (argument tuples, result lists) never show up in its counts."""
    gc.collect()
    a = hog.typestats()
    b = hog.typestats()
    # between the two calls only `a` was created: a dict of str -> int, which the collector
    # does not track, so nothing changed
    assert not gc.is_tracked(a)
    assert b == a
    assert hog.count("tuple") == hog.count("tuple")


def test_most_common_types_shape():
    objs = _mixed_objects()
    rows = hog.most_common_types(limit=2, objects=objs)
    assert rows == [("Widget", 5), ("Gadget", 3)]
    assert len(hog.most_common_types(limit=None, objects=objs)) == 9
    out = io.StringIO()
    hog.show_most_common_types(limit=3, objects=objs, file=out)
    assert out.getvalue() == "Widget 5\nGadget 3\nlist   2\n"


@needs_objgraph
def test_typestats_same_as_objgraph():
    objs = _mixed_objects() + [Widget, Gadget, len, sys, gc.collect]
    for short in (True, False):
        assert hog.typestats(objs, shortnames=short) == real_objgraph.typestats(objs, shortnames=short)
        assert (hog.most_common_types(5, objs, shortnames=short)
                == real_objgraph.most_common_types(5, objs, shortnames=short))
    a, b = io.StringIO(), io.StringIO()
    hog.show_most_common_types(limit=6, objects=objs, file=a)
    real_objgraph.show_most_common_types(limit=6, objects=objs, file=b)
    assert a.getvalue() == b.getvalue()
    # the whole heap: the same count of a user class
    keep = [Gadget() for _ in range(11)]
    assert hog.typestats()["Gadget"] == real_objgraph.typestats()["Gadget"]
    del keep


# ---- growth ----------------------------------------------------------------------------------------

def test_show_growth_exact_delta_and_format():
    peak = {}
    hog.show_growth(peak_stats=peak, file=io.StringIO())
    assert peak["Widget"] >= 0 if "Widget" in peak else True
    before = peak.get("Widget", 0)
    keep = [Widget() for _ in range(250)]
    out = io.StringIO()
    hog.show_growth(limit=3, peak_stats=peak, file=out)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 1
    first = re.match(r"^(\S+)\s+(\d+)\s+\+(\d+)$", lines[0])
    assert first and first.group(1) == "Widget"
    assert int(first.group(2)) == before + 250 and int(first.group(3)) == 250
    width = max(len(line.split()[0]) for line in lines)
    assert lines[0] == "%-*s%9d %+9d" % (width, "Widget", before + 250, 250)
    assert peak["Widget"] == before + 250
    # nothing new: nothing printed
    del keep
    out = io.StringIO()
    hog.show_growth(peak_stats=peak, file=out)
    assert "Widget" not in out.getvalue()


def test_growth_rows():
    peak = {}
    hog.growth(peak_stats=peak)
    keep = [Gadget() for _ in range(40)] + [Widget() for _ in range(20)]
    rows = hog.growth(limit=2, peak_stats=peak)
    assert rows[0][0] == "Gadget" and rows[0][2] == 40
    assert rows[1][0] == "Widget" and rows[1][2] == 20
    del keep


@needs_objgraph
def test_show_growth_same_format_as_objgraph():
    a_peak, b_peak = {}, {}
    hog.growth(peak_stats=a_peak)
    real_objgraph.growth(peak_stats=b_peak)
    keep = [Gadget() for _ in range(33)]
    a, b = io.StringIO(), io.StringIO()
    hog.show_growth(limit=1, peak_stats=a_peak, file=a)
    real_objgraph.show_growth(limit=1, peak_stats=b_peak, file=b)
    assert a.getvalue() == b.getvalue()
    del keep


# ---- ids --------------------------------------------------------------------------------------

def test_get_new_ids():
    state = {}
    hog.get_new_ids(limit=0, _state=state)
    fresh = [Widget() for _ in range(6)]
    out = io.StringIO()
    new = hog.get_new_ids(limit=3, file=out, _state=state)
    assert {id(w) for w in fresh} <= new["Widget"]
    assert len(new["Widget"]) == 6
    text = out.getvalue().splitlines()
    assert text[1].split() == ["Type", "Old_ids", "Current_ids", "New_ids", "Count_Deltas"]
    assert set(text[0]) == {"="} and set(text[-1]) == {"="}
    row = [line for line in text if line.startswith("Widget")][0].split()
    assert int(row[2]) - int(row[1]) == 6 and row[3] == "+6" and row[4] == "+6"
    assert hog.get_new_ids(skip_update=True, _state=state) is new
    again = hog.get_new_ids(limit=0, _state=state)
    assert not again.get("Widget")
    del fresh


def test_by_type_and_at():
    keep = [Gadget() for _ in range(4)]
    found = hog.by_type("Gadget")
    assert {id(o) for o in found} >= {id(o) for o in keep}
    assert all(type(o) is Gadget for o in found)
    assert len(found) == sum(1 for o in gc.get_objects() if type(o) is Gadget)
    assert hog.by_type(f"{__name__}.Gadget", keep) == keep
    assert hog.at(id(keep[2])) is keep[2]
    assert hog.at(12345) is None
    assert hog.at_addrs({id(keep[0]), id(keep[3])}) in ([keep[0], keep[3]], [keep[3], keep[0]])


# ---- chains ------------------------------------------------------------------------------------

@pytest.fixture
def planted():
    """A module registered in sys.modules with a global holding 5 nested lists, then a Widget."""
    mod = types.ModuleType("heaptrail_test_planted")
    sys.modules[mod.__name__] = mod
    cur = mod.root = []
    lists = [cur]
    for _ in range(5):
        nxt = []
        cur.append(nxt)
        cur = nxt
        lists.append(cur)
    target = Widget()
    cur.append(target)
    yield mod, lists, target
    del sys.modules[mod.__name__]


def test_find_backref_chain_exact(planted):
    mod, lists, target = planted
    chain = hog.find_backref_chain(target, hog.is_proper_module)
    expected = [mod, mod.__dict__, *lists, target]
    assert len(chain) == len(expected)
    assert all(a is b for a, b in zip(chain, expected))


def test_find_backref_chain_limits(planted):
    mod, lists, target = planted
    assert hog.find_backref_chain(target, hog.is_proper_module, max_depth=3) == [target]
    # ignoring the innermost list cuts the module's way up: another way is found (the test's
    # own fixtures reach it through pytest), one that does not pass through the ignored list
    chain = hog.find_backref_chain(target, hog.is_proper_module, extra_ignore=[id(lists[-1])])
    assert chain[-1] is target
    assert all(x is not lists[-1] for x in chain)
    assert len(chain) > 1 and chain[0] is not mod


@needs_objgraph
def test_find_backref_chain_same_as_objgraph(planted):
    mod, lists, target = planted
    a = hog.find_backref_chain(target, hog.is_proper_module)
    b = real_objgraph.find_backref_chain(target, real_objgraph.is_proper_module)
    assert [id(x) for x in a] == [id(x) for x in b]


def test_find_ref_chain_exact(planted):
    mod, lists, target = planted
    chain = hog.find_ref_chain(mod, lambda o: o is target)
    expected = [mod, mod.__dict__, *lists, target]
    assert [id(x) for x in chain] == [id(x) for x in expected]
    assert hog.find_ref_chain(mod, lambda o: o is target, max_depth=4) == [mod]


def test_get_leaking_objects():
    # (no closure here: a generator over `lonely` would hold it in a cell)
    lonely = {"held": ["by a local only"]}  # a list value: the collector tracks it
    holder = [{"held": ["by a list"]}]
    only = hog.get_leaking_objects([lonely, holder[0]])
    assert len(only) == 1 and only[0] is lonely
    del only
    found = {id(o) for o in hog.get_leaking_objects()}
    assert id(lonely) in found
    assert id(holder[0]) not in found
    assert id(holder) in found


# ---- graphs ------------------------------------------------------------------------------------

def test_show_refs_dot_nodes_and_edges():
    inner = [1, 2]
    obj = {"key": inner, 7: "seven"}
    out = io.StringIO()
    hog.show_refs(obj, output=out, max_depth=1)
    dot = out.getvalue()
    assert dot.startswith("digraph ObjectGraph {\n")
    assert "  o%d[fontcolor=red];" % id(obj) in dot
    assert '  o%d[label="dict\\n2 items"];' % id(obj) in dot
    assert '  o%d -> o%d [label="key",weight=2];' % (id(obj), id(inner)) in dot
    assert '  o%d -> o%d [label="int\\n7"];' % (id(obj), id("seven")) in dot
    assert '  o%d[label="list\\n2 items"];' % id(inner) in dot
    assert dot.endswith("}\n")


def test_show_backrefs_dot(planted):
    mod, lists, target = planted
    out = io.StringIO()
    hog.show_backrefs(target, max_depth=2, output=out)
    dot = out.getvalue()
    assert "  o%d -> o%d;" % (id(lists[-1]), id(target)) in dot
    assert "  o%d -> o%d;" % (id(lists[-2]), id(lists[-1])) in dot
    assert "o%d -> o%d" % (id(lists[-3]), id(lists[-2])) not in dot  # depth 2


def test_show_backrefs_stops_at_modules_and_too_many(planted):
    mod, lists, target = planted
    out = io.StringIO()
    hog.show_backrefs(mod.__dict__, max_depth=3, output=out)
    assert '  o%d -> o%d [label="__dict__",weight=10];' % (id(mod), id(mod.__dict__)) in out.getvalue()
    many = [target] + [Widget() for _ in range(15)]
    out = io.StringIO()
    hog.show_refs([many], max_depth=1, too_many=4, output=out)
    dot = out.getvalue()
    assert "12 more references" in dot
    # a list's tp_traverse (so gc.get_referents) goes from its last item to its first
    assert "  o%d -> o%d;" % (id(many), id(many[-1])) in dot
    assert "o%d -> o%d;" % (id(many), id(target)) not in dot


@needs_objgraph
def test_show_refs_same_text_as_objgraph():
    inner = [1, 2]
    obj = {"key": inner, "other": (inner, "x")}
    a, b = io.StringIO(), io.StringIO()
    hog.show_refs(obj, output=a, max_depth=2)
    real_objgraph.show_refs(obj, output=b, max_depth=2)
    assert a.getvalue() == b.getvalue()


def test_show_chain(planted, tmp_path):
    mod, lists, target = planted
    chain = hog.find_backref_chain(target, hog.is_proper_module)
    path = tmp_path / "chain.dot"
    hog.show_chain(chain, filename=str(path))
    dot = path.read_text()
    drawn = set(re.findall(r"^  (o\d+)\[label=", dot, re.M))
    assert drawn == {"o%d" % id(x) for x in chain}


@needs_dot
def test_show_refs_png(tmp_path, capsys):
    path = tmp_path / "refs.png"
    hog.show_refs([[1, 2]], filename=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Image generated as" in capsys.readouterr().out


def test_missing_graphviz_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HeaptrailError, match="Graphviz's 'dot' program is not installed"):
        hog.show_refs([1], filename=str(tmp_path / "x.svg"))
    hog.show_refs([1], filename=str(tmp_path / "x.dot"))  # text needs no Graphviz
    assert (tmp_path / "x.dot").read_text().startswith("digraph ObjectGraph")


def test_reachable_from_package():
    assert heaptrail.objgraph is hog


def test_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError, match="typename must be a str"):
        hog.by_type(3)
    with pytest.raises(TypeError, match="objects must be a sequence"):
        hog.typestats(objects=5)
    with pytest.raises(ValueError, match="sortby must be one of"):
        hog.get_new_ids(sortby="size", _state={})
    with pytest.raises(ValueError, match="Cannot specify both output and filename"):
        hog.show_refs([1], output=io.StringIO(), filename="x.dot")
    with pytest.raises(ZeroDivisionError):  # the predicate's own error comes through
        hog.find_ref_chain([1], lambda o: 1 / 0)

