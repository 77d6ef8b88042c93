"""`heaptrail run` beside `memray run`: the allocation-heavy workload
(workloads/alloc_heavy.py) run as a whole program in a subprocess, wall time
against no profiling; capture bytes per million allocations; and the time to
make a flame graph and a table from each tool's capture.

memray's default sees only the system allocator (pymalloc's arenas, big
blocks); `--trace-python-allocators` sees every block, as heaptrail does: both
are measured, the second is the like-for-like one. memray is skipped when not
installed (python3 -m venv /tmp/v311-run && /tmp/v311-run/bin/pip install
memray, then run the benchmarks with that interpreter).
"""
import os
import subprocess
import sys
import tempfile

from harness import Case, Tool

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
SRC = os.path.join(os.path.dirname(BENCH), "src")
TMP = os.path.join(tempfile.gettempdir(), "heaptrail-bench-run")

WORKLOAD = f"""\
import sys
sys.path.insert(0, {BENCH!r})
from workloads import alloc_heavy
print(alloc_heavy.run())
"""


def _script():
    os.makedirs(TMP, exist_ok=True)
    path = os.path.join(TMP, "alloc_heavy_main.py")
    with open(path, "w") as f:
        f.write(WORKLOAD)
    return path


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run(argv):
    subprocess.run([sys.executable, *argv], check=True, env=_env(), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def _none(script):
    _run([script])


def _heaptrail_capture(script, out):
    _run(["-m", "heaptrail", "run", "--quiet", "-o", out, script])


def _memray_capture(script, out, pyalloc):
    if os.path.exists(out):
        os.unlink(out)
    _run(["-m", "memray", "run", "-q", "-f", "-o", out,
          *(["--trace-python-allocators"] if pyalloc else []), script])


def _heaptrail_tool(script):
    out = os.path.join(TMP, "run.htcap")
    _heaptrail_capture(script, out)
    from heaptrail import capture
    cap = capture.open(out)
    return {"capture_bytes": os.path.getsize(out), "allocations": cap.allocations,
            "bytes_per_million_allocations": round(os.path.getsize(out) * 1e6 / max(cap.allocations, 1))}


def _memray_tool(pyalloc):
    def fn(script):
        out = os.path.join(TMP, f"run-{int(pyalloc)}.memray")
        _memray_capture(script, out, pyalloc)
        from memray import FileReader
        n = FileReader(out).metadata.total_allocations
        return {"capture_bytes": os.path.getsize(out), "allocations": n,
                "bytes_per_million_allocations": round(os.path.getsize(out) * 1e6 / max(n, 1))}
    return fn


def _current_format(path):
    """Does path exist, written in this heaptrail's capture format version?
    (A capture kept from an older build is made again.)"""
    if not os.path.exists(path):
        return False
    from heaptrail import _core

    probe = os.path.join(TMP, "probe.htcap")
    _core._capture_write(probe, [])
    with open(probe, "rb") as a, open(path, "rb") as b:
        return a.read(12) == b.read(12)


def _captures():
    """The captures the reporters read: made once, kept in TMP."""
    script = _script()
    ht = os.path.join(TMP, "report.htcap")
    if not _current_format(ht):
        _heaptrail_capture(script, ht)
    mr = os.path.join(TMP, "report.memray")
    try:
        import memray  # noqa: F401
        have_memray = True
    except ImportError:
        have_memray = False
    if have_memray and not os.path.exists(mr):
        _memray_capture(script, mr, True)
    return {"heaptrail": ht, "memray": mr}


def _ht_report(cmd):
    def fn(c):
        out = os.path.join(TMP, "flame.html")
        argv = ["-m", "heaptrail", cmd, c["heaptrail"]] + (["-o", out] if cmd == "flamegraph" else ["--top", "20"])
        _run(argv)
    return fn


def _memray_report(cmd):
    def fn(c):
        out = os.path.join(TMP, f"memray-{cmd}.html")
        _run(["-m", "memray", cmd, "-f", "-o", out, c["memray"]])
    return fn


CASES = [
    Case("run-alloc-heavy",
         "the allocation-heavy workload as a program in a subprocess: untraced, heaptrail run, memray run",
         _script,
         [Tool("none", _none),
          Tool("heaptrail run", _heaptrail_tool, requires=("heaptrail",)),
          Tool("memray run", _memray_tool(False), requires=("memray",)),
          Tool("memray run --trace-python-allocators", _memray_tool(True), requires=("memray",))],
         repeat=3, baseline="none"),
    Case("run-report",
         "flame graph and table from the run-alloc-heavy capture (memray: with python allocators), CLI in a subprocess",
         _captures,
         [Tool("heaptrail flamegraph", _ht_report("flamegraph"), requires=("heaptrail",)),
          Tool("heaptrail table", _ht_report("table"), requires=("heaptrail",)),
          Tool("memray flamegraph", _memray_report("flamegraph"), requires=("memray",)),
          Tool("memray table", _memray_report("table"), requires=("memray",))],
         repeat=3, baseline="heaptrail flamegraph"),
]
