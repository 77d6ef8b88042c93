"""Adversarial review of the allocation tracer: defects found by small real
programs, each checked against what the program really did."""
import gc
import weakref

import pytest

from heaptrail import tracer

TEMPLATE = "x = [bytearray(10) for _ in range(3)]\nkeep = bytearray(1000)\n"


def _lines(snap, filename):
    # line 0: 3.13 allocates a code object's own data when it first runs
    # (at its RESUME, line 0), live as long as the code
    return {s.traceback[0].lineno: (s.size, s.count) for s in snap.statistics("lineno")
            if s.traceback[0].filename == filename and s.traceback[0].lineno != 0}


def test_recompiled_code_is_not_kept_alive(tracing):
    # The trie's nodes held a strong reference to every code object they
    # named: a program compiling the same source again and again kept every
    # copy (and its constants) alive, traced as live blocks, and the trie
    # grew by a node per frame and copy.
    refs = []
    for i in range(200):  # i stays a cached small int
        code = compile(TEMPLATE, "<tmpl>", "exec")
        exec(code, {})
        refs.append(weakref.ref(code))
        del code
        if i in (49, 199):
            stacks = tracer.stats()["stacks"]
            if i == 49:
                stacks_after_50 = stacks
    gc.collect()
    # the first copy names the nodes; every other one died
    assert refs[0]() is not None
    assert sum(r() is not None for r in refs[1:]) == 0
    # each copy added at least three nodes (module, comprehension, both
    # lines); now a new node is only a new allocation site (a list growing)
    assert stacks - stacks_after_50 < 150
    assert _lines(tracer.take_snapshot(), "<tmpl>") == {}


def test_recompiled_code_keeps_its_own_lines(tracing):
    # Copies share nodes only when they render the same frames: same file,
    # same name, same line table.
    keep = []
    for _ in range(3):
        ns = {}
        exec(compile("a = bytearray(1000)\n", "<same>", "exec"), ns)
        keep.append(ns)
        ns = {}
        exec(compile("\n\nb = bytearray(2000)\n", "<same>", "exec"), ns)
        keep.append(ns)
        ns = {}
        exec(compile("a = bytearray(3000)\n", "<other>", "exec"), ns)
        keep.append(ns)
    snap = tracer.take_snapshot()
    size = bytearray.__basicsize__
    assert _lines(snap, "<same>") == {1: (3 * (1001 + size), 6), 3: (3 * (2001 + size), 6)}
    assert _lines(snap, "<other>") == {1: (3 * (3001 + size), 6)}
    assert len(keep) == 9


def test_compat_traceback_limit_kept_after_stop():
    # tracemalloc.get_traceback_limit() is the last nframe given to start(),
    # tracing or not; the compat face said 1 once stopped.
    import tracemalloc as stdlib
    from heaptrail import tracemalloc as compat
    try:
        for tm in (stdlib, compat):
            tm.start(7)
            tm.stop()
        assert compat.get_traceback_limit() == stdlib.get_traceback_limit() == 7
    finally:
        for tm in (stdlib, compat):  # back to the default limit, stopped
            tm.stop()
            tm.start(1)
            tm.stop()


def test_thread_stats_keep_apart_threads_that_reuse_an_ident(tracing):
    # A thread that starts after another ended usually gets its ident (a
    # pthread id is the address of its stack): the tracer added them up
    # into one row whose peak no thread ever reached.
    import threading
    keep, idents = [], []

    def work(n):
        idents.append(threading.get_ident())
        keep.append(bytearray(n))

    for i, n in enumerate((1_000_000, 2_000_000, 3_000_000)):
        t = threading.Thread(target=work, args=(n,), name="worker-%d" % i)
        t.start()
        t.join()
    rows = {r["ident"]: [] for r in tracer.thread_stats()}
    for r in tracer.thread_stats():
        rows[r["ident"]].append(r)
    for ident, n in zip(idents, (1_000_000, 2_000_000, 3_000_000)):
        # this thread's row: the one holding its own bytearray and no other's
        assert any(n <= r["peak"] < n + 100_000 and r["name"] == "<ended>" for r in rows[ident])
    if len(set(idents)) < 3:  # an ident was reused: its rows are kept apart
        assert max(len(v) for v in rows.values()) >= 2
    assert len(keep) == 3


def test_thread_slots_stay_bounded_when_threads_come_and_go(tracing):
    # Threads that reuse an ident are kept apart only while the old one's
    # blocks live: a program starting thread after thread must not grow the
    # per-thread table by one row per thread.
    import threading

    def work():
        del bytearray(10_000)[:]

    for _ in range(200):
        t = threading.Thread(target=work)
        t.start()
        t.join()
    assert len(tracer.thread_stats()) < 20


def test_code_with_a_str_subclass_file_name(tracing):
    # code.replace() takes a str subclass for a name: canonicalizing code
    # objects must not call its __hash__ or __eq__ (Python code, in a hook).
    calls = []

    class Name(str):
        def __hash__(self):
            calls.append("hash")
            return str.__hash__(self)

        def __eq__(self, other):
            calls.append("eq")
            return str.__eq__(self, other)

    code = compile("b = bytearray(5000)\n", "<plain>", "exec").replace(co_filename=Name("<sub>"))
    ns = {}
    exec(code, ns)
    exec(code.replace(), ns)
    assert calls == []
    assert _lines(tracer.take_snapshot(), "<sub>") == {1: (5001 + bytearray.__basicsize__, 2)}
