"""Every file the library writes whole goes through _format.replacing: a write that fails half-way
(a full disk; here a file size limit) leaves the file that was there as it was, names the file,
and leaves no temporary behind. Before, only the command line's outputs did; Snapshot.save(),
mark(), export_jsonl(), tracemalloc's dump(), the graph and compat writers wrote in place, so a
failed save had already cut yesterday's snapshot short."""
import os
import subprocess
import sys
import textwrap

import pytest

OLD = b"yesterday" * 20_000   # 180,000 bytes: above the limit, so the old file fits no new one

# each writes `target` (a file already there) with more than LIMIT bytes; the name's extension
# is the one the writer needs
EXTENSION = {"render_dot .dot": ".dot", "objgraph .dot": ".dot"}
WRITERS = {
    "Snapshot.save": "heaptrail.snapshot().save(target)",
    "Snapshot.export_jsonl": "heaptrail.snapshot().export_jsonl(target)",
    "tracemalloc dump": """\
        import heaptrail.tracemalloc as tm
        tm.start()
        keep = [bytearray(100 + i) for i in range(3000)]
        snap = tm.take_snapshot()
        tm.stop()
        snap.dump(target)
        """,
    "render_dot .dot": """\
        from heaptrail.graph import render_dot
        render_dot("digraph g {" + "a -> b;" * 50_000 + "}", target)
        """,
    "objgraph .dot": """\
        import heaptrail.objgraph as objgraph
        objgraph.show_refs([list(range(2000))], filename=target, max_depth=2, too_many=5000)
        """,
    "ClassTracker dump_stats": """\
        from heaptrail.pympler.classtracker import ClassTracker
        from heaptrail.pympler.classtracker_stats import HtmlStats
        class Thing:
            pass
        tracker = ClassTracker()
        tracker.track_class(Thing)
        things = [Thing() for _ in range(3000)]
        tracker.create_snapshot()
        HtmlStats(tracker=tracker).dump_stats(target)
        """,
    "refbrowser FileBrowser": """\
        from heaptrail.pympler.refbrowser import FileBrowser
        root = [[str(i) * 20 for i in range(200)] for _ in range(20)]
        FileBrowser(root, maxdepth=3).print_tree(target)
        """,
}
LIMIT = 20_000


def _write(tmp_path, target, code, limit):
    import resource

    body = textwrap.dedent(code).rstrip("\n") + "\n"
    if limit is None:
        body += "print('written')\n"
    else:
        body = ("try:\n" + textwrap.indent(body, "    ")
                + "except (OSError, heaptrail.HeaptrailError) as e:\n    print('failed:', e)\n")
    prog = tmp_path / "prog.py"
    prog.write_text("import heaptrail, sys\ntarget = sys.argv[1]\n" + body)

    def small_files():   # Python ignores SIGXFSZ: a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")   # the heaptrail the tests import
    return subprocess.run([sys.executable, str(prog), str(target)],
                          capture_output=True, text=True, env=env, timeout=120,
                          preexec_fn=small_files if limit else None)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_failed_write_leaves_the_old_file_whole(tmp_path, writer):
    out = tmp_path / "out"
    out.mkdir()
    name = "old" + EXTENSION.get(writer, ".out")
    old = out / name
    old.write_bytes(OLD)
    os.chmod(old, 0o640)
    proc = _write(tmp_path, old, WRITERS[writer], LIMIT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("failed: ") and "File too large" in proc.stdout, proc.stdout
    assert str(old) in proc.stdout    # the file asked for, not the temporary
    assert old.read_bytes() == OLD
    assert os.listdir(out) == [name]    # no temporary left
    # without the limit: replaced, keeping the old file's permissions
    proc = _write(tmp_path, old, WRITERS[writer], None)
    assert proc.returncode == 0 and proc.stdout.endswith("written\n"), proc.stderr
    assert old.stat().st_size > LIMIT and old.read_bytes()[:9] != b"yesterday"
    assert os.stat(old).st_mode & 0o777 == 0o640
    assert os.listdir(out) == [name]


def test_replacing_writes_devices_and_symlinks_in_place(tmp_path):
    """/dev/null cannot be renamed over, and a symlink's target is what the user meant: both
    are written through, as before."""
    from heaptrail._format import replacing

    with replacing(os.devnull) as target:
        assert target == os.devnull
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    with replacing(link) as target:
        assert target == str(link)
        with open(target, "w") as f:
            f.write("new")
    assert link.is_symlink() and real.read_text() == "new"


def test_replacing_names_the_file_on_an_error_without_one(tmp_path):
    """An OSError with no file name (a failed write or close says only "No space left on
    device") is raised naming the file the caller asked for."""
    from heaptrail._format import replacing

    path = tmp_path / "x.out"
    with pytest.raises(OSError) as e:
        with replacing(path) as target:
            open(target, "w").close()
            raise OSError(28, "No space left on device")
    assert e.value.filename == str(path) and e.value.errno == 28
    assert os.listdir(tmp_path) == []
