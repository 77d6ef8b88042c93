"""Review of the drop-in compatibility APIs against the real peers (objgraph, pympler,
memory_profiler): each test is a place where code written for the peer tripped on heaptrail.
The peer is compared with where it is installed (skipped otherwise); every test also asserts
the known value itself."""
import collections
import inspect
import io
import re
import sys

import pytest

from heaptrail import lines
from heaptrail import objgraph as hog
from heaptrail.pympler import muppy, summary
from conftest import run_python

MiB = 2**20


class Marker:
    pass


# ---- objgraph.get_new_ids: new_ids[name] for a type with no new object ---------------------


def test_get_new_ids_gives_an_empty_set_for_a_type_not_made():
    # objgraph returns a defaultdict(set): `at_addrs(new_ids['MyClass'])` is [] when no
    # MyClass was made; heaptrail returned a dict, and that line raised KeyError
    state = {}
    assert hog.get_new_ids(skip_update=True, _state=state) == {}
    hog.get_new_ids(limit=0, _state=state)
    made = [Marker() for _ in range(4)]
    new = hog.get_new_ids(limit=0, _state=state)
    assert isinstance(new, collections.defaultdict) and new.default_factory is set
    assert new["NoSuchTypeMadeHere"] == set()
    assert new["Marker"] == {id(m) for m in made}
    assert hog.get_new_ids(skip_update=True, _state=state) is new
    real = pytest.importorskip("objgraph", reason="objgraph is not installed")
    rstate = {}
    real.get_new_ids(limit=0, _state=rstate)
    rnew = real.get_new_ids(limit=0, _state=rstate)
    assert type(rnew) is type(new) and rnew["NoSuchTypeMadeHere"] == set()


# ---- pympler.tracker.SummaryTracker --------------------------------------------------------


def _row(rows, name):
    found = [row for row in rows if row[0] == name]
    return found[0] if found else None


def test_summary_tracker_diff_shows_what_was_made():
    # pympler's most used entry point (tracker.SummaryTracker().print_diff()); heaptrail had
    # no heaptrail.pympler.tracker at all
    from heaptrail.pympler import tracker

    name = f"{__name__}.Marker"
    tr = tracker.SummaryTracker()
    tr.diff()
    idle = tr.diff()
    assert _row(idle, name) is None
    # the tracker's own stored summary is not growth: an idle diff is empty
    assert idle == []
    made = [Marker() for _ in range(3)]
    d = tr.diff()
    assert _row(d, name) == [name, 3, 3 * sys.getsizeof(made[0])]
    assert all(row[1] != 0 or row[2] != 0 for row in d)  # pympler sweeps rows of 0 and 0
    del made
    gone = tr.diff()
    assert _row(gone, name) == [name, -3, -3 * sys.getsizeof(Marker())]
    # explicit summaries, as pympler's
    s1 = tr.create_summary()
    s2 = summary.get_diff([], s1)
    assert tr.diff(s1, s1) == []
    assert sorted(map(tuple, tr.diff([], s1))) == sorted(tuple(r) for r in s2 if r[1] or r[2])
    with pytest.raises(ValueError):
        tr.diff(summary2=s1)
    tr.store_summary("before")
    assert list(tr.summaries) == ["before"] and isinstance(tr.summaries["before"][0], list)
    lines_out = list(tr.format_diff())
    assert lines_out[0].split("|")[0].strip() == "types"


def test_summary_tracker_print_diff_is_pympler_s_table(capsys):
    from heaptrail.pympler import tracker

    name = f"{__name__}.Marker"
    tr = tracker.SummaryTracker()
    tr.diff()
    made = [Marker() for _ in range(2)]
    tr.print_diff()
    out = capsys.readouterr().out.splitlines()
    assert [c.strip() for c in out[0].split("|")] == ["types", "# objects", "total size"]
    row = next(line for line in out if line.split("|")[0].strip() == name)
    assert [c.strip() for c in row.split("|")] == [name, "2", "%d     B" % (2 * sys.getsizeof(made[0]))]
    ptracker = pytest.importorskip("pympler.tracker", reason="pympler is not installed")
    sig = inspect.signature(ptracker.SummaryTracker)
    assert inspect.signature(tracker.SummaryTracker) == sig
    for meth in ("diff", "print_diff", "format_diff", "create_summary", "store_summary"):
        assert (str(inspect.signature(getattr(tracker.SummaryTracker, meth))) ==
                str(inspect.signature(getattr(ptracker.SummaryTracker, meth))))
    ptr = ptracker.SummaryTracker()
    ptr.diff()
    more = [Marker() for _ in range(2)]
    assert _row(ptr.diff(), name) == [name, 2, 2 * sys.getsizeof(more[0])]


# ---- pympler.muppy.print_summary -----------------------------------------------------------


def test_muppy_print_summary(capsys):
    # pympler documents muppy.print_summary(); heaptrail's muppy had none
    muppy.print_summary()
    out = capsys.readouterr().out.splitlines()
    assert [c.strip() for c in out[0].split("|")] == ["types", "# objects", "total size"]
    assert len(out) == 2 + 15  # header, rule, summary.print_'s 15 largest rows
    top = out[2].split("|")[0].strip()
    assert top in {row[0] for row in summary.summarize(muppy.get_objects())}
    pmuppy = pytest.importorskip("pympler.muppy", reason="pympler is not installed")
    pmuppy.print_summary()
    pout = capsys.readouterr().out.splitlines()
    assert len(pout) == len(out) and pout[0].split("|")[0].strip() == "types"


# ---- memory_profiler.profile(backend=...) --------------------------------------------------


def test_profile_accepts_memory_profiler_s_backend():
    # @profile(precision=4, backend='tracemalloc') is memory_profiler's documented form; heaptrail
    # raised TypeError: unexpected keyword argument 'backend'
    assert "backend" in inspect.signature(lines.profile).parameters
    with pytest.raises(ValueError, match="backend must be one of"):
        lines.profile(backend="nonsense")
    mp = pytest.importorskip("memory_profiler", reason="memory_profiler is not installed")
    names = list(inspect.signature(lines.profile).parameters)
    assert names[:4] == list(inspect.signature(mp.profile).parameters)


@pytest.mark.noasan
def test_profile_backend_picks_the_mem_usage_column():
    code = """
        from heaptrail import lines
        @lines.profile(precision=3, backend=%r)
        def f():
            x = bytearray(8 * 2**20)
            x[::4096] = b"x" * len(x[::4096])   # touch every page
            return x
        f()
        rows = [row for row in lines.results()[0]["rows"] if row["occurrences"]]
        inc = max(row["increment"] for row in rows)   # the bytearray's line (-c: no source)
        print("MEM", max(row["mem_usage"] for row in rows), "INC", inc)
    """
    traced = run_python(code % "tracemalloc").stdout.split()
    rss = run_python(code % "psutil").stdout.split()
    # the increment is traced bytes whatever the backend
    for out in (traced, rss):
        assert abs(int(out[3]) - 8 * MiB) < 0.01 * 8 * MiB
    # Mem usage: the traced 8 MiB with 'tracemalloc', the process's RSS (the interpreter
    # itself and the 8 touched MiB) with 'psutil'
    assert 8 * MiB <= int(traced[1]) < 9 * MiB
    assert int(rss[1]) > int(traced[1]) + 4 * MiB


# ---- pympler.classtracker: the size at birth -----------------------------------------------


class Node:
    def __init__(self, n):
        self.data = list(range(n))


def test_tracked_object_starts_with_its_flat_size_at_birth():
    # pympler's TrackedObject.snapshots starts with (birth, flat size): print_stats shows it as
    # each instance's first line and get_size_at_time answers it before the first snapshot;
    # heaptrail's started at the first snapshot (0 before it)
    from heaptrail.pympler.classtracker import ClassTracker

    tr = ClassTracker(stream=io.StringIO())
    try:
        tr.track_class(Node)
        node = Node(100)
        (tobj,) = tr.index[f"{__name__}.Node"]
        flat = sys.getsizeof(node)
        assert [(ts, s.size, s.flat) for ts, s in tobj.snapshots] == [(tobj.birth, flat, flat)]
        assert tobj.get_size_at_time(tobj.birth) == flat
        tr.create_snapshot("one")
        assert len(tobj.snapshots) == 2 and tobj.snapshots[1][1].size > flat
        pct = pytest.importorskip("pympler.classtracker", reason="pympler is not installed")
        ptr = pct.ClassTracker(stream=io.StringIO())
        try:
            ptr.track_class(Node)
            pnode = Node(100)
            (ptobj,) = ptr.index[f"{__name__}.Node"]
            assert len(ptobj.snapshots) == 1 and ptobj.snapshots[0][0] == ptobj.birth
            ptr.create_snapshot("one")
            assert len(ptobj.snapshots) == 2
            del pnode
        finally:
            ptr.detach_all()
    finally:
        tr.detach_all()


# ---- pympler.asizeof.asizesof: each object on its own ------------------------------------


def test_asizesof_sizes_each_given_object_without_the_others():
    # pympler sizes each given object without the other given objects it reaches, and an
    # object given twice has its size twice; heaptrail charged a member to the container given
    # before it (asizesof(box, item) was (box + item, 0)) and gave a repeat 0
    from heaptrail.pympler import asizeof

    item = [int("1000000"), int("2000000")]
    box = [item, int("3000000")]
    g = sys.getsizeof
    item_size = g(item) + g(item[0]) + g(item[1])
    box_own = g(box) + g(box[1])
    assert asizeof.asizesof(box, item) == (box_own, item_size)
    assert asizeof.asizesof(item, box) == (item_size, box_own)
    assert asizeof.asizesof(item, box, item) == (item_size, box_own, item_size)
    assert asizeof.asizesof(box) == (box_own + item_size,)
    assert asizeof.asizeof(box, item) == box_own + item_size
    pa = pytest.importorskip("pympler.asizeof", reason="pympler is not installed")
    # pympler rounds each object up to 8 bytes: the same objects in each size, so at most
    # 7 bytes per object apart (3 objects in item, 2 of box's own)
    p_box, p_item, p_again = pa.asizesof(box, item, item)
    assert 0 <= p_item - item_size < 3 * 8 and 0 <= p_box - box_own < 2 * 8
    assert p_again == p_item


# ---- memory_profiler's %memit / %mprun options and results ---------------------------------

_MAGICS = """
    import re, sys
    from IPython.core.interactiveshell import InteractiveShell
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", sys.argv[1])
    print("RET", ip.run_line_magic("memit", "y = bytearray(8 * 2**20); y[::4096] = b'x' * 2048; del y"))
    print("CELLRET", ip.run_cell_magic("memit", "data = [1, 2, 3]", "n = len(data)\\n"), ip.user_ns["n"])
    r = ip.run_line_magic("memit", "-r2 -q -o z = bytearray(5 * 2**20); del z")
    print("OPT", type(r).__name__, getattr(r, "repeat", None))
    if isinstance(r, dict):
        print("DICT", r["increment"], r["retained"])
    ip.run_cell("def g():\\n    a = bytearray(3 * 2**20)\\n    return len(a)\\n")
    print("MPRUN", ip.run_line_magic("mprun", "-f g g()"))
"""


def _magic_run(extension):
    out = run_python(_MAGICS, extension).stdout
    return out, re.findall(r"peak memory: ([-\d.]+) MiB, increment: ([-\d.]+) MiB", out)


def test_memit_options_setup_line_and_results_as_memory_profiler():
    # heaptrail's %memit ran "-r2 -q -o ..." as code (a SyntaxError), ignored a cell's first
    # line (memory_profiler runs it as setup: the cell then failed with NameError), returned
    # its dict every time (IPython shows it as Out[n]) and called the memory the statement
    # kept the "increment" where memory_profiler reports the rise above the start
    pytest.importorskip("IPython", reason="IPython is not installed: %memit untested")
    out, rows = _magic_run("heaptrail")
    assert "RET None" in out and "MPRUN None" in out
    assert "CELLRET None 3" in out
    assert "OPT dict None" in out and len(rows) == 2  # -q: the third %memit printed nothing
    inc = float(rows[0][1])
    assert 7.9 <= inc <= 8.2  # the 8 MiB came and went: the rise, not 0
    d = out.split("DICT ")[1].split()
    assert abs(int(d[0]) - 5 * MiB) < 0.01 * 5 * MiB and abs(int(d[1])) < 0.01 * 5 * MiB
    assert "Line #" in out  # %mprun printed its table
    pytest.importorskip("memory_profiler", reason="memory_profiler is not installed")
    pout, prows = _magic_run("memory_profiler")
    assert "RET None" in pout and "MPRUN None" in pout and "CELLRET None 3" in pout
    assert "OPT MemitResult 2" in pout and len(prows) == 2


def test_asizeof_refs_lists_items_in_their_order():
    # pympler's refs() gives a list's items first to last and a dict's keys and values as
    # key, value, key, value; heaptrail gave tp_traverse's order (a list's last item first,
    # a dict's values before its keys)
    from heaptrail.pympler import asizeof

    one, two = [1], [2]
    assert asizeof.refs([one, two, one]) == [one, two]  # each once
    assert asizeof.refs((one, two)) == [one, two]
    assert asizeof.refs({"a": one, "b": two}) == ["a", one, "b", two]
    pa = pytest.importorskip("pympler.asizeof", reason="pympler is not installed")
    for obj in ([one, two], (one, two), {"a": one, "b": two}):
        assert list(pa.refs(obj)) == asizeof.refs(obj)


# ---- memory_profiler.memory_usage ----------------------------------------------------------


def _touch_and_hold(n):
    """n bytes, every page touched (so RSS holds them), held 0.3 s, then freed."""
    import time

    x = bytearray(n)
    x[::4096] = b"x" * len(x[::4096])
    time.sleep(0.3)
    del x
    return "held"


@pytest.mark.noasan
def test_memory_usage_as_memory_profiler():
    # memory_profiler's memory_usage() (the RSS of a process or while a function runs) was
    # missing from heaptrail.lines
    from heaptrail import process

    (now,) = lines.memory_usage(-1)
    rss = process.memory().rss / MiB
    assert abs(now - rss) < 2  # this process's RSS, in MiB
    assert len(lines.memory_usage(-1, interval=0.05, timeout=0.2)) == 4
    base = lines.memory_usage(-1)[0]
    peak, ret = lines.memory_usage((_touch_and_hold, (40 * MiB,)), interval=0.02,
                                   max_usage=True, retval=True)
    assert ret == "held" and 38 <= peak - base <= 48
    pairs = lines.memory_usage((_touch_and_hold, (MiB,), {}), interval=0.05, timestamps=True)
    assert len(pairs) >= 3 and all(isinstance(p, tuple) and len(p) == 2 for p in pairs)
    assert [t for _, t in pairs] == sorted(t for _, t in pairs)
    out = io.StringIO()
    assert lines.memory_usage(-1, stream=out) == []
    assert re.fullmatch(r"MEM \d+\.\d{6} \d+\.\d{4}\n", out.getvalue())
    with pytest.raises(ValueError, match="backend"):
        lines.memory_usage(-1, backend="tracemalloc")
    with pytest.raises(ValueError, match="include_children"):
        lines.memory_usage(-1, include_children=True)
    mp = pytest.importorskip("memory_profiler", reason="memory_profiler is not installed")
    assert (list(inspect.signature(mp.memory_usage).parameters) ==
            list(inspect.signature(lines.memory_usage).parameters))
    assert abs(mp.memory_usage(-1)[0] - lines.memory_usage(-1)[0]) < 2
    pbase = mp.memory_usage(-1)[0]
    ppeak, pret = mp.memory_usage((_touch_and_hold, (40 * MiB,)), interval=0.02,
                                  max_usage=True, retval=True)
    assert pret == "held" and 38 <= ppeak - pbase <= 48
