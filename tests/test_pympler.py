"""heaptrail.pympler: asizeof, muppy, summary, refbrowser - real sizes, exact rows and trees,
and pympler's output shapes when pympler is installed."""
import gc
import io
import sys
import contextlib

import pytest

import heaptrail
from heaptrail.pympler import asizeof, muppy, refbrowser, summary


def _fresh(text):
    """A str object made at run time (not shared with any constant)."""
    return "".join(list(text))


def _pympler(module):
    return pytest.importorskip("pympler." + module, reason="pympler is not installed")


class Payload:
    def __init__(self, n):
        self.n = n


class NoDict:
    __slots__ = ("a",)


# ---- asizeof -------------------------------------------------------------------------------


def test_asizeof_is_the_sum_of_the_distinct_members():
    s1, s2 = _fresh("hello world"), _fresh("something else")
    n = int(_fresh("123456789012"))
    tup = (s1, n)
    d = {"key": s2}
    data = [s1, s2, tup, d, s1]
    distinct = {id(o): o for o in (data, s1, s2, tup, n, d, "key")}
    expected = sum(sys.getsizeof(o) for o in distinct.values())
    assert asizeof.asizeof(data) == expected
    # several objects at once: what they share is counted once
    assert asizeof.asizeof(data, tup) == expected
    assert asizeof.asizeof() == 0


def test_asizesof_shares_with_the_earlier_object():
    s = _fresh("shared string")
    a, b = [s], [s]
    sizes = asizeof.asizesof(a, b)
    assert sizes == (sys.getsizeof(a) + sys.getsizeof(s), sys.getsizeof(b))
    assert sum(sizes) == asizeof.asizeof(a, b)


def test_flat_sizes_are_sys_getsizeof():
    for obj in ([1, 2, 3], (1, 2), {"a": 1}, {1, 2}, "text", 10 ** 30, 1.5, Payload(1), b"xy",
                bytearray(100)):
        assert asizeof.flatsize(obj) == sys.getsizeof(obj)


def test_basicsize_itemsize_leng():
    # objects without a variable part: the basic size is the whole size
    for obj in ([], (), 1.5, None, Payload(0), NoDict()):
        assert asizeof.basicsize(obj) == sys.getsizeof(obj), type(obj)
    ptr = 8 if sys.maxsize > 2 ** 32 else 4
    assert asizeof.itemsize([]) == ptr
    assert asizeof.itemsize(bytearray()) == 1
    assert asizeof.itemsize((1,)) == tuple.__itemsize__
    assert asizeof.leng([1, 2, 3]) == 3
    assert asizeof.leng(2 ** 64) == 3  # 30-bit digits
    assert asizeof.leng(0) == 1
    assert asizeof.leng(1.5) is None


def test_refs_are_the_referents_and_dict_keys():
    a, b = _fresh("aa"), _fresh("bb")
    assert {id(x) for x in asizeof.refs([a, b])} == {id(a), id(b)}
    k, v = _fresh("key"), [1]
    assert {id(x) for x in asizeof.refs({k: v})} == {id(k), id(v)}
    assert asizeof.refs(_fresh("leaf")) == []


def _shared_function():
    return 1


def test_asizeof_options_all_and_code():
    holder = [_shared_function]
    assert asizeof.asizeof(holder) == sys.getsizeof(holder)  # functions are shared
    assert asizeof.asizeof(holder, code=True) > sys.getsizeof(holder) + sys.getsizeof(_shared_function)
    big = bytearray(1 << 20)
    assert asizeof.asizeof(all=True) > len(big)


def test_unknown_option_is_an_error():
    with pytest.raises(TypeError, match="bogus"):
        asizeof.asizeof([], bogus=1)


def test_asizeof_agrees_with_pympler_where_rules_agree():
    pym = _pympler("asizeof")
    # every object's size is a multiple of 8, so pympler's alignment changes nothing
    s1, s2 = _fresh("abcdefg"), _fresh("hijklmn")
    for obj in ([s1, s2], (s1,), {s1, s2}, [1.5, 2.5], [[s1], (s2, 1.5)]):
        assert asizeof.asizeof(obj) == pym.asizeof(obj), obj
        assert asizeof.flatsize(obj) == pym.flatsize(obj)


# ---- muppy ---------------------------------------------------------------------------------


def test_get_objects_has_tracked_and_untracked_objects_not_its_own():
    marker = Payload(_fresh("muppy marker string"))
    holder = [marker.n]
    objs = muppy.get_objects()
    ids = {id(o) for o in objs}
    assert id(marker) in ids
    assert id(holder) in ids
    assert id(marker.n) in ids  # untracked str reached from a tracked list
    assert id(objs) not in ids
    assert len(ids) == len(objs)  # remove_dups
    frame_type = type(sys._getframe())
    assert not any(type(o) is frame_type for o in objs)


def test_get_objects_include_frames_skips_the_callers_frame():
    def inner():
        return muppy.get_objects(include_frames=True), sys._getframe()

    objs, inner_frame = inner()
    ids = {id(o) for o in objs}
    assert id(inner_frame) not in ids
    assert id(sys._getframe()) in ids  # the caller of the caller
    del objs, ids


def test_get_size_filter_sort_exact():
    a, b, c, d = [], [1, 2, 3], _fresh("xyz"), (1,)
    objs = [b, c, a, d]
    assert muppy.get_size(objs) == sum(sys.getsizeof(o) for o in objs)
    assert muppy.filter(objs, Type=list) == [b, a]
    assert [id(o) for o in muppy.filter(objs, Type=list)] == [id(b), id(a)]
    lo = sys.getsizeof(d)
    assert muppy.filter(objs, min=lo) == [o for o in objs if sys.getsizeof(o) >= lo]
    assert muppy.filter(objs, max=sys.getsizeof(a)) == [o for o in objs if sys.getsizeof(o) <= sys.getsizeof(a)]
    assert muppy.filter(objs, Type=list, min=sys.getsizeof(a) + 1) == [b]
    with pytest.raises(ValueError):
        muppy.filter(objs, min=10, max=5)
    expected = sorted(objs, key=sys.getsizeof)
    assert [id(o) for o in muppy.sort(objs)] == [id(o) for o in expected]


def test_get_diff_by_identity():
    a, b, c = [1], [1], [2]  # a == b but not the same object
    diff = muppy.get_diff([a, c, c], [b, c])
    assert [id(o) for o in diff["+"]] == [id(b)]
    assert [id(o) for o in diff["-"]] == [id(a)]
    assert muppy.get_diff([], []) == {"+": [], "-": []}


def test_get_referents_by_level():
    inner1, inner2 = [1], [2]
    outer = [inner1, inner2]
    # list_traverse visits the items last to first
    assert [id(o) for o in muppy.get_referents(outer)] == [id(inner2), id(inner1)]
    got = muppy.get_referents(outer, level=2)
    assert [id(o) for o in got] == [id(inner2), id(inner1), id(inner2[0]), id(inner1[0])]
    assert muppy.get_referents(outer, level=0) == []


# ---- summary -------------------------------------------------------------------------------

_LABEL = f"{Payload.__module__}.{Payload.__qualname__}"


def test_summarize_counts_and_sizes():
    n = 37
    objs = [Payload(i) for i in range(n)]
    strs = [_fresh("abc"), _fresh("defgh")]
    rows = summary.summarize(objs + strs + [len, summary])
    by = {r[0]: r for r in rows}
    assert by[_LABEL] == [_LABEL, n, n * sys.getsizeof(objs[0])]
    assert by["str"] == ["str", 2, sum(sys.getsizeof(s) for s in strs)]
    assert by["builtin_function_or_method"][1] == 1
    assert by["module(heaptrail.pympler.summary)"] == ["module(heaptrail.pympler.summary)", 1,
                                                      sys.getsizeof(summary)]
    assert len(rows) == 4


def test_summary_names_functions_and_frames_like_pympler():
    def f():
        pass

    def g():
        pass

    rows = summary.summarize([f, g, f, sys._getframe()])
    names = sorted(r[0] for r in rows)
    assert names == ["frame (codename: test_summary_names_functions_and_frames_like_pympler)",
                     "function (f)", "function (g)"]
    assert {r[0]: r[1] for r in rows}["function (f)"] == 2


def test_get_diff_exact():
    left = [["a", 3, 300], ["b", 1, 10], ["gone", 2, 20]]
    right = [["a", 5, 350], ["b", 1, 10], ["new", 4, 40]]
    diff = sorted(summary.get_diff(left, right))
    assert diff == [["a", 2, 50], ["b", 0, 0], ["gone", -2, -20], ["new", 4, 40]]


def test_print_table_shape():
    rows = [["str", 2, 103], [_LABEL, 5, 280], ["big", 1, 5 * 1024 * 1024]]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        summary.print_(rows)
    lines = out.getvalue().splitlines()
    assert [c.strip() for c in lines[0].split("|")] == ["types", "# objects", "total size"]
    assert set(lines[1].replace(" | ", "")) == {"="}
    assert [l.split("|")[0].strip() for l in lines[2:]] == ["big", _LABEL, "str"]
    assert lines[2].split("|")[2].strip() == "5.00 MB"
    assert lines[4].split("|")[2].strip() == "103     B"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        summary.print_(rows, limit=1, sort="#", order="ascending")
    assert out.getvalue().splitlines()[2].split("|")[0].strip() == "big"
    with pytest.raises(ValueError):
        list(summary.format_(rows, sort="nope"))


def test_summary_same_as_pympler():
    pym = _pympler("summary")
    objs = [Payload(i) for i in range(5)] + [_fresh("abc"), _fresh("de"), [1], {}]
    ours = summary.summarize(objs)
    theirs = pym.summarize(objs)
    assert sorted(ours) == sorted(theirs)
    a, b = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(a):
        summary.print_(ours)
    with contextlib.redirect_stdout(b):
        pym.print_(ours)
    assert a.getvalue() == b.getvalue()
    assert sorted(summary.get_diff(ours, ours[:2])) == sorted(pym.get_diff(ours, ours[:2]))


# ---- refbrowser ----------------------------------------------------------------------------


def _tree_text(root, **kw):
    out = io.StringIO()
    refbrowser.ConsoleBrowser(root, stream=out, **kw).print_tree()
    return out.getvalue()


def test_refbrowser_tree_text():
    root = [(_fresh("x"),), [1.5, 2.5]]  # items are visited last to first
    assert _tree_text(root, maxdepth=3) == (
        "list-+-list-+-float\n"
        "     |      +-float\n"
        "     |\n"
        "     +-tuple--str\n")
    assert _tree_text(root, maxdepth=1) == "list-+-list\n     +-tuple\n"
    assert _tree_text(root, maxdepth=0) == "list\n"
    b = refbrowser.ConsoleBrowser(root, maxdepth=3)
    assert b.tree_text() == _tree_text(root, maxdepth=3)


def test_refbrowser_repeat_and_str_func():
    s = _fresh("shared")
    root = [s, s]
    text = _tree_text(root, maxdepth=2, repeat=False, str_func=lambda o: type(o).__name__.upper())
    assert text == f"LIST-+-STR\n     +-STR (already included, id {id(s)})\n"


def test_refbrowser_file(tmp_path):
    p = tmp_path / "tree.txt"
    refbrowser.FileBrowser([_fresh("a")], maxdepth=2).print_tree(str(p))
    assert p.read_text() == "list--str\n"


def test_refbrowser_drawing_same_as_pympler():
    pym = _pympler("refbrowser")
    root = {"a": [1.5, (2.5, _fresh("z"))], "b": [[1.5], [2.5]]}
    ours = refbrowser.ConsoleBrowser(root, maxdepth=4)
    tree = ours.get_tree()

    def convert(node):
        if not isinstance(node, refbrowser._Node):
            return node
        out = pym._Node(node.o, node.str_func)
        out.children = [convert(c) for c in node.children]
        return out

    buf = io.StringIO()
    pym.StreamBrowser(root, maxdepth=4, stream=buf).print_tree(convert(tree))
    assert ours.tree_text(tree) == buf.getvalue()


def test_pympler_is_a_heaptrail_submodule():
    assert heaptrail.pympler.asizeof is asizeof
    gc.collect()


def test_muppy_same_as_pympler():
    pym = _pympler("muppy")
    objs = [[1, 2, 3], _fresh("abc"), (1,), {}, Payload(1), 2.5, [], _fresh("a much longer string")]
    assert [id(o) for o in muppy.sort(objs)] == [id(o) for o in pym.sort(objs)]
    assert [id(o) for o in muppy.filter(objs, Type=list)] == [id(o) for o in pym.filter(objs, Type=list)]
    assert [id(o) for o in muppy.filter(objs, min=50, max=80)] == \
        [id(o) for o in pym.filter(objs, min=50, max=80)]
    assert muppy.get_size(objs) == pym.get_size(objs)
    outer = [[1], [2, (3,)]]
    assert [id(o) for o in muppy.get_referents(outer)] == [id(o) for o in pym.get_referents(outer)]
    # at level 2 pympler also walks what it appends while iterating (the 3 in the tuple):
    # heaptrail stops at the level asked for
    assert [id(o) for o in muppy.get_referents(outer, 2)] == \
        [id(o) for o in pym.get_referents(outer, 2)][:5]
    assert 3 not in muppy.get_referents(outer, 2) and 3 in muppy.get_referents(outer, 3)
