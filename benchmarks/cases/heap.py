"""Heap snapshot + summary by type on a heap of 1,000,000 user objects, against guppy3's
hpy().heap() and pympler's summary.summarize(muppy.get_objects()), with gc.get_objects() alone
as the floor. Targets (issue 3): >= 10x faster than guppy3, >= 30x faster than pympler.
guppy3's hpy().heap() runs gc.collect() first (in View.heap). heaptrail's default
(gc_first=True) leaves garbage out too, but walks first and collects (then walks again) only
when the walk found cyclic garbage: this heap has none, so the "heaptrail" row is one walk.
"heaptrail, 1,000 garbage cycles" is the other case (collection + two walks);
"heaptrail gc_first=False" is the walk that keeps garbage in, and "gc.collect (alone)" what a
collection costs by itself on this heap.

Floors, to read the walk's time against: "gc.get_objects (floor)" is what listing the tracked
objects costs in Python (the issue asks for it; the walk visits them in place instead, see
_core/gcvisit.h); "touch floor" (heaptrail._core.heap_touch_floor) is the memory traffic no walk
can avoid: every tracked object visited as the walk visits them and traversed, the header of
every edge's target read, in C, with no index and nothing recorded. The rest of the walk's time
is the address index (one lookup per edge), recording (sizes, values, labels) and the pages its
arrays take from the kernel; see the "Speed" note at the top of src/heaptrail/_core/heap.c.

Extra figures (heaptrail row): snapshot memory per object and per edge, file size, save and
load times.
"""
import gc
import os
import sys
import tempfile
import time
import types

from harness import Case, Tool

N_ITEMS = 200_000  # x5 user objects: the instance, its name str, a list, a dict, an int str


class Record:
    def __init__(self, i):
        self.name = f"record-{i}"
        self.tags = [str(i)]
        self.meta = {"i": i}
        self.__dict__  # a materialized instance __dict__ (the heavy case for every tool)


def make_heap():
    mod = types.ModuleType("bench_heap_objects")
    sys.modules[mod.__name__] = mod
    mod.RECORDS = [Record(i) for i in range(N_ITEMS)]
    return {"module": mod.__name__}


def heaptrail_snapshot_summary(inp):
    import heaptrail

    snap = heaptrail.snapshot()  # the default: garbage left out, as a user would run it
    rows = snap.summary()
    return {"objects": snap.objects, "kinds": len(rows)}


def heaptrail_with_garbage(inp):
    import heaptrail

    for i in range(1000):  # cyclic garbage: the snapshot must collect and walk again
        a, b = Record(i), Record(i)
        a.peer, b.peer = b, a
    del a, b
    snap = heaptrail.snapshot()
    rows = snap.summary()
    return {"objects": snap.objects, "kinds": len(rows)}


def heaptrail_no_collect(inp):
    import heaptrail

    snap = heaptrail.snapshot(gc_first=False)  # the walk alone, no collection first
    rows = snap.summary()
    return {"objects": snap.objects, "kinds": len(rows)}


def guppy_heap(inp):
    from guppy import hpy

    h = hpy().heap()
    return {"objects": h.count, "kinds": len(h.bytype)}


def pympler_summary(inp):
    from pympler import muppy, summary

    rows = summary.summarize(muppy.get_objects())
    return {"kinds": len(rows)}


def gc_floor(inp):
    return {"objects": len(gc.get_objects())}


def touch_floor(inp):
    from heaptrail import _core

    objects, edges, _ = _core.heap_touch_floor()
    return {"objects": objects, "edges": edges}


def gc_collect_alone(inp):
    return {"collected": gc.collect()}


def heaptrail_figures(inp):
    import heaptrail

    snap = heaptrail.snapshot()
    mu = snap.memory_usage()
    fd, path = tempfile.mkstemp(suffix=".htsnap")
    os.close(fd)
    try:
        t0 = time.perf_counter()
        snap.save(path)
        t1 = time.perf_counter()
        back = heaptrail.load(path)
        t2 = time.perf_counter()
        size = os.path.getsize(path)
    finally:
        os.unlink(path)
    assert back.objects == snap.objects
    return {"objects": mu["objects"], "edges": mu["edges"],
            "bytes_per_object": round(mu["bytes_per_object"], 1),
            "bytes_per_edge": round(mu["bytes_per_edge"], 1),
            "string_bytes": mu["string_bytes"], "file_bytes": size,
            "file_bytes_per_object": round(size / mu["objects"], 1),
            "save_s": round(t1 - t0, 3), "load_s": round(t2 - t1, 3)}


CASES = [
    Case(
        name="heap_snapshot_summary",
        description="snapshot + summary by type, 1,000,000 user objects "
                    "(vs guppy3 hpy().heap(), pympler summarize(muppy.get_objects()))",
        make_input=make_heap,
        tools=[
            Tool("heaptrail", heaptrail_snapshot_summary, requires=("heaptrail",)),
            Tool("heaptrail, 1,000 garbage cycles", heaptrail_with_garbage, requires=("heaptrail",)),
            Tool("heaptrail gc_first=False", heaptrail_no_collect, requires=("heaptrail",)),
            Tool("guppy3", guppy_heap, requires=("guppy",)),
            Tool("pympler", pympler_summary, requires=("pympler",)),
            Tool("gc.get_objects (floor)", gc_floor),
            Tool("touch floor (C, no index, nothing recorded)", touch_floor, requires=("heaptrail",)),
            Tool("gc.collect (alone)", gc_collect_alone),
        ],
        repeat=3,
        extra=None,
    ),
    Case(
        name="heap_snapshot_file",
        description="snapshot memory, file size, save + load times (1,000,000 user objects)",
        make_input=make_heap,
        tools=[Tool("heaptrail", heaptrail_figures, requires=("heaptrail",))],
        repeat=1,
    ),
]
