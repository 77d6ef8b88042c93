"""Allocation tracer overhead: each tool traces the same workload; baseline
"none" runs it untraced, so each ratio is the tool's overhead (wall time and,
in the table's RSS column, the child's peak RSS).

Tools: none, stdlib tracemalloc with 1 and 25 frames, memray (in-process
Tracker writing to a temp file, default and with trace_python_allocators;
skipped when not installed), heaptrail full (frames=128) and heaptrail
sampled (512 KiB).
"""
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from harness import Case, Tool  # noqa: E402


def _workload(name):
    import importlib
    sys.setrecursionlimit(10000)
    return importlib.import_module("workloads." + name)


def _none(mod):
    return mod.run()


def _tracemalloc(frames):
    def fn(mod):
        import tracemalloc
        tracemalloc.start(frames)
        try:
            return mod.run()
        finally:
            tracemalloc.stop()
    return fn


def _memray(python_allocators):
    def fn(mod):
        import memray
        with tempfile.TemporaryDirectory() as d:
            with memray.Tracker(os.path.join(d, "capture.bin"),
                                trace_python_allocators=python_allocators):
                return mod.run()
    return fn


def _heaptrail(sample):
    def fn(mod):
        from heaptrail import tracer
        tracer.start(frames=128, sample=sample)
        try:
            return mod.run()
        finally:
            tracer.stop()
    return fn


def _tools():
    return [
        Tool("none", _none),
        Tool("tracemalloc-1", _tracemalloc(1)),
        Tool("tracemalloc-25", _tracemalloc(25)),
        # memray's default sees only the system allocator (pymalloc's arenas, big
        # blocks); with trace_python_allocators it sees every block, like us
        Tool("memray", _memray(False), requires=("memray",)),
        Tool("memray-pyalloc", _memray(True), requires=("memray",)),
        Tool("heaptrail-full", _heaptrail(None), requires=("heaptrail",)),
        Tool("heaptrail-sampled-512k", _heaptrail(512 * 1024), requires=("heaptrail",)),
    ]


CASES = [
    Case("tracer-alloc-heavy",
         "instances, dicts, lists, json round trips (~1.5 s untraced), traced by each tool",
         lambda: _workload("alloc_heavy"), _tools(), repeat=3, baseline="none"),
    Case("tracer-alloc-mixed",
         "alloc_heavy's objects diluted by allocation-free computation, calibrated so that "
         "tracemalloc with 1 frame costs ~4x (the workload issue 4 quotes), traced by each tool",
         lambda: _workload("alloc_mixed"), _tools(), repeat=3, baseline="none"),
    Case("tracer-deep-recursion",
         "allocations 200 frames deep, traced by each tool",
         lambda: _workload("deep_recursion"), _tools(), repeat=3, baseline="none"),
]
