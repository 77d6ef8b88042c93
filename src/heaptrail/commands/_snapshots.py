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


def positive(text):
    n = int(text)
    if n <= 0:
        raise ValueError
    return n


def count(text):
    """A row count: 0 (meaning all) or more. argparse reports a failure as "invalid count value"."""
    value = int(text)
    if value < 0:
        raise ValueError(f"must be 0 or more: {text!r}")
    return value
