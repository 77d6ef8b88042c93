"""heaptrail run, reviewed as a demanding memray user would: the program runs as
`python script.py` runs it, hard exits keep their capture, and the reports made
from a capture agree with the sizes the program is known to allocate."""
import os
import sys
import textwrap

import pytest

from conftest import run_cli

MiB = 2**20

# prints what a program can see of how it was started; the same lines under python and heaptrail run
PROBE = textwrap.dedent("""\
    import os, sys
    here = os.path.dirname(os.path.abspath(__file__))
    os.chdir("/")                                   # a program that changes directory ...
    with open(os.path.join(here, "data.txt")) as f: # ... still finds its data beside __file__
        print("data", f.read().strip())
    print("file", __file__, os.path.isabs(__file__))
    print("cached", __cached__, "spec", __spec__, "package", __package__)
    print("loader", type(__loader__).__name__, __loader__.name, __loader__.path == __file__)
    print("annotations", __annotations__)
    print("argv", sys.argv, "path0", sys.path[0])
    print("code file", sys._getframe().f_code.co_filename)
    if __name__ == "__main__":
        print("main")
    """)


def _probe_dir(tmp_path):
    d = tmp_path / "prog"
    d.mkdir()
    (d / "probe.py").write_text(PROBE)
    (d / "data.txt").write_text("beside the script\n")
    return d


def test_script_sees_what_python_gives_it(tmp_path):
    import subprocess

    d = _probe_dir(tmp_path)
    want = subprocess.run([sys.executable, "probe.py", "a b", "-x"], cwd=str(d), capture_output=True,
                          text=True, timeout=60)
    assert want.returncode == 0, want.stderr
    got = run_cli("run", "--quiet", "-o", str(tmp_path / "p.htcap"), "probe.py", "a b", "-x", cwd=str(d))
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout
    assert f"file {d / 'probe.py'} True" in got.stdout


def test_traceback_names_the_script_by_its_full_path(tmp_path):
    d = tmp_path / "w"
    d.mkdir()
    (d / "bad.py").write_text("keep = bytearray(3 * 2**20)\nraise RuntimeError('boom 7')\n")
    out = tmp_path / "b.htcap"
    proc = run_cli("run", "--quiet", "-o", str(out), "bad.py", cwd=str(d))
    assert proc.returncode == 1
    assert f'File "{d / "bad.py"}", line 2, in <module>' in proc.stderr
    assert proc.stderr.rstrip().endswith("RuntimeError: boom 7")
    from heaptrail import capture

    cap = capture.open(str(out))
    assert cap.truncated is None
    rows = [r for r in cap.rows("leaks", by="line", top=0) if r.file == str(d / "bad.py") and r.line == 1]
    assert len(rows) == 1 and 3 * MiB <= rows[0].bytes < 3 * MiB + 200


def test_module_in_the_current_directory_from_the_installed_script(tmp_path):
    """The `heaptrail` console script's sys.path[0] is its bin directory, not the cwd:
    `heaptrail run -m pkg.mod` must still find pkg in the cwd, as python -m does."""
    import subprocess

    work = tmp_path / "work"
    (work / "pkg").mkdir(parents=True)
    (work / "pkg" / "__init__.py").write_text("")
    (work / "pkg" / "mod.py").write_text(
        "import sys\nkeep = bytearray(2**20)\nprint('ran', __name__, __spec__.name, sys.argv[1:])\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "heaptrail").write_text("import sys\nfrom heaptrail.cli import main\nsys.exit(main())\n")
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(__import__("heaptrail").__file__)))
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, str(bindir / "heaptrail"), "run", "--quiet", "-o", "m.htcap",
                           "-m", "pkg.mod", "x"], cwd=str(work), capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ran __main__ pkg.mod ['x']\n"
    # and a module that is not there is still one clear line
    proc = subprocess.run([sys.executable, str(bindir / "heaptrail"), "run", "-o", "n.htcap", "-m",
                           "pkg.nothere"], cwd=str(work), capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "heaptrail: error: no module named 'pkg.nothere'"


def test_code_has_the_empty_path_entry(tmp_path):
    code = "import sys; print(repr(sys.path[0]), sys.argv)"
    proc = run_cli("run", "--quiet", "-o", str(tmp_path / "c.htcap"), "-c", code, "q", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "'' ['-c', 'q']\n"    # as python -c: the cwd, whatever it becomes


def test_os_exit_keeps_the_capture(tmp_path):
    """os._exit skips every finally and atexit handler: the capture is closed first,
    or a short program's events, all still in the writer's buffers, were lost."""
    (tmp_path / "oe.py").write_text(textwrap.dedent("""\
        import os, sys
        keep = bytearray(4 * 2**20)
        sys.stdout.write("bye\\n"); sys.stdout.flush()
        os._exit(5)
        """))
    out = tmp_path / "oe.htcap"
    proc = run_cli("run", "--quiet", "-o", str(out), "oe.py", cwd=str(tmp_path))
    assert proc.returncode == 5 and proc.stdout == "bye\n"
    from heaptrail import capture

    cap = capture.open(str(out))
    assert cap.truncated is None
    rows = [r for r in cap.rows("leaks", by="line", top=0) if r.file and r.file.endswith("oe.py") and r.line == 2]
    assert [r.count for r in rows] == [2]     # the bytearray and its buffer
    assert 4 * MiB <= rows[0].bytes < 4 * MiB + 200


APP_MAIN = textwrap.dedent("""\
    import sys
    import helper                                   # beside __main__: sys.path[0] is the app
    keep = helper.make()
    print(__name__, __file__, __spec__.name, repr(__package__), sys.argv, sys.path[0], len(keep))
    """)


@pytest.mark.parametrize("packed", [False, True], ids=["directory", "zipapp"])
def test_directory_and_zipapp_run_their_main(tmp_path, packed):
    """python DIR and python app.pyz run DIR/__main__.py: heaptrail run read the directory
    ("Is a directory") or the zip's bytes as source ("syntax error: null bytes")."""
    import subprocess
    import zipfile

    app = tmp_path / "app"
    app.mkdir()
    (app / "__main__.py").write_text(APP_MAIN)
    (app / "helper.py").write_text("def make():\n    return bytearray(3 * 2**20)\n")
    target = "app"
    if packed:
        target = "app.pyz"
        with zipfile.ZipFile(tmp_path / target, "w") as z:
            z.write(app / "__main__.py", "__main__.py")
            z.write(app / "helper.py", "helper.py")
    want = subprocess.run([sys.executable, target, "z"], cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=60)
    assert want.returncode == 0, want.stderr
    out = tmp_path / "a.htcap"
    got = run_cli("run", "--quiet", "-o", str(out), target, "z", cwd=str(tmp_path))
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout
    from heaptrail import capture

    rows = [r for r in capture.open(str(out)).rows("leaks", by="line", top=0)
            if r.file and r.file.endswith("helper.py") and r.line == 2]
    assert [r.count for r in rows] == [2]
    assert 3 * MiB <= rows[0].bytes < 3 * MiB + 200


def test_directory_without_main_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_cli("run", "-o", str(tmp_path / "e.htcap"), "empty", cwd=str(tmp_path))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["heaptrail: error: empty: can't find a __main__ module in it"]
    assert not (tmp_path / "e.htcap").exists()


@pytest.mark.parametrize("code", ["2**70", "-2**64", "2**32 + 5", "-1", "256", "True", "'bye'", "None"])
def test_exit_status_as_python_gives_it(tmp_path, code):
    import subprocess

    prog = f"import sys; sys.exit({code})"
    want = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=60)
    got = run_cli("run", "--quiet", "-o", str(tmp_path / "x.htcap"), "-c", prog, cwd=str(tmp_path))
    assert got.returncode == want.returncode   # 2**70 was 0: a failing program reported success
    if "OverflowError" not in want.stderr:   # 3.12 and 3.13 also print their own overflow
        assert got.stderr == want.stderr


@pytest.mark.parametrize("end,status", [("sys.exit(4)", 4), ("raise ValueError('main failed')", 1)])
def test_threads_still_running_when_main_ends_are_captured(tmp_path, end, status):
    """Python waits for the non-daemon threads however the main thread ends: so must the
    capture, or what they allocate after main's sys.exit or exception was lost."""
    (tmp_path / "t.py").write_text(textwrap.dedent(f"""\
        import sys, threading
        go = threading.Event()
        keep = [None]
        def work():
            go.wait()
            keep[0] = bytearray(6 * 2**20)        # line 6: after main has ended
        threading.Thread(target=work).start()
        threading.Timer(0.1, go.set).start()
        {end}
        """))
    out = tmp_path / "t.htcap"
    proc = run_cli("run", "--quiet", "-o", str(out), "t.py", cwd=str(tmp_path))
    assert proc.returncode == status, proc.stderr
    from heaptrail import capture

    cap = capture.open(str(out))
    rows = [r for r in cap.rows("leaks", by="line", top=0) if r.file and r.file.endswith("t.py") and r.line == 6]
    assert [r.count for r in rows] == [2]
    assert 6 * MiB <= rows[0].bytes < 6 * MiB + 200


def test_program_closing_every_descriptor_is_not_written_into(tmp_path):
    """A program that closes every descriptor (os.closerange, as daemons do) and opens a
    file of its own got it on the capture's descriptor number: the capture's blocks were
    written into the program's file, and the capture itself was lost."""
    (tmp_path / "d.py").write_text(textwrap.dedent("""\
        import os, time
        keep = bytearray(2**20)
        os.closerange(3, 4096)
        with open("mine.txt", "w") as f:
            f.write("hello\\n")
            more = [bytearray(100000) for _ in range(50)]     # line 6
            time.sleep(0.05)                                  # the sampler flushes meanwhile
            f.write("bye\\n")
        """))
    out = tmp_path / "d.htcap"
    proc = run_cli("run", "--quiet", "-o", str(out), "d.py", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mine.txt").read_bytes() == b"hello\nbye\n"
    from heaptrail import capture

    cap = capture.open(str(out))
    assert cap.truncated is None
    rows = [r for r in cap.rows("leaks", by="line", top=0) if r.file and r.file.endswith("d.py") and r.line == 6]
    assert 5_000_000 <= rows[0].bytes < 5_000_000 + 8192 and rows[0].count == 101


def test_capture_removed_by_the_program_is_one_line(tmp_path):
    (tmp_path / "r.py").write_text(textwrap.dedent("""\
        import os, sys
        os.closerange(3, 4096)
        os.unlink(sys.argv[1])
        more = [bytearray(100000) for _ in range(50)]
        """))
    out = tmp_path / "r.htcap"
    proc = run_cli("run", "-o", str(out), "r.py", str(out), cwd=str(tmp_path))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"heaptrail: error: the capture {out} could not be completed: No such file or directory"]
    assert not out.exists()


def test_runner_allocations_are_not_the_programs_rows(tmp_path):
    """heaptrail's own set-up (the children's environment for --follow-fork, the program's
    sys.argv and sys.path entry) is done before the capture opens: it showed as leaked rows
    (os.environ encode, _run_program) in the report of every program."""
    (tmp_path / "p.py").write_text("keep = bytearray(2**20)\n")
    out = tmp_path / "p.htcap"
    proc = run_cli("run", "--quiet", "--follow-fork", "-o", str(out), "p.py", "x", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    from heaptrail import capture

    cap = capture.open(str(out))
    seen = set()
    for r in cap.rows("leaks", by="stack", top=0):
        seen |= {f.function for f in cap.stack(r.node)}
    assert "<module>" in seen
    assert not seen & {"_Environ.__setitem__", "_createenviron.<locals>.encode", "_run_program",
                       "_enter_program"}, seen


AGREE = textwrap.dedent("""\
    import threading
    def keep():
        return bytearray(10 * 2**20)                      # line 3: 10 MiB kept
    def churn():
        b = bytearray(80 * 2**20)                         # line 5: 80 MiB, freed: the peak
        del b
    def small():
        return [str(i) * 3 for i in range(20000)]         # line 8: many small objects, kept
    def worker(n, out):
        out.append(bytearray(n * 2**20))                  # line 10: per thread
    kept = keep()
    churn()
    objs = small()
    held = []
    ts = [threading.Thread(target=worker, args=(k, held), name=f"w{k}") for k in (1, 2, 3)]
    for t in ts: t.start()
    for t in ts: t.join()
    """)


def test_every_report_agrees_with_the_known_sizes(tmp_path, cli):
    """One real program: the peak, the leaks, per line sizes and counts, per thread bytes,
    in table, tree, flamegraph's embedded data, plot, pprof and speedscope, against each
    other and against what the program allocates."""
    import gzip
    import json
    import re

    from heaptrail import capture
    from test_capture_export import profile_from_wire

    (tmp_path / "agree.py").write_text(AGREE)
    out = tmp_path / "a.htcap"
    proc = run_cli("run", "--quiet", "-o", str(out), "agree.py", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    script = str(tmp_path / "agree.py")
    small_bytes = sum(sys.getsizeof(str(i) * 3) for i in range(20000))
    cap = capture.open(str(out))

    # table --json, per line, against the program
    def lines(report):
        code, stdout, err = cli("table", str(out), f"--{report}", "--top", "0", "--json")
        assert code == 0, err
        rows = json.loads(stdout)["rows"]
        assert sum(r["bytes"] for r in rows) == cap.report_bytes(report)
        return {r["line"]: (r["bytes"], r["count"]) for r in rows if r["file"] == script}

    peak, leaks = lines("peak"), lines("leaks")
    assert 80 * MiB <= peak[5][0] < 80 * MiB + 200 and peak[5][1] == 2
    assert 10 * MiB <= peak[3][0] < 10 * MiB + 200
    assert 90 * MiB < cap.peak_bytes < 90 * MiB + 2 * MiB     # the small ones and threads came after
    assert 5 not in leaks
    assert 10 * MiB <= leaks[3][0] < 10 * MiB + 200 and leaks[3][1] == 2
    # the strings and their list (list growth while it is built: its final size is kept)
    assert small_bytes < leaks[8][0] < small_bytes + 200_000 and leaks[8][1] == 20001
    # three bytearrays (object and buffer each) and the shared list's first growth
    assert 6 * MiB <= leaks[10][0] < 6 * MiB + 600 and leaks[10][1] == 7
    threads = {t.name: t.bytes for t in cap.threads()}
    for k in (1, 2, 3):
        assert k * MiB <= threads[f"w{k}"] < k * MiB + 8192

    # tree: the root is the report's total, and a line's self bytes add up as in the table
    nodes = cap.tree("leaks")
    assert nodes[0].bytes == cap.leaked_bytes
    assert sum(t.self_bytes for t in nodes if t.file == script and t.line == 10) == leaks[10][0]

    # flamegraph: the embedded data's self bytes by file:line equal the table's
    html = tmp_path / "f.html"
    code, stdout, err = cli("flamegraph", str(out), "--leaks", "-o", str(html))
    assert code == 0, err
    page = html.read_text()
    data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S).group(1))
    by_place, todo = {}, [data["tree"]]
    while todo:
        n = todo.pop()
        todo.extend(n.get("k", []))
        by_place[n.get("f")] = by_place.get(n.get("f"), 0) + n["s"]
    assert by_place[f"{script}:3"] == leaks[3][0] and by_place[f"{script}:8"] == leaks[8][0]
    assert sum(by_place.values()) == cap.leaked_bytes
    # its timeline's largest moment and the plot's highest traced point: the peak, within 1%
    assert max(sum(v.values()) for v in data["timeline"]["live"]) >= 0.99 * cap.peak_bytes
    svg = tmp_path / "m.svg"
    code, stdout, err = cli("plot", str(out), "-o", str(svg))
    assert code == 0, err
    assert abs(max(s.traced for s in cap.samples()) - cap.peak_bytes) <= 0.01 * cap.peak_bytes
    assert 'class="traced"' in svg.read_text()

    # pprof: in-use at the peak and at exit, totals and the line's values, names valid
    for report, want in (("peak", peak), ("leaks", leaks)):
        pb = tmp_path / f"{report}.pb.gz"
        code, stdout, err = cli("export", str(out), f"--{report}", "--format", "pprof", "-o", str(pb))
        assert code == 0, err
        types, samples = profile_from_wire(gzip.decompress(pb.read_bytes()))
        assert sum(v[3] for v in samples.values()) == cap.report_bytes(report)
        assert sum(v[1] for v in samples.values()) == cap.total_bytes
        assert sum(v[0] for v in samples.values()) == cap.allocations
        line3 = sum(v[3] for k, v in samples.items() if k and k[0][1] == script and k[0][2] == 3)
        assert line3 == want[3][0]
    # speedscope: its weights are the report's bytes
    ss = tmp_path / "s.json"
    code, stdout, err = cli("export", str(out), "--format", "speedscope", "-o", str(ss))
    assert code == 0, err
    assert sum(json.loads(ss.read_text())["profiles"][0]["weights"]) == cap.peak_bytes


def test_compiled_script_runs_as_python_runs_it(tmp_path):
    """python prog.pyc runs the compiled code; heaptrail run read its bytes as source."""
    import py_compile
    import subprocess

    d = _probe_dir(tmp_path)
    py_compile.compile(str(d / "probe.py"), cfile=str(d / "probe.pyc"), doraise=True)
    want = subprocess.run([sys.executable, "probe.pyc", "a"], cwd=str(d), capture_output=True, text=True,
                          timeout=60)
    assert want.returncode == 0, want.stderr
    assert "loader SourcelessFileLoader __main__ True" in want.stdout
    got = run_cli("run", "--quiet", "-o", str(tmp_path / "c.htcap"), "probe.pyc", "a", cwd=str(d))
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout
    (d / "cut.pyc").write_bytes((d / "probe.pyc").read_bytes()[:30])
    bad = run_cli("run", "-o", str(tmp_path / "b.htcap"), "cut.pyc", cwd=str(d))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == ["heaptrail: error: cut.pyc: bad compiled file: marshal data too short"]


def test_control_characters_in_names_are_escaped(tmp_path, cli):
    """A file name may hold a newline and a shared capture anything: the text reports keep
    one line per row and send no escape sequence to the terminal, and the plot stays
    well-formed XML (an ESC in a marker label made the SVG unreadable)."""
    import xml.etree.ElementTree as ET

    from heaptrail import _core

    path = str(tmp_path / "c.htcap")
    _core._capture_write(path, [
        ("frame", 1, "two\nlines.py", "red\x1b[31m", 3), ("stack", 0, None, 1),
        ("thread", "bell\x07"),
        ("sample", 1_000_000, 5_000_000, 0),
        ("alloc", 0x10000, 4096, 0),
        ("marker", 2_000_000, "esc\x1b[2Jhere\x01"),
        ("sample", 3_000_000, 6_000_000, 4096),
    ], pid=3, cmdline=b"python\0-c\0a\nb")
    for args in (["table", "--top", "0"], ["tree"], ["stats"], ["summary"]):
        code, stdout, err = cli(*args, path)
        assert code == 0, err
        assert "\x1b" not in stdout and "\x07" not in stdout, args
        assert "red\\x1b[31m (two\\nlines.py:3)" in stdout, args
    code, stdout, err = cli("table", path, "--top", "0")
    assert stdout.splitlines()[2:] == ["4.0 KiB  100.0%      1  red\\x1b[31m (two\\nlines.py:3)"]
    svg = tmp_path / "m.svg"
    code, stdout, err = cli("plot", path, "-o", str(svg))
    assert code == 0, err
    root = ET.fromstring(svg.read_text())      # well-formed
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "esc\\x1b[2Jhere\\x01" in texts
    assert "memory of python -c a\\nb" in texts


def test_a_peak_between_two_samples_is_on_the_memory_over_time(tmp_path, cli):
    """The samples hold the traced bytes of their moments: a peak shorter than the interval
    fell between two, and the plot's traced line and the flame graph's timeline never
    reached the peak the same capture reports (80 MiB freed between samples)."""
    import json
    import re
    import xml.etree.ElementTree as ET

    from heaptrail import _core, capture

    path = str(tmp_path / "p.htcap")
    _core._capture_write(path, [
        ("frame", 1, "p.py", "keep", 3), ("frame", 2, "p.py", "churn", 5),
        ("stack", 0, None, 1), ("stack", 1, None, 2),
        ("sample", 1_000_000, 50 * MiB, 0),
        ("alloc", 0x10000, 10 * MiB, 0),
        ("alloc", 0x20000000, 80 * MiB, 1),      # the peak: 90 MiB
        ("flush",),
        ("sample", 2_000_000, 60 * MiB, 90 * MiB + 1),   # (a writer's count is not the reader's)
        ("free", 0x20000000),
        ("flush",),
        ("sample", 3_000_000, 60 * MiB, 10 * MiB),
        ("sample", 4_000_000, 60 * MiB, 10 * MiB),
    ])
    cap = capture.open(path)
    assert cap.peak_bytes == 90 * MiB and cap.leaked_bytes == 10 * MiB
    base = [(s.time_ns, s.traced) for s in cap.samples()]
    assert base[-1] == (4_000_000, 10 * MiB)

    path = str(tmp_path / "q.htcap")     # the same, the peak missed by every sample
    _core._capture_write(path, [
        ("frame", 1, "p.py", "keep", 3), ("frame", 2, "p.py", "churn", 5),
        ("stack", 0, None, 1), ("stack", 1, None, 2),
        ("sample", 1_000_000, 50 * MiB, 0),
        ("alloc", 0x10000, 10 * MiB, 0),
        ("sample", 2_000_000, 55 * MiB, 10 * MiB),
        ("alloc", 0x20000000, 80 * MiB, 1),
        ("free", 0x20000000),
        ("flush",),
        ("sample", 3_000_000, 60 * MiB, 10 * MiB),
        ("sample", 4_000_000, 60 * MiB, 10 * MiB),
    ])
    cap = capture.open(path)
    assert cap.peak_bytes == 90 * MiB
    samples = cap.samples()
    times = [s.time_ns for s in samples]
    assert times == sorted(times)
    peak = [s for s in samples if s.traced == 90 * MiB]
    assert len(peak) == 1 and 2_000_000 <= peak[0].time_ns <= 3_000_000
    assert peak[0].rss == 55 * MiB                  # the RSS last sampled before it
    assert (samples[-1].time_ns, samples[-1].traced) == (4_000_000, 10 * MiB)   # at exit, as before
    # the flame graph's timeline has the peak's moment, with what was live then
    tl = cap.timeline(4)
    assert max(sum(live.values()) for _, _, live in tl) == 90 * MiB
    assert [t for t, _, _ in tl] == sorted(t for t, _, _ in tl) and len(tl) == 5
    html = tmp_path / "f.html"
    code, stdout, err = cli("flamegraph", path, "-o", str(html))
    assert code == 0, err
    data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>',
                                html.read_text(), re.S).group(1))
    assert max(sum(v.values()) for v in data["timeline"]["live"]) == 90 * MiB
    svg = tmp_path / "m.svg"
    code, stdout, err = cli("plot", path, "-o", str(svg))
    assert code == 0, err
    line = [e for e in ET.fromstring(svg.read_text()).iter("{http://www.w3.org/2000/svg}polyline")
            if e.get("class") == "traced"][0]
    ys = [float(p.split(",")[1]) for p in line.get("points").split()]
    assert len(ys) == len(samples) and min(ys) < min(ys[:2]) - 100   # the line rises to the peak
