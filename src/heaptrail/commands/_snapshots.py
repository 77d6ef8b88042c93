"""Helpers shared by the snapshot commands: open a snapshot file with a clear error, parse an
address, print JSON; argument types (positive, count) for every command."""
import json
import os
import sys

from heaptrail.cli import CommandError
from heaptrail.heap import SNAPSHOT_MAGIC, load


def open_snapshot(path, command):
    """Loads a heap snapshot file; a missing file or another kind of file is a one-line error."""
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


def number(name, convert=int, lo=None, hi=None):
    """An argparse type: text -> convert(text), within [lo, hi]. argparse
    reports any failure as "invalid NAME value: 'text'"."""
    def parse(text):
        value = convert(text)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(text)
        return value

    parse.__name__ = name
    return parse


positive = number("positive", lo=1)
count = number("count", lo=0)           # a row count: 0 means all
