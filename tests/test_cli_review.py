"""An adversarial review of the command line, as a careless user drives it: numbers out of
range, -o in odd places, programs that chdir, fork, start threads, raise or are interrupted,
full disks. Each test is a defect the review found (it failed before its fix)."""
import os
import subprocess
import sys
import textwrap

import pytest

import heaptrail
from heaptrail import _core
from conftest import run_cli

EVENTS = [
    ("frame", 1, "prog.py", "main", 5),
    ("frame", 2, "prog.py", "load", 12),
    ("stack", 0, None, 1),
    ("stack", 1, 0, 2),
    ("sample", 1_000_000, 10_000_000, 0),
    ("alloc", 0x10000, 1000, 1),
    ("alloc", 0x20000, 3000, 0),
    ("sample", 2_000_000, 11_000_000, 4000),
    ("free", 0x10000),
    ("sample", 3_000_000, 11_000_000, 3000),
]


@pytest.fixture
def capfile(tmp_path):
    path = tmp_path / "known.htcap"
    _core._capture_write(str(path), EVENTS, pid=4242, cmdline=b"prog.py")
    return str(path)


def _script(tmp_path, body, name="s.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


# ---- numbers ------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["table", "{cap}", "--top", str(10**30)],
                                  ["stats", "{cap}", "--top", str(10**30)]])
def test_a_huge_row_count_is_every_row(cli, capfile, argv):
    """--top 10**30 reached C's Py_ssize_t: an OverflowError traceback."""
    code, out, err = cli(*[a.format(cap=capfile) for a in argv])
    assert code == 0 and err == ""
    assert "load (prog.py:12)" in out and "main (prog.py:5)" in out


@pytest.mark.parametrize("argv, message", [
    (["stats", "{cap}", "--top", "-1"], "argument --top: invalid positive value: '-1'"),
    (["tree", "{cap}", "--depth", "-1"], "argument --depth: invalid count value: '-1'"),
    (["tree", "{cap}", "--min-percent", "nan"], "argument --min-percent: invalid percent value: 'nan'"),
])
def test_negative_and_nan_numbers_are_usage_errors(cli, capfile, argv, message):
    """stats --top -1 showed all blocks but the last, tree --depth -1 hid every branch, and
    --min-percent nan (which compares false with both bounds) hid none: all exit 0."""
    code, out, err = cli(*[a.format(cap=capfile) for a in argv])
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1] == f"heaptrail {argv[0]}: error: {message}"


def test_dot_depth_out_of_range_names_the_option(cli, tmp_path):
    """--depth 2000 passed argparse and failed in to_dot ("to_dot: depth must be between 0 and
    1000, not ..."; for 10**30: "not 9223372036854775807", a number nobody typed)."""
    path = tmp_path / "g.htsnap"
    _core._graph_from_edges(2, [(0, 1, None)], sizes=[8, 8], roots=[0]).save(str(path))
    for option, value in (("--depth", "2000"), ("--max-nodes", str(10**30))):
        code, out, err = cli("dot", str(path), "0", option, value)
        assert code == 2 and out == ""
        assert err.strip().splitlines()[-1] == (
            f"heaptrail dot: error: argument {option}: invalid {option[2:]} value: '{value}'")


def test_run_sample_size_that_would_wrap_is_refused(cli):
    """16777216g is 2**64 bytes: the C side took it modulo 2**64, 0, which means "record
    every allocation": the opposite of what was asked, silently."""
    code, out, err = cli("run", "--sample", "16777216g", "-c", "pass")
    assert code == 2
    assert err.strip().splitlines()[-1] == "heaptrail run: error: argument --sample: invalid size value: '16777216g'"


# ---- heaptrail snapshot: where and when the file is written --------------------------------

def test_snapshot_relative_output_survives_the_programs_chdir(tmp_path):
    """-o out.htsnap was opened after the program ended, relative to the cwd the program had
    moved to: the file landed in the program's directory, not the user's."""
    (tmp_path / "elsewhere").mkdir()
    _script(tmp_path, """\
        import os
        os.chdir("elsewhere")
        """)
    proc = run_cli("snapshot", "-o", "out.htsnap", "s.py", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.htsnap").is_file()
    assert not (tmp_path / "elsewhere" / "out.htsnap").exists()
    assert "written to out.htsnap" in proc.stderr


@pytest.mark.parametrize("output, message", [("", "-o needs a file name"), ("adir", "adir: is a directory")])
def test_snapshot_output_mistakes_are_found_before_the_program_runs(tmp_path, output, message):
    """-o DIR or -o '' failed only once the program had run to its end (minutes, maybe, and
    its side effects done): `: No such file or directory` for the empty name."""
    (tmp_path / "adir").mkdir()
    _script(tmp_path, """\
        open("ran", "w").close()
        """)
    proc = run_cli("snapshot", "-o", output, "s.py", cwd=str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"heaptrail: error: {message}"
    assert not (tmp_path / "ran").exists()


def test_run_empty_output_name_is_refused(tmp_path):
    """run -o '' silently wrote heaptrail-<program>-<pid>.htcap instead."""
    proc = run_cli("run", "-o", "", "-c", "pass", cwd=str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip() == "heaptrail: error: -o needs a file name"
    assert os.listdir(tmp_path) == []


def test_snapshot_output_given_twice_is_refused(tmp_path):
    """`snapshot -o a.htsnap s.py -o x` took the script's -o x as its own: it wrote x, and
    the script ran without its arguments."""
    _script(tmp_path, """\
        open("ran", "w").close()
        """)
    proc = run_cli("snapshot", "-o", "a.htsnap", "s.py", "-o", "x", cwd=str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "heaptrail snapshot: error: argument -o: given twice")
    assert sorted(os.listdir(tmp_path)) == ["s.py"]
    # the documented way still works
    proc = run_cli("snapshot", "-o", "a.htsnap", "--", "s.py", "-o", "x", cwd=str(tmp_path))
    assert proc.returncode == 0 and (tmp_path / "a.htsnap").is_file() and not (tmp_path / "x").exists()


FORKS = """\
    import os, sys, time

    class Parent: pass
    class Child: pass

    if os.fork() == 0:
        who = Child()
        time.sleep(0.5)          # ends after the parent has written its snapshot
    else:
        who = Parent()
    """


def test_snapshot_of_a_forking_program_is_the_parents(tmp_path):
    """The forked child came back from the script too, took its own snapshot and wrote it
    over the parent's (two 'written to' lines; the file held Child, not Parent)."""
    _script(tmp_path, FORKS)
    proc = run_cli("snapshot", "-o", "f.htsnap", "s.py", cwd=str(tmp_path))  # waits for the child's pipes
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("written to") == 1
    snap = heaptrail.load(tmp_path / "f.htsnap")
    assert len(snap.query("type == 'Parent'")) == 1
    assert len(snap.query("type == 'Child'")) == 0


def test_snapshot_waits_for_the_programs_threads(tmp_path):
    """`heaptrail run` (and Python) wait for non-daemon threads before the program ends;
    `heaptrail snapshot` took its snapshot while they still ran, missing what they built."""
    _script(tmp_path, """\
        import threading, time

        class Late: pass

        def work():
            global late
            time.sleep(0.3)
            late = [Late() for _ in range(3)]

        threading.Thread(target=work).start()
        """)
    proc = run_cli("snapshot", "-o", "t.htsnap", "s.py", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    snap = heaptrail.load(tmp_path / "t.htsnap")
    assert len(snap.query("type == 'Late'")) == 3


def test_snapshot_interrupted_program_exits_130(tmp_path):
    """Ctrl-C in the program: `heaptrail run` exits 130 as Python does, snapshot exited 1."""
    _script(tmp_path, """\
        raise KeyboardInterrupt
        """)
    proc = run_cli("snapshot", "-o", "i.htsnap", "s.py", cwd=str(tmp_path))
    assert proc.returncode == 130
    assert proc.stderr.splitlines()[0] == "Traceback (most recent call last):"
    assert "KeyboardInterrupt" in proc.stderr and "heaptrail/" not in proc.stderr
    assert (tmp_path / "i.htsnap").is_file()      # what the program had, as for any failure


def test_run_takes_double_dash_before_the_script(tmp_path):
    """`heaptrail run -o F -- script.py -o x` (snapshot's documented form) said
    "unknown option -- (options go before the script)"."""
    _script(tmp_path, """\
        import sys
        print(sys.argv)
        """)
    proc = run_cli("run", "--quiet", "-o", "r.htcap", "--", "s.py", "-o", "x", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "['s.py', '-o', 'x']\n"
    assert (tmp_path / "r.htcap").is_file()


# ---- heaptrail leaks ----------------------------------------------------------------------

LOOP = """\
    import heaptrail.leaks
    open("ran", "w").close()
    keep = []
    for i in range(8):
        keep.append(bytearray(100))
        heaptrail.leaks.step()
    """


@pytest.mark.parametrize("argv, message", [
    (["--dot", "paths.xyz"], "heaptrail: error: cannot render 'paths.xyz': use a .png, .svg, .pdf or .dot file name"),
    (["--dot", "adir"], "heaptrail: error: cannot render 'adir': it is a directory"),
    (["--runs", str(10**20)], f"heaptrail leaks: error: argument --runs: invalid runs value: '{10**20}'"),
])
def test_leaks_mistakes_are_found_before_the_runs(tmp_path, argv, message):
    """--dot with an unknown extension failed after every iteration had run; --runs 10**20
    was taken (with --call: a hang)."""
    (tmp_path / "adir").mkdir()
    _script(tmp_path, LOOP)
    proc = run_cli("leaks", "s.py", "--runs", "3", *argv, cwd=str(tmp_path))
    assert proc.returncode in (1, 2) and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1] == message
    assert not (tmp_path / "ran").exists()


# ---- heaptrail lines ----------------------------------------------------------------------

def test_lines_syntax_error_is_one_line_and_keeps_the_output_file(tmp_path):
    """A syntax error was heaptrail's own traceback, and -o FILE had already been emptied."""
    _script(tmp_path, "def f(:\n")
    keep = tmp_path / "tables.txt"
    keep.write_text("yesterday's tables\n")
    for argv in (["lines", "-o", str(keep), "s.py"], ["run", "--lines", "s.py"]):
        proc = run_cli(*argv, cwd=str(tmp_path))
        assert proc.returncode == 1
        assert proc.stderr.strip() == "heaptrail: error: s.py:1: syntax error: invalid syntax"
    assert keep.read_text() == "yesterday's tables\n"


def test_lines_failing_script_shows_its_traceback_and_its_tables(tmp_path):
    """A script that raised gave heaptrail's whole traceback (cli.py, lines.py, runpy) and its
    tables only at exit, after it."""
    _script(tmp_path, """\
        @profile
        def build():
            a = bytearray(200000)
            return a

        build()
        raise RuntimeError("boom")
        """)
    proc = run_cli("lines", "s.py", cwd=str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "Traceback (most recent call last):",
        '  File "s.py", line 7, in <module>',
        '    raise RuntimeError("boom")',
        "RuntimeError: boom",
    ]
    table = [line for line in proc.stdout.splitlines() if "a = bytearray(200000)" in line]
    assert len(table) == 1 and table[0].split()[0] == "3"


# ---- write errors -------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
@pytest.mark.parametrize("argv", [
    ["flamegraph", "{cap}", "-o", "{out}.html"],
    ["plot", "{cap}", "-o", "{out}.svg"],
    ["export", "{cap}", "--format", "json", "-o", "{out}.json"],
    ["export", "{cap}", "--format", "csv", "-o", "{out}.csv"],
    ["export", "{cap}", "--format", "pprof", "--peak", "-o", "{out}.pb"],
])
def test_a_full_disk_names_the_file(cli, capfile, tmp_path, argv):
    """A failed write said "[Errno 28] No space left on device", not which file."""
    argv = [a.format(cap=capfile, out=tmp_path / "full") for a in argv]
    os.symlink("/dev/full", argv[argv.index("-o") + 1])
    code, out, err = cli(*argv)
    assert code == 1 and out == ""
    assert err == f"heaptrail: error: {argv[argv.index('-o') + 1]}: No space left on device\n"


# ---- a program that takes its stdout or stderr away ----------------------------------------

@pytest.mark.parametrize("command", ["run", "snapshot"])
@pytest.mark.parametrize("body", ["import sys; sys.stderr.close()", "import sys; sys.stdout = None",
                                  "import os; os.close(2)"])
def test_program_closing_its_output_keeps_its_exit_status(tmp_path, command, body):
    """Python ends these programs quietly with status 0; under heaptrail the report to the
    closed stderr (or the final flush of a None stdout) failed: exit 1, with a traceback or
    the interpreter's 'object address: ...' dump."""
    _script(tmp_path, body + "\n")
    proc = run_cli(command, "-o", "out.bin", "s.py", cwd=str(tmp_path))
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr and "object address" not in proc.stderr
    assert (tmp_path / "out.bin").stat().st_size > 0


def test_a_bad_child_capture_is_named_once(cli, capfile):
    """The warning for a child capture that cannot be read said its path twice:
    "heaptrail: warning: /x/c.htcap.123: /x/c.htcap.123: not a heaptrail capture"."""
    bad = capfile + ".123"
    with open(bad, "w") as f:
        f.write("garbage\n")
    code, out, err = cli("table", capfile, "--children")
    assert code == 0 and "load (prog.py:12)" in out
    assert err == f"heaptrail: warning: {bad}: not a heaptrail capture (skipped)\n"


# ---- programs that cannot start ------------------------------------------------------------

def test_null_bytes_have_no_line_none(cli, tmp_path):
    """Since 3.11.4 compile() reports null bytes as a SyntaxError without a line number:
    "s.py:None: syntax error: source code string cannot contain null bytes"."""
    path = tmp_path / "s.py"
    path.write_bytes(b"x = 1\0\n")
    for argv in (["run", "-o", str(tmp_path / "o.htcap"), str(path)], ["lines", str(path)],
                 ["snapshot", "-o", str(tmp_path / "o.htsnap"), str(path)]):
        code, out, err = cli(*argv)
        assert code == 1 and out == ""
        assert err.startswith(f"heaptrail: error: {path}") and ":None:" not in err
        assert err.rstrip().endswith("null bytes")
        assert err.count("\n") == 1
    assert os.listdir(tmp_path) == ["s.py"]


def test_run_package_without_main_says_so(cli, tmp_path):
    """`run -m email` said "no module named 'email'" of a module that exists: it is a package
    without a __main__, as `python -m email` says."""
    code, out, err = cli("run", "-o", str(tmp_path / "o.htcap"), "-m", "email")
    assert code == 1
    assert err == "heaptrail: error: no module named email.__main__: 'email' is a package and cannot be run\n"


def test_leaks_interrupted_script_is_interrupted_not_failed(tmp_path):
    """Ctrl-C in the script's loop: "s.py failed: KeyboardInterrupt: " and exit 1."""
    _script(tmp_path, """\
        import heaptrail.leaks
        for i in range(3):
            heaptrail.leaks.step()
        raise KeyboardInterrupt
        """)
    proc = run_cli("leaks", "s.py", cwd=str(tmp_path))
    assert proc.returncode == 130
    assert proc.stderr == "heaptrail: error: interrupted\n"


# ---- the output is never the input ---------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["run", "--quiet", "-o", "s.py", "s.py"],
    ["run", "--quiet", "-o", "./s.py", "-m", "s"],
    ["snapshot", "-o", "s.py", "s.py"],
    ["lines", "-o", "s.py", "s.py"],
    ["flamegraph", "c.htcap", "-o", "c.htcap"],
    ["export", "c.htcap", "--format", "csv", "-o", "./c.htcap"],
])
def test_output_that_is_the_input_is_refused(tmp_path, argv):
    """`run -o app.py app.py` wrote the capture over the script (snapshot and lines too), and
    `flamegraph c.htcap -o c.htcap` its HTML over the capture: the input was lost."""
    script = _script(tmp_path, "x = [1, 2, 3]\n")
    _core._capture_write(str(tmp_path / "c.htcap"), EVENTS)
    before = {p: p.read_bytes() for p in (script, tmp_path / "c.htcap")}
    proc = run_cli(*argv, cwd=str(tmp_path))
    assert proc.returncode == 1
    out = argv[argv.index("-o") + 1]
    assert proc.stderr.startswith(f"heaptrail: error: {out}: that is the input file ")
    assert proc.stderr.count("\n") == 1
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(os.listdir(tmp_path)) == ["c.htcap", "s.py"]


def test_summary_options_the_file_has_no_use_for_are_errors(cli, capfile, tmp_path):
    """`summary CAPTURE --by module` printed the capture's report, not grouped by anything,
    and `summary SNAPSHOT --children` ignored --children: both exit 0, both silently."""
    code, out, err = cli("summary", capfile, "--by", "module")
    assert code == 1 and out == ""
    assert err.startswith(f"heaptrail: error: --by groups a snapshot file's objects; {capfile} is a capture")
    snap = tmp_path / "g.htsnap"
    _core._graph_from_edges(2, [(0, 1, None)], sizes=[8, 16], roots=[0]).save(str(snap))
    code, out, err = cli("summary", str(snap), "--children")
    assert code == 1 and out == ""
    assert err == f"heaptrail: error: --children adds a capture's child processes; {snap} is not a capture\n"
    code, out, err = cli("summary", str(snap), "--json")      # --by's default is still type
    assert code == 0 and '"by": "type"' in out and '"total_size": 24' in out


@pytest.mark.parametrize("command", ["summary", "retainers", "table", "stats"])
def test_a_pipe_is_named_as_a_pipe(tmp_path, capfile, command):
    """`heaptrail summary <(zcat snap.gz)`: the magic, read first, was gone from the pipe when
    the reader opened it again: "not a heaptrail snapshot file" of a real snapshot."""
    if command in ("summary", "retainers"):
        data = tmp_path / "g.htsnap"
        _core._graph_from_edges(2, [(0, 1, None)], sizes=[8, 16], roots=[0]).save(str(data))
    else:
        data = capfile
    with open(data, "rb") as f:
        piped = f.read()
    proc = subprocess.run([sys.executable, "-m", "heaptrail", command, "/dev/stdin"], input=piped,
                          capture_output=True, timeout=60)    # input: stdin is a pipe
    assert proc.returncode == 1
    assert proc.stderr == b"heaptrail: error: /dev/stdin: is a pipe, not a file: save it to a file first\n"


def test_lines_precision_is_bounded_before_the_script_runs(tmp_path):
    """--precision 10**20 ran the whole script, then failed on its tables ("Too many decimal
    digits in format string"): the profile was lost. (--precision 100000 wrote 1.2 MB of zeros.)"""
    _script(tmp_path, """\
        open("ran", "w").close()
        """)
    proc = run_cli("lines", "--precision", str(10**20), "s.py", cwd=str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr == f"heaptrail: error: --precision must be between 0 and 20, not {10**20}\n"
    assert not (tmp_path / "ran").exists()


def test_retainers_of_a_file_with_invalid_utf8_names(cli, tmp_path):
    """Names read from a file are decoded with "replace" everywhere but in top_retainers,
    where one bad byte in a type's name was a UnicodeDecodeError: `heaptrail retainers` said
    "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"."""
    # one object that is its own type, named by two bytes that are not UTF-8 (version 1: no checksum)
    data = (b"HTSNAP\x00\x01" + bytes([1, 0, 0, 0, 11, 1, 0, 1])
            + bytes([1, 3, 2, 0xFF, 0xFE])
            + bytes([2, 9, 0x20, 1, 5, 1, 0x20, 1, 0, 0, 0])
            + bytes([3, 0, 0, 0]))
    path = tmp_path / "utf8.htsnap"
    path.write_bytes(data)
    code, out, err = cli("retainers", str(path))
    assert code == 0 and err == ""
    assert "\ufffd\ufffd" in out and "0x10" in out


def test_run_lines_refuses_the_capture_options(cli, tmp_path):
    """`run --lines -o tables.txt s.py` printed the tables to stdout and wrote no file: -o,
    --sample and --follow-fork were silently ignored."""
    script = _script(tmp_path, f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    code, out, err = cli("run", "--lines", "-o", str(tmp_path / "tables.txt"), "--sample", "1k", str(script))
    assert code == 1 and out == ""
    assert err == ("heaptrail: error: --lines writes no capture: -o, --sample do not apply "
                   "(heaptrail lines -o FILE writes its tables to a file)\n")
    assert sorted(os.listdir(tmp_path)) == ["s.py"]


def test_unknown_arguments_show_the_commands_usage(cli, tmp_path):
    """An unknown argument printed heaptrail's own one-line usage ("heaptrail [-h] [--version]
    COMMAND ...") instead of the command's, and no word that a script's options go after --."""
    code, out, err = cli("leaks", "s.py", "-o", "x")
    assert code == 2
    assert err.startswith("usage: heaptrail leaks ")
    assert err.splitlines()[-1] == ("heaptrail leaks: error: unrecognized arguments: -o x "
                                    "(a script's own arguments go after --)")
    code, out, err = cli("summary", "f.htsnap", "extra")
    assert code == 2 and err.startswith("usage: heaptrail summary ")
    assert err.splitlines()[-1] == "heaptrail summary: error: unrecognized arguments: extra"


def test_snapshot_ctrl_c_while_threads_are_waited_for(tmp_path):
    """Ctrl-C while snapshot waits for the program's threads printed heaptrail's own frames
    (snapshot.py _join_threads) at the top of the program's traceback."""
    _script(tmp_path, """\
        import os, signal, threading, time

        def work():
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGINT)      # the user's Ctrl-C, while main waits
            time.sleep(0.3)

        threading.Thread(target=work).start()
        """)
    proc = run_cli("snapshot", "-o", "c.htsnap", "s.py", cwd=str(tmp_path))
    assert proc.returncode == 130
    assert proc.stderr.startswith("Traceback (most recent call last):\n")
    assert "KeyboardInterrupt" in proc.stderr and "heaptrail" not in proc.stderr.split("KeyboardInterrupt")[0]
    assert (tmp_path / "c.htsnap").is_file()


@pytest.mark.parametrize("argv, limit", [(["snapshot", "-o", "old.out", "s.py"], 100_000),
                                         (["flamegraph", "c.htcap", "-o", "old.out"], 4_000)])
def test_a_failed_write_leaves_the_old_file_whole(tmp_path, argv, limit):
    """A write that failed half-way (a full disk; here a file size limit) had already cut the
    file that was there: yesterday's snapshot, lost with today's. Now the new file is written
    beside it and renamed over it only once complete."""
    import resource

    _script(tmp_path, "x = 1\n")
    _core._capture_write(str(tmp_path / "c.htcap"), EVENTS)
    old = tmp_path / "old.out"
    old.write_bytes(b"yesterday" * 100_000)
    os.chmod(old, 0o640)

    def small_files():   # Python ignores SIGXFSZ: a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "heaptrail", *argv], capture_output=True, text=True,
                          cwd=str(tmp_path), preexec_fn=small_files, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.endswith("old.out: File too large\n") and proc.stderr.count("\n") == 1
    assert old.read_bytes() == b"yesterday" * 100_000
    assert os.stat(old).st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["c.htcap", "old.out", "s.py"]    # no temporary left
    # without the limit: replaced, with the old file's permissions
    proc = run_cli(*argv, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert old.read_bytes()[:9] != b"yesterday" and os.stat(old).st_mode & 0o777 == 0o640


@pytest.mark.parametrize("argv", [["snapshot", "s.py", "a", "-o", "x.htsnap", "--", "-x", "1"],
                                  ["leaks", "s.py", "a", "--runs", "2", "--", "-x", "1"]])
def test_script_arguments_after_options_and_double_dash(tmp_path, argv):
    """`snapshot s.py -o x.htsnap -- -x 1` said "unrecognized arguments: -- -x 1 (a script's own
    arguments go after --)": they were after --."""
    _script(tmp_path, """\
        import sys
        print(sys.argv)
        import heaptrail.leaks
        for i in range(4):
            heaptrail.leaks.step()
        """)
    proc = run_cli(*argv, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "['s.py', 'a', '-x', '1']"


def test_leaks_call_that_raises_is_one_line(cli, tmp_path):
    """--call's function raising was heaptrail's whole traceback (cli.py, leaks.py ...)."""
    script = _script(tmp_path, """\
        calls = 0
        def f():
            global calls
            calls += 1
            if calls == 3:
                raise ZeroDivisionError("third call")
        """)
    code, out, err = cli("leaks", str(script), "--call", "f", "--runs", "3")
    assert code == 1 and out == ""
    assert err == f"heaptrail: error: --call f raised ZeroDivisionError: third call ({script}:6)\n"


def test_an_earlier_runs_child_captures_are_not_this_runs(tmp_path):
    """`run --follow-fork -o F` twice: the second run's report and `summary F --children`
    added the first run's FILE.<pid> files (still beside F) to this run's numbers."""
    _script(tmp_path, """\
        import os
        pid = os.fork()
        if pid == 0:
            x = bytearray(1000)
            os._exit(0)
        os.waitpid(pid, 0)
        """)
    first = run_cli("run", "--follow-fork", "-o", "f.htcap", "s.py", cwd=str(tmp_path))
    second = run_cli("run", "--follow-fork", "-o", "f.htcap", "s.py", cwd=str(tmp_path))
    assert first.returncode == second.returncode == 0, second.stderr
    kids = sorted(n for n in os.listdir(tmp_path) if n.startswith("f.htcap."))
    assert len(kids) == 2
    assert "child processes: 1 captures" in second.stderr
    new = [k for k in kids if k in second.stderr]
    assert len(new) == 1
    proc = run_cli("summary", "f.htcap", "--children", cwd=str(tmp_path))
    assert proc.returncode == 0
    assert "2 processes (this one and 1 children)" in proc.stdout
    old = [k for k in kids if k not in new][0]
    assert proc.stderr == f"heaptrail: warning: {tmp_path / old}: started before f.htcap, by an earlier run (skipped)\n"
