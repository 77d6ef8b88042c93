"""Line profiler overhead: a function with a hot loop of 1,000,000 iterations
and some allocating lines (benchmarks/workloads/hot_lines.py), unprofiled
(baseline "none"), under memory_profiler's @profile (skipped when not
installed) and under heaptrail's @profile. Both profilers write their tables
to /dev/null; the tracer (counting only) is started when the function is
decorated, outside the timed runs, as is memory_profiler's import.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from harness import Case, Tool  # noqa: E402


def _input():
    from workloads import hot_lines
    return hot_lines


def _none(mod):
    return mod.build()()


_built = {}


def _profiled(key, make_decorator):
    def fn(mod):
        f = _built.get(key)
        if f is None:  # decorated once per child: registration is setup, not work
            f = _built[key] = mod.build(make_decorator())
        return f()
    return fn


def _memory_profiler():
    from memory_profiler import profile
    return profile(stream=open(os.devnull, "w"))


def _heaptrail():
    from heaptrail import lines
    return lines.profile(stream=open(os.devnull, "w"))


CASES = [
    Case("lines-hot-loop",
         "@profile on a function with a 1,000,000-iteration loop and allocating lines",
         _input,
         [Tool("none", _none),
          Tool("memory_profiler", _profiled("mp", _memory_profiler), requires=("memory_profiler",)),
          Tool("heaptrail", _profiled("ht", _heaptrail), requires=("heaptrail",))],
         repeat=3, baseline="none"),
]
