"""heaptrail.tracer: exact attribution of known allocations, peak state,
depth limit, sampling estimates, errors, fork, exit, tracemalloc beside us."""
import os
import sys

import pytest

import heaptrail
from heaptrail import _core, tracer

from conftest import run_python

HERE = os.path.abspath(__file__)


class Slotted:
    __slots__ = ("a", "b")


class WithDict:
    def __init__(self):
        self.x = 1


def _line_of(func, marker):
    """Line number in this file of the line of `func` containing marker."""
    import inspect
    lines, start = inspect.getsourcelines(func)
    for i, text in enumerate(lines):
        if marker in text:
            return start + i
    raise AssertionError(marker)


def allocate_known():
    big = bytes(10_000_000)  # BIG
    objs = [None] * 1000
    for i in range(1000):
        objs[i] = Slotted()  # INSTANCES
    return big, objs


@pytest.fixture(autouse=True, params=["applied", "logged"])
def books_mode(request):
    """Every test twice: full tracing applying each operation at once (the
    default below 32768 records), and logging operations and applying them
    in batches (what big heaps get): the figures must be the same."""
    old = _core._tracer_defer_min(0 if request.param == "logged" else 2**32 - 1)
    yield request.param
    _core._tracer_defer_min(old)


def _stat_at(stats, line):
    found = [s for s in stats if s.traceback[-1].filename == HERE and s.traceback[-1].lineno == line]
    assert len(found) == 1, [str(s) for s in stats[:10]]
    return found[0]


def test_exact_attribution(tracing):
    keep = allocate_known()
    snap = tracer.take_snapshot()
    stats = snap.statistics("lineno")
    big = _stat_at(stats, _line_of(allocate_known, "# BIG"))
    assert big.count == 1
    assert big.size == sys.getsizeof(keep[0])  # 10_000_000 + the bytes header
    inst = _stat_at(stats, _line_of(allocate_known, "# INSTANCES"))
    assert inst.count == 1000
    assert inst.size == 1000 * sys.getsizeof(keep[1][0])  # getsizeof counts the GC header
    # the top statistic is the big block, and the snapshot agrees with the counters
    assert stats[0] is not None and stats[0].size == big.size
    assert snap.total_size == snap.traced_memory[0]
    current, peak = tracer.get_traced_memory()
    assert current >= big.size + inst.size and peak >= current


def test_compare_to_shows_exactly_the_added_blocks(tracing):
    before = tracer.take_snapshot()
    added = [Slotted() for _ in range(500)]  # ADDED
    after = tracer.take_snapshot()
    line = _line_of(test_compare_to_shows_exactly_the_added_blocks, "# ADDED")
    diffs = [d for d in after.compare_to(before, "lineno")
             if d.traceback[-1].filename == HERE and d.traceback[-1].lineno == line]
    assert len(diffs) == 1
    per = sys.getsizeof(added[0])
    # 500 instances plus the list built on that line (object and item array)
    assert diffs[0].count_diff >= 500 and diffs[0].count_diff <= 503
    assert diffs[0].size_diff >= 500 * per
    assert diffs[0].size_diff <= 500 * per + sys.getsizeof(added) + 64


def make_objects():
    a = Slotted()  # SLOTTED
    b = WithDict()  # WITHDICT
    c = bytearray(1000)  # NONGC
    return a, b, c


def test_get_object_traceback_names_the_allocating_line(tracing):
    objs = make_objects()
    for obj, marker in zip(objs, ("# SLOTTED", "# WITHDICT", "# NONGC")):
        tb = tracer.get_object_traceback(obj)
        assert tb is not None, marker
        assert tb[-1].filename == HERE
        assert tb[-1].lineno == _line_of(make_objects, marker)
        assert tb[-1].name == "make_objects"
        # the caller is the frame before it
        assert tb[-2].name == "test_get_object_traceback_names_the_allocating_line"
    assert tracer.get_object_traceback(12345) is None  # small ints are not allocated


def recurse(n, out):
    if n == 0:
        out.append(Slotted())  # LEAF
        return
    recurse(n - 1, out)  # RECURSE


@pytest.mark.parametrize("frames, depth", [(1, 30), (10, 50), (128, 200)])
def test_depth_limit_keeps_the_innermost_frames(frames, depth):
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    tracer.start(frames=frames)
    try:
        assert tracer.get_traceback_limit() == frames
        out = []
        recurse(depth, out)
        tb = tracer.get_object_traceback(out[0])
    finally:
        tracer.stop()
    assert len(tb) == frames
    assert tb[-1].lineno == _line_of(recurse, "# LEAF")
    assert all(f.lineno == _line_of(recurse, "# RECURSE") for f in tb[:-1])


def test_new_limit_while_tracing_applies_to_later_stacks():
    tracer.start(frames=128)
    try:
        out = []
        recurse(20, out)
        assert len(tracer.get_object_traceback(out[0])) > 22  # 21 recurse frames, the test, pytest
        tracer.start(frames=4)  # like tracemalloc.start(n) while tracing: a new limit
        assert tracer.get_traceback_limit() == 4
        recurse(20, out)
        tb = tracer.get_object_traceback(out[1])
        assert len(tb) == 4
        assert tb[-1].lineno == _line_of(recurse, "# LEAF")
    finally:
        tracer.stop()


def temporary_peak():
    tmp = bytes(20_000_000)  # TEMP
    del tmp


def test_peak_snapshot_shows_a_freed_temporary(tracing):
    tracer.clear()
    temporary_peak()
    line = _line_of(temporary_peak, "# TEMP")
    now = tracer.take_snapshot()
    assert not [s for s in now.statistics("lineno") if s.traceback[-1].lineno == line
                and s.traceback[-1].filename == HERE]
    peak = tracer.peak_snapshot()
    assert peak.is_peak
    top = peak.statistics("lineno")[0]
    assert (top.traceback[-1].filename, top.traceback[-1].lineno) == (HERE, line)
    assert top.size == 20_000_000 + sys.getsizeof(b"")
    # the peak snapshot holds exactly the peak's bytes
    assert peak.total_size == peak.traced_memory[1] == tracer.get_traced_memory()[1]
    tracer.reset_peak()
    current, peak_now = tracer.get_traced_memory()
    assert peak_now == current
    assert tracer.peak_snapshot().statistics("lineno")[0].size < 20_000_000


def test_clear_resets_the_counters(tracing):
    keep = bytes(5_000_000)
    assert tracer.get_traced_memory()[0] >= 5_000_000
    tracer.clear()
    assert tracer.get_traced_memory()[0] < 100_000
    assert tracer.get_object_traceback(keep) is None
    assert len(tracer.take_snapshot().traces) < 1000


def test_stats_and_own_memory(tracing):
    keep = [Slotted() for _ in range(10_000)]
    st = tracer.stats()
    assert st["live_blocks"] >= 10_000
    assert st["sample"] == 0 and st["frames"] == 128 and st["lost"] == 0
    own = tracer.get_tracemalloc_memory()
    assert st["memory"] > 10_000 * 16 and abs(own - st["memory"]) < 0.1 * own
    assert keep


def test_sampling_estimates_the_allocated_bytes():
    # 32768 blocks of 64 KiB (2 GiB in all, allocated and freed one by one):
    # at 512 KiB each block is sampled with p = 1 - exp(-1/8) = 0.1175, and
    # the relative standard error of the total is sqrt((1-p)/(p*N)) = 1.5%,
    # so 10% is more than six standard errors.
    n, size = 32768, 65536
    tracer.start(sample=512 * 1024)
    try:
        for _ in range(n):
            b = bytes(size - sys.getsizeof(b""))
            del b
        st = tracer.stats()
    finally:
        tracer.stop()
    truth = n * size
    assert abs(st["allocated"] - truth) < 0.10 * truth, (st["allocated"], truth)


def live_blocks():
    return [bytes(4 * 1024 * 1024) for _ in range(20)]  # LIVE


def test_sampling_live_estimate_and_snapshot():
    # blocks of 4 MiB are sampled with p = 1 - exp(-32): exact in practice (at
    # 512 KiB, p = 1 - exp(-8) missed one of the 20 blocks in ~0.7% of runs)
    tracer.start(sample=128 * 1024)
    try:
        keep = live_blocks()
        current, peak = tracer.get_traced_memory()
        snap = tracer.take_snapshot()
    finally:
        tracer.stop()
    truth = sum(sys.getsizeof(b) for b in keep)
    assert abs(current - truth) < 0.02 * truth
    assert peak >= current
    assert snap.sample_interval == 128 * 1024
    top = snap.statistics("lineno")[0]
    assert top.traceback[-1].lineno == _line_of(live_blocks, "# LIVE")
    assert abs(top.size - truth) < 0.02 * truth


def test_errors():
    with pytest.raises(heaptrail.HeaptrailError, match="frames"):
        tracer.start(frames=-1)  # 0 is valid: counting only (lines)
    with pytest.raises(heaptrail.HeaptrailError, match="sample"):
        tracer.start(sample=-5)
    with pytest.raises(TypeError):
        tracer.start(frames="many")
    assert not tracer.is_tracing()
    with pytest.raises(heaptrail.HeaptrailError, match="not tracing"):
        tracer.take_snapshot()
    with pytest.raises(heaptrail.HeaptrailError, match="not tracing"):
        tracer.peak_snapshot()
    assert tracer.get_object_traceback(object()) is None
    tracer.stop()  # stopping twice is harmless
    tracer.start(sample=1024)
    try:
        with pytest.raises(heaptrail.HeaptrailError, match="already tracing"):
            tracer.start(sample=2048)
    finally:
        tracer.stop()


def test_refuses_to_start_beside_tracemalloc():
    import tracemalloc
    tracemalloc.start()
    try:
        with pytest.raises(heaptrail.HeaptrailError, match="tracemalloc is tracing"):
            tracer.start()
        assert not tracer.is_tracing()
    finally:
        tracemalloc.stop()


def test_tracemalloc_started_after_us_chains_without_corruption():
    run_python("""
        import tracemalloc
        from heaptrail import tracer
        tracer.start()
        tracemalloc.start()
        a = [bytes(1000) for _ in range(100)]
        tm = tracemalloc.take_snapshot()
        assert sum(s.size for s in tm.statistics("filename")) > 100_000
        assert tracer.get_traced_memory()[0] > 100_000
        tracer.stop()                      # tracemalloc is on top: ours become a pass-through
        b = [bytes(1000) for _ in range(100)]
        del a
        assert tracemalloc.get_traced_memory()[0] > 100_000
        tracemalloc.stop()
        tracer.start()                     # our hooks are back on top
        c = bytes(3_000_000)
        assert tracer.get_traced_memory()[0] >= 3_000_000
        del b, c
        tracer.stop()
        print("ok")
    """)


def test_fork_child_traces_a_fresh_state_parent_unaffected():
    proc = run_python("""
        import os, sys
        from heaptrail import tracer
        tracer.start()
        parent_keep = bytes(8_000_000)
        before = tracer.get_traced_memory()[0]
        pid = os.fork()
        if pid == 0:
            ok = tracer.is_tracing()
            ok = ok and tracer.get_traced_memory()[0] < 1_000_000   # inherited traces dropped
            child_keep = bytes(2_000_000)
            cur = tracer.get_traced_memory()[0]
            ok = ok and 2_000_000 <= cur < 3_000_000
            snap = tracer.take_snapshot()
            ok = ok and snap.statistics("lineno")[0].size >= 2_000_000
            tracer.stop()
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        after = tracer.get_traced_memory()[0]
        assert after >= 8_000_000 and abs(after - before) < 1_000_000, (before, after)
        assert tracer.get_object_traceback(parent_keep) is not None
        tracer.stop()
        print("ok")
    """)
    assert proc.stdout.strip() == "ok"


def test_interpreter_exit_while_tracing():
    proc = run_python("""
        import threading
        from heaptrail import tracer
        def spin():
            while True:
                x = [bytes(100) for _ in range(100)]
        tracer.start()
        threading.Thread(target=spin, daemon=True).start()
        keep = [dict(a=i) for i in range(10_000)]
        print("exiting")
    """)
    assert proc.returncode == 0 and proc.stdout.strip() == "exiting"
    proc = run_python("""
        from heaptrail import tracer
        tracer.start(sample=4096)
        keep = [dict(a=i) for i in range(10_000)]
    """)
    assert proc.returncode == 0


@pytest.mark.noasan
def test_start_stop_many_times_leaks_nothing():

    def rss_kib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

    def cycle(k):
        for i in range(k):
            tracer.start(frames=8 if i % 2 else 128, sample=None if i % 3 else 65536)
            x = [Slotted() for _ in range(50)]
            tracer.take_snapshot() if i % 50 == 0 else None
            tracer.stop()
            del x

    cycle(100)
    base = rss_kib()
    cycle(1000)
    grown = rss_kib() - base
    assert grown < 2048, grown


def _callee():
    return Slotted()  # CALLEE


def _two_sites(out, n):
    for i in range(n):
        if i % 2:
            out.append(_callee())  # SITE-ODD
        else:
            out.append(_callee())  # SITE-EVEN


def _via_a(out, n):
    _two_sites(out, n)


def _via_b(out, n):
    _two_sites(out, n)


def test_attribution_survives_frame_reuse(tracing):
    # frame objects are freed and their memory reused at every call: the
    # frame cache must never hand a new frame an old frame's callers
    out, n = [], 500
    for j in range(10):
        (_via_a if j % 2 else _via_b)(out, n)
    odd = _line_of(_two_sites, "# SITE-ODD")
    even = _line_of(_two_sites, "# SITE-EVEN")
    for idx, obj in enumerate(out):
        tb = tracer.get_object_traceback(obj)
        i, j = idx % n, idx // n
        assert tb[-1].lineno == _line_of(_callee, "# CALLEE")
        assert tb[-2].lineno == (odd if i % 2 else even)
        assert tb[-3].name == ("_via_a" if j % 2 else "_via_b")
