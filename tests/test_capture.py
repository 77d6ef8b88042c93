"""Capture files: the C writer (driven by _core._capture_write), the streaming
reader's numbers (peak, leaks, totals by line/function/file/stack), thread
buffers, truncation (killed programs) and the reporters' tables."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import heaptrail
from heaptrail import _core, capture

# A program with known allocations at known lines:
#   main (prog.py:5) -> load (prog.py:12) -> parse (lib.py:30)
#   main (prog.py:5) -> cache (lib.py:44)
FRAMES = [
    ("frame", 1, "prog.py", "main", 5),
    ("frame", 2, "prog.py", "load", 12),
    ("frame", 3, "lib.py", "parse", 30),
    ("frame", 4, "lib.py", "cache", 44),
    ("stack", 0, None, 1),
    ("stack", 1, 0, 2),
    ("stack", 2, 1, 3),
    ("stack", 3, 0, 4),
]
EVENTS = FRAMES + [
    ("sample", 1_000_000, 10_000_000, 0),
    ("alloc", 0x10000, 1000, 2),       # parse
    ("alloc", 0x20000, 2000, 2),       # parse
    ("alloc", 0x30000, 500, 1),        # load
    ("marker", 2_000_000, "loaded"),
    ("alloc", 0x40000, 4000, 3),       # cache: 7500 live = the peak
    ("sample", 3_000_000, 12_000_000, 7500),
    ("free", 0x20000),
    ("free", 0x40000, 4000),           # with the size hint (class 65)
    ("alloc", 0x50000, 300, 3),        # cache
    ("marker", 4_000_000, "cached"),
    ("alloc", 0x60000, 100, 0),        # main
    ("free", 0x10000),                 # 900 left: 500 load + 300 cache + 100 main
    ("sample", 5_000_000, 11_000_000, 900),
]


@pytest.fixture
def known(tmp_path):
    path = tmp_path / "known.htcap"
    _core._capture_write(str(path), EVENTS, pid=4242, cmdline=b"prog.py\0--fast")
    return str(path)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def by_location(rows):
    return {(r.function, r.file, r.line): (r.bytes, r.count) for r in rows}


def test_header_and_totals(known):
    cap = capture.open(known)
    assert cap.pid == 4242
    assert cap.command == "prog.py --fast"
    assert cap.truncated is None
    assert cap.allocations == 6 and cap.frees == 3 and cap.unmatched_frees == 0
    assert cap.total_bytes == 7900
    assert (cap.peak_bytes, cap.peak_count) == (7500, 4)
    assert (cap.leaked_bytes, cap.leaked_count) == (900, 3)
    assert cap.max_rss == 12_000_000
    assert capture.is_capture_file(known)


def test_driver_duration_is_the_events_own(tmp_path):
    """The test driver stamps blocks and END with the events' times, not the wall clock: a
    capture whose last event is at 1000 ns lasts 1000 ns however long writing it took (the
    flame graph's timeline moved under a test in a slow ASan run when it did not)."""
    path = tmp_path / "short.htcap"
    _core._capture_write(str(path), FRAMES + [("sample", 500, 1, 0), ("alloc", 0x1000, 10, 2),
                                              ("marker", 1000, "end")])
    cap = capture.open(str(path))
    assert cap.duration_ns == 1000
    assert [t for t, _ in cap.markers()] == [1000]


def test_peak_by_line(known):
    rows = capture.open(known).rows("peak", by="line")
    assert by_location(rows) == {
        ("cache", "lib.py", 44): (4000, 1),
        ("parse", "lib.py", 30): (3000, 2),
        ("load", "prog.py", 12): (500, 1),
    }
    assert [r.function for r in rows] == ["cache", "parse", "load"]   # largest first


def test_leaks_total_and_groupings(known):
    cap = capture.open(known)
    assert by_location(cap.rows("leaks", by="line")) == {
        ("load", "prog.py", 12): (500, 1),
        ("cache", "lib.py", 44): (300, 1),
        ("main", "prog.py", 5): (100, 1),
    }
    assert by_location(cap.rows("total", by="function")) == {
        ("cache", "lib.py", None): (4300, 2),
        ("parse", "lib.py", None): (3000, 2),
        ("load", "prog.py", None): (500, 1),
        ("main", "prog.py", None): (100, 1),
    }
    assert by_location(cap.rows("peak", by="file")) == {
        (None, "lib.py", None): (7000, 3),
        (None, "prog.py", None): (500, 1),
    }
    # sort by count, top 1
    top = cap.rows("total", by="line", sort="count", top=1)
    assert [(r.function, r.count, r.bytes) for r in top] == [("cache", 2, 4300)]


def test_stacks_and_tree(known):
    cap = capture.open(known)
    rows = cap.rows("peak", by="stack")
    parse = next(r for r in rows if r.function == "parse")
    assert cap.stack(parse.node) == [("parse", "lib.py", 30), ("load", "prog.py", 12), ("main", "prog.py", 5)]
    tree = {t.function: t for t in cap.tree("peak")}
    assert tree[None].bytes == 7500                      # the root
    assert (tree["main"].bytes, tree["main"].self_bytes) == (7500, 0)
    assert (tree["load"].bytes, tree["load"].self_bytes) == (3500, 500)
    assert tree["parse"].bytes == 3000 and tree["cache"].bytes == 4000
    assert tree["load"].parent == tree["main"].node


def test_samples_markers_threads_histogram(known):
    cap = capture.open(known)
    assert cap.samples() == [(1_000_000, 10_000_000, 0), (3_000_000, 12_000_000, 7500),
                             (5_000_000, 11_000_000, 900)]
    assert cap.markers() == [(2_000_000, "loaded"), (4_000_000, "cached")]
    assert [(t.allocations, t.bytes) for t in cap.threads()] == [(6, 7900)]
    hist = {(b.low, b.high): (b.count, b.bytes) for b in cap.histogram()}
    assert hist == {(64, 127): (1, 100), (256, 511): (2, 800), (512, 1023): (1, 1000),
                    (1024, 2047): (1, 2000), (2048, 4095): (1, 4000)}
    sizes = [s for s, _ in cap.largest()]
    assert sizes == [4000, 2000, 1000, 500, 300, 100]
    assert cap.stack(cap.largest()[0][1])[0].function == "cache"


def test_realloc_is_free_then_alloc(tmp_path):
    path = str(tmp_path / "r.htcap")
    _core._capture_write(path, FRAMES + [
        ("alloc", 0x1000, 64, 2),
        ("realloc", 0x1000, 0x2000, 256, 3),
        ("realloc", 0x2000, 0x2000, 128, 3),
    ])
    cap = capture.open(path)
    assert (cap.total_bytes, cap.peak_bytes, cap.leaked_bytes) == (448, 256, 128)
    assert by_location(cap.rows("leaks")) == {("cache", "lib.py", 44): (128, 1)}


def test_threads_have_their_own_buffers_and_names(tmp_path):
    path = str(tmp_path / "t.htcap")
    _core._capture_write(path, FRAMES + [
        ("alloc", 0x1000, 10, 0),
        ("switch", 1), ("thread", "worker-1"), ("alloc", 0x2000, 20, 2), ("alloc", 0x3000, 30, 2),
        ("switch", 2), ("thread", "worker-2"), ("free", 0x1000),  # freed by another thread
        ("switch", 0), ("alloc", 0x4000, 40, 3),
    ])
    cap = capture.open(path)
    threads = {t.name: (t.allocations, t.bytes) for t in cap.threads()}
    assert threads == {None: (2, 50), "worker-1": (2, 50), "worker-2": (0, 0)}
    assert cap.total_bytes == 100
    # the free's block may come before the alloc's: either it matched or it is counted
    assert (cap.leaked_bytes, cap.unmatched_frees) in ((90, 0), (100, 1))


def test_serialized_writer_keeps_the_order_across_threads(tmp_path):
    path = str(tmp_path / "s.htcap")
    events = FRAMES + [("alloc", 0x1000, 10, 0), ("alloc", 0x5000, 1, 0),
                       ("switch", 1), ("free", 0x1000), ("alloc", 0x1000, 20, 2),   # reuse by thread 1
                       ("switch", 0), ("free", 0x5000), ("free", 0x1000),
                       ("switch", 1), ("alloc", 0x2000, 30, 3)]
    _core._capture_write(path, events, serialized=True)
    cap = capture.open(path)
    assert (cap.unmatched_frees, cap.replaced) == (0, 0)
    assert (cap.total_bytes, cap.peak_bytes, cap.leaked_bytes) == (61, 30, 30)
    # without the promise the same events land per thread buffer: out of order
    _core._capture_write(path, events)
    cap = capture.open(path)
    assert cap.unmatched_frees + cap.replaced > 0


def test_many_blocks_and_compact_encoding(tmp_path):
    n = 40_000
    events = list(FRAMES)
    for i in range(n):   # addresses 32 bytes apart, the same stack: the common case
        events.append(("alloc", 0x7f0000000000 + 32 * i, 24 + i % 8, 2))
    for i in range(0, n, 2):
        events.append(("free", 0x7f0000000000 + 32 * i, 24 + i % 8))
    sizes = [24 + i % 8 for i in range(n)]
    written = {}
    for compress in (False, True):
        path = str(tmp_path / f"big{compress}.htcap")
        _core._capture_write(path, events, compress=compress)
        cap = capture.open(path)
        assert cap.allocations == n and cap.total_bytes == sum(sizes)
        assert cap.peak_bytes == sum(sizes)
        assert cap.leaked_bytes == sum(sizes[1::2])
        assert (cap.frees, cap.unmatched_frees) == (n // 2, 0)
        written[compress] = os.path.getsize(path)
    raw = written[False]
    assert raw > 65536 * 2                      # several blocks were written
    assert raw / (n * 1.5) < 3.5                # about 3 bytes an alloc (same stack), 2 a free
    if _core._capture_zlib():
        assert written[True] < raw / 20         # so regular that zlib takes most of it
    else:                                       # stored as is (END's time varint may differ)
        assert abs(written[True] - raw) < 8


def test_undefined_stack_is_unknown_frame(tmp_path):
    path = str(tmp_path / "u.htcap")
    _core._capture_write(path, [("alloc", 0x1000, 10, 77), ("alloc", 0x2000, 5, None)])
    cap = capture.open(path)
    assert by_location(cap.rows("peak")) == {("?", "?", 0): (10, 1), (None, None, None): (5, 1)}


def test_truncated_when_abandoned(tmp_path):
    """A capture never closed (os._exit) reads up to its last flushed block."""
    path = str(tmp_path / "a.htcap")
    _core._capture_write(path, FRAMES + [("alloc", 0x1000, 10, 2), ("flush",),
                                         ("alloc", 0x2000, 20, 2)], close=False)
    _core._capture_abandon()
    cap = capture.open(path)
    assert "no end record" in cap.truncated
    assert (cap.allocations, cap.total_bytes) == (1, 10)


@pytest.mark.parametrize("cut", [1, 7, 8, 20, 25])
def test_torn_last_block(tmp_path, cut):
    path = str(tmp_path / "torn.htcap")
    _core._capture_write(path, FRAMES + [("alloc", 0x1000, 10, 2), ("flush",),
                                         ("alloc", 0x2000, 20, 2), ("alloc", 0x3000, 40, 2),
                                         ("torn", cut)], close=False)
    cap = capture.open(path)
    assert "last block is incomplete" in cap.truncated
    assert (cap.allocations, cap.total_bytes) == (1, 10)


def test_sigkilled_writer_leaves_a_readable_capture(tmp_path):
    path = str(tmp_path / "killed.htcap")
    code = f"""
        import os, signal
        from heaptrail import _core
        frames = {FRAMES!r}
        events = frames + [("alloc", 0x100000 + 64 * i, i + 1, 2) for i in range(60000)]
        _core._capture_write({path!r}, events, close=False)
        os.kill(os.getpid(), signal.SIGKILL)
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == -signal.SIGKILL
    cap = capture.open(path)
    assert cap.truncated is not None
    k = cap.allocations
    assert 0 < k < 60000                          # some blocks made it, the last did not
    assert cap.total_bytes == k * (k + 1) // 2    # exactly the first k events, in order
    assert cap.peak_bytes == cap.total_bytes


def test_newer_version_and_foreign_files(tmp_path, known):
    data = bytearray(_read(known))
    assert data[8:12] == b"\x02\0\0\0"
    data[8] = 3
    newer = tmp_path / "newer.htcap"
    newer.write_bytes(bytes(data))
    with pytest.raises(heaptrail.HeaptrailError, match="written by a newer heaptrail"):
        capture.open(str(newer))
    data[8] = 1                 # version 1 (FNV checksums, records 1 and 2) is refused
    newer.write_bytes(bytes(data))
    with pytest.raises(heaptrail.HeaptrailError, match="format 1 .* written by an older heaptrail"):
        capture.open(str(newer))
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("hello, not a capture\n")
    with pytest.raises(heaptrail.HeaptrailError, match="not a heaptrail capture"):
        capture.open(str(foreign))
    assert not capture.is_capture_file(str(foreign))
    assert not capture.is_capture_file(str(tmp_path / "missing"))
    with pytest.raises(OSError):
        capture.open(str(tmp_path / "missing"))
    with pytest.raises(heaptrail.HeaptrailError, match="not a regular file"):
        capture.open(str(tmp_path))


def _blocks(data):
    """(word, data) of each block of a capture's bytes."""
    import struct

    off, out = 12, []
    while off + 8 <= len(data):
        word = struct.unpack_from("<I", data, off)[0]
        n = word & 0x7FFFFFFF
        out.append((word, data[off + 8:off + 8 + n]))
        off += 8 + n
    return out


@pytest.fixture(params=["small", "compressed"])
def fuzzed(request, tmp_path, known):
    """The known capture, and one whose event blocks zlib compresses."""
    if request.param == "small":
        return known
    if not _core._capture_zlib():
        pytest.skip("built without zlib: no compressed blocks")
    path = str(tmp_path / "z.htcap")
    events = FRAMES + [("alloc", 0x10000 + 64 * i, 40 + i % 3, 1 + i % 2) for i in range(120)]
    events += [("free", 0x10000 + 64 * i, 40 + i % 3) for i in range(0, 120, 3)] + [("flush",)]
    events += [("alloc", 0x90000 + 16 * i, 8, 3) for i in range(60)]
    _core._capture_write(path, events, compress=True)
    assert sum(1 for word, _ in _blocks(_read(path)) if word & 0x80000000) >= 2
    return path


def test_every_truncation_point(tmp_path, fuzzed):
    known = fuzzed
    data = _read(known)
    path = tmp_path / "cut.htcap"
    full = capture.open(known)
    for n in range(len(data)):
        path.write_bytes(data[:n])
        try:
            cap = capture.open(str(path))
        except heaptrail.HeaptrailError as e:
            assert n < 12 + 8 + 40, (n, e)      # only a cut inside magic/version/header block fails
            continue
        assert cap.truncated, n
        assert cap.total_bytes <= full.total_bytes
        assert cap.peak_bytes <= full.peak_bytes


def test_byte_flips_never_crash(tmp_path, fuzzed):
    import random

    known = fuzzed
    rnd = random.Random(5)
    data = _read(known)
    path = tmp_path / "flip.htcap"
    outcomes = set()
    for _ in range(400):
        b = bytearray(data)
        for _ in range(rnd.choice((1, 1, 2, 4))):
            b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
        path.write_bytes(bytes(b))
        try:
            cap = capture.open(str(path))
            cap.rows("peak", "stack"), cap.tree("leaks"), cap.pprof(), cap.timeline(4)
            outcomes.add("read")
        except heaptrail.HeaptrailError as e:
            assert "\n" not in str(e)
            outcomes.add("error")
    assert outcomes == {"read", "error"} or outcomes == {"error"}


# ---- reporters ----------------------------------------------------------------------


def test_table_command(cli, known):
    code, out, err = cli("table", known, "--peak")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"peak of {known}: 7.3 KiB"
    assert "cache (lib.py:44)" in lines[2] and "53.3%" in lines[2]
    code, out, err = cli("table", known, "--leaks", "--by", "stack", "--json")
    doc = json.loads(out)
    assert doc["total_bytes"] == 900
    first = doc["rows"][0]
    assert (first["bytes"], first["function"]) == (500, "load")
    assert [f["function"] for f in first["stack"]] == ["load", "main"]
    code, out, err = cli("table", known, "--total", "--by", "file", "--sort", "count", "--top", "1", "--json")
    assert [(r["file"], r["count"], r["bytes"]) for r in json.loads(out)["rows"]] == [("lib.py", 4, 7300)]


def test_tree_command(cli, known):
    code, out, err = cli("tree", known)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"7.3 KiB peak of {known}"
    assert lines[1].split() == ["7.3", "KiB", "100.0%", "main", "(prog.py:5)"]
    assert lines[2].split() == ["3.9", "KiB", "53.3%", "cache", "(lib.py:44)"]
    assert lines[3].split() == ["3.4", "KiB", "46.7%", "load", "(prog.py:12)"]
    assert lines[4].split() == ["2.9", "KiB", "40.0%", "parse", "(lib.py:30)"]
    assert "(in load itself)" in lines[5] and "500 B" in lines[5]


def test_stats_command(cli, known):
    code, out, err = cli("stats", known, "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["allocations"] == 6 and doc["total_bytes"] == 7900
    assert doc["top_by_count"][0]["function"] == "cache"
    assert doc["largest"][0] == {"size": 4000, "where": "cache (lib.py:44)"}
    code, out, err = cli("stats", known)
    assert "size histogram:" in out and "2048-4095" in out


def test_summary_text(known):
    text = capture.summary_text(known, top=2)
    lines = text.splitlines()
    assert lines[1] == "peak traced memory: 7.3 KiB in 4 blocks"
    assert "cache (lib.py:44)" in lines[2] and "main (prog.py:5)" in lines[2]
    assert "total allocated: 7.7 KiB in 6 allocations" in text
    assert "still allocated at exit (leaks): 900 B in 3 blocks" in text
    assert "RSS peak: 11.4 MiB" in text
    spark = next(l for l in lines if l.startswith("traced over time"))
    assert spark.split("|")[1] == " █▁"


@pytest.mark.parametrize("command", ["table", "tree", "stats"])
def test_reporters_bad_files(cli, tmp_path, known, command):
    foreign = tmp_path / "f.bin"
    foreign.write_bytes(b"\x00" * 100)
    for path, message in [(str(tmp_path / "nope"), "No such file"), (str(foreign), "not a heaptrail capture")]:
        code, out, err = cli(command, path)
        assert code == 1
        assert err.count("\n") == 1 and message in err and "Traceback" not in err
    data = bytearray(_read(known))
    data[60] ^= 0xFF
    bad = tmp_path / "bad.htcap"
    bad.write_bytes(bytes(data))
    code, out, err = cli(command, str(bad))
    assert code == 1 and "corrupted capture" in err and err.count("\n") == 1
    cut = tmp_path / "cut.htcap"
    cut.write_bytes(_read(known)[:-5])
    code, out, err = cli(command, str(cut))
    assert code == 0 and err.count("\n") == 1 and "is truncated" in err


# ---- the format as documented in capture.h, assembled by hand ------------------------

_M64 = (1 << 64) - 1
_K1, _K2 = 0x9E3779B97F4A7C15, 0xD6E8FEB86659FD93


def _checksum(word, data):
    """capture.c's block checksum, written again from the format's description."""
    h = ((word * _K1) ^ len(data)) & _M64
    for i in range(0, len(data), 8):
        w = int.from_bytes(data[i:i + 8], "little")        # the last word zero-padded
        h = ((h ^ w) * _K1) & _M64
        h ^= h >> 29
    h ^= h >> 32
    h = (h * _K2) & _M64
    h ^= h >> 32
    return h & 0xFFFFFFFF


def _block(body, compress=False):
    import struct
    import zlib

    data = body
    word = len(body)
    if compress:
        z = zlib.compressobj(wbits=-15)                  # raw deflate
        data = struct.pack("<I", len(body)) + z.compress(body) + z.flush()
        word = len(data) | 0x80000000
    return struct.pack("<II", word, _checksum(word, data)) + data


def test_documented_worked_example(tmp_path):
    """The header's worked example, byte for byte, read by the C reader; then
    the same blocks compressed by Python's zlib."""
    import struct

    header = bytes([8, 42, 0, 0, 0, 3]) + b"a\0b"       # HEADER pid 42, times 0, cmdline "a\0b"
    example = bytes.fromhex("01000000" "e803000000000000" "0aac02804004" "468040")
    defs = (struct.pack("<IQ", 1, 0) + bytes([4, 2, 4]) + b"m.py" + bytes([1]) + b"f" + bytes([7])
            + bytes([3, 2, 0, 2]))                       # FRAME 2 m.py f 7; STACK 2 (outermost) frame 2
    end = struct.pack("<IQ", 0, 0) + bytes([9, 0xD0, 0x0F])   # END at 2000 ns
    for compress in (False, True):
        if compress and not _core._capture_zlib():
            continue
        data = b"\x89HTCAP\r\n" + struct.pack("<I", 2) + _block(struct.pack("<IQ", 0, 0) + header)
        data += _block(example, compress) + _block(defs, compress) + _block(end)
        path = tmp_path / "hand.htcap"
        path.write_bytes(data)
        cap = capture.open(str(path))
        assert (cap.pid, cap.command, cap.truncated, cap.duration_ns) == (42, "a b", None, 2000)
        assert (cap.allocations, cap.frees, cap.total_bytes, cap.peak_bytes, cap.leaked_bytes) == (1, 1, 300, 300, 0)
        assert (cap.unmatched_frees, cap.replaced) == (0, 0)
        assert by_location(cap.rows("total")) == {("f", "m.py", 7): (300, 1)}
        # a wrong checksum in a block followed by others is corruption
        bad = bytearray(data)
        bad[len(data) - len(_block(end)) - 3] ^= 1
        path.write_bytes(bytes(bad))
        with pytest.raises(heaptrail.HeaptrailError, match="checksum mismatch"):
            capture.open(str(path))
    # a compressed block whose stream is not what its length says (checksum right)
    if _core._capture_zlib():
        import zlib

        z = zlib.compressobj(wbits=-15)
        body = struct.pack("<I", len(example) + 1) + z.compress(example) + z.flush()
        word = len(body) | 0x80000000
        bad = (b"\x89HTCAP\r\n" + struct.pack("<I", 2) + _block(struct.pack("<IQ", 0, 0) + header)
               + struct.pack("<II", word, _checksum(word, body)) + body + _block(end))
        path.write_bytes(bad)
        with pytest.raises(heaptrail.HeaptrailError, match="does not inflate to its length"):
            capture.open(str(path))


def test_address_zero_in_a_capture(tmp_path):
    """0 is the live table's empty key: a FREE of address 0 used to "remove" an
    empty slot and free a block at its stale index, an ALLOC there to replace
    one (both out-of-bounds writes). Now a FREE of 0 is unmatched and an ALLOC
    at 0 is corruption."""
    import struct

    header = bytes([8, 42, 0, 0, 0, 0])                    # HEADER pid 42, times 0, no cmdline
    end = struct.pack("<IQ", 0, 0) + bytes([9, 0])

    def capture_with(records):
        data = (b"\x89HTCAP\r\n" + struct.pack("<I", 2) + _block(struct.pack("<IQ", 0, 0) + header)
                + _block(struct.pack("<IQ", 1, 1000) + records) + _block(end))
        path = tmp_path / "zero.htcap"
        path.write_bytes(data)
        return str(path)

    # FREE (class 0) of 0, then ALLOC(0x1000, 300 bytes, stack 2) and its FREE (class 38)
    cap = capture.open(capture_with(bytes([0x20, 0x00]) + bytes.fromhex("0aac02804004" "468040")))
    assert (cap.allocations, cap.frees, cap.unmatched_frees, cap.peak_bytes, cap.leaked_bytes) == (1, 2, 1, 300, 0)
    # ALLOC(address 0, 8 bytes, stack 0)
    with pytest.raises(heaptrail.HeaptrailError, match="corrupted capture: an allocation at address 0"):
        capture.open(capture_with(bytes([0x0A, 0x08, 0x00, 0x00])))


def test_empty_command_line_read_twice(tmp_path):
    """An empty first string (the command line), interned again by the second
    pass (the peak is not at the end) while the string arena was still empty:
    memcmp was handed a NULL pointer (undefined behaviour, an abort under
    UBSan)."""
    path = str(tmp_path / "empty.htcap")
    _core._capture_write(path, [("alloc", 0x1000, 10, None), ("free", 0x1000)], cmdline=b"")
    cap = capture.open(path)
    assert (cap.command, cap.peak_bytes, cap.leaked_bytes, cap.total_bytes) == ("", 10, 0, 10)


def test_timeline_of_a_capture_rewritten_since_it_was_read(tmp_path):
    """timeline() reads the file again: when it was rewritten meanwhile (a new
    `heaptrail run -o` of the same path), the replay met stacks the tree does
    not cover and indexed past its arrays (a crash). Now a clear error."""
    path = str(tmp_path / "rewritten.htcap")
    frame = [("frame", 1, "a.py", "f", 1)]
    _core._capture_write(path, frame + [("stack", 0, None, 1), ("sample", 1000, 1, 1), ("alloc", 0x1000, 10, 0),
                                        ("sample", 2000, 1, 1), ("alloc", 0x2000, 10, 0), ("sample", 3000, 1, 1)])
    cap = capture.open(path)
    assert (cap.allocations, len(cap.timeline(4))) == (2, 4)
    events = frame + [("stack", k, None, 1) for k in range(50)] + [("sample", 500, 1, 1)]
    _core._capture_write(path, events + [("alloc", 0x1000 * (k + 1), 10, k) for k in range(50)])
    with pytest.raises(heaptrail.HeaptrailError, match="the file changed since it was first read"):
        cap.timeline(8)


def test_free_classes_keep_their_own_bases(tmp_path):
    """Frees of interleaved size classes, with and without the size hint,
    match their allocations (each class has its own delta base)."""
    path = str(tmp_path / "cls.htcap")
    events = list(FRAMES)
    addrs = []
    for i in range(300):
        size = (8, 100, 520, 5000)[i % 4]
        a = (0x10000, 0x50000, 0x900000, 0x7f00000)[i % 4] + i * size
        addrs.append((a, size))
        events.append(("alloc", a, size, 2 if i % 3 else 1))
    for j, (a, size) in enumerate(addrs[:200]):
        events.append(("free", a, size) if j % 2 else ("free", a))
    _core._capture_write(path, events, compress=False)
    cap = capture.open(path)
    assert (cap.allocations, cap.frees, cap.unmatched_frees, cap.replaced) == (300, 200, 0, 0)
    assert cap.leaked_bytes == sum(size for _, size in addrs[200:])
    assert cap.total_bytes == sum(size for _, size in addrs)


@pytest.mark.parametrize("command", [["table"], ["tree"], ["stats"], ["table", "--by", "stack", "--json"],
                                     ["flamegraph", "-o", "{out}.html"], ["plot", "-o", "{out}.svg"],
                                     ["export", "--format", "pprof", "-o", "{out}"],
                                     ["export", "--format", "speedscope", "-o", "{out}"]])
def test_cli_every_truncation_point(cli, tmp_path, known, command):
    data = _read(known)
    path = tmp_path / "cut.htcap"
    args = [a.format(out=tmp_path / "out") for a in command[1:]]
    for n in range(0, len(data), 3):
        path.write_bytes(data[:n])
        code, out, err = cli(command[0], str(path), *args)
        if code == 1 and "no memory samples" in err:      # plot of a capture cut before its first sample
            assert err.count("\n") == 1
            continue
        assert (code, err.count("\n")) in ((0, 1), (1, 1)), (n, code, err)
        assert "Traceback" not in err
        assert ("is truncated" in err) if code == 0 else err.startswith("heaptrail: error: ")


def _threads_writing(path, n, nthreads):
    import threading

    _core._capture_write(path, FRAMES, close=False)
    totals, tids = {}, []

    def work(k):
        tids.append(threading.get_native_id())
        totals[k] = _core._capture_thread_events(n, 0x100000000 * (k + 1), 4, f"writer-{k}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # join() returns before the OS thread runs its exit destructors (which
    # flush): wait until the kernel has let each thread go
    for tid in tids:
        for _ in range(10000):
            if not os.path.exists(f"/proc/self/task/{tid}"):
                break
            time.sleep(0.001)
    return totals


def test_real_threads_write_concurrently(tmp_path):
    path = str(tmp_path / "threads.htcap")
    n = 30_000            # more than a block per thread
    totals = _threads_writing(path, n, 4)
    _core._capture_close()
    cap = capture.open(path)
    assert cap.truncated is None
    per_thread = {t.name: (t.allocations, t.bytes) for t in cap.threads()}
    allocs = n - (n - 64) // 2          # alloc, then alloc+free pairs once 64 are live
    assert per_thread == {f"writer-{k}": (allocs, totals[k]) for k in range(4)}
    assert cap.unmatched_frees == 0 and cap.replaced == 0
    assert cap.leaked_count == 4 * 64
    assert cap.allocations + cap.frees == 4 * n


def test_thread_exit_flushes_its_buffer(tmp_path):
    """A thread's events reach the file when it exits, even if the program
    is then killed before closing the capture."""
    path = str(tmp_path / "exit.htcap")
    totals = _threads_writing(path, 100, 2)      # far less than a block each
    _core._capture_abandon()
    cap = capture.open(path)
    assert "no end record" in cap.truncated
    assert {t.name: t.bytes for t in cap.threads()} == {"writer-0": totals[0], "writer-1": totals[1]}
