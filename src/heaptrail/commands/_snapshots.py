"""Helpers shared by the snapshot commands: open a snapshot file with a clear error, parse an
address, print JSON; argument types (positive, count) for every command."""
import json
import os
import sys

from heaptrail.cli import CommandError
from heaptrail.heap import SNAPSHOT_MAGIC, load


def open_snapshot(path, command):
    """Loads a heap snapshot file; a missing file or another kind of file is a one-line error."""
    from heaptrail.capture import refuse_pipe
    refuse_pipe(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(SNAPSHOT_MAGIC))
    except IsADirectoryError:
        raise CommandError(f"{path}: is a directory")
    except OSError as e:
        raise CommandError(f"{path}: {e.strerror or e}")
    if head != SNAPSHOT_MAGIC:
        raise CommandError(f"{path}: not a heaptrail snapshot file (`heaptrail {command}` reads files "
                           "written by `heaptrail snapshot` or Snapshot.save)")
    return load(path)


def parse_address(text):
    try:
        return int(text, 0)
    except ValueError:
        raise CommandError(f"{text!r} is not an address (write it as 0x7f... or in decimal)")


def print_json(value):
    json.dump(value, sys.stdout, indent=1)
    sys.stdout.write("\n")


def refuse_overwriting(output, *inputs):
    """CommandError when `output` is one of the files the command reads or runs: `run -o app.py
    app.py` or `flamegraph c.htcap -o c.htcap` wrote over the very script or capture."""
    for path in inputs:
        try:
            same = path is not None and os.path.samefile(output, path)
        except OSError:   # either does not exist (yet): not the same file
            same = False
        if same:
            raise CommandError(f"{output}: that is the input file {path}: write the output elsewhere")


def number(name, convert=int, lo=None, hi=None, most=None):
    """An argparse type: text -> convert(text), within [lo, hi]; a value above `most` is taken
    as `most` (a row count past every row is all rows: `--top 10**30` must not reach C's
    Py_ssize_t as an OverflowError traceback). argparse reports any failure as
    "invalid NAME value: 'text'"; NaN is refused (it compares false with every bound)."""
    def parse(text):
        value = convert(text)
        if value != value or (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(text)
        return value if most is None else min(value, most)

    parse.__name__ = name
    return parse


positive = number("positive", lo=1, most=sys.maxsize)
count = number("count", lo=0, most=sys.maxsize)           # a row count: 0 means all
