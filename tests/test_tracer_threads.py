"""heaptrail.tracer under threads: exact accounting while 8 threads allocate
and free, per-thread figures with names, threads starting and ending, and
stop()/start() while other threads allocate."""
import threading
import time

import pytest

from heaptrail import _core, tracer

KEEP = {}


def _worker(k, stop_at, barrier):
    barrier.wait()   # stop_at[0] is set by then
    rng = k * 7919
    live = []
    while time.monotonic() < stop_at[0]:
        rng = (rng * 1103515245 + 12345) & 0x7FFFFFFF
        n = 16 + rng % 4000
        live.append(bytes(n))
        live.append({"k": k, "n": n})
        if len(live) > 200:
            del live[: rng % 150]
    # a known amount kept per thread, allocated on this thread
    KEEP[k] = bytes(1_000_000 + 1000 * k)


@pytest.mark.parametrize("sample", [None, 8192, "logged"])
def test_eight_threads_accounting(sample):
    KEEP.clear()
    logged = sample == "logged"  # full tracing, operations logged and applied in batches
    old = _core._tracer_defer_min(0 if logged else 2**32 - 1)
    tracer.start(sample=None if logged else sample)
    try:
        # every worker is alive before any can end: on a loaded machine starting them took
        # longer than their run, and an ended worker's thread ident went to a later one (two
        # rows with one ident: the kept-block check read the other thread's row)
        barrier = threading.Barrier(9)
        stop_at = [0.0]
        threads = [threading.Thread(target=_worker, args=(k, stop_at, barrier),
                                    name="worker-%d" % k) for k in range(8)]
        for t in threads:
            t.start()
        stop_at[0] = time.monotonic() + 1.5
        barrier.wait()
        for t in threads:
            t.join()
        snap = tracer.take_snapshot()
        current, peak = snap.traced_memory
        assert peak >= current > 0
        # the counters are exactly the sum of the live traced blocks
        assert snap.total_size == current
        rows = tracer.thread_stats()
        total, raw = _core._tracer_thread_stats()  # read under one lock
        assert sum(r[1] for r in raw) == total
        workers = {r["name"] for r in rows if r["name"].startswith("worker-")}
        # ended threads are reported, by ident, as "<ended>"
        assert not workers
        ended = [r for r in rows if r["name"] == "<ended>"]
        assert len(ended) >= 1
        assert all(r["peak"] >= r["current"] for r in rows)
        if sample is None or logged:
            # each worker's kept block is attributed to its thread
            by_ident = {t.ident: t for t in threads}
            for r in rows:
                if r["ident"] in by_ident:
                    k = int(by_ident[r["ident"]].name.split("-")[1])
                    assert r["current"] >= 1_000_000 + 1000 * k
            assert current >= sum(len(b) for b in KEEP.values())
    finally:
        tracer.stop()
        _core._tracer_defer_min(old)
    KEEP.clear()


def test_thread_names_while_alive():
    tracer.start()
    ready, done = threading.Event(), threading.Event()
    box = []

    def named():
        box.append(bytes(3_000_000))
        ready.set()
        done.wait(10)

    t = threading.Thread(target=named, name="big-allocator")
    try:
        t.start()
        assert ready.wait(10)
        rows = {r["name"]: r for r in tracer.thread_stats()}
        assert rows["big-allocator"]["current"] >= 3_000_000
        assert rows["big-allocator"]["peak"] >= 3_000_000
        assert rows["MainThread"]["current"] < 3_000_000
    finally:
        done.set()
        t.join()
        tracer.stop()


def test_threads_starting_and_ending_while_tracing():
    tracer.start()
    try:
        for i in range(40):
            t = threading.Thread(target=lambda: [bytes(1000) for _ in range(50)])
            t.start()
            t.join()
        snap = tracer.take_snapshot()
        current, peak = snap.traced_memory
        assert snap.total_size == current
        assert peak >= current + 50 * 1000  # each thread's 50 blocks were live at once
    finally:
        tracer.stop()


@pytest.mark.parametrize("sample", [None, 4096])
def test_stop_and_start_while_threads_allocate(sample):
    stop_flag = threading.Event()

    def churn():
        while not stop_flag.is_set():
            x = [bytes(i % 300) for i in range(200)]
            del x

    threads = [threading.Thread(target=churn) for _ in range(4)]
    tracer.start(sample=sample)
    for t in threads:
        t.start()
    try:
        for _ in range(5):
            time.sleep(0.05)
            tracer.stop()
            time.sleep(0.02)
            tracer.start(sample=sample)
            tracer.clear()
            time.sleep(0.02)
            snap = tracer.take_snapshot()
            assert snap.total_size == snap.traced_memory[0]
    finally:
        tracer.stop()
        stop_flag.set()
        for t in threads:
            t.join()
    assert not tracer.is_tracing()
