"""The query language (query.c) over real snapshots: exact results and positioned errors."""
import sys

import pytest

import heaptrail
from heaptrail import HeaptrailError


class Widget:
    def __init__(self, tag):
        self.tag = tag


def addrs(records):
    return {r.address for r in records}


def test_query_by_type_and_size_and_len():
    big = {f"key{k}": k for k in range(300)}
    small = {"a": 1}
    snap = heaptrail.snapshot()
    found = snap.query("type == 'dict' and size > 1000 and len > 250")
    assert id(big) in addrs(found) and id(small) not in addrs(found)
    for r in found:
        assert r.type == "dict" and r.size > 1000 and r.len > 250
    rec = next(r for r in found if r.address == id(big))
    assert rec == (id(big), "dict", sys.getsizeof(big), 300, None)


def test_query_short_type_name_and_exact_count():
    keep = [Widget(k) for k in range(23)]
    snap = heaptrail.snapshot()
    assert addrs(snap.query("type == 'Widget'")) == {id(w) for w in keep}
    assert addrs(snap.query(f"type == '{__name__}.Widget'")) == {id(w) for w in keep}
    assert len(snap.query("type == 'Widget'", limit=5)) == 5
    got = addrs(snap.query("type == 'Widget' and not address == %d" % id(keep[0])))
    assert got == {id(w) for w in keep[1:]}


def test_query_values_names_modules_or_parentheses():
    text = "needle-in-a-haystack-7f3a"
    snap = heaptrail.snapshot()
    hits = snap.query("type == 'str' and value contains 'needle-in-a-haystack-7f'")
    assert id(text) in addrs(hits)
    assert all("needle-in-a-haystack-7f" in r.value for r in hits)
    assert addrs(snap.query(f"type == 'module' and name == '{__name__}'")) == {id(sys.modules[__name__])}
    mods = snap.query("type == 'module' and (name == 'sys' or name == 'os') ")
    assert addrs(mods) == {id(sys), id(sys.modules["os"])}
    cls = snap.query(f"type == 'type' and module == '{__name__}' and name startswith '{__name__}.Wid'")
    assert addrs(cls) == {id(Widget)}
    assert addrs(snap.query(f"module == '{__name__}' and type == 'Widget'")) == set()  # none alive


def test_query_name_takes_the_short_name_of_classes_and_functions():
    """name == 'Widget' finds the class test_query.Widget as type == 'Widget' finds its
    instances, and name == 'inner' a nested function; module names stay whole."""
    def outer():
        def inner_fn_7c1():
            return None
        return inner_fn_7c1
    fn = outer()
    snap = heaptrail.snapshot()
    mine = f"type == 'type' and module == '{__name__}'"  # test_objgraph has a Widget too
    assert addrs(snap.query(f"{mine} and name == 'Widget'")) == {id(Widget)}
    assert addrs(snap.query(f"type == 'type' and name == '{__name__}.Widget'")) == {id(Widget)}
    assert addrs(snap.query("type == 'function' and name == 'inner_fn_7c1'")) == {id(fn)}
    assert id(Widget) not in addrs(snap.query(f"{mine} and name != 'Widget'"))
    assert snap.query("type == 'module' and name == 'path'") == []  # os.path is not 'path'


def test_query_referrers_counts_references():
    target = ["only referenced from two places"]
    holder = [target, target]
    snap = heaptrail.snapshot()
    # the two list slots, plus this frame's local (a frame edge, framevars.h)
    recs = snap.query(f"address == {id(target)} and referrers >= 2")
    assert addrs(recs) == {id(target)}
    assert snap.query(f"address == {id(target)} and referrers > 10") == []
    assert len(holder) == 2


@pytest.mark.parametrize("expr, message", [
    ("type ==", "query: expected a value (a number or a 'quoted string') at position 7"),
    ("colour == 'red'", "query: unknown field 'colour' at position 0"),
    ("size == 'big'", "query: this field needs a number at position 8"),
    ("type > 3", "query: this field needs a 'quoted string' at position 7"),
    ("type < 'a'", "query: text fields compare with == != contains startswith at position 7"),
    ("(size > 1", "query: expected ')' at position 9"),
    ("size > 1 then", "query: unexpected text (expected 'and', 'or' or the end) at position 9"),
    ("size >> 3", "query: expected a value (a number or a 'quoted string') at position 6"),
    ("", "query: expected a field name, got the end of the query at position 0"),
    ("value == 'abc", "query: unterminated string at position 9"),
    ("size ~ 3", "query: expected an operator (== != < <= > >= contains startswith) at position 5"),
    ("size > 12abc", "query: expected a value (a number or a 'quoted string') at position 7"),
    ("not " * 70 + "size > 1", "query: nested too deeply at position"),
    ("value == 'éé' and colour == 1", "query: unknown field 'colour' at position 18"),
    ("value == 'é' and size >", "query: expected a value (a number or a 'quoted string') at position 23"),
    ("size > 99999999999999999999", "query: number out of range at position 7"),
])
def test_query_errors_name_the_position(expr, message):
    snap = heaptrail.snapshot()
    with pytest.raises(HeaptrailError) as e:
        snap.query(expr)
    assert str(e.value).startswith(message)


def test_query_limit_bounds():
    """limit=10**30 raised OverflowError; a negative limit silently meant 'no limit'."""
    keep = [Widget(k) for k in range(3)]
    snap = heaptrail.snapshot()
    assert addrs(snap.query("type == 'Widget'", limit=10 ** 30)) == {id(w) for w in keep}
    assert snap.query("type == 'Widget'", limit=0) == []
    with pytest.raises(HeaptrailError, match="query: limit must be >= 0, not -5"):
        snap.query("type == 'Widget'", limit=-5)


def test_select_keywords():
    keep = [Widget(k) for k in range(4)]
    snap = heaptrail.snapshot()
    assert addrs(snap.select(type="Widget")) == {id(w) for w in keep}
    assert len(snap.select(type="Widget", limit=2)) == 2
    blob = ["q" * 5000]
    snap = heaptrail.snapshot()
    assert id(blob[0]) in addrs(snap.select(type="str", min_size=5000, min_len=5000))
