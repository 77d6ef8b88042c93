"""Exports of a capture, decoded independently: pprof with a small
hand-written protobuf decoder (and with the protobuf package when installed),
speedscope and json with json, csv with csv."""
import csv
import gzip
import json

import pytest

from heaptrail import _core
from test_capture import EVENTS


@pytest.fixture
def known(tmp_path):
    path = tmp_path / "known.htcap"
    _core._capture_write(str(path), EVENTS, pid=7)
    return str(path)


# ---- a minimal protobuf wire-format decoder, written for this test ----------------

def _varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def decode(buf):
    """field number -> list of values (ints, or bytes for length-delimited)."""
    fields, i = {}, 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = bytes(buf[i:i + n]), i + n
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        fields.setdefault(field, []).append(value)
    return fields


def packed(b):
    out, i = [], 0
    while i < len(b):
        v, i = _varint(b, i)
        out.append(v)
    return out


def profile_from_wire(raw):
    """{stack tuple of (function, file, line), leaf first: [values]} and the sample types."""
    p = decode(raw)
    strings = [s.decode() for s in p[6]]
    assert strings[0] == ""
    types = [(strings[decode(v)[1][0]], strings[decode(v)[2][0]]) for v in p[1]]
    functions = {}
    for f in p.get(5, []):
        d = decode(f)
        functions[d[1][0]] = (strings[d[2][0]], strings[d[4][0]])
    locations = {}
    for loc in p.get(4, []):
        d = decode(loc)
        line = decode(d[4][0])
        name, file = functions[line[1][0]]
        locations[d[1][0]] = (name, file, line.get(2, [0])[0])
    samples = {}
    for s in p[2]:
        d = decode(s)
        ids = packed(d[1][0]) if 1 in d else []
        samples[tuple(locations[i] for i in ids)] = packed(d[2][0])
    return types, samples


def test_pprof_numbers(known, tmp_path, cli):
    out = tmp_path / "p.pb.gz"
    code, stdout, err = cli("export", known, "--format", "pprof", "-o", str(out))
    assert code == 0, err
    raw = gzip.decompress(out.read_bytes())
    types, samples = profile_from_wire(raw)
    assert types == [("alloc_objects", "count"), ("alloc_space", "bytes"),
                     ("inuse_objects", "count"), ("inuse_space", "bytes")]
    main, load, parse, cache = ("main", "prog.py", 5), ("load", "prog.py", 12), ("parse", "lib.py", 30), ("cache", "lib.py", 44)
    assert samples == {
        (parse, load, main): [2, 3000, 2, 3000],
        (load, main): [1, 500, 1, 500],
        (cache, main): [2, 4300, 1, 4000],
        (main,): [1, 100, 0, 0],
    }
    code, stdout, err = cli("export", known, "--leaks", "--format", "pprof", "-o", str(out))
    _, leaks = profile_from_wire(gzip.decompress(out.read_bytes()))
    assert {k[0][0]: v[2:] for k, v in leaks.items()} == {"parse": [0, 0], "load": [1, 500], "cache": [1, 300],
                                                          "main": [1, 100]}


PROFILE_PROTO_FIELDS = {
    # message: [(name, number, type, label, type_name)]
    "Profile": [("sample_type", 1, "message", "repeated", "ValueType"), ("sample", 2, "message", "repeated", "Sample"),
                ("location", 4, "message", "repeated", "Location"), ("function", 5, "message", "repeated", "Function"),
                ("string_table", 6, "string", "repeated", None), ("time_nanos", 9, "int64", "optional", None),
                ("duration_nanos", 10, "int64", "optional", None),
                ("period_type", 11, "message", "optional", "ValueType"), ("period", 12, "int64", "optional", None),
                ("default_sample_type", 14, "int64", "optional", None)],
    "ValueType": [("type", 1, "int64", "optional", None), ("unit", 2, "int64", "optional", None)],
    "Sample": [("location_id", 1, "uint64", "repeated", None), ("value", 2, "int64", "repeated", None)],
    "Location": [("id", 1, "uint64", "optional", None), ("line", 4, "message", "repeated", "Line")],
    "Line": [("function_id", 1, "uint64", "optional", None), ("line", 2, "int64", "optional", None)],
    "Function": [("id", 1, "uint64", "optional", None), ("name", 2, "int64", "optional", None),
                 ("system_name", 3, "int64", "optional", None), ("filename", 4, "int64", "optional", None)],
}


def test_pprof_with_protobuf_package(known, tmp_path):
    pytest.importorskip("google.protobuf", reason="the protobuf package is not installed")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="heaptrail_test_profile.proto", package="perftools.profiles",
                                             syntax="proto3")
    F = descriptor_pb2.FieldDescriptorProto
    for msg, fields in PROFILE_PROTO_FIELDS.items():
        m = fdp.message_type.add(name=msg)
        for name, number, typ, label, type_name in fields:
            f = m.field.add(name=name, number=number,
                            label=F.LABEL_REPEATED if label == "repeated" else F.LABEL_OPTIONAL,
                            type={"message": F.TYPE_MESSAGE, "string": F.TYPE_STRING, "int64": F.TYPE_INT64,
                                  "uint64": F.TYPE_UINT64}[typ])
            if type_name:
                f.type_name = ".perftools.profiles." + type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    desc = pool.FindMessageTypeByName("perftools.profiles.Profile")
    Profile = message_factory.GetMessageClass(desc)
    out = tmp_path / "p.pb.gz"
    from heaptrail.cli import main
    assert main(["export", known, "--format", "pprof", "-o", str(out)]) == 0
    prof = Profile.FromString(gzip.decompress(out.read_bytes()))
    st = prof.string_table
    assert [st[t.type] for t in prof.sample_type] == ["alloc_objects", "alloc_space", "inuse_objects", "inuse_space"]
    assert st[prof.default_sample_type] == "inuse_space"   # a string-table index
    assert (st[prof.period_type.type], st[prof.period_type.unit], prof.period) == ("space", "bytes", 1)
    assert sum(s.value[1] for s in prof.sample) == 7900
    assert sum(s.value[3] for s in prof.sample) == 7500
    funcs = {f.id: st[f.name] for f in prof.function}
    locs = {l.id: funcs[l.line[0].function_id] for l in prof.location}
    by_leaf = {locs[s.location_id[0]]: list(s.value) for s in prof.sample}
    assert by_leaf["cache"] == [2, 4300, 1, 4000]
    assert prof.duration_nanos >= 5_000_000


def test_speedscope(known, tmp_path, cli):
    out = tmp_path / "s.json"
    code, stdout, err = cli("export", known, "--format", "speedscope", "-o", str(out))
    assert code == 0, err
    doc = json.loads(out.read_text())
    prof = doc["profiles"][0]
    assert prof["type"] == "sampled" and prof["unit"] == "bytes"
    frames = doc["shared"]["frames"]
    stacks = {tuple(frames[i]["name"] for i in s): w for s, w in zip(prof["samples"], prof["weights"])}
    assert stacks == {("main", "load", "parse"): 3000, ("main", "load"): 500, ("main", "cache"): 4000}
    assert prof["endValue"] == 7500


def test_json_and_csv(known, tmp_path, cli):
    out = tmp_path / "t.json"
    assert cli("export", known, "--total", "--format", "json", "-o", str(out))[0] == 0
    rows = json.loads(out.read_text())["rows"]
    assert sum(r["bytes"] for r in rows) == 7900
    assert rows[0]["function"] == "cache" and rows[0]["bytes"] == 4300
    out = tmp_path / "t.csv"
    assert cli("export", known, "--leaks", "--format", "csv", "-o", str(out))[0] == 0
    with open(out, newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["function"], int(r["bytes"])) for r in table] == [("load", 500), ("cache", 300), ("main", 100)]
    assert table[0]["stack"] == "load@prog.py:12;main@prog.py:5"


def test_export_bad_file(cli, tmp_path):
    bad = tmp_path / "x"
    bad.write_text("nope")
    code, out, err = cli("export", str(bad), "--format", "pprof", "-o", str(tmp_path / "o"))
    assert code == 1 and "not a heaptrail capture" in err and err.count("\n") == 1
