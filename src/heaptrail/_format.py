"""Small formatting helpers shared by every view: byte sizes and tables; and the one way
heaptrail writes a whole file (replacing, write_file)."""
import contextlib
import os
import stat


def human_bytes(n, precision=1):
    """1536 -> '1.5 KiB'; negative sizes keep their sign."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            if unit == "B":
                return f"{sign}{int(n)} B"
            return f"{sign}{n:.{precision}f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def table(headers, rows, align=None):
    """Renders rows as a fixed-width text table. align: string of 'l'/'r' per
    column (default: right for numbers, left for the rest)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in cells:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    if align is None:
        align = "".join(
            "r" if rows and isinstance(rows[0][i], (int, float)) else "l" for i in range(len(headers))
        )

    def fmt(r):
        out = []
        for i, c in enumerate(r):
            out.append(c.rjust(widths[i]) if align[i] == "r" else c.ljust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [fmt(headers)]
    lines += [fmt(r) for r in cells]
    return "\n".join(lines)


def write_file(path, data):
    """Writes data (str, as UTF-8, or bytes) to path, through `replacing`: a failed write leaves
    a file already at path as it was. A failed write or close names the file, where OSError
    alone said "[Errno 28] No space left on device"."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with replacing(path) as target:
        with open(target, "wb") as f:
            f.write(data)


@contextlib.contextmanager
def replacing(path):
    """Yields the name to write `path` through. For a regular file, or none yet, in a directory
    we may write: a temporary beside it, renamed over `path` once written, removed if writing
    failed, so a full disk (or a file size limit) leaves the file that was there as it was,
    where writing in place left it cut short. Anything else (a device like /dev/null, a FIFO,
    a symlink) is written in place. An OSError naming the temporary, or none, is re-raised
    naming `path`. Every file heaptrail writes whole (snapshots, exports, reports, graphs)
    goes through here."""
    path = os.fsdecode(os.fspath(path))
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
        tmp = None
    else:
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        yield tmp or path
        if tmp is not None:
            if mode is not None:
                os.chmod(tmp, mode)   # the file keeps its permissions
            os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError) and e.filename in (tmp, None):
            raise OSError(e.errno, e.strerror or str(e), path) from None
        raise
