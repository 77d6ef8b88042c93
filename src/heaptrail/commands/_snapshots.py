"""Helpers shared by the snapshot commands: open a snapshot file with a clear error, parse an
address, print JSON, write an output file; argument types (positive, count) for every command."""
import contextlib
import json
import os
import stat
import sys

from heaptrail._format import write_file
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


@contextlib.contextmanager
def replacing(path):
    """Yields the name to write `path` through. For a regular file, or none yet, in a directory
    we may write: a temporary beside it, renamed over `path` once written, removed if writing
    failed, so a full disk (or a file size limit) leaves the file that was there as it was,
    where writing in place left it cut short. Anything else (a device like /dev/null, a FIFO,
    a symlink) is written in place. An OSError naming the temporary is re-raised naming `path`."""
    try:
        st = os.lstat(path)
        mode = stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None
        atomic = mode is not None
    except FileNotFoundError:
        mode, atomic = None, True
    except OSError:
        mode, atomic = None, False
    folder = os.path.dirname(os.path.abspath(path))
    # a file we may not write is not replaced either (its open fails, as it did): a rename
    # needs only the folder's permission
    if not atomic or not os.access(folder, os.W_OK) or (mode is not None and not os.access(path, os.W_OK)):
        yield path
        return
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)   # the file keeps its permissions
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and e.filename == tmp:
            raise OSError(e.errno, e.strerror or str(e), path) from None
        raise


def write_output(path, data):
    """Writes data (str, as UTF-8, or bytes) to path. The caller computes all of it first, so a
    failing computation leaves a file already at path as it was, and so does a failing write
    (replacing); a failed write or close names the file, where OSError alone said
    "[Errno 28] No space left on device"."""
    with replacing(path) as target:
        write_file(target, data)


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
