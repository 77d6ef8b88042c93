"""Snapshot files (format_snapshot.c): round trips, the JSON lines export, and a reader that
turns every truncation and corruption into a clear HeaptrailError."""
import json
import os
import random
import subprocess
import sys

import pytest

import heaptrail
from heaptrail import HeaptrailError, _core
from heaptrail.heap import Snapshot

MAGIC = b"HTSNAP\x00\x01"


class Node:
    def __init__(self, name):
        self.name = name


def every_edge(snap):
    return [snap._h.edges(i) for i in range(snap.objects)]


def every_record(snap):
    return [snap._h.record(i) for i in range(snap.objects)]


@pytest.fixture(scope="module")
def live_and_file(tmp_path_factory):
    keep = [Node(f"n{k}") for k in range(50)]
    keep[0].__dict__  # one materialized dict: owner and attribute labels
    snap = heaptrail.snapshot()
    path = tmp_path_factory.mktemp("snap") / "live.htsnap"
    snap.save(path)
    yield snap, path, keep


def test_round_trip_is_equal(live_and_file):
    snap, path, keep = live_and_file
    back = heaptrail.load(path)
    assert back.objects == snap.objects and back.edges == snap.edges
    assert back.total_size == snap.total_size
    assert list(back.summary()) == list(snap.summary())
    assert list(back.summary(by="owner")) == list(snap.summary(by="owner"))
    assert list(back.summary(by="module")) == list(snap.summary(by="module"))
    assert every_record(back) == every_record(snap)
    assert every_edge(back) == every_edge(snap)
    assert back._h.stats()["python_minor"] == sys.version_info.minor
    q = f"type == 'Node' and module == '{__name__}'"
    assert back.query(q) == snap.query(q) and len(back.query(q)) == 50
    assert back._describe(back._index(id(keep[3]))) == f"<Node 0x{id(keep[3]):x}>"
    assert back.diff(snap).as_dicts() == []
    assert "from" in repr(back)


def test_loaded_snapshot_takes_addresses_not_live_objects(live_and_file):
    """A file's addresses are another moment's: a live object passed to a loaded snapshot was
    looked up by id() and could silently name an unrelated object of the file."""
    snap, path, keep = live_and_file
    back = heaptrail.load(path)
    with pytest.raises(HeaptrailError, match="loaded from a file: pass an address, not a live Node"):
        back.record(keep[3])
    assert back.record(id(keep[3])).type.endswith("Node")  # by address it is found
    assert snap.record(keep[3]).address == id(keep[3])      # a live snapshot takes the object


def test_empty_heap_file_bytes(tmp_path):
    h = _core._graph_from_edges(0, [])
    path = tmp_path / "empty.htsnap"
    h.save(str(path))
    data = path.read_bytes()
    # magic, version 2, 8 bytes of checksum, python minor, n m s, three empty sections, END
    assert data[:8] == MAGIC and data[8:12] == bytes([2, 0, 0, 0])
    assert data[21:] == bytes([0, 0, 0, 1, 0, 2, 0, 3, 0, 0, 0])
    assert heaptrail.load(path).objects == 0


def test_version_1_files_without_checksum_still_load(tmp_path):
    """Format 1 is format 2 without the checksum (format_snapshot.h): still read."""
    v1 = MAGIC + bytes([1, 0, 0, 0, 11, 0, 0, 0, 1, 0, 2, 0, 3, 0, 0, 0])
    path = tmp_path / "v1.htsnap"
    path.write_bytes(v1)
    back = heaptrail.load(path)
    assert back.objects == 0 and back._h.stats()["python_minor"] == 11


def small_file(tmp_path):
    """A small but complete file: labels of every kind, types, values, owners."""
    h = _core._graph_from_edges(
        6, [(0, 1, "__dict__"), (1, 2, ".CACHE"), (2, 3, "['user:42']"), (3, 4, 3), (4, 5, None),
            (5, 0, "type")],
        sizes=[10, 20, 30, 40, 50, 60], roots=[0], types=[5, 5, 5, 5, 5, 5],
        values=["app", None, None, None, None, "Session"])
    path = tmp_path / "small.htsnap"
    h.save(str(path))
    return path


def test_small_file_round_trip(tmp_path):
    path = small_file(tmp_path)
    back = heaptrail.load(path)
    assert back.objects == 6 and back.edges == 6 and back.total_size == 210
    assert back._h.edges(0) == [(1, "__dict__")]
    assert back._h.edges(2) == [(3, "['user:42']")]
    assert back._h.edges(3) == [(4, 3)]
    assert back._h.edges(4) == [(5, None)]


def test_every_truncation_is_a_clear_error(tmp_path):
    path = small_file(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "cut.htsnap"
    assert 40 < len(data) < 400
    for k in range(len(data)):
        cut.write_bytes(data[:k])
        with pytest.raises(HeaptrailError) as e:
            heaptrail.load(cut)
        assert str(e.value).startswith(str(cut) + ": ")


def test_every_bit_flip_is_a_clear_error(tmp_path):
    """Every single flipped bit, anywhere, is refused: in the magic, the version or the checksum
    by their checks, in the rest by the checksum (a flipped size, address or flag parses as well
    as the right one: 74 of 180 randomly damaged files loaded with altered data before it)."""
    path = small_file(tmp_path)
    data = path.read_bytes()
    bad = tmp_path / "flip.htsnap"
    reasons = set()
    for pos in range(len(data)):
        for bit in range(8):
            b = bytearray(data)
            b[pos] ^= 1 << bit
            bad.write_bytes(bytes(b))
            with pytest.raises(HeaptrailError) as e:
                heaptrail.load(bad)
            assert str(e.value).startswith(str(bad) + ": ")
            reasons.add(str(e.value)[len(str(bad)) + 2:])
    assert "damaged or truncated (checksum mismatch)" in reasons
    assert "not a heaptrail snapshot (bad magic)" in reasons


def test_random_multi_byte_damage_is_a_clear_error(tmp_path):
    path = small_file(tmp_path)
    data = path.read_bytes()
    rng = random.Random(1234)
    bad = tmp_path / "flip.htsnap"
    for _ in range(200):
        b = bytearray(data)
        for _ in range(rng.randint(2, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        if bytes(b) == data:
            continue
        bad.write_bytes(bytes(b))
        with pytest.raises(HeaptrailError) as e:
            heaptrail.load(bad)
        assert str(e.value).startswith(str(bad) + ": ")


def test_huge_counts_in_header_are_refused(tmp_path):
    # magic, version, python 11, n = 2**40 (varint), then nothing
    data = MAGIC + bytes([1, 0, 0, 0, 11]) + bytes([0x80, 0x80, 0x80, 0x80, 0x80, 0x20]) + b"\x00\x00"
    path = tmp_path / "huge.htsnap"
    path.write_bytes(data)
    with pytest.raises(HeaptrailError, match="impossible header counts"):
        heaptrail.load(path)


def test_edge_count_that_wraps_around_is_refused(tmp_path):
    # 3 objects, 2 edges; object 1 claims 2**64 - 1 edges, which wraps the running total back
    # below the header's count: edge_start would go backwards (object 1 ending before it starts)
    def obj(edges):  # address delta, type, size 8, len, flags, value, owner, module, edges
        return bytes([2, 0, 8, 0, 0, 0, 0, 0]) + edges
    objects = obj(b"\x02") + obj(b"\xff" * 9 + b"\x01") + obj(b"\x01")
    data = (MAGIC + bytes([1, 0, 0, 0, 11, 3, 2, 0]) + bytes([1, 0])
            + bytes([2, len(objects)]) + objects + bytes([3, 4, 1, 0, 2, 0]) + bytes([0, 0]))
    path = tmp_path / "wrap.htsnap"
    path.write_bytes(data)
    with pytest.raises(HeaptrailError, match="more edges than the header says"):
        heaptrail.load(path)
    # the same file with objects holding 1, 0 and 1 edges is a good file
    objects = obj(b"\x01") + obj(b"\x00") + obj(b"\x01")
    path.write_bytes(MAGIC + bytes([1, 0, 0, 0, 11, 3, 2, 0]) + bytes([1, 0])
                     + bytes([2, len(objects)]) + objects + bytes([3, 4, 1, 0, 2, 0]) + bytes([0, 0]))
    snap = heaptrail.load(path)
    assert (snap.objects, snap.edges) == (3, 2)
    assert [d for d, _ in snap._h.edges(0)] == [1] and [d for d, _ in snap._h.edges(2)] == [2]


def test_object_at_address_zero_is_never_looked_up(cli, tmp_path):
    # 0 is the address index's empty key: looking it up "found" an empty slot and took its
    # stale value for an object index (a crash in diff, "object index 3200171709 out of range"
    # from `heaptrail path FILE 0`). Two objects: one at address 0, one at 0x10.
    def obj(addr_delta):  # address delta (svarint), type, size 8, len, flags, value, owner, module, edges
        return bytes([addr_delta, 0, 8, 0, 0, 0, 0, 0, 0])
    objects = obj(0) + obj(0x20)
    path = tmp_path / "zero.htsnap"
    path.write_bytes(MAGIC + bytes([1, 0, 0, 0, 11, 2, 0, 0]) + bytes([1, 0]) + bytes([2, len(objects)])
                     + objects + bytes([3, 0]) + bytes([0, 0]))
    for _ in range(20):  # fresh index tables each time, on whatever memory malloc hands back
        snap = heaptrail.load(path)
        assert snap._h.index(0) == -1 and snap._h.index(0x10) == 1
        other = heaptrail.load(path)
        # object 0 is never "the same object" in the other heap (it has no address)
        assert [(r.added, r.removed, r.count) for r in snap.diff(other)] == [(1, 1, 2)]
    code, out, err = cli("path", str(path), "0")
    assert (code, err) == (1, "heaptrail: error: object 0x0 is not in this snapshot\n")


def test_sizes_that_add_up_past_2_63_are_refused(tmp_path):
    # two objects of 2**62 bytes each: the summary and diff sum sizes in int64, so the file
    # loaded and reported "Total size = 9223372036854775808", a kind of size -9223372036854775808
    def obj(addr_delta, size):
        return bytes([addr_delta, 0]) + size + bytes([0, 0, 0, 0, 0, 0])
    big = bytes([0x80] * 8 + [0x40])                 # varint 2**62
    path = tmp_path / "big.htsnap"
    for sizes, ok in (((big, big), False), ((big, bytes([0xFF] * 8 + [0x3F])), True)):
        objects = obj(0x20, sizes[0]) + obj(0x20, sizes[1])
        path.write_bytes(MAGIC + bytes([1, 0, 0, 0, 11, 2, 0, 0]) + bytes([1, 0])
                         + bytes([2, len(objects)]) + objects + bytes([3, 0]) + bytes([0, 0]))
        if ok:  # 2**62 + 2**62 - 1 = 2**63 - 1: the largest total there is
            snap = heaptrail.load(path)
            assert snap.total_size == 2**63 - 1 and [r.size for r in snap.summary()] == [2**63 - 1]
        else:
            with pytest.raises(HeaptrailError, match="object sizes add up past 2\\*\\*63 bytes"):
                heaptrail.load(path)


@pytest.mark.parametrize("content, message", [
    (b"", "bad magic"),
    (b"PK\x03\x04 a zip file, not ours", "bad magic"),
    (MAGIC + bytes([9, 0, 0, 0]), "unsupported snapshot version"),
    (MAGIC + bytes([1, 0, 0, 0, 11, 0, 0, 0, 2, 0]), "sections out of order"),
    (MAGIC + bytes([1, 0, 0, 0, 11, 0, 0, 0, 0, 0]), "a required section is missing"),
    (MAGIC + bytes([1, 0, 0, 0, 11, 0, 0, 0, 1, 0, 2, 0, 3, 0, 0, 0, 7]), "data after the end"),
    (MAGIC + bytes([1, 0, 0, 0, 11, 0, 0, 0, 1, 0, 9, 2, 5, 5, 2, 0, 3, 0, 0, 0]), None),
])
def test_foreign_and_malformed_files(tmp_path, content, message):
    path = tmp_path / "x.htsnap"
    path.write_bytes(content)
    if message is None:  # an unknown section (tag 9) is skipped: the compatibility rule
        assert heaptrail.load(path).objects == 0
        return
    with pytest.raises(HeaptrailError, match=message):
        heaptrail.load(path)


@pytest.mark.noasan  # the address-space limit below and ASan's shadow memory exclude each other
def test_an_endless_device_is_not_read_to_its_end():
    # /dev/zero never ends: the whole-file reader grew its buffer until memory ran out (a
    # MemoryError under the 1 GiB address-space limit here); it stops once the magic is wrong
    code = ("import resource, heaptrail\n"
            "from heaptrail.tracesnap import Snapshot\n"
            "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "for load in (heaptrail.load, Snapshot.load):\n"
            "    try:\n"
            "        load('/dev/zero')\n"
            "    except heaptrail.HeaptrailError as e:\n"
            "        print(e)\n")
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(heaptrail.__file__)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=pkg_parent))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "/dev/zero: not a heaptrail snapshot (bad magic)",
        "/dev/zero: damaged trace snapshot file: not a heaptrail trace snapshot (bad magic)"]


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        heaptrail.load(tmp_path / "nope.htsnap")
    snap = heaptrail.load(small_file(tmp_path))
    with pytest.raises(OSError):
        snap.save(tmp_path / "no" / "such" / "dir.htsnap")


def test_export_jsonl_has_meliae_fields(tmp_path):
    text = "exported-string-value"
    holder = [text, 12345, Node]
    snap = heaptrail.snapshot()
    out = tmp_path / "snap.jsonl"
    snap.export_jsonl(out)
    lines = out.read_text(encoding="utf-8").split("\n")  # not splitlines: U+2028 is data
    assert lines.pop() == ""
    assert len(lines) == snap.objects
    rows = {r["address"]: r for r in map(json.loads, lines)}
    assert rows[id(text)] == {"address": id(text), "type": "str", "size": sys.getsizeof(text),
                              "len": len(text), "value": text, "refs": []}
    lst = rows[id(holder)]
    assert lst["type"] == "list" and lst["len"] == 3 and lst["refs"] == [id(text), id(12345), id(Node)]
    assert rows[id(Node)]["name"] == f"{__name__}.Node"
    assert rows[id(sys)]["name"] == "sys"


def test_export_jsonl_numbers_are_json_numbers(tmp_path):
    """ints and floats are numbers (as meliae writes them), bools true/false; what JSON cannot
    write as a number (inf, nan, an int shown by its leading digits) stays a string."""
    keep = [12345, -7, 1.5, 1e300, 2 ** 100, True, float("inf"), float("nan"), 3 ** 300]
    snap = heaptrail.snapshot()
    out = tmp_path / "nums.jsonl"
    snap.export_jsonl(out)
    lines = out.read_text(encoding="utf-8").split("\n")[:-1]  # not splitlines: U+2028 is data
    rows = {r["address"]: r for r in map(json.loads, lines)}
    values = [rows[id(x)]["value"] for x in keep]
    assert values[:6] == [12345, -7, 1.5, 1e300, 2 ** 100, True]
    assert values[6:8] == ["inf", "nan"] and values[8].startswith("~1.36891479058588")


# ---- the command line --------------------------------------------------------------------------

APP = '''
import sys
import heaptrail

class Session:
    def __init__(self, uid):
        self.uid = uid

CACHE = {}
for k in range(40):
    CACHE[f"user:{k}"] = [0, 1, 2, Session(k)]
heaptrail.mark("loaded")
for k in range(40, 65):
    CACHE[f"user:{k}"] = [0, 1, 2, Session(k)]
print("args", sys.argv[1:])
print("target", hex(id(CACHE["user:42"][3])))
'''


@pytest.fixture(scope="module")
def app_snapshots(tmp_path_factory):
    from conftest import run_cli

    d = tmp_path_factory.mktemp("app")
    (d / "app.py").write_text(APP)
    out = d / "app.htsnap"
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(heaptrail.__file__)))
    proc = run_cli("snapshot", "-o", str(out), "--", "app.py", "one", "--two", cwd=str(d),
                   env={"PYTHONPATH": pkg_parent})
    assert proc.returncode == 0, proc.stderr
    assert "args ['one', '--two']" in proc.stdout
    assert f"written to {out}" in proc.stderr
    # the heap's size and the file's were both "(N bytes)": which was it?
    assert f"of heap) written to {out} (" in proc.stderr
    assert f"1 snapshot at heaptrail.mark() beside it ({out}.<n>.<label>)" in proc.stderr
    target = int(proc.stdout.split("target ")[1].split()[0], 16)
    return d, out, d / "app.htsnap.1.loaded", target


def test_cli_snapshot_leaves_heaptrail_out(app_snapshots):
    """`heaptrail snapshot` runs the program in its own process: the snapshot held every
    command's module and parser (19 ArgumentParsers, a third of an empty script's objects), then
    the snapshot command's. Now none of heaptrail is in it: no module, function, class, parser,
    and no frame (the program has ended; the command's frames and its launcher's are
    heaptrail's)."""
    d, out, mark, target = app_snapshots
    snap = heaptrail.load(out)
    assert snap.query("type == 'module' and name startswith 'heaptrail'") == []
    assert snap.query("module startswith 'heaptrail'") == []
    assert snap.query("type == 'ArgumentParser' or type == 'Namespace'") == []
    assert snap.query("type == 'frame'") == []
    assert len(snap.query("type == 'module' and name == '__main__'")) == 1  # the program's
    # at heaptrail.mark(), the program's frame is the one frame: not mark()'s, not the command's
    assert [r.value for r in heaptrail.load(mark).query("type == 'frame'")] == ["<module>"]


def test_cli_snapshot_summary(cli, app_snapshots):
    d, out, mark, target = app_snapshots
    code, text, err = cli("summary", str(out), "--top", "5")
    assert code == 0, err
    lines = text.splitlines()
    assert lines[0].startswith("Partition of a set of ")
    assert len(lines) == 2 + 5 + 1 and lines[-1].endswith("more rows>")
    code, text, err = cli("summary", str(out), "--json", "--top", "1000")
    rows = {r["kind"]: r for r in json.loads(text)["rows"]}
    assert rows["__main__.Session"]["count"] == 65
    code, text, err = cli("summary", str(mark), "--json", "--top", "1000", "--by", "owner")
    rows = {r["kind"]: r for r in json.loads(text)["rows"]}
    assert rows["__main__.Session"]["count"] == 40


def test_cli_diff_shows_the_growth(cli, app_snapshots):
    d, out, mark, target = app_snapshots
    code, text, err = cli("diff", str(mark), str(out), "--json", "--top", "1000")
    assert code == 0, err
    rows = {r["kind"]: r for r in json.loads(text)}
    assert (rows["__main__.Session"]["count_delta"], rows["__main__.Session"]["added"]) == (25, 25)
    code, text, err = cli("diff", str(mark), str(out))
    assert "__main__.Session" in text and text.startswith(f"{mark} -> {out}: ")


def test_cli_query_and_path(cli, app_snapshots):
    d, out, mark, target = app_snapshots
    code, text, err = cli("query", str(out), f"address == {target}")
    assert code == 0, err
    assert text.splitlines() == [f"0x{target:x} __main__.Session " + text.split("Session ")[1].splitlines()[0],
                                 "1 object"]
    code, text, err = cli("query", str(out), "type == 'Session'", "--json", "--limit", "7")
    assert len(json.loads(text)) == 7
    code, text, err = cli("path", str(out), hex(target))
    assert code == 0, err
    assert text.strip() == f"module __main__ -> .CACHE -> ['user:42'] -> [3] -> <Session 0x{target:x}>"


def test_cli_query_says_whether_more_objects_match(cli, app_snapshots):
    """65 Sessions: --limit 65 printed '65 objects (limit reached)' though none was left out."""
    d, out, mark, target = app_snapshots
    code, text, err = cli("query", str(out), "type == 'Session'", "--limit", "65")
    assert code == 0 and text.splitlines()[-1] == "65 objects"
    code, text, err = cli("query", str(out), "type == 'Session'", "--limit", "64")
    lines = text.splitlines()
    assert len(lines) == 65 and lines[-1] == "64 objects (more match: raise --limit)"


def test_cli_retainers_cycles_dot(cli, app_snapshots, tmp_path):
    d, out, mark, target = app_snapshots
    code, text, err = cli("retainers", str(out), "--top", "3")
    assert code == 0, err
    assert text.splitlines()[0].split()[:3] == ["Index", "Retained", "Size"]
    assert len(text.splitlines()) == 4
    code, text, err = cli("cycles", str(out), "--top", "2")
    assert code == 0 and text.splitlines()[-1].endswith("cycles")
    code, text, err = cli("dot", str(out), hex(target), "--depth", "1")
    assert code == 0 and text.startswith("digraph")
    dot = tmp_path / "g.dot"
    code, text, err = cli("dot", str(out), hex(target), "-o", str(dot))
    assert code == 0 and dot.read_text().startswith("digraph")


@pytest.mark.parametrize("argv, message", [
    (["summary", "{d}/app.py"], "not a heaptrail snapshot file"),
    (["summary", "{d}/missing.htsnap"], "missing.htsnap: No such file or directory"),
    (["diff", "{d}/app.htsnap", "{d}/app.py"], "not a heaptrail snapshot file"),
    (["query", "{d}/app.htsnap", "size >"], "query: expected a value"),
    (["path", "{d}/app.htsnap", "nothex"], "'nothex' is not an address"),
    (["path", "{d}/app.htsnap", "0x10"], "object 0x10 is not in this snapshot"),
    (["path", "{d}/app.htsnap", "-5"], "-5 is not an address"),
    (["dot", "{d}/app.htsnap", "0x" + "f" * 20], "0x" + "f" * 20 + " is not an address"),
    (["snapshot", "-o", "{d}/x.htsnap", "--", "{d}/missing.py"], "missing.py: No such file or directory"),
    (["snapshot", "-o", "{d}/no/such/x.htsnap", "--", "{d}/app.py"], "no such directory"),
])
def test_cli_bad_input_is_one_line(cli, app_snapshots, argv, message):
    d = app_snapshots[0]
    code, out, err = cli(*[a.format(d=d) for a in argv])
    assert code == 1
    assert err.startswith("heaptrail: error: ") and message in err
    assert err.count("\n") == 1


def test_cli_truncated_snapshot_file(cli, app_snapshots, tmp_path):
    data = app_snapshots[1].read_bytes()
    cut = tmp_path / "cut.htsnap"
    cut.write_bytes(data[: len(data) // 2])
    code, out, err = cli("summary", str(cut))
    assert code == 1 and err == f"heaptrail: error: {cut}: damaged or truncated (checksum mismatch)\n"


def test_invalid_utf8_in_a_file_is_replaced_not_raised(tmp_path):
    # one object that is its own type, named by two bytes that are not UTF-8
    data = (MAGIC + bytes([1, 0, 0, 0, 11, 1, 0, 1])
            + bytes([1, 3, 2, 0xFF, 0xFE])
            + bytes([2, 9, 0x20, 1, 5, 1, 0x20, 1, 0, 0, 0])
            + bytes([3, 0, 0, 0]))
    path = tmp_path / "utf8.htsnap"
    path.write_bytes(data)
    snap = heaptrail.load(path)
    assert [(r.kind, r.count, r.size) for r in snap.summary()] == [("\ufffd\ufffd", 1, 5)]
    assert snap._h.record(0)[:5] == (0x10, "\ufffd\ufffd", 5, None, "\ufffd\ufffd")


@pytest.mark.parametrize("body, code, stderr_has", [
    ("import sys\nKEEP = ['x']\nsys.exit(3)\n", 3, "written to"),
    ("KEEP = ['x']\nraise ValueError('boom in the script')\n", 1, "ValueError: boom in the script"),
])
def test_cli_snapshot_keeps_the_script_exit_status(tmp_path, body, code, stderr_has):
    from conftest import run_cli

    (tmp_path / "s.py").write_text(body)
    out = tmp_path / "s.htsnap"
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(heaptrail.__file__)))
    proc = run_cli("snapshot", "-o", str(out), "--", "s.py", cwd=str(tmp_path), env={"PYTHONPATH": pkg_parent})
    assert proc.returncode == code
    assert stderr_has in proc.stderr
    snap = heaptrail.load(out)
    # the script's __main__ (and heaptrail's own, run by python -m, still on the stack)
    assert snap.query("type == 'module' and name == '__main__'")
    keep = snap.query("type == 'list' and len == 1 and referrers >= 1")
    assert any(snap.path_to_root(r.address).labels() == [".KEEP"] for r in keep)
