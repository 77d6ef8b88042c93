"""Capture file: writer throughput and size, and the reporters' speed and
memory on a synthetic capture.

Synthetic events come from _core._capture_bench_write (C, no Python object per
event): allocations of 16..4111 bytes over 500 stacks, each freed 1024
allocations later (so ~1024 blocks live), half allocations, half frees.

The comparison with memray on a real program (capture bytes per million
allocation events, flame graph and table times from each tool's capture) is
benchmarks/cases/run.py; these cases measure the file format and the
reporters alone, up to the 100-million-event capture whose reporter memory
must stay bounded.
"""
import os
import tempfile

from harness import Case, Tool

N_WRITE = 2_000_000
N_READ = 2_000_000
N_BIG = 100_000_000


def _write(n):
    from heaptrail import _core

    # one file per size, overwritten by each run: the disk use stays bounded
    path = os.path.join(tempfile.gettempdir(), f"heaptrail-bench-{n}.htcap")
    _core._capture_bench_write(path, n)
    return path


def _write_case(path_holder):
    from heaptrail import _core

    _core._capture_bench_write(path_holder, N_WRITE)
    return {"events": N_WRITE, "bytes_per_million_events": round(os.path.getsize(path_holder) * 1e6 / N_WRITE)}


def _table(path):
    from heaptrail import capture

    cap = capture.open(path)
    rows = cap.rows("peak", by="line", top=20)
    return {"allocations": cap.allocations, "peak_bytes": cap.peak_bytes, "rows": len(rows)}


def _flamegraph(path):
    from heaptrail import capture
    from heaptrail.commands.flamegraph import flamegraph_html

    cap = capture.open(path)
    return {"html_bytes": len(flamegraph_html(cap, "peak")), "peak_bytes": cap.peak_bytes}


def _pprof(path):
    from heaptrail import capture

    return {"pprof_bytes": len(capture.open(path).pprof("peak"))}


CASES = [
    Case(
        name="capture-write",
        description=f"write {N_WRITE:,} synthetic events (half allocs, half frees) through the C writer",
        make_input=lambda: os.path.join(tempfile.gettempdir(), "heaptrail-bench-write.htcap"),
        tools=[Tool("heaptrail", _write_case, requires=["heaptrail"])],
        repeat=5,
    ),
    Case(
        name="capture-report",
        description=f"table, flame graph and pprof from a {N_READ:,}-event capture (2 streaming passes; flame graph 3: its timeline)",
        make_input=lambda: _write(N_READ),
        tools=[
            Tool("heaptrail", _table, requires=["heaptrail"]),
            Tool("heaptrail flamegraph", _flamegraph, requires=["heaptrail"]),
            Tool("heaptrail pprof", _pprof, requires=["heaptrail"]),
        ],
        repeat=5,
    ),
    Case(
        name="capture-report-big",
        description=f"table from a {N_BIG:,}-event capture: reporter memory stays bounded (peak RSS column)",
        make_input=lambda: _write(N_BIG),
        tools=[Tool("heaptrail", _table, requires=["heaptrail"])],
        repeat=1,
    ),
]
