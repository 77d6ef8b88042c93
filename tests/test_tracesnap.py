"""Trace snapshot views (heaptrail.tracesnap): statistics, compare_to,
filter_traces, traces, dump/load -- on synthetic snapshots with known
contents, checked against exact values and against the stdlib's tracemalloc
classes fed the same raw traces."""
import itertools
import os
import random
import struct
import sys
import tracemalloc as std

import pytest

from heaptrail import HeaptrailError, _core
from heaptrail.tracesnap import (DomainFilter, Filter, Frame, Snapshot, Statistic,
                                 StatisticDiff, Trace, Traceback, _format_size)

# raw traces in tracemalloc's shape: (domain, size, frames most recent first, total_nframe)
RAW = [
    (0, 10, (('a.py', 2), ('b.py', 4)), 2),
    (0, 10, (('a.py', 2), ('b.py', 4)), 2),
    (0, 10, (('a.py', 2), ('b.py', 4)), 2),
    (1, 2, (('a.py', 5), ('b.py', 4)), 2),
    (2, 66, (('b.py', 1),), 1),
    (3, 7, (('<unknown>', 0),), 1),
]
RAW2 = [
    (0, 10, (('a.py', 2), ('b.py', 4)), 2),
    (0, 10, (('a.py', 2), ('b.py', 4)), 2),
    (0, 5000, (('c.py', 578),), 1),
    (2, 66, (('b.py', 1),), 1),
    (4, 400, (('b.py', 4), ('b.py', 4), ('b.py', 4)), 3),  # recursion on one line
]


def pair(raw, limit=5):
    return Snapshot(raw, limit), std.Snapshot(raw, limit)


def reprs(rows):
    return [repr(r) for r in rows]


def strs(rows):
    return [str(r) for r in rows]


def tb(*frames):
    """Traceback from frames given oldest first, like the public sequence."""
    return Traceback(tuple(reversed(frames)))


# ---- statistics ------------------------------------------------------------

def test_statistics_lineno_exact():
    snap, _ = pair(RAW)
    stats = snap.statistics('lineno')
    assert [(s.traceback, s.size, s.count) for s in stats] == [
        (tb(('b.py', 1)), 66, 1),
        (tb(('a.py', 2)), 30, 3),
        (tb(('<unknown>', 0)), 7, 1),
        (tb(('a.py', 5)), 2, 1),
    ]
    assert str(stats[1]) == "a.py:2: size=30 B, count=3, average=10 B"
    assert repr(stats[0]) == ("<Statistic traceback=<Traceback (<Frame filename='b.py' "
                              "lineno=1>,)> size=66 count=1>")


def test_statistics_filename_and_traceback_exact():
    snap, _ = pair(RAW)
    assert [(s.traceback, s.size, s.count) for s in snap.statistics('filename')] == [
        (tb(('b.py', 0)), 66, 1),
        (tb(('a.py', 0)), 32, 4),
        (tb(('<unknown>', 0)), 7, 1),
    ]
    assert [(s.traceback, s.size, s.count) for s in snap.statistics('traceback')] == [
        (tb(('b.py', 1)), 66, 1),
        (tb(('b.py', 4), ('a.py', 2)), 30, 3),
        (tb(('<unknown>', 0)), 7, 1),
        (tb(('b.py', 4), ('a.py', 5)), 2, 1),
    ]


@pytest.mark.parametrize("key", ["lineno", "filename", "traceback"])
@pytest.mark.parametrize("raw", [RAW, RAW2])
def test_statistics_same_as_stdlib(key, raw):
    ours, theirs = pair(raw)
    assert reprs(ours.statistics(key)) == reprs(theirs.statistics(key))
    assert strs(ours.statistics(key)) == strs(theirs.statistics(key))


def test_statistics_cumulative_exact():
    snap, theirs = pair(RAW2)
    # tracemalloc counts a trace once per frame: the 3-deep recursion on
    # b.py:4 counts 3 times, and b.py:4 also holds the two a.py:2 blocks
    assert [(s.traceback, s.size, s.count) for s in snap.statistics('lineno', cumulative=True)] == [
        (tb(('c.py', 578)), 5000, 1),
        (tb(('b.py', 4)), 1220, 5),
        (tb(('b.py', 1)), 66, 1),
        (tb(('a.py', 2)), 20, 2),
    ]
    for key in ('lineno', 'filename'):
        assert (reprs(snap.statistics(key, cumulative=True))
                == reprs(theirs.statistics(key, cumulative=True)))


def test_ties_ordered_by_traceback_like_stdlib():
    raw = [(0, 8, ((name, line),), 1) for name in ('z.py', 'a.py', 'm.py', 'a.pyx')
           for line in (3, 1, 20)]
    raw += [(0, 8, (('m.py', 1), ('a.py', 1)), 2), (0, 8, (('m.py', 1), ('z.py', 1)), 2)]
    ours, theirs = pair(raw)
    for key in ('lineno', 'filename', 'traceback'):
        assert reprs(ours.statistics(key)) == reprs(theirs.statistics(key))


def test_statistics_bad_key():
    snap, _ = pair(RAW)
    with pytest.raises(ValueError, match="unknown key_type"):
        snap.statistics('function')
    with pytest.raises(ValueError, match="cumulative mode cannot"):
        snap.statistics('traceback', cumulative=True)


def test_sampled_weights_in_statistics():
    # (domain, size, frames, total_nframe, count): a sampled trace stands for
    # `count` allocations and its size is the estimated bytes
    raw = [(0, 524288, (('s.py', 3),), 1, 40), (0, 1048576, (('s.py', 3),), 1, 2),
           (0, 524288, (('s.py', 9),), 1, 512)]
    snap = Snapshot(raw, 1)
    assert [(s.traceback, s.size, s.count) for s in snap.statistics('lineno')] == [
        (tb(('s.py', 3)), 1572864, 42), (tb(('s.py', 9)), 524288, 512)]
    assert [t.count for t in snap.traces] == [40, 2, 512]


# ---- compare_to -------------------------------------------------------------

def test_compare_to_exact():
    new, _ = pair(RAW2)
    old, _ = pair(RAW)
    diffs = new.compare_to(old, 'lineno')
    assert [(d.traceback, d.size, d.size_diff, d.count, d.count_diff) for d in diffs] == [
        (tb(('c.py', 578)), 5000, 5000, 1, 1),
        (tb(('b.py', 4)), 400, 400, 1, 1),
        (tb(('a.py', 2)), 20, -10, 2, -1),
        (tb(('<unknown>', 0)), 0, -7, 0, -1),
        (tb(('a.py', 5)), 0, -2, 0, -1),
        (tb(('b.py', 1)), 66, 0, 1, 0),
    ]
    assert str(diffs[0]) == "c.py:578: size=5000 B (+5000 B), count=1 (+1), average=5000 B"
    assert str(diffs[3]) == "<unknown>:0: size=0 B (-7 B), count=0 (-1)"


@pytest.mark.parametrize("key,cumulative", [("lineno", False), ("filename", False),
                                            ("traceback", False), ("lineno", True),
                                            ("filename", True)])
def test_compare_to_same_as_stdlib(key, cumulative):
    new, new_std = pair(RAW2)
    old, old_std = pair(RAW)
    assert (reprs(new.compare_to(old, key, cumulative))
            == reprs(new_std.compare_to(old_std, key, cumulative)))
    assert (strs(old.compare_to(new, key, cumulative))
            == strs(old_std.compare_to(new_std, key, cumulative)))


def test_compare_to_loaded_snapshot_matches_by_content(tmp_path):
    # different string tables (one built from other traces, one loaded from a
    # file): keys must still match by filename and line
    old, _ = pair(list(reversed(RAW)))
    path = tmp_path / "old.htt"
    old.dump(path)
    loaded = Snapshot.load(path)
    new, _ = pair(RAW)
    assert all(d.size_diff == 0 and d.count_diff == 0
               for d in new.compare_to(loaded, 'traceback'))
    assert len(new.compare_to(loaded, 'traceback')) == 4


# ---- filters ------------------------------------------------------------------

STD_FILTERS = [
    std.Filter(True, 'a.py'), std.Filter(False, 'b.py', all_frames=True),
    std.Filter(True, '*', lineno=5), std.DomainFilter(False, 3),
    std.Filter(False, '<unknown>'), std.Filter(True, 'b*', domain=2),
    std.Filter(False, 'b.py', lineno=4, all_frames=True, domain=1),
    std.DomainFilter(True, 0), std.Filter(True, 'c.py', all_frames=True),
]


def ours_filter(f):
    if isinstance(f, std.DomainFilter):
        return DomainFilter(f.inclusive, f.domain)
    return Filter(f.inclusive, f.filename_pattern, f.lineno, f.all_frames, f.domain)


def test_filters_exact():
    snap, _ = pair(RAW2)
    kept = snap.filter_traces([Filter(True, 'a.py')])
    assert [(t.size, t.domain) for t in kept.traces] == [(10, 0), (10, 0)]
    kept = snap.filter_traces([Filter(False, 'b.py')])  # most recent frame only
    assert [t.size for t in kept.traces] == [10, 10, 5000]
    kept = snap.filter_traces([Filter(False, 'b.py', all_frames=True)])
    assert [t.size for t in kept.traces] == [5000]
    kept = snap.filter_traces([Filter(True, '*.py', lineno=578)])
    assert [t.size for t in kept.traces] == [5000]
    kept = snap.filter_traces([Filter(True, 'b.py', domain=4)])
    assert [t.size for t in kept.traces] == [400]
    kept = snap.filter_traces([DomainFilter(False, 0)])
    assert [t.domain for t in kept.traces] == [2, 4]
    assert len(snap.filter_traces([])) == len(snap)
    assert snap.filter_traces([]).traceback_limit == snap.traceback_limit


@pytest.mark.parametrize("raw", [RAW, RAW2])
def test_filters_same_as_stdlib(raw):
    ours, theirs = pair(raw)
    for n in (1, 2, 3):
        for combo in itertools.combinations(STD_FILTERS, n):
            mine = ours.filter_traces([ours_filter(f) for f in combo])
            ref = theirs.filter_traces(list(combo))
            assert reprs(mine.statistics('traceback')) == reprs(ref.statistics('traceback')), combo


def test_filter_pattern_normalized_like_stdlib():
    f = Filter(True, 'mod.pyc')
    assert f.filename_pattern == 'mod.py'
    snap = Snapshot([(0, 1, (('mod.py', 1),), 1), (0, 2, (('other.py', 1),), 1)], 1)
    assert [t.size for t in snap.filter_traces([f]).traces] == [1]


def test_filter_traces_type_errors():
    snap, _ = pair(RAW)
    with pytest.raises(TypeError, match="filters must be a list"):
        snap.filter_traces(3)
    with pytest.raises(TypeError, match="expected a Filter"):
        snap.filter_traces(["a.py"])


# ---- traces, tracebacks, frames ------------------------------------------------

def test_traces_sequence():
    snap = Snapshot([(0, 10, (('a.py', 2, 'f'), ('b.py', 4, '<module>')), 2, 1, 77),
                     (5, 3, (), 0)], 5)
    traces = snap.traces
    assert len(traces) == 2 and repr(traces) == "<Traces len=2>"
    t = traces[0]
    assert (t.domain, t.size, t.count, t.thread_id) == (0, 10, 1, 77)
    assert t.traceback == tb(('b.py', 4), ('a.py', 2))
    assert [f.name for f in t.traceback] == ['<module>', 'f']
    assert t.traceback.total_nframe == 2
    assert traces[-1].traceback == tb(('<unknown>', 0))
    assert traces[-1].domain == 5
    assert [x.size for x in traces[0:2]] == [10, 3]
    with pytest.raises(IndexError):
        traces[2]
    # tracemalloc's str() of a traceback is its oldest frame
    assert str(t) == "b.py:4: 10 B"
    assert str(t) == str(std.Trace((0, 10, (('a.py', 2), ('b.py', 4)), 2)))
    assert repr(t) == ("<Trace domain=0 size=10 B, traceback=<Traceback (<Frame filename='b.py' "
                       "lineno=4>, <Frame filename='a.py' lineno=2>) total_nframe=2>>")
    assert t in traces


def test_traceback_format_and_order(tmp_path):
    src = tmp_path / "src.py"
    src.write_text("x = 1\ny = [0] * 10\n\ndef f():\n    return y\n")
    p = str(src)
    t = Traceback(((p, 5), (p, 2)))       # most recent first, like tracemalloc
    assert [f.lineno for f in t] == [2, 5]
    assert t.format() == [f'  File "{p}", line 2', '    y = [0] * 10',
                          f'  File "{p}", line 5', '    return y']
    assert t.format(limit=1) == [f'  File "{p}", line 5', '    return y']
    assert t.format(limit=-1) == [f'  File "{p}", line 2', '    y = [0] * 10']
    assert t.format(most_recent_first=True)[0] == f'  File "{p}", line 5'
    assert str(t) == f"{p}:2"
    # same shapes as the stdlib's
    s = std.Traceback(((p, 5), (p, 2)))
    assert t.format(most_recent_first=True) == s.format(most_recent_first=True)
    assert repr(t) == repr(s) and hash(t) == hash(s)
    assert Traceback((('a', 1),)) < Traceback((('b', 1),))
    assert Frame(('a.py', 3, 'fn')) == Frame(('a.py', 3)) and Frame(('a.py', 3, 'fn')).name == 'fn'


def test_format_size_same_as_stdlib():
    for size in (0, 1, 99, 100, 1023, 10239, 10240, 102400, 5 << 20, 3 << 30, 7 << 40, 9 << 50):
        for sign in (False, True):
            assert _format_size(size, sign) == std._format_size(size, sign)
            assert _format_size(-size, sign) == std._format_size(-size, sign)


# ---- dump / load ----------------------------------------------------------------

def rich_snapshot():
    raw = [(0, 10, (('a.py', 2, 'f'), ('b.py', 4, '<module>')), 2, 1, 140000000000, 5),
           (1, 2, (('a.py', 5, 'g'), ('b.py', 4, '<module>')), 2, 3, 140000000001, 4),
           (2, 66, (('b.py', 1, None),), 1, 1, 140000000000, 900),
           (3, 7, (), 1, 1, 1, 2),
           (0, 12345678901, (('é.py', 7, 'ü'),), 1, 9, 0, 0)]
    return Snapshot._from_handle(_core._tsnap_build(
        [(t[0], t[1], t[2]) + tuple(t[4:]) for t in raw], traceback_limit=64,
        sample_interval=524288, traced_current=999, traced_peak=2000, is_peak=True))


def test_dump_load_round_trip(tmp_path):
    snap = rich_snapshot()
    path = tmp_path / "snap.htt"
    snap.dump(path)
    back = Snapshot.load(str(path))
    assert list(back.traces) == list(snap.traces)
    assert [(t.count, t.thread_id) for t in back.traces] == [(1, 140000000000), (3, 140000000001),
                                                             (1, 140000000000), (1, 1), (9, 0)]
    assert [[f.name for f in t.traceback] for t in back.traces] == [
        ['<module>', 'f'], ['<module>', 'g'], [None], [None], ['ü']]
    assert back.traceback_limit == 64 and back.sample_interval == 524288
    assert back.traced_memory == (999, 2000) and back.is_peak
    for key in ('lineno', 'filename', 'traceback'):
        assert back.statistics(key) == snap.statistics(key)
    # the file is deterministic: dump(load(x)) == x
    path2 = tmp_path / "again.htt"
    back.dump(path2)
    assert path2.read_bytes() == path.read_bytes()
    assert path.read_bytes()[:8] == b"HTTRSNP\n"


GOLDEN_V1 = os.path.join(os.path.dirname(__file__), "data", "tracesnap_v1.htt")


def test_golden_file_version_1():
    # written by format version 1 (rich_snapshot()); must load the same forever
    back = Snapshot.load(GOLDEN_V1)
    assert back.traceback_limit == 64 and back.sample_interval == 524288 and back.is_peak
    assert [(s.traceback, s.size, s.count) for s in back.statistics('lineno')] == [
        (tb(('é.py', 7)), 12345678901, 9),
        (tb(('b.py', 1)), 66, 1),
        (tb(('a.py', 2)), 10, 1),
        (tb(('<unknown>', 0)), 7, 1),
        (tb(('a.py', 5)), 2, 3),
    ]
    assert [t.traceback[-1].name for t in back.traces] == ['f', 'g', None, None, 'ü']
    with open(GOLDEN_V1, "rb") as f:
        assert _core._tsnap_dumps(back._handle) == f.read()


def test_pickle_round_trip():
    import pickle
    snap = rich_snapshot()
    back = pickle.loads(pickle.dumps(snap))
    assert list(back.traces) == list(snap.traces) and back.is_peak
    assert back.statistics('traceback') == snap.statistics('traceback')


def test_dump_load_empty(tmp_path):
    path = tmp_path / "empty.htt"
    Snapshot([], 1).dump(path)
    back = Snapshot.load(path)
    assert len(back) == 0 and back.statistics('lineno') == [] and back.traceback_limit == 1


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        Snapshot.load(tmp_path / "missing.htt")
    with pytest.raises(OSError):
        Snapshot.load(tmp_path)
    bad = tmp_path / "bad.htt"
    bad.write_bytes(b"not a snapshot at all, just text\n")
    with pytest.raises(HeaptrailError, match="bad magic"):
        Snapshot.load(bad)
    data = bytearray(_core._tsnap_dumps(rich_snapshot()._handle))
    data[8] = 2
    bad.write_bytes(fix_checksum(bytes(data)))
    with pytest.raises(HeaptrailError, match="unsupported trace snapshot version"):
        Snapshot.load(bad)


def fnv(data):
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def fix_checksum(data):
    body = data[:-10]
    return body + b"\x00\x08" + struct.pack("<Q", fnv(body))


def exercise(handle):
    """Everything a loaded snapshot offers must work on whatever loaded."""
    snap = Snapshot._from_handle(handle)
    for key in ('lineno', 'filename', 'traceback'):
        snap.statistics(key)
        snap.compare_to(snap, key)
    snap.statistics('lineno', cumulative=True)
    snap.filter_traces([Filter(False, '*', all_frames=True), DomainFilter(True, 0)])
    list(snap.traces)
    _core._tsnap_dumps(handle)


def test_every_truncation_is_an_error():
    data = _core._tsnap_dumps(rich_snapshot()._handle)
    for n in range(len(data)):
        with pytest.raises(HeaptrailError):
            _core._tsnap_loads(data[:n])
    _core._tsnap_loads(data)


def test_random_byte_flips_are_errors():
    data = _core._tsnap_dumps(rich_snapshot()._handle)
    rng = random.Random(4)
    for _ in range(200):
        x = bytearray(data)
        x[rng.randrange(len(x))] ^= rng.randrange(1, 256)
        with pytest.raises(HeaptrailError):
            _core._tsnap_loads(bytes(x))


def test_damage_behind_a_valid_checksum_is_validated():
    # the checksum catches accidents; the field checks must still hold when
    # the checksum is recomputed (a crafted file): error or a usable snapshot
    data = _core._tsnap_dumps(rich_snapshot()._handle)
    rng = random.Random(5)
    loaded = failed = 0
    for i in range(12, len(data) - 10):
        for flip in (rng.randrange(1, 256), 0x80):
            x = bytearray(data)
            x[i] ^= flip
            try:
                handle = _core._tsnap_loads(fix_checksum(bytes(x)))
            except HeaptrailError:
                failed += 1
                continue
            loaded += 1
            exercise(handle)
    assert failed > 0 and loaded > 0
    # every section truncated behind a valid checksum
    for n in range(12, len(data) - 10):
        with pytest.raises(HeaptrailError):
            _core._tsnap_loads(fix_checksum(data[:n] + b"\0" * 10))


def test_huge_counts_do_not_allocate():
    # a strings section claiming 2**60 entries in a tiny file is refused by
    # the count check before anything is allocated
    meta = b"\x01\x05\x01\x00\x00\x00\x00"
    strings = b"\x02\x0a" + b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"
    body = b"HTTRSNP\n" + struct.pack("<I", 1) + meta + strings
    with pytest.raises(HeaptrailError, match="damaged"):
        _core._tsnap_loads(body + b"\x00\x08" + struct.pack("<Q", fnv(body)))


def test_c_views_leak_no_python_objects():
    # the stdlib tracer sees every Python object the C views create: after a
    # warm-up, repeating a call must leave none behind (one leaked tuple per
    # call would add >= 40 B x 2000)
    snap, other = rich_snapshot(), Snapshot(RAW2, 5)
    h, o = snap._handle, other._handle
    data = _core._tsnap_dumps(h)
    spec = Filter(True, 'a*', all_frames=True)._spec(h.filenames())

    def bad_load():
        try:
            _core._tsnap_loads(data[:40])
        except HeaptrailError:
            pass

    calls = [lambda: _core._tsnap_statistics(h, 'lineno'),
             lambda: _core._tsnap_statistics(h, 'filename', True),
             lambda: _core._tsnap_statistics(h, 'traceback'),
             lambda: _core._tsnap_compare(h, o, 'traceback'),
             lambda: _core._tsnap_compare(o, h, 'filename'),
             lambda: _core._tsnap_filter(h, [spec]),
             lambda: _core._tsnap_loads(data), bad_load,
             lambda: (h.stack(-1), h.stack(0), h.trace(3), h.info(), h.filenames())]
    for call in calls:
        call()
        std.start()
        try:
            call()
            before = std.get_traced_memory()[0]
            for _ in range(2000):
                call()
            after = std.get_traced_memory()[0]
        finally:
            std.stop()
        assert after - before < 4096


# ---- with the real engine: peak and sampled snapshots through the views --------

@pytest.fixture
def tracer():
    from heaptrail import tracer
    if std.is_tracing():
        std.stop()
    yield tracer
    tracer.stop()


def allocate_and_free_8mb():
    line = sys._getframe().f_lineno + 1
    big = bytearray(8 << 20)
    del big
    return line


def test_peak_snapshot_views(tracer, tmp_path):
    tracer.start(frames=4)
    line = allocate_and_free_8mb()
    here = os.path.abspath(__file__)
    peak = tracer.peak_snapshot()
    now = tracer.take_snapshot()
    assert peak.is_peak and not now.is_peak
    at_peak = {(s.traceback[0].filename, s.traceback[0].lineno): s for s in peak.statistics('lineno')}
    # the bytearray object and its 8 MiB buffer
    assert at_peak[(here, line)].size == sys.getsizeof(bytearray(8 << 20))
    assert at_peak[(here, line)].count == 2
    assert all((s.traceback[0].filename, s.traceback[0].lineno) != (here, line)
               for s in now.statistics('lineno'))
    diff = now.compare_to(peak, 'lineno')[0]
    assert (diff.traceback[0].filename, diff.traceback[0].lineno) == (here, line)
    assert diff.size == 0 and diff.size_diff <= -(8 << 20) and diff.count_diff == -2
    assert peak.traced_memory[1] >= 8 << 20
    path = tmp_path / "peak.htt"
    peak.dump(path)
    back = Snapshot.load(path)
    assert back.is_peak and back.statistics('traceback') == peak.statistics('traceback')


def test_sampled_snapshot_views(tracer):
    tracer.start(frames=2, sample=64 * 1024)
    keep = [bytearray(256 * 1024) for _ in range(64)]   # each block is almost surely sampled
    snap = tracer.take_snapshot()
    assert snap.sample_interval == 64 * 1024
    here = os.path.abspath(__file__)
    stats = [s for s in snap.statistics('lineno') if s.traceback[0].filename == here]
    top = stats[0]
    # a block of s bytes sampled with p = 1 - exp(-s/interval) weighs 1/p
    assert top.count >= 50 and top.size >= 50 * 256 * 1024
    assert all(t.count >= 1 for t in snap.traces)
    del keep
