"""heaptrail.pympler.classtracker: tracked instances counted and sized per snapshot, text
reports, the stats file round trip, the HTML report and periodic snapshots."""
import io
import json
import re
import sys
import time

import pytest

from heaptrail import HeaptrailError
from heaptrail.pympler.classtracker import ClassTracker
from heaptrail.pympler.classtracker_stats import ConsoleStats, HtmlStats, pp


class Node:
    def __init__(self, n):
        self.payload = bytearray(100 + n)


class Leaf:
    __slots__ = ("v",)  # no __weakref__: held strongly

    def __init__(self, v):
        self.v = v


NAME = f"{Node.__module__}.Node"


def _hand_size(node):
    # the instance and its payload (the class is shared, not counted)
    return sys.getsizeof(node) + sys.getsizeof(node.payload)


@pytest.fixture
def tracker():
    t = ClassTracker(stream=io.StringIO())
    yield t
    t.close()


def test_track_class_counts_and_sizes(tracker):
    before = [Node(0)]  # made before tracking: not tracked
    tracker.track_class(Node)
    nodes = [Node(i) for i in range(7)]
    snap = tracker.create_snapshot("Seven")
    assert snap.tracked_total == sum(_hand_size(n) for n in nodes)
    info = tracker.stats.annotate_snapshot(snap)
    assert info[NAME]["active"] == 7
    assert info[NAME]["sum"] == sum(_hand_size(n) for n in nodes)
    assert info[NAME]["avg"] == info[NAME]["sum"] / 7
    assert len(tracker.index[NAME]) == 7
    assert id(before[0]) not in tracker.objects

    del nodes[:3]
    snap2 = tracker.create_snapshot("Four")
    info2 = tracker.stats.annotate_snapshot(snap2)
    assert info2[NAME]["active"] == 4
    assert info2[NAME]["sum"] == sum(_hand_size(n) for n in nodes)
    dead = [t for t in tracker.index[NAME] if t.death is not None]
    assert len(dead) == 3


def test_print_summary_lines(tracker):
    tracker.track_class(Node)
    nodes = [Node(i) for i in range(5)]
    tracker.create_snapshot("Before")
    nodes += [Node(i) for i in range(5)]
    tracker.create_snapshot("After")
    tracker.stats.print_summary()
    lines = tracker.stream.getvalue().splitlines()
    assert lines[0] == "---- SUMMARY " + "-" * 66
    assert lines[-1] == "-" * 79
    assert lines[1].startswith("Before") and lines[3].startswith("After")
    for line in (lines[1], lines[3]):
        assert line.split()[1:] == ["active", "0", "B", "average", "pct"]
    size5 = sum(_hand_size(n) for n in nodes[:5])
    size10 = sum(_hand_size(n) for n in nodes)
    assert lines[2].startswith("  " + NAME[:33])
    assert lines[2][35:].split()[:1] == ["5"]
    assert pp(size5) in lines[2]
    assert lines[4][35:].split()[:1] == ["10"]
    assert pp(size10) in lines[4]


def test_sort_and_print_stats(tracker):
    tracker.track_class(Node)
    small, big = Node(0), Node(5000)
    tracker.create_snapshot()
    tracker.stats.sort_stats("size").print_stats()
    out = tracker.stream.getvalue()
    blocks = [l for l in out.splitlines() if not l.startswith(" ")]
    assert f"0x{id(big):08x}" in blocks[0] and f"0x{id(small):08x}" in blocks[1]
    assert pp(_hand_size(big)) in out
    with pytest.raises(ValueError, match="nope"):
        tracker.stats.sort_stats("nope")
    stream = io.StringIO()
    stats = ConsoleStats(tracker=tracker, stream=stream)
    stats.sort_stats("size").print_stats(limit=1, clsname="Node")
    assert f"0x{id(big):08x}" in stream.getvalue()
    assert f"0x{id(small):08x}" not in stream.getvalue()


def test_track_object_keep_trace_and_resolution(tracker):
    obj = Node(10)
    tracker.track_object(obj, name="mine", keep=True, trace=True, resolution_level=1)
    tracker.create_snapshot()
    (tobj,) = tracker.index["mine"]
    ts, size = tobj.snapshots[1]  # [0] is the flat size at birth
    assert size.size == _hand_size(obj)
    assert [(r.name, r.size) for r in size.refs if r.name == ".payload"] == \
        [(".payload", sys.getsizeof(obj.payload))]
    assert tobj.trace[-1][2] == "test_track_object_keep_trace_and_resolution"
    ident = id(obj)
    del obj
    assert tobj.ref() is not None and id(tobj.ref()) == ident  # keep=True holds it


def test_track_change_and_untrack(tracker):
    obj = Node(3)
    tracker.track_object(obj)
    tracker.create_snapshot()
    tracker.track_change(obj, resolution_level=1)
    tracker.create_snapshot()
    (tobj,) = tracker.index[NAME]
    assert tobj.snapshots[1][1].refs == []  # [0] is the flat size at birth
    assert ".payload" in [r.name for r in tobj.snapshots[2][1].refs]
    tracker.untrack_object(obj)
    tracker.create_snapshot()
    assert len(tobj.snapshots) == 3
    with pytest.raises(ValueError):
        tracker.track_change(obj)


def test_not_weakly_referenceable_is_held(tracker):
    tracker.track_class(Leaf)
    leaf = Leaf(bytearray(50))
    tracker.create_snapshot()
    (tobj,) = tracker.index[f"{Leaf.__module__}.Leaf"]
    assert tobj.snapshots[1][1].size == sys.getsizeof(leaf) + sys.getsizeof(leaf.v)


def test_detach_restores_init(tracker):
    original = Node.__dict__["__init__"]
    tracker.track_class(Node)
    assert Node.__dict__["__init__"] is not original
    import inspect
    assert str(inspect.signature(Node)) == "(n)"
    tracker.detach_class(Node)
    assert Node.__dict__["__init__"] is original
    Node(1)
    assert tracker.index == {}


def test_periodic_snapshots(tracker):
    tracker.track_class(Node)
    keep = [Node(1)]
    tracker.start_periodic_snapshots(interval=0.05)
    deadline = time.monotonic() + 30  # generous: the machine may be busy
    while len(tracker.snapshots) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    tracker.stop_periodic_snapshots()
    assert len(tracker.snapshots) >= 2
    count = len(tracker.snapshots)
    time.sleep(0.2)
    assert len(tracker.snapshots) == count  # stopped
    with pytest.raises(ValueError):
        tracker.start_periodic_snapshots(0)
    del keep


def _summary_text(stats):
    stats.stream = io.StringIO()
    stats.print_summary()
    return stats.stream.getvalue()


def test_dump_load_round_trip(tracker, tmp_path):
    tracker.track_class(Node, trace=True, resolution_level=1)
    nodes = [Node(i) for i in range(3)]
    # the stack ends in the frame that made the instance (heaptrail's own frames left out)
    maker = "<listcomp>" if sys.version_info < (3, 12) else "test_dump_load_round_trip"
    assert tracker.index[NAME][0].trace[-1][2] == maker
    tracker.create_snapshot("one")
    del nodes[0]
    tracker.create_snapshot("two")
    path = tmp_path / "profile.dat"
    tracker.stats.dump_stats(str(path))
    loaded = ConsoleStats(filename=str(path), stream=io.StringIO())
    assert _summary_text(loaded) == _summary_text(tracker.stats)
    a = ConsoleStats(tracker=tracker, stream=io.StringIO())
    a.sort_stats("size").print_stats()
    loaded.sort_stats("size").print_stats()
    assert loaded.stream.getvalue().endswith(a.stream.getvalue())
    orig = tracker.index[NAME]
    back = loaded.index[NAME]
    assert [(t.id, t.birth, t.death, [(ts, s.size) for ts, s in t.snapshots]) for t in orig] == \
        [(t.id, t.birth, t.death, [(ts, s.size) for ts, s in t.snapshots]) for t in back]
    assert [tuple(f) for f in back[0].trace] == [tuple(f) for f in orig[0].trace]
    # load_stats on an open file
    other = ConsoleStats(stream=io.StringIO())
    with open(path, "rb") as f:
        other.load_stats(f)
    assert _summary_text(other) == _summary_text(tracker.stats)


@pytest.mark.parametrize("content, message", [
    (b"\x00\x01garbage", "not a heaptrail ClassTracker file"),
    (b'{"format": "heaptrail-classtracker", "version": 99, "snapshots": [], "objects": []}', "version 99"),
    (b'{"format": "heaptrail-classtracker", "version": 1, "snapshots": [[1, "a", 2]], "objects": []}',
     "snapshot 0"),
    (b'{"format": "heaptrail-classtracker", "version": 1, "snapshots": [], "objects": [{"name": "x"}]}',
     "object 0 has no 'id'"),
    (b'{"format": "heaptrail-classtracker", "version": 1, "snapshots": [], "objects": '
     b'[{"name": "x", "id": 1, "repr": "r", "birth": 0, "death": null, "trace": null, '
     b'"snapshots": [[0, "big", 1, []]]}]}', "object 0: sizes"),
])
def test_bad_stats_files(tmp_path, content, message):
    path = tmp_path / "bad.dat"
    path.write_bytes(content)
    with pytest.raises(HeaptrailError, match=re.escape(message)) as e:
        ConsoleStats(filename=str(path))
    assert "\n" not in str(e.value)


def test_truncated_file_is_refused(tracker, tmp_path):
    tracker.track_class(Node)
    keep = [Node(1)]
    tracker.create_snapshot()
    path = tmp_path / "p.dat"
    tracker.stats.dump_stats(str(path))
    data = path.read_bytes()
    for cut in range(0, len(data), max(1, len(data) // 40)):
        path.write_bytes(data[:cut])
        with pytest.raises(HeaptrailError):
            ConsoleStats(filename=str(path))
    del keep


def test_html_report(tracker, tmp_path):
    tracker.track_class(Node)
    nodes = [Node(i) for i in range(4)]
    tracker.create_snapshot("Before")
    nodes.append(Node(99))
    tracker.create_snapshot("After", compute_total=True)
    out = tmp_path / "profile.html"
    HtmlStats(tracker=tracker).create_html(str(out))
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert NAME in text
    assert "Before" in text and "After" in text
    assert f"0x{id(nodes[-1]):x}" in text
    assert "http://" not in text and "https://" not in text
    assert "<script src" not in text and "<link" not in text
    # from a file, as pympler's slides show
    dat = tmp_path / "profile.dat"
    tracker.stats.dump_stats(str(dat))
    out2 = tmp_path / "from_file.html"
    HtmlStats(filename=str(dat)).create_html(str(out2))
    assert NAME in out2.read_text(encoding="utf-8")


def test_compute_total_is_the_heap_total(tracker):
    tracker.track_class(Node)
    keep = [Node(1)]
    snap = tracker.create_snapshot(compute_total=True)
    assert snap.asizeof_total > snap.tracked_total > 0
    del keep


def test_summary_shape_same_as_pympler():
    pym = pytest.importorskip("pympler.classtracker", reason="pympler is not installed")
    theirs_t = pym.ClassTracker(stream=io.StringIO())
    ours_t = ClassTracker(stream=io.StringIO())
    try:
        theirs_t.track_class(Node)
        ours_t.track_class(Node)
        nodes = [Node(i) for i in range(3)]
        theirs_t.create_snapshot("Snap")
        ours_t.create_snapshot("Snap")
        theirs_t.stats.print_summary()
        ours_t.stats.print_summary()
        theirs = theirs_t._stream.getvalue().splitlines()
        ours = ours_t.stream.getvalue().splitlines()
        assert len(ours) == len(theirs)
        assert ours[0] == theirs[0] and ours[-1] == theirs[-1]
        assert ours[1] == theirs[1]  # "Snap   active   0  B   average   pct"
        # class line: same columns, same count of active instances
        assert ours[2][:46] == theirs[2][:46]
        assert len(ours[2]) == len(theirs[2])
        del nodes
    finally:
        theirs_t.close()
        ours_t.close()
