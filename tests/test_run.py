"""heaptrail run: a whole program captured to a file, then every reporter's
numbers checked against the allocations the program is known to make."""
import json
import os
import textwrap

import pytest

from conftest import run_cli

MiB = 2**20

# line numbers below are the program's own (1-based)
PROGRAM = textwrap.dedent("""\
    import sys
    import heaptrail
    kept = bytearray(10 * 2**20)                 # line 3: X, kept to the end
    heaptrail.mark("kept")
    tmp = bytes(50 * 2**20)                      # line 5: Y, freed: in the peak only
    del tmp
    heaptrail.mark("freed")
    small = [bytearray(1024) for _ in range(1000)]   # line 8: Z, kept
    heaptrail.mark("small")
    data = sys.stdin.read()
    print("argv", sys.argv[1:], __name__, len(data))
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    """)
X, Y, Z = 3, 5, 8


def _line_rows(cap, report, script):
    out = {}
    for r in cap.rows(report, by="line", top=0):
        if r.file and os.path.basename(r.file) == os.path.basename(script):
            b, n = out.get(r.line, (0, 0))
            out[r.line] = (b + r.bytes, n + r.count)
    return out


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    script = d / "prog.py"
    script.write_text(PROGRAM)
    out = d / "prog.htcap"
    proc = run_cli("run", "-o", str(out), str(script), "7", "b c", input="hello\n", cwd=str(d))
    return proc, out, script, d


def test_program_sees_itself(known):
    proc, out, script, d = known
    assert proc.returncode == 7
    assert proc.stdout == "argv ['7', 'b c'] __main__ 6\n"   # stdout is the program's alone
    assert f"capture: {out}" in proc.stderr                   # the report is on stderr
    assert "peak traced memory: 6" in proc.stderr


def test_peak_leaks_and_totals_equal_the_known_allocations(known):
    from heaptrail import capture

    proc, out, script, d = known
    cap = capture.open(out)
    assert cap.truncated is None
    peak = _line_rows(cap, "peak", script)
    # the peak holds the 50 MiB of line Y and the 10 MiB of line X (object
    # headers: a few dozen bytes each)
    assert 50 * MiB <= peak[Y][0] < 50 * MiB + 4096
    assert 10 * MiB <= peak[X][0] < 10 * MiB + 4096
    assert Z not in peak or peak[Z][0] < 4096          # the small ones came after the peak
    assert 60 * MiB <= cap.peak_bytes < 61 * MiB
    leaks = _line_rows(cap, "leaks", script)
    assert 10 * MiB <= leaks[X][0] < 10 * MiB + 4096
    # 1000 bytearrays of 1 KiB: object + 1025-byte buffer each, and the list
    assert 1000 * 1024 <= leaks[Z][0] < 1000 * 1200
    assert leaks[Z][1] >= 2000
    assert Y not in leaks or leaks[Y][0] < 1024        # only the globals dict's growth
    total = _line_rows(cap, "total", script)
    assert 50 * MiB <= total[Y][0] < 50 * MiB + 8192
    assert cap.total_bytes >= 61 * MiB
    assert cap.max_rss > 10 * MiB


def test_markers_in_order_on_the_timeline(known):
    from heaptrail import capture

    proc, out, script, d = known
    cap = capture.open(out)
    marks = cap.markers()
    assert [m.label for m in marks] == ["kept", "freed", "small"]
    assert marks[0].time_ns <= marks[1].time_ns <= marks[2].time_ns
    samples = cap.samples()
    assert len(samples) >= 2 and samples[-1].time_ns >= marks[-1].time_ns
    assert samples[-1].traced == cap.leaked_bytes   # the final sample: traced bytes at exit


def test_reporters_show_the_known_numbers(known, tmp_path):
    proc, out, script, d = known
    t = run_cli("table", str(out), "--leaks", "--by", "line", "--top", "0", "--json")
    assert t.returncode == 0, t.stderr
    rows = {(os.path.basename(r["file"] or ""), r["line"]): r for r in json.loads(t.stdout)["rows"]}
    assert 10 * MiB <= rows[("prog.py", X)]["bytes"] < 10 * MiB + 4096
    assert 1000 * 1024 <= rows[("prog.py", Z)]["bytes"] < 1000 * 1200
    s = run_cli("summary", str(out), "--top", "3")
    assert s.returncode == 0, s.stderr
    assert "peak traced memory: 60.0 MiB" in s.stdout
    assert f"prog.py:{Y})" in s.stdout.split("total allocated")[0]
    tr = run_cli("tree", str(out))
    assert tr.returncode == 0 and f"prog.py:{Y}" in tr.stdout
    svg = tmp_path / "m.svg"
    p = run_cli("plot", str(out), "-o", str(svg))
    assert p.returncode == 0, p.stderr
    assert svg.read_text().count('class="marker"') == 3
    sp = tmp_path / "s.json"
    e = run_cli("export", str(out), "--format", "speedscope", "--peak", "-o", str(sp))
    assert e.returncode == 0, e.stderr
    prof = json.loads(sp.read_text())["profiles"][0]
    assert 60 * MiB <= sum(prof["weights"]) < 61 * MiB


def test_exception_prints_its_traceback_and_exits_1(tmp_path):
    script = tmp_path / "boom.py"
    script.write_text("def f():\n    raise ValueError('boom 42')\nf()\n")
    proc = run_cli("run", "-o", str(tmp_path / "b.htcap"), "--quiet", str(script))
    assert proc.returncode == 1
    assert proc.stderr.startswith("Traceback (most recent call last):\n")
    assert f'File "{script}", line 3, in <module>' in proc.stderr
    assert "ValueError: boom 42" in proc.stderr
    assert "heaptrail" not in proc.stderr.split("ValueError")[0].replace(str(tmp_path), "")


def test_module_and_code(tmp_path):
    pkg = tmp_path / "mymod.py"
    pkg.write_text("import sys\nx = bytearray(3 * 2**20)\nprint(__name__, sys.argv[1:])\n")
    out = tmp_path / "m.htcap"
    proc = run_cli("run", "-o", str(out), "-m", "mymod", "--flag", "1", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "__main__ ['--flag', '1']\n"
    from heaptrail import capture
    leaks = _line_rows(capture.open(out), "leaks", "mymod.py")
    assert 3 * MiB <= leaks[2][0] < 3 * MiB + 4096
    out = tmp_path / "c.htcap"
    proc = run_cli("run", "-o", str(out), "-c", "import sys; x = bytes(4 * 2**20); print(sys.argv)",
                   "a", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "['-c', 'a']\n"
    assert 4 * MiB <= capture.open(out).leaked_bytes < 5 * MiB


def test_default_output_name(tmp_path):
    script = tmp_path / "named.py"
    script.write_text("pass\n")
    proc = run_cli("run", "--quiet", str(script), cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    names = [n for n in os.listdir(tmp_path) if n.startswith("heaptrail-named-") and n.endswith(".htcap")]
    assert len(names) == 1


KILLED = textwrap.dedent("""\
    import os, signal, sys, time
    import heaptrail
    big = bytearray(20 * 2**20)                  # line 3
    heaptrail.mark("before")
    t = time.monotonic()
    while time.monotonic() - t < 0.3:            # allocations after a few intervals: flushed
        x = [i for i in range(100)]
        time.sleep(0.005)
    if sys.argv[1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(5)
    """)


@pytest.mark.parametrize("how", ["kill", "exit"])
def test_killed_program_leaves_a_readable_capture(tmp_path, how):
    from heaptrail import capture

    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    out = tmp_path / "k.htcap"
    proc = run_cli("run", "-o", str(out), "--interval", "10ms", str(script), how)
    assert proc.returncode == (-9 if how == "kill" else 5)
    cap = capture.open(out)
    if how == "kill":
        assert cap.truncated      # no END: the reader says so
    else:
        assert cap.truncated is None   # os._exit closes the capture first (test_run_review)
    live = _line_rows(cap, "leaks", script)
    assert 20 * MiB <= live[3][0] < 20 * MiB + 4096
    assert [m.label for m in cap.markers()] == ["before"]
    assert len(cap.samples()) >= 5
    s = run_cli("summary", str(out))
    assert s.returncode == 0 and ("truncated" in s.stdout) == (how == "kill")


MP = textwrap.dedent("""\
    import multiprocessing as mp
    import sys

    def work(n):
        block = bytearray(n * 2**20)             # line 5: the child's own
        return len(block)

    if __name__ == "__main__":
        ctx = mp.get_context(sys.argv[1])
        p = ctx.Process(target=work, args=(7,))
        p.start()
        p.join()
        sys.exit(p.exitcode)
    """)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_follow_fork_multiprocessing(tmp_path, method):
    from heaptrail import capture, run

    script = tmp_path / "mp.py"
    script.write_text(MP)
    out = tmp_path / "mp.htcap"
    proc = run_cli("run", "--follow-fork", "-o", str(out), str(script), method)
    assert proc.returncode == 0, proc.stderr
    kids = run.children(out)
    assert kids, proc.stderr
    found = []
    for k in kids:
        cap = capture.open(k)
        rows = _line_rows(cap, "peak", script)
        if 5 in rows:
            found.append((cap, rows[5][0]))
    assert len(found) == 1
    cap, size = found[0]
    assert 7 * MiB <= size < 7 * MiB + 4096
    assert cap.pid != capture.open(out).pid
    if method == "fork":
        assert cap.truncated is None    # os._exit in the forked worker closes the capture first
    # the parent's own capture does not hold the child's block
    assert 5 not in _line_rows(capture.open(out), "peak", script)
    s = run_cli("summary", str(out), "--children")
    assert s.returncode == 0 and f"processes (this one and {len(kids)} children)" in s.stdout
    t = run_cli("table", str(out), "--children", "--peak", "--json", "--top", "0")
    rows = [r for r in json.loads(t.stdout)["rows"] if r["file"] and r["file"].endswith("mp.py") and r["line"] == 5]
    assert len(rows) == 1 and 7 * MiB <= rows[0]["bytes"] < 7 * MiB + 4096


def test_without_follow_fork_children_write_nothing(tmp_path):
    script = tmp_path / "mp.py"
    script.write_text(MP)
    out = tmp_path / "nf.htcap"
    proc = run_cli("run", "-o", str(out), "--quiet", str(script), "fork")
    assert proc.returncode == 0, proc.stderr
    from heaptrail import run
    assert run.children(out) == []


@pytest.mark.parametrize("args,message", [
    (["run"], "nothing to run"),
    (["run", "/nonexistent/x.py"], "/nonexistent/x.py: No such file or directory"),
    (["run", "-m", "no_such_module_xyz"], "no module named 'no_such_module_xyz'"),
    (["run", "-o", "/nonexistent/dir/x.htcap", "-c", "pass"], "no such directory"),
    (["run", "--interval", "fast", "-c", "pass"], "invalid interval value"),
    (["run", "-c", "def ("], "syntax error"),
])
def test_bad_arguments_one_line_error(args, message, tmp_path):
    proc = run_cli(*args, cwd=str(tmp_path))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert message in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr


def test_summary_still_reads_snapshots(tmp_path):
    snap = tmp_path / "s.snap"
    (tmp_path / "e.py").write_text("x = [1, 2]\n")
    proc = run_cli("snapshot", "-o", str(snap), str(tmp_path / "e.py"))
    assert proc.returncode == 0, proc.stderr
    s = run_cli("summary", str(snap), "--top", "3")
    assert s.returncode == 0 and "Partition of a set of" in s.stdout


THREADS = textwrap.dedent("""\
    import threading
    out = []
    def work():
        out.append(bytearray(2 * 2**20))         # line 4, in thread "worker-1"
    t = threading.Thread(target=work, name="worker-1"); t.start(); t.join()
    big = [bytes(1000) for _ in range(20000)]    # line 6
    """)


def test_threads_named_and_sampling_estimates(tmp_path):
    from heaptrail import capture

    script = tmp_path / "thr.py"
    script.write_text(THREADS)
    out = tmp_path / "t.htcap"
    assert run_cli("run", "--quiet", "-o", str(out), str(script)).returncode == 0
    cap = capture.open(out)
    threads = {t.name: t for t in cap.threads()}
    assert "MainThread" in threads and "worker-1" in threads
    assert 2 * MiB <= threads["worker-1"].bytes < 2 * MiB + 64 * 1024
    # sampled: each recorded block weighs size/p, so totals are estimates
    out = tmp_path / "s.htcap"
    assert run_cli("run", "--quiet", "--sample", "64k", "-o", str(out), str(script)).returncode == 0
    cap = capture.open(out)
    assert cap.sample_bytes == 65536
    leaks = _line_rows(cap, "leaks", script)
    true_z = 20000 * (1000 + 33)
    assert 0.7 * true_z < leaks[6][0] < 1.35 * true_z     # ~sqrt(64k/20M) = 6% standard error: 5+ sigmas
    assert 2 * MiB <= leaks[4][0] < 2 * MiB + 8192        # a 2 MiB block is always sampled


SUB = textwrap.dedent("""\
    import subprocess, sys
    code = "x = bytearray(5 * 2**20)\\nprint('child done')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    print(r.stdout.strip(), r.returncode)
    """)


def test_follow_fork_subprocess_running_python(tmp_path):
    from heaptrail import capture, run

    script = tmp_path / "sub.py"
    script.write_text(SUB)
    out = tmp_path / "sub.htcap"
    proc = run_cli("run", "--follow-fork", "--quiet", "-o", str(out), str(script))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "child done 0\n"
    kids = run.children(out)
    assert len(kids) == 1          # the forked-then-exec'd child wrote nothing before exec
    cap = capture.open(kids[0])
    assert cap.truncated is None
    leaks = {(r.file, r.line): r.bytes for r in cap.rows("leaks", by="line", top=0)}
    assert 5 * MiB <= leaks[("<string>", 1)] < 5 * MiB + 4096


def test_idle_program_is_sampled_and_flushed(tmp_path):
    """A program that sleeps allocates nothing: the sampler visits with the
    GIL, so samples go on and the pending events reach the file before a
    SIGKILL during the sleep."""
    from heaptrail import capture

    script = tmp_path / "sleepy.py"
    script.write_text("import os, signal, time\nbig = bytearray(8 * 2**20)\ntime.sleep(0.3)\n"
                      "os.kill(os.getpid(), signal.SIGKILL)\n")
    out = tmp_path / "z.htcap"
    proc = run_cli("run", "--quiet", "--interval", "10ms", "-o", str(out), str(script))
    assert proc.returncode == -9
    cap = capture.open(out)
    assert cap.truncated
    assert 8 * MiB <= _line_rows(cap, "leaks", script)[2][0] < 8 * MiB + 4096
    during = [s for s in cap.samples() if s.traced >= 8 * MiB]
    assert len(during) >= 5      # ~ one per two intervals while idle


def test_stacks_start_at_the_program(known):
    """heaptrail's own runner frames are cut: every stack's outermost frame is
    the program's <module> (the base of the tree and of the flame graph)."""
    proc, out, script, d = known
    tree = run_cli("tree", str(out))
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    assert f"<module> ({script}:" in lines[1]
    assert "RunCommand" not in tree.stdout and "cli.py" not in tree.stdout
    stacks = run_cli("table", str(out), "--peak", "--by", "stack")
    assert stacks.returncode == 0, stacks.stderr
    program_rows = [l for l in stacks.stdout.splitlines() if str(script) in l]
    assert len(program_rows) >= 2             # lines X and Y at the peak
    for row in program_rows:
        assert row.rstrip().endswith(f"<module> ({script}:{row.rsplit(':', 1)[1]}")
        assert "RunCommand" not in row and "cli.py" not in row
