"""heaptrail.process and `heaptrail mem`: figures checked against the kernel's
own files (read here independently), real allocations, real child processes."""
import gc
import json
import mmap
import os
import subprocess
import sys
import textwrap
import time

import pytest

import heaptrail
from heaptrail import process
from conftest import UNDER_ASAN, run_cli, run_python

PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1 << 20

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")


# ---- helpers: the kernel's own figures, read without heaptrail ------------

def statm(pid):
    with open(f"/proc/{pid}/statm") as f:
        size, resident, shared = f.read().split()[:3]
    return int(size) * PAGE, int(resident) * PAGE, int(shared) * PAGE


def kv_file(path):
    """'Key:  N kB' lines -> {key: bytes}."""
    out = {}
    with open(path) as f:
        for line in f:
            key, sep, rest = line.partition(":")
            parts = rest.split()
            if sep and " " not in key and parts and parts[0].isdigit():
                out[key] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    return out


def maps_lines(pid):
    """(start, end, perms, path) of each line of /proc/PID/maps."""
    rows = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.rstrip("\n").split(None, 5)
            lo, hi = fields[0].split("-")
            rows.append((int(lo, 16), int(hi, 16), fields[1], fields[5] if len(fields) > 5 else ""))
    return rows


class Child:
    """A Python child that runs `setup`, says 'ready' and sleeps: idle, so its
    /proc figures do not move between two reads."""

    def __init__(self, setup="", env=None):
        code = textwrap.dedent(setup) + "\nimport sys, time\nprint('ready', flush=True)\ntime.sleep(120)\n"
        full_env = dict(os.environ, **(env or {}))
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                     text=True, env=full_env)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"child did not start: {line!r}")
        self.pid = self.proc.pid

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture
def child():
    made = []

    def make(setup="", env=None):
        c = Child(setup, env)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---- memory() --------------------------------------------------------------

def test_memory_of_self_matches_proc():
    m = process.memory()
    vms, rss, shared = statm("self")
    status = kv_file("/proc/self/status")
    assert m.pid == os.getpid()
    with open("/proc/self/comm") as f:
        assert m.name == f.read().strip()
    assert abs(m.rss - rss) <= 2 * MB
    assert abs(m.vms - vms) <= 16 * MB
    assert m.threads == status["Threads"]
    assert m.stack == status["VmStk"]
    assert m.peak_rss >= m.rss - 2 * MB
    assert 0 < m.uss <= m.pss <= m.rss + 2 * MB
    assert "rss=" in repr(m) and repr(m).startswith("heaptrail.process.Memory(")


@pytest.mark.noasan
def test_rss_grows_by_100mb_after_touching_100mb():
    before = process.memory().rss
    block = bytearray(100 * MB)
    block[:: PAGE] = b"\x01" * len(range(0, len(block), PAGE))   # every page written
    after = process.memory().rss
    del block
    assert abs((after - before) - 100 * MB) <= 10 * MB, (before, after)


def test_memory_of_sleeping_child_equals_its_proc_files(child):
    c = child()
    m = process.memory(c.pid)
    rollup = kv_file(f"/proc/{c.pid}/smaps_rollup")
    status = kv_file(f"/proc/{c.pid}/status")
    vms, rss, shared = statm(c.pid)
    assert m.pid == c.pid and m.threads == 1
    assert (m.rss, m.vms, m.shared) == (rss, vms, shared)
    assert m.pss == rollup["Pss"]
    assert m.uss == rollup["Private_Clean"] + rollup["Private_Dirty"]
    assert m.swap == status["VmSwap"] and m.peak_rss == status["VmHWM"]
    assert m.data == status["VmData"]


def test_memory_of_dead_pid_is_clear_error():
    pid = dead_pid()
    with pytest.raises(heaptrail.HeaptrailError, match=f"^no process with pid {pid}$"):
        process.memory(pid)
    with pytest.raises(heaptrail.HeaptrailError, match=f"^no process with pid {pid}$"):
        process.maps(pid)


def test_memory_of_zombie_has_no_address_space(cli):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(1000):   # wait, without reaping it, until it is a zombie
            with open(f"/proc/{p.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.005)
        else:
            pytest.fail("child never became a zombie")
        m = process.memory(p.pid)
        assert (m.pid, m.rss, m.vms, m.pss, m.uss) == (p.pid, 0, 0, None, None)
        assert process.maps(p.pid) == []
        code, out, err = cli("mem", str(p.pid))
        assert code == 0 and "the kernel gives no smaps" in out
    finally:
        p.wait()


@pytest.mark.parametrize("bad", [0, -1, 2**70, "1", 1.0, True])
def test_bad_pid_argument(bad):
    with pytest.raises(heaptrail.HeaptrailError, match="pid must be"):
        process.memory(bad)
    with pytest.raises(heaptrail.HeaptrailError, match="pid must be"):
        process.maps(bad)


def test_unreadable_smaps_gives_none_and_clear_error(child, cli):
    # a non-dumpable process's smaps need ptrace rights (root or CAP_SYS_PTRACE)
    c = child("import ctypes\nctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE\n")
    try:
        with open(f"/proc/{c.pid}/smaps_rollup") as f:
            f.read()
        pytest.skip("this user may read a non-dumpable process's smaps (root or CAP_SYS_PTRACE)")
    except PermissionError:
        pass
    m = process.memory(c.pid)
    assert m.pid == c.pid and m.rss == statm(c.pid)[1] and m.threads == 1
    assert m.pss is None and m.uss is None
    with pytest.raises(heaptrail.HeaptrailError,
                       match=f"^permission denied reading /proc/{c.pid}/smaps "):
        process.maps(c.pid)
    code, out, err = cli("mem", str(c.pid))
    assert code == 0 and "PSS -" in out and "the kernel gives no smaps" in out


# ---- maps() ----------------------------------------------------------------

def test_maps_rows_match_proc_maps_and_add_up_to_rollup(child):
    c = child()
    rows = process.maps(c.pid)
    rollup = kv_file(f"/proc/{c.pid}/smaps_rollup")
    assert [(r.start, r.end, r.perms, r.path) for r in rows] == maps_lines(c.pid)
    assert sum(r.rss for r in rows) == rollup["Rss"]
    assert sum(r.private_clean + r.private_dirty for r in rows) == \
        rollup["Private_Clean"] + rollup["Private_Dirty"]
    assert sum(r.shared_clean + r.shared_dirty for r in rows) == \
        rollup["Shared_Clean"] + rollup["Shared_Dirty"]
    # smaps rounds each mapping's PSS down to a kB, smaps_rollup only the sum
    assert 0 <= rollup["Pss"] - sum(r.pss for r in rows) <= 1024 * len(rows)
    assert sum(r.swap for r in rows) == rollup["Swap"]
    for r in rows:
        assert r.size == r.end - r.start
        assert r.rss <= r.size and r.rss == r.private_clean + r.private_dirty + r.shared_clean + r.shared_dirty
    kinds = {r.path: r.kind for r in rows}
    assert kinds["[stack]"] == "stack"
    assert kinds[os.path.realpath(sys.executable)] == "file"


def test_maps_kinds_of_known_mappings(tmp_path):
    import ctypes

    def address(m):
        return ctypes.addressof(ctypes.c_char.from_buffer(m))

    shared = mmap.mmap(-1, 4 * MB)                                   # MAP_SHARED|MAP_ANONYMOUS
    private = mmap.mmap(-1, 4 * MB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    path = tmp_path / "a file with spaces.bin"
    path.write_bytes(b"x" * (3 * MB))
    with open(path, "r+b") as f:
        filemap = mmap.mmap(f.fileno(), 0)
    for m in (shared, private, filemap):
        m[:: PAGE] = b"\x02" * len(range(0, len(m), PAGE))
    try:
        rows = process.maps()
        found = {}
        for name, m in (("shared", shared), ("private", private), ("file", filemap)):
            a = address(m)
            found[name] = [r for r in rows if r.start <= a < r.end]
        (sh,), (pr,), (fi,) = found["shared"], found["private"], found["file"]
        assert sh.kind == "shm" and sh.perms == "rw-s" and sh.rss == 4 * MB
        assert pr.kind == "anon" and pr.perms == "rw-p" and pr.rss >= 4 * MB
        assert fi.kind == "file" and fi.path == str(path) and fi.perms == "rw-s"
        assert fi.size == 3 * MB and fi.rss == 3 * MB and fi.offset == 0
        heap = [r.kind for r in rows if r.path == "[heap]"]
        assert heap == ["heap"] or (UNDER_ASAN and heap == [])   # ASan's malloc uses no brk heap
        assert set(r.kind for r in rows) <= set(process.KINDS)
    finally:
        for m in (shared, private, filemap):
            m.close()


def test_maps_of_a_process_with_thousands_of_mappings(child):
    # shared anonymous mappings never merge: one row each
    c = child("import mmap\nkeep = [mmap.mmap(-1, 4096) for _ in range(3000)]\n")
    rows = process.maps(c.pid)
    assert len(rows) == len(maps_lines(c.pid)) >= 3000
    assert sum(1 for r in rows if r.kind == "shm" and r.size == 4096) >= 3000


# ---- pymalloc() ------------------------------------------------------------

PYMALLOC_ENV = {"PYTHONMALLOC": "pymalloc"}


def test_pymalloc_blocks_follow_100k_small_objects():
    proc = run_python("""
        import gc, json, os
        from heaptrail import process
        gc.collect()  # the lazy import's garbage (collector off) must not be freed in the window
        before = process.pymalloc()
        keep = [object() for _ in range(100_000)]       # 16-byte blocks
        after = process.pymalloc()
        os.write(2, b"stderr still works\\n")
        cls = lambda p: [c for c in p.classes if c.block_size == 16][0]
        print(json.dumps({
            "in_use": after.in_use, "allocator": after.allocator,
            "delta16": cls(after).blocks_used - cls(before).blocks_used,
            "sum_used": sum(c.blocks_used for c in after.classes), "blocks_used": after.blocks_used,
            "sum_bytes": sum(c.blocks_used * c.block_size for c in after.classes),
            "bytes_used": after.bytes_used, "bytes_free": after.bytes_free,
            "frag": after.fragmentation, "arenas": after.arenas, "arena_size": after.arena_size,
            "pools": after.pools_used, "sum_pools": sum(c.pools for c in after.classes),
            "nclasses": len(after.classes), "sizes": [c.block_size for c in after.classes][:3],
        }))
    """, env=PYMALLOC_ENV)
    r = json.loads(proc.stdout)
    assert r["in_use"] is True and r["allocator"] == "pymalloc"
    assert 100_000 <= r["delta16"] <= 101_000
    assert r["sum_used"] == r["blocks_used"] and r["sum_bytes"] == r["bytes_used"]
    assert r["sum_pools"] == r["pools"] and r["arenas"] >= 2 and r["arena_size"] >= 256 * 1024
    assert r["frag"] == pytest.approx(r["bytes_free"] / (r["bytes_used"] + r["bytes_free"]))
    assert r["nclasses"] >= 32 and r["sizes"] == [16, 32, 48]
    # the statistics were captured, not printed; fd 2 was given back
    assert proc.stderr == "stderr still works\n"


def test_pymalloc_leaves_no_fd_behind():
    proc = run_python("""
        import os
        from heaptrail import process
        before = sorted(os.listdir("/proc/self/fd"))
        for _ in range(50):
            process.pymalloc()
        print(sorted(os.listdir("/proc/self/fd")) == before)
    """, env=PYMALLOC_ENV)
    assert proc.stdout.strip() == "True" and proc.stderr == ""


def test_pymalloc_not_in_use_under_pythonmalloc_malloc():
    proc = run_python("""
        from heaptrail import process
        p = process.pymalloc()
        print(p.in_use, p.allocator, p.arenas, p.classes, p.fragmentation)
    """, env={"PYTHONMALLOC": "malloc"})
    assert proc.stdout.split() == ["False", "malloc", "None", "None", "None"]
    assert proc.stderr == ""


def test_pymalloc_not_in_use_under_mimalloc():
    if sys.version_info < (3, 13):
        pytest.skip("mimalloc is an object allocator from Python 3.13 on")
    proc = run_python("""
        from heaptrail import process
        p = process.pymalloc()
        print(p.in_use, p.allocator)
    """, env={"PYTHONMALLOC": "mimalloc"}, check=False)
    if proc.returncode != 0 and "mimalloc" in proc.stderr:
        pytest.skip("this Python was built without mimalloc")
    assert proc.stdout.split() == ["False", "mimalloc"]


# ---- malloc() --------------------------------------------------------------

@pytest.mark.noasan   # ASan replaces malloc: glibc's figures do not move
def test_malloc_in_use_grows_with_raw_allocations():
    proc = run_python("""
        import gc
        from heaptrail import process
        gc.collect()  # the import's garbage freed now, not inside the window measured
        before = process.malloc()
        keep = [bytearray(10_000) for _ in range(100)]   # > 512 B: PyMem_RawMalloc -> malloc
        mid = process.malloc()
        big = bytearray(8 << 20)                           # above the mmap threshold
        after = process.malloc()
        print(mid.in_use - before.in_use, after.mmapped - mid.mmapped,
              after.mmapped_chunks - mid.mmapped_chunks, after.arena >= after.in_use)
    """, env=PYMALLOC_ENV)
    grew, mmapped, chunks, arena_ok = proc.stdout.split()
    assert 1_000_000 <= int(grew) <= 1_200_000
    assert 8 << 20 <= int(mmapped) <= (8 << 20) + 2 * PAGE and int(chunks) == 1
    assert arena_ok == "True"


# ---- gc() ------------------------------------------------------------------

def test_gc_figures_are_the_gc_modules():
    was = gc.isenabled()
    gc.disable()
    try:
        before = gc.get_count()
        s = process.gc()
        after = gc.get_count()
        stats = gc.get_stats()
        assert s.thresholds == gc.get_threshold()
        assert before[0] <= s.counts[0] <= after[0] and s.counts[1:] == after[1:]
        assert s.enabled is False
        for g, st in enumerate(stats):
            gen = s.generations[g]
            assert (gen.collections, gen.collected, gen.uncollectable) == \
                (st["collections"], st["collected"], st["uncollectable"])
            assert gen.threshold == s.thresholds[g]
    finally:
        if was:
            gc.enable()


def test_gc_pauses_counted_once_tracked():
    process.untrack_gc_pauses()
    process.track_gc_pauses(reset=True)
    try:
        assert process.gc().tracking_pauses is True
        before = process.gc().generations[2]
        gc.collect()
        gc.collect()
        full = process.gc().generations[2]
        assert full.pauses == before.pauses + 2
        assert full.pause_total > before.pause_total
        assert 0 < full.pause_last <= full.pause_max <= full.pause_total
        young = process.gc().generations[0].pauses
        gc.collect(0)
        assert process.gc().generations[0].pauses == young + 1
    finally:
        process.untrack_gc_pauses()
    s = process.gc()
    assert s.tracking_pauses is False
    gc.collect()
    assert process.gc().generations[2].pauses == s.generations[2].pauses


def test_track_gc_pauses_twice_installs_one_callback():
    try:
        process.track_gc_pauses()
        process.track_gc_pauses()
        assert sum(1 for cb in gc.callbacks if cb is heaptrail._core.gc_pause_callback) == 1
    finally:
        process.untrack_gc_pauses()
    assert heaptrail._core.gc_pause_callback not in gc.callbacks


# ---- heaptrail mem -----------------------------------------------------------

def test_mem_without_pid_shows_own_process_with_note(cli):
    code, out, err = cli("mem", "--top", "3")
    assert code == 0 and err == ""
    assert out.startswith(f"process {os.getpid()} (")
    assert "note: no PID given" in out
    assert "RSS " in out and "PSS " in out and "mappings by kind" in out
    assert "top 3 mappings by RSS" in out
    assert "pymalloc" not in out


def test_mem_json_of_child_matches_proc(cli, child):
    c = child()
    code, out, err = cli("mem", str(c.pid), "--json", "--top", "5")
    assert code == 0 and err == ""
    rep = json.loads(out)
    assert set(rep) == {"pid", "name", "self", "memory", "kinds", "top_mappings"}
    assert rep["pid"] == c.pid and rep["self"] is False
    vms, rss, shared = statm(c.pid)
    assert abs(rep["memory"]["rss"] - rss) <= 4 * PAGE
    assert rep["memory"]["threads"] == 1
    assert len(rep["top_mappings"]) == 5
    tops = [r["rss"] for r in rep["top_mappings"]]
    assert tops == sorted(tops, reverse=True)
    assert sum(k["rss"] for k in rep["kinds"]) == kv_file(f"/proc/{c.pid}/smaps_rollup")["Rss"]


def test_mem_self_json_has_allocators(cli):
    code, out, err = cli("mem", "--self", "--json")
    assert code == 0
    rep = json.loads(out)
    assert rep["pid"] == os.getpid() and rep["self"] is True
    assert {"pymalloc", "malloc", "gc"} <= set(rep)
    assert rep["gc"]["thresholds"] == list(gc.get_threshold())
    assert rep["pymalloc"]["in_use"] in (True, False)


def test_mem_self_text_has_summaries(cli):
    process.track_gc_pauses(reset=True)
    try:
        gc.collect()
        code, out, err = cli("mem", "--self")
    finally:
        process.untrack_gc_pauses()
    assert code == 0
    assert "pymalloc" in out and "gc: " in out and "malloc" in out
    assert "gc pauses: " in out
    assert "note: no PID given" not in out


def test_mem_bad_pid_is_one_line(cli):
    code, out, err = cli("mem", "999999")
    assert code == 1 and out == ""
    assert err == "heaptrail: error: no process with pid 999999\n"
    pid = dead_pid()
    code, out, err = cli("mem", str(pid))
    assert (code, err) == (1, f"heaptrail: error: no process with pid {pid}\n")


@pytest.mark.parametrize("args, message", [
    (["abc"], "invalid pid value: 'abc'"),
    (["0"], "invalid pid value: '0'"),
    (["--top", "-1"], "invalid count value: '-1'"),
    (["--top", "x"], "invalid count value: 'x'"),
])
def test_mem_bad_arguments(cli, args, message):
    code, out, err = cli("mem", *args)
    assert code == 2 and message in err


def test_mem_pid_and_self_together(cli, child):
    c = child()
    code, out, err = cli("mem", str(c.pid), "--self")
    assert code == 1 and err == "heaptrail: error: give a PID or --self, not both\n"


def test_mem_subprocess_no_traceback():
    proc = run_cli("mem", "999999")
    assert proc.returncode == 1
    assert proc.stderr == "heaptrail: error: no process with pid 999999\n"
    proc = run_cli("mem", "--json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["memory"]["threads"] >= 1


@pytest.mark.noasan
def test_repeated_reads_do_not_grow_rss():
    for _ in range(20):   # warm up: caches, free lists, the first arenas
        process.maps(), process.memory(), process.pymalloc(), process.malloc()
    before = process.memory().rss
    for _ in range(300):
        process.maps(), process.memory(), process.pymalloc(), process.malloc()
        with pytest.raises(heaptrail.HeaptrailError):
            process.maps(999999)
    # a 64 KiB line buffer or a path arena lost per call would be 19 MB here
    assert process.memory().rss - before < 4 * MB


@pytest.mark.parametrize("lines, trailing_newline", [
    ([b"a", b"", b"bc"], True),
    ([b"a", b"bc"], False),
    ([b"x" * 65534, b"y" * 65535, b"z" * 200_000, b"after"], True),
    ([b"k" * 131_072], False),
])
def test_line_reader_keeps_memory_bounded(tmp_path, lines, trailing_newline):
    # the reader behind every /proc parse: lines longer than its 64 KiB buffer
    # are cut to 65535 bytes, the rest skipped, the next line intact
    path = tmp_path / "lines"
    path.write_bytes(b"\n".join(lines) + (b"\n" if trailing_newline else b""))
    got = heaptrail._core._proc_read_lines(str(path))
    assert got == [line[:65535] for line in lines]


def test_line_reader_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        heaptrail._core._proc_read_lines(str(tmp_path / "none"))


# the shape of sys._debugmallocstats() on 3.11-3.13 (numbers made small)
MALLOCSTATS_SAMPLE = """\
Small block threshold = 512, in 32 size classes.

class   size   num pools   blocks in use  avail blocks
-----   ----   ---------   -------------  ------------
    0     16           1             106           915
    3     64          50           12593           157
   31    512           2              50            12

# arenas allocated total           =                    5
# arenas reclaimed                 =                    1
# arenas highwater mark            =                    4
# arenas allocated current         =                    4
4 arenas * 1048576 bytes/arena     =            4,194,304

# bytes in allocated blocks        =              833,248
# bytes in available blocks        =               30,776
18 unused pools * 16384 bytes      =              294,912
# bytes lost to pool headers       =               11,280
# bytes lost to quantization       =               16,480
# bytes lost to arena alignment    =               49,152
Total                              =            4,194,304

arena map counts
# bytes lost to arena map root     =              262,144

            8 free PyDictObjects * 48 bytes each =                  384
"""


def test_pymalloc_parser_reads_every_figure():
    p = heaptrail._core._pymalloc_parse(MALLOCSTATS_SAMPLE)
    assert (p.in_use, p.allocator) == (True, "pymalloc")
    assert (p.arena_size, p.pool_size) == (1048576, 16384)
    assert (p.arenas, p.arenas_total, p.arenas_reclaimed, p.arenas_highwater) == (4, 5, 1, 4)
    assert len(p.classes) == 32 and [c.block_size for c in p.classes[:3]] == [16, 32, 48]
    assert [(c.index, c.pools, c.blocks_used, c.blocks_free) for c in p.classes if c.pools] == \
        [(0, 1, 106, 915), (3, 50, 12593, 157), (31, 2, 50, 12)]
    assert (p.pools_used, p.blocks_used, p.blocks_free) == (53, 12749, 1084)
    assert (p.bytes_used, p.bytes_free) == (833_248, 30_776)
    assert (p.pools_unused, p.bytes_unused_pools) == (18, 294_912)
    assert p.bytes_overhead == 11_280 + 16_480 + 49_152
    assert p.fragmentation == pytest.approx(30_776 / (833_248 + 30_776))


def test_pymalloc_parser_survives_damaged_text():
    for cut in range(0, len(MALLOCSTATS_SAMPLE), 37):
        p = heaptrail._core._pymalloc_parse(MALLOCSTATS_SAMPLE[:cut])
        assert p.in_use in (True, False)
    for junk in ["", "\n\n", "Small block threshold = 512, in 999999 size classes.\n"
                 "class   size   num pools\n 999999 16 1 1 1\n 5 16 -1 -1 -1\n",
                 "Small block threshold = 0, in 0 size classes.\nclass num pools\n 0 0 0 0 0\n",
                 "x" * 100_000]:
        p = heaptrail._core._pymalloc_parse(junk)
        assert isinstance(p, process.Pymalloc)
    mimalloc = "Small block threshold = 16384, in 73 size classes.\nMedium block threshold = 131072\n"
    p = heaptrail._core._pymalloc_parse(mimalloc)
    assert (p.in_use, p.allocator, p.classes) == (False, "mimalloc", None)
