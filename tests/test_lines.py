"""The line-by-line memory profiler (heaptrail.lines): known sizes charged to
known lines, memory_profiler's layout, generators, coroutines, threads,
exceptions, nesting, recursion, the script runner, --json, IPython magics."""
import asyncio
import json
import os
import sys
import threading

import pytest

import heaptrail
from heaptrail import lines, tracer
from conftest import run_cli, run_python

MiB = 2**20
HEADER = ("Line #    Mem usage    Increment  Occurrences    Allocated         Peak   "
          "Line Contents")


@pytest.fixture(autouse=True)
def _isolated(lines_isolated):
    yield


def _rows(func):
    """{line offset from the def line: row} for a decorated function."""
    code = func.__wrapped__.__code__
    for fres in lines.results():
        if fres["filename"] == code.co_filename and fres["first_line"] == code.co_firstlineno:
            def_line = code.co_firstlineno + 1  # decorator on the line above
            return {r["line"] - def_line: r for r in fres["rows"]}
    raise AssertionError("no results for %s" % func.__name__)


def _near(value, truth, rel=0.01):
    return abs(value - truth) <= rel * abs(truth)


ITEM = sys.getsizeof(bytes(1024))   # one iteration's kept bytes object


@lines.profile
def _known_sizes():
    a = bytearray(10 * MiB)                  # +1: 10 MiB kept
    b = [0] * (10 * MiB)                     # +2: 80 MiB
    del b                                    # +3: -80 MiB
    keep = [None] * 1000                     # +4
    for i in range(1000):                    # +5
        keep[i] = bytes(1024)                # +6: 1000 x ITEM
    n = len(bytearray(50 * MiB))             # +7: allocated and freed: a 50 MiB peak
    return a, keep, n                        # +8


def test_known_sizes():
    _known_sizes()
    r = _rows(_known_sizes)
    assert _near(r[1]["increment"], 10 * MiB) and _near(r[1]["allocated"], 10 * MiB)
    assert r[1]["occurrences"] == 1
    assert _near(r[2]["increment"], 80 * MiB) and _near(r[2]["allocated"], 80 * MiB)
    assert _near(r[3]["increment"], -80 * MiB)
    assert r[3]["allocated"] < 0.01 * 80 * MiB
    assert r[5]["occurrences"] == 1001 and r[6]["occurrences"] == 1000
    assert _near(r[6]["increment"], 1000 * ITEM) and _near(r[6]["allocated"], 1000 * ITEM)
    assert abs(r[7]["increment"]) < 0.01 * 50 * MiB
    assert _near(r[7]["allocated"], 50 * MiB)
    # the line's peak stands 50 MiB above the memory before it
    assert _near(r[7]["peak"] - r[6]["mem_usage"], 50 * MiB)
    # Mem usage is traced memory after each line: the 80 MiB list came and went
    assert _near(r[2]["mem_usage"] - r[1]["mem_usage"], 80 * MiB)
    assert _near(r[2]["mem_usage"] - r[3]["mem_usage"], 80 * MiB)
    assert r[2]["peak"] >= r[2]["mem_usage"]
    # the def line never ran as a line of its own: blank, as memory_profiler shows it
    assert r[0]["occurrences"] is None and r[0]["contents"].startswith("def _known_sizes")


def test_layout_and_precision():
    _known_sizes()
    text = lines.format_results([f for f in lines.results()
                                 if f["function"].endswith("_known_sizes")], precision=3)
    out = text.splitlines()
    assert out[0] == "Filename: " + __file__.replace(".pyc", ".py")
    assert out[2] == HEADER
    assert out[3] == "=" * len(HEADER)
    row = next(l for l in out if "a = bytearray(10 * MiB)" in l)
    # memory_profiler's cells: "{:precision+4.precisionf} MiB", right-aligned in 12
    assert row.split()[0].isdigit()
    assert "10.000 MiB" in row
    blank = next(l for l in out if "def _known_sizes" in l)
    assert blank.split()[0].isdigit() and "MiB" not in blank


def test_show_uses_the_stream_and_precision(tmp_path):
    path = tmp_path / "out.txt"
    with open(path, "w") as f:
        @heaptrail.profile(stream=f, precision=2)
        def small():
            x = bytearray(3 * MiB)
            return len(x)
        assert small() == 3 * MiB
        lines.show()
    text = path.read_text()
    assert HEADER in text
    assert "3.00 MiB" in text and "x = bytearray(3 * MiB)" in text


@lines.profile
def _gen(n):
    for i in range(n):                       # +1
        x = bytearray(100_000)               # +2
        yield len(x)                         # +3
    tail = bytearray(200_000)                # +4
    yield len(tail)                          # +5


def test_generator():
    assert list(_gen(3)) == [100_000] * 3 + [200_000]
    r = _rows(_gen)
    assert r[1]["occurrences"] == 4 and r[2]["occurrences"] == 3 and r[3]["occurrences"] == 3
    item = sys.getsizeof(bytearray(100_000))
    assert _near(r[2]["allocated"], 3 * item)
    assert _near(r[4]["increment"], sys.getsizeof(bytearray(200_000)))


@lines.profile
async def _coro():
    a = bytearray(300_000)                   # +1
    await asyncio.sleep(0)                   # +2
    b = bytearray(400_000)                   # +3
    return len(a) + len(b)                   # +4


def test_coroutine():
    assert asyncio.run(_coro()) == 700_000
    r = _rows(_coro)
    assert _near(r[1]["increment"], 300_000) and _near(r[3]["increment"], 400_000)
    assert r[2]["occurrences"] == 1 and r[4]["occurrences"] == 1


@lines.profile
def _work():
    for _ in range(200):                     # +1
        b = bytes(2000)                      # +2
    return len(b)                            # +3


def test_threads():
    threads = [threading.Thread(target=_work) for _ in range(4)]
    for t in threads:
        t.start()
    _work()
    for t in threads:
        t.join()
    r = _rows(_work)
    item = sys.getsizeof(bytes(2000))
    assert r[2]["occurrences"] == 5 * 200 and r[1]["occurrences"] == 5 * 201
    assert _near(r[2]["allocated"], 5 * 200 * item)
    # each thread's line kept its last bytes object until the function ended:
    # the other threads' frees never leak into this thread's lines
    assert _near(r[2]["increment"], 5 * item, rel=0.05)


@lines.profile
def _boom():
    z = bytearray(123_456)                   # +1
    raise ValueError("boom")                 # +2


def test_exception_still_produces_the_table():
    with pytest.raises(ValueError, match="boom"):
        _boom()
    r = _rows(_boom)
    assert _near(r[1]["increment"], 123_456) and r[2]["occurrences"] == 1
    assert "123456" not in lines.format_results()  # MiB, not bytes
    # the profiler let go of the thread after the exception
    assert sys.gettrace() is None


@lines.profile
def _inner():
    return bytearray(500_000)                # +1


@lines.profile
def _outer():
    x = _inner()                             # +1: includes _inner's allocation
    y = [bytearray(1000) for _ in range(300)]  # +2: the comprehension's lines are this line's
    return x, y                              # +3


def test_nested_and_comprehension():
    _outer()
    r, ri = _rows(_outer), _rows(_inner)
    assert _near(ri[1]["increment"], 500_000)
    assert _near(r[1]["increment"], 500_000) and _near(r[1]["allocated"], 500_000)
    assert r[1]["peak"] >= r[1]["mem_usage"]
    assert _near(r[2]["increment"], 300 * sys.getsizeof(bytearray(1000)), rel=0.05)


@lines.profile
def _rec(n):
    blk = bytearray(10_000)                  # +1
    if n:                                    # +2
        _rec(n - 1)                          # +3
    return len(blk)                          # +4


def test_recursion():
    _rec(5)
    r = _rows(_rec)
    item = sys.getsizeof(bytearray(10_000))
    assert r[1]["occurrences"] == 6 and r[3]["occurrences"] == 5
    assert _near(r[1]["allocated"], 6 * item)
    # the call line allocated the 5 deeper levels' blocks, counted once (not again at each
    # level: 5 + 4 + ... + 1), plus what the calls allocate: argument tuples, frame objects
    assert 5 * item <= r[3]["allocated"] <= 5 * item + 5 * 4096
    assert abs(r[3]["increment"]) < item


class _Thing:
    @lines.profile
    def method(self):
        self.data = bytearray(250_000)       # +1
        return self


def test_method():
    _Thing().method()
    r = _rows(_Thing.method)
    assert _near(r[1]["increment"], 250_000)


def test_bad_arguments():
    with pytest.raises(ValueError, match="precision"):
        lines.profile(precision=-1)
    with pytest.raises(TypeError, match="function"):
        lines.profile(42)


SCRIPT = """
import sys
@profile
def build():
    a = bytearray(4 * 2**20)
    return a
build()
print("args", sys.argv[1:])
sys.exit(3)
"""


def test_script_runner_json(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(SCRIPT)
    out = tmp_path / "r.json"
    proc = run_cli("lines", "--json", str(out), str(script), "--flag", "1")
    assert proc.returncode == 3, proc.stderr   # the script's own exit status
    assert "args ['--flag', '1']" in proc.stdout
    assert HEADER in proc.stdout and "a = bytearray(4 * 2**20)" in proc.stdout
    data = json.loads(out.read_text())
    row = next(r for r in data[0]["rows"] if "bytearray" in r["contents"])
    assert data[0]["function"] == "build" and row["occurrences"] == 1
    assert _near(row["increment"], 4 * MiB)


def test_module_entry_point_and_errors(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(SCRIPT)
    proc = run_python("import sys; from heaptrail.lines import main; sys.exit(main(sys.argv[1:]))",
                      "--precision", "2", str(script), check=False)
    assert proc.returncode == 3 and "4.00 MiB" in proc.stdout
    bad = run_cli("lines", str(tmp_path / "missing.py"))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "missing.py" in bad.stderr


def test_printed_at_exit():
    proc = run_python("""
        from heaptrail import profile
        @profile
        def f():
            x = bytearray(6 * 2**20)
            return x
        f()
    """)
    assert HEADER in proc.stdout and "6.0 MiB" in proc.stdout


@pytest.mark.noasan
def test_rss_column():
    proc = run_python("""
        from heaptrail import lines
        @lines.profile(rss=True)
        def f():
            x = bytearray(64 * 2**20)
            x[::4096] = b"x" * len(x[::4096])   # touch every page
            return x
        f()
        rows = [row for row in lines.results()[0]["rows"] if row["occurrences"]]
        print("RSS", max(row["mem_usage"] for row in rows))
    """)
    rss = int(proc.stdout.split("RSS ")[1].split()[0])
    assert rss > 64 * 2**20   # RSS, not the 64 MiB of traced memory alone


def test_ipython_magics():
    pytest.importorskip("IPython", reason="IPython is not installed: %memit and %mprun untested")
    proc = run_python("""
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "heaptrail")
        r = ip.run_line_magic("memit", "-o x = bytearray(20 * 2**20)")
        print("LINE", r["increment"], r["peak"])
        r = ip.run_cell_magic("memit", "-o", "y = bytearray(30 * 2**20)\\ndel y\\n")
        print("CELL", r["retained"], r["peak"])
        ip.run_cell("def g():\\n    a = bytearray(3 * 2**20)\\n    return len(a)\\n")
        res = ip.run_line_magic("mprun", "-r -f g g()")
        row = [r for r in res[0]["rows"] if "bytearray" in r["contents"]][0]
        print("MPRUN", row["increment"], row["occurrences"])
    """)
    out = proc.stdout
    assert "peak memory:" in out and "increment:" in out
    line = out.split("LINE ")[1].split()
    assert _near(int(line[0]), 20 * MiB) and int(line[1]) >= 20 * MiB
    cell = out.split("CELL ")[1].split()
    assert abs(int(cell[0])) < 0.01 * 30 * MiB and int(cell[1]) >= 30 * MiB
    mp = out.split("MPRUN ")[1].split()
    assert _near(int(mp[0]), 3 * MiB) and int(mp[1]) == 1
    assert HEADER in out


def test_restores_a_previous_trace_function():
    def other_tracer(frame, event, arg):  # a debugger's or coverage's
        return None
    sys.settrace(other_tracer)
    try:
        _inner()
        assert sys.gettrace() is other_tracer
    finally:
        sys.settrace(None)
    assert _near(_rows(_inner)[1]["increment"], 500_000)


def test_heaptrail_run_lines(tmp_path):
    """`heaptrail run --lines script.py`: `profile` without import, the table on stdout."""
    script = tmp_path / "prog.py"
    script.write_text(
        "import sys\n"
        "@profile\n"
        "def f():\n"
        "    a = bytearray(10 * 2**20)\n"
        "    return a\n"
        "x = f()\n"
        "print('argv', sys.argv[1:])\n"
        "sys.exit(3)\n"
    )
    proc = run_cli("run", "--lines", str(script), "q")
    assert proc.returncode == 3, proc.stderr
    assert "argv ['q']" in proc.stdout
    row = next(l for l in proc.stdout.splitlines() if "bytearray(10 * 2**20)" in l)
    assert row.split()[0] == "4"
    assert row.split()[3:5] == ["10.0", "MiB"]          # Increment
    bad = run_cli("run", "--lines", "-c", "1")
    assert bad.returncode == 1 and bad.stderr.startswith("heaptrail: error: --lines profiles a script")
